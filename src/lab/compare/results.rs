//! The results of a comparison, per path: what `--json` writes and what
//! the Markdown table shows. `summary` computes them from the run records.

use serde::Serialize;

use super::host::Host;
use super::paths::{PathId, Workload};
use crate::lab::measure::Summary;

/// A whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The JSON layout's version (README: "compare's JSON").
    pub schema_version: u32,
    /// Where it was measured.
    pub host: Host,
    /// What every path ran.
    pub workload: Workload,
    /// One entry per selected path, present or absent.
    pub paths: Vec<PathResult>,
}

/// Version of the JSON layout: 2 added `schema_version`, `how`,
/// `footprint.charged_kib` (cgroup peak, now in `total_kib`) and
/// `size.launcher_contains`; 3 added `persistence_measured` and the
/// `tinyvmm-disk` path; 4 added `network` (`network.rs`).
pub const SCHEMA_VERSION: u32 = 4;

/// One path's results, or why it is absent.
#[derive(Clone, Debug, Serialize)]
pub struct PathResult {
    /// Which path.
    pub path: PathId,
    /// Its column heading.
    pub label: &'static str,
    /// Why it did not run (absent), if so.
    pub absent: Option<String>,
    /// The command line of one run.
    pub command: Option<String>,
    /// Timed runs attempted.
    pub runs: usize,
    /// One line per failed run.
    pub failures: Vec<String>,
    /// Startup times, ms.
    pub startup: Option<Startup>,
    /// Memory per instance, KiB.
    pub footprint: Option<Footprint>,
    /// Bytes on disk.
    pub size: Option<Size>,
    /// K instances at once.
    pub density: Option<Density>,
    /// Isolation facts read from the system.
    pub isolation: Option<Isolation>,
    /// What survives the instance, derived from the path's configuration
    /// (as the timed runs ran it).
    pub persistence: Option<String>,
    /// What survived, measured: one instance writes a file, the next
    /// reads it (`persistence.rs`); absent where it cannot be measured.
    pub persistence_measured: Option<super::persistence::Persistence>,
    /// TCP throughput each way and round trips between the host and the
    /// workload (`network.rs`), or why this path has no network.
    pub network: Option<super::network::NetworkRow>,
    /// How the path was started (runtime version, namespace workarounds).
    pub how: Option<String>,
}

impl PathResult {
    /// An absent path.
    pub fn absent(path: PathId, reason: String) -> PathResult {
        PathResult {
            path,
            label: path.label(),
            absent: Some(reason),
            command: None,
            runs: 0,
            failures: vec![],
            startup: None,
            footprint: None,
            size: None,
            density: None,
            isolation: None,
            persistence: None,
            persistence_measured: None,
            network: None,
            how: None,
        }
    }
}

/// Startup times over the successful runs, ms.
#[derive(Clone, Debug, Serialize)]
pub struct Startup {
    /// Spawn to the workload's marker line.
    pub marker_ms: Summary,
    /// Spawn to exit.
    pub exit_ms: Summary,
    /// tinyvmm's own boot-timer figure (guest's marker write, from VMM start).
    pub vmm_boot_timer_ms: Option<Summary>,
}

/// Memory per instance over the traced runs, KiB.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    /// Peak RSS of the VMM or runtime processes, guest RAM excluded.
    pub launcher_peak_kib: Summary,
    /// Guest RAM the VM actually touched (resident part of its mapping).
    pub guest_touched_kib: Option<Summary>,
    /// Peak RSS of the container's workload process.
    pub workload_peak_kib: Option<Summary>,
    /// Peak memory charged to the instance's cgroup (processes, guest RAM,
    /// tmpfs, page cache), where the host gives a memory cgroup.
    pub charged_kib: Option<Summary>,
    /// Per instance: the cgroup peak where measured, else launcher + guest + workload.
    pub total_kib: Summary,
    /// PSS of all the instance's processes as each exited.
    pub pss_kib: Summary,
    /// Processes per instance (VMM or runtime processes plus workload).
    pub processes: usize,
}

/// Sizes on disk.
#[derive(Clone, Debug, Serialize)]
pub struct Size {
    /// Guest or container image bytes.
    pub image_bytes: u64,
    /// What the image consists of.
    pub image: String,
    /// The VMM or runtime executable.
    pub launcher: String,
    /// Its size.
    pub launcher_bytes: u64,
    /// What that file holds, read from it (linking; for tinyvmm, that the
    /// lab is not in it).
    pub launcher_contains: String,
}

/// K instances started at once.
#[derive(Clone, Debug, Serialize)]
pub struct Density {
    /// K.
    pub instances: usize,
    /// How many printed the marker and exited as expected.
    pub succeeded: usize,
    /// First spawn to the last marker, ms (when all markers came).
    pub all_markers_ms: Option<f64>,
    /// First spawn to the last exit, ms.
    pub all_exited_ms: f64,
    /// Sum of the instances' peak memory (as `Footprint::total_kib`), KiB.
    pub total_peak_kib: u64,
    /// Sum of the instances' PSS, KiB.
    pub total_pss_kib: u64,
}

/// Isolation facts, read from /proc of the traced processes.
#[derive(Clone, Debug, Serialize)]
pub struct Isolation {
    /// Whether the workload runs on the host's kernel.
    pub host_kernel_shared: bool,
    /// Which kernel the workload's system calls reach.
    pub kernel: String,
    /// Whether the workload is a process on the host (seen by our tracer).
    pub workload_is_host_process: bool,
    /// Seccomp mode of the process facing the host kernel (the container's
    /// workload, or the VMM): "off", "strict" or "filter (N filters)".
    pub seccomp: String,
    /// Host system calls that process can make, when countable.
    pub host_syscalls: Option<usize>,
    /// Effective capabilities of that process.
    pub capabilities: Option<u32>,
    /// Namespaces it does not share with the host.
    pub namespaces_apart: Vec<String>,
    /// The boundary, in words.
    pub boundary: String,
}
