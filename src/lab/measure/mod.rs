//! Timing and footprint probes shared by `tinyvmm compare` and the benches.
//!
//! Every path of a comparison (a VMM booting a guest, a container runtime
//! running a container) is measured the same way: as a process launched
//! from here (`launch`), timed with the monotonic clock from spawn to the
//! workload's marker line and to exit, its memory read from /proc at the
//! moment each of its processes exits (`trace`, `crate::host::procfs`), and repeated
//! runs summarised (`distribution`).

pub mod cgroup;
pub mod distribution;
pub mod isolation;
pub mod launch;
pub mod trace;
pub mod watchdog;

pub use distribution::Summary;
pub use launch::{Ending, LaunchSpec, RunRecord, launch, launch_all};
