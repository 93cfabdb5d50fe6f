//! `tinyvmm restore DIR`: its options, and the command itself (sandbox,
//! restore, run, report), with the same exit codes as `run` plus 126 for a
//! snapshot that cannot be used.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::config::ConsoleKind;
use crate::seccomp::{self, Sandbox};
use crate::vmm::Vmm;
use crate::vmm::report::print_report;
use crate::vmm::restore::RestoreOptions;
use crate::{exit, signals};

/// `tinyvmm restore` options.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot directory (`run --snapshot-on-marker DIR`, or
    /// `--snapshot-dir DIR` and SIGUSR1).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where the console goes: by default the saved console device on
    /// stdin/stdout; `none` sends its output nowhere. The device itself is
    /// the saved one.
    #[arg(long, value_enum)]
    pub console: Option<ConsoleKind>,
    /// Print VM-exit counts by reason and address, and VMM time, at exit.
    #[arg(long)]
    pub stats: bool,
    /// Print boot-marker times on stderr.
    #[arg(long)]
    pub boot_timer: bool,
    /// A copy of a saved disk image to use instead of the saved one, in
    /// disk order (the first replaces /dev/vda): each restore of one
    /// snapshot can have its own. It must have the saved image's size.
    #[arg(long, value_name = "FILE")]
    pub disk: Vec<PathBuf>,
    /// The tap for a saved network device, in device order (the first is
    /// eth0's): tap=NAME (it must exist) or ip=ADDR/PREFIX (a new one);
    /// default: the saved tap by name. The MAC stays the saved one.
    #[arg(long, value_name = "tap=NAME|ip=ADDR/PREFIX")]
    pub net: Vec<String>,
    /// Run without the seccomp sandbox (debugging only).
    #[arg(long)]
    pub no_seccomp: bool,
}

impl RestoreArgs {
    /// The options as plain data.
    pub fn to_options(&self) -> RestoreOptions {
        RestoreOptions {
            dir: self.dir.clone(),
            console: self.console,
            stats: self.stats,
            boot_timer: self.boot_timer,
            disks: self.disk.clone(),
            nets: self.net.clone(),
            sandbox: if self.no_seccomp {
                Sandbox::Off
            } else {
                Sandbox::On
            },
        }
    }
}

/// `tinyvmm restore`: restore, run to the end, report; returns the exit code.
pub fn restore_command(args: &RestoreArgs, process_start: Instant) -> u8 {
    let code = restore_and_run(args, process_start);
    crate::log::finish(std::time::Duration::from_millis(500));
    code
}

fn restore_and_run(args: &RestoreArgs, process_start: Instant) -> u8 {
    signals::die_with_parent();
    let opts = args.to_options();
    if opts.sandbox == Sandbox::Off {
        crate::say!(
            "tinyvmm: WARNING: --no-seccomp: running WITHOUT the seccomp sandbox; debugging only"
        );
    } else if let Err(e) = seccomp::install_build_filter() {
        crate::say!("tinyvmm: {e}");
        return exit::EXIT_KVM_UNAVAILABLE;
    }
    crate::log::start();
    let vmm = match Vmm::restore(&opts, process_start) {
        Ok(vmm) => vmm,
        Err(e) => {
            crate::say!("tinyvmm: {e}");
            return e.exit_code();
        }
    };
    let config = vmm.config().clone();
    match vmm.run() {
        Ok(report) => {
            print_report(&config, &report);
            let code = report.exit.code();
            report.guest_ram.keep_until_process_exit();
            code
        }
        Err(e) => {
            crate::say!("tinyvmm: {e}");
            e.exit_code()
        }
    }
}
