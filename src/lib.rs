//! tinyvmm: a micro-VM launcher on Linux KVM built from rust-vmm crates.
//!
//! The VMM core is every module but `lab`; the lab (`tinyvmm compare`, its
//! probes, the container side) uses the core and the core never uses the
//! lab (tests/architecture.rs checks it). docs/architecture.md has the map.
#![deny(clippy::undocumented_unsafe_blocks)]

/// Architecture support: guest layout, boot protocol, registers, CPUID, MP table.
pub mod arch;
/// `tinyvmm run --bundle`: an OCI bundle run as a micro-VM.
pub mod bundle;
/// `tinyvmm run`'s command line, turned into a `VmConfig`.
pub mod cli;
/// `VmConfig`: what to boot, as plain data, and its validation.
pub mod config;
/// Emulated devices, the PIO/MMIO buses and the device manager.
pub mod devices;
/// How a VM ends and the process exit code for each ending.
pub mod exit;
/// Fuzz harnesses: one per cargo-fuzz target, shared with the stable corpus replay.
pub mod fuzz_harness;
/// Facts about the host: /proc parsers, this process's cost, the kind of KVM.
pub mod host;
/// Where kernels/build.sh's Linux guest is.
pub mod kernel_dir;
/// The VM (fd + memory), vCPUs, exit decoding and counters, vCPU threads.
pub mod kvm;
/// The measurement lab: `compare`, probes, containers. Uses the core only.
pub mod lab;
/// Messages on stderr through a bounded queue: no thread blocks on it.
pub mod log;
/// `key=value` option lists for device flags (`--disk`).
pub mod options;
/// Least privilege: capabilities dropped, optional user switch.
pub mod privileges;
/// The guest profiler (`run --profile`) and `--boot-timer`'s boot phases.
pub mod profile;
/// The seccomp sandbox: per-thread system-call filters.
pub mod seccomp;
/// Signal handling: clean exit on SIGINT/SIGTERM, vCPU kicks.
pub mod signals;
/// Snapshots: the format, the memory file, disk identity, `restore`'s command.
pub mod snapshot;
/// Locking that survives a panicked holder.
pub mod sync;
/// Raw terminal mode, always restored.
pub mod terminal;
/// The embedded tiny guest kernel.
pub mod tiny_guest;
/// The VMM: build a VM from a config, run it, report.
pub mod vmm;
