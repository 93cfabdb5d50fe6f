//! The `tinyvmm run` command: the command line becomes a `VmConfig`, the
//! VMM's seccomp filter goes in, then the VM is built, run and reported on
//! (`--repeat N` times). Returns the process exit code.

use std::time::Instant;

use super::Vmm;
use super::report::print_report;
use crate::cli::RunArgs;
use crate::{exit, seccomp, signals};

/// `tinyvmm run`: build and run one VM, report on stderr, return the exit code.
pub fn run_command(args: &RunArgs, process_start: Instant) -> u8 {
    let code = run_boots(args, process_start);
    // Whatever stderr still owes, within half a second (it may be a pipe
    // that nobody reads: exiting on time matters more).
    crate::log::finish(std::time::Duration::from_millis(500));
    code
}

/// Validates, sandboxes, then builds and runs `--repeat` VMs.
fn run_boots(args: &RunArgs, process_start: Instant) -> u8 {
    signals::die_with_parent();
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            crate::say!("tinyvmm: {e}");
            return exit::EXIT_BAD_CONFIG;
        }
    };
    if config.sandbox == seccomp::Sandbox::Off {
        crate::say!(
            "tinyvmm: WARNING: --no-seccomp: running WITHOUT the seccomp sandbox; debugging only"
        );
    } else if let Err(e) = seccomp::install_build_filter() {
        crate::say!("tinyvmm: {e}");
        return exit::EXIT_KVM_UNAVAILABLE;
    }
    if config.user.is_some() {
        // Before any helper thread starts: they keep what the switch needs.
        crate::privileges::plan_user_switch();
    }
    // From here on, messages go through the log thread (under the filter).
    crate::log::start();
    let mut code = 0;
    for boot in 1..=args.repeat {
        let started = Instant::now();
        let report = match Vmm::build(&config, process_start).and_then(Vmm::run) {
            Ok(report) => report,
            Err(e) => {
                crate::say!("tinyvmm: {e}");
                return e.exit_code();
            }
        };
        print_report(&config, &report);
        code = report.exit.code();
        if args.repeat > 1 {
            let marker = report.markers.first().map_or(String::new(), |m| {
                format!(", marker {:.3} ms", m.since_build_start.as_secs_f64() * 1e3)
            });
            crate::say!(
                "tinyvmm: boot {boot}/{}: exit {code}, {:.3} ms (build {:.3} ms{marker}); {}",
                args.repeat,
                started.elapsed().as_secs_f64() * 1e3,
                report.build_time.as_secs_f64() * 1e3,
                crate::host::process::census()
            );
        }
        let last = boot == args.repeat || matches!(report.exit, exit::VmEnd::Signal(_));
        if last {
            // Measured from outside at our exit, guest RAM is still there,
            // as a QEMU process's is (compare's one yardstick).
            report.guest_ram.keep_until_process_exit();
            break;
        }
    }
    code
}
