//! tinyvmm: a micro-VM launcher on Linux KVM built from rust-vmm crates.
#![deny(clippy::undocumented_unsafe_blocks)]

/// Architecture support: guest layout, boot protocol, registers, CPUID.
pub mod arch;
/// The command line (clap derive).
pub mod cli;
/// `tinyvmm compare`: the same workload on VMs and containers, measured side by side.
pub mod compare;
/// `VmConfig`: what to boot, as plain data, and its validation.
pub mod config;
/// The container side of comparisons: OCI bundle, crun and runc.
pub mod container;
/// Emulated devices and the PIO/MMIO buses.
pub mod devices;
/// How a VM ends and the process exit code for each ending.
pub mod exit;
/// The VMM's own CPU time and resident memory, guest RAM apart.
pub mod footprint;
/// The VM and vCPU file descriptors and the vCPU run loop.
pub mod kvm;
/// Timing and footprint probes shared by `compare` and the benches.
pub mod measure;
/// The seccomp sandbox: per-thread system-call filters.
pub mod seccomp;
/// Signal handling: clean exit on SIGINT/SIGTERM, vCPU kicks.
pub mod signals;
/// VM-exit counters for `--stats`.
pub mod stats;
/// Raw terminal mode, always restored.
pub mod terminal;
/// The embedded tiny guest kernel.
pub mod tiny_guest;
/// The VMM: build a VM from a config, run it.
pub mod vmm;

use std::time::Instant;

/// `tinyvmm run`: build and run one VM, report on stderr, return the exit code.
pub fn run_command(args: &cli::RunArgs, process_start: Instant) -> u8 {
    signals::die_with_parent();
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tinyvmm: {e}");
            return exit::EXIT_BAD_CONFIG;
        }
    };
    if config.sandbox == seccomp::Sandbox::Off {
        eprintln!(
            "tinyvmm: WARNING: --no-seccomp: running WITHOUT the seccomp sandbox; debugging only"
        );
    } else if let Err(e) = seccomp::install_vmm_filter() {
        eprintln!("tinyvmm: {e}");
        return exit::EXIT_KVM_UNAVAILABLE;
    }
    let mut code = 0;
    for boot in 1..=args.repeat {
        let started = Instant::now();
        let report = match vmm::Vmm::build(&config, process_start).and_then(vmm::Vmm::run) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("tinyvmm: {e}");
                return e.exit_code();
            }
        };
        print_report(&config, &report);
        code = report.exit.code();
        if args.repeat > 1 {
            let marker = report.markers.first().map_or(String::new(), |m| {
                format!(", marker {:.3} ms", m.since_build_start.as_secs_f64() * 1e3)
            });
            eprintln!(
                "tinyvmm: boot {boot}/{}: exit {code}, {:.3} ms (build {:.3} ms{marker}); {}",
                args.repeat,
                started.elapsed().as_secs_f64() * 1e3,
                report.build_time.as_secs_f64() * 1e3,
                footprint::census()
            );
        }
        if matches!(report.exit, exit::VmExit::Signal(_)) {
            break;
        }
    }
    code
}

/// What `run` says on stderr about one finished VM.
fn print_report(config: &config::VmConfig, report: &vmm::RunReport) {
    if let Some(msg) = report.exit.describe() {
        eprintln!("tinyvmm: {msg}");
    }
    let out = report.output;
    if out.dropped_full > 0 || out.discarded > 0 {
        eprintln!(
            "tinyvmm: guest console output: {} bytes written, {} dropped (stdout too slow for the 8250), {} discarded{}",
            out.written,
            out.dropped_full,
            out.discarded,
            if out.stdout_closed {
                " (stdout closed)"
            } else {
                ""
            }
        );
    }
    if config.stats {
        eprint!("{}", report.stats.report());
        eprintln!(
            "tinyvmm: build {:.3} ms, run {:.3} ms, CPU time before the first KVM_RUN {:.3} ms",
            report.build_time.as_secs_f64() * 1e3,
            report.run_time.as_secs_f64() * 1e3,
            report.cpu_to_first_run.as_secs_f64() * 1e3
        );
        eprintln!(
            "tinyvmm: resident memory at exit: VMM {:.2} MiB (excluding guest RAM), guest RAM touched {:.2} MiB",
            report.resident.vmm as f64 / (1 << 20) as f64,
            report.resident.guest as f64 / (1 << 20) as f64
        );
        if let Some((console, transport)) = &report.virtio_console {
            eprint!(
                "{}",
                devices::virtio::console::stats_report(console, transport)
            );
        }
        for m in &report.markers {
            eprintln!("{}", m.report());
        }
    }
}
