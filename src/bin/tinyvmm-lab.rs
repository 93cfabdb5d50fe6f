//! `tinyvmm-lab`: the measurement lab's executable. `tinyvmm compare` runs
//! it (it lives beside `tinyvmm`), so the VMM binary carries none of the
//! lab's code: measured on our kvm_pvm host, that keeps the VMM's resident
//! memory 0.75 MiB lower (2.90 MiB vs 3.65 MiB for the tiny guest, release
//! build) and its executable 0.6 MB smaller. See docs/architecture.md.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use tinyvmm::exit::EXIT_BAD_CONFIG;
use tinyvmm::lab::compare::CompareArgs;

/// tinyvmm's measurement lab: VMs against containers, on this host.
#[derive(Debug, Parser)]
#[command(
    name = "tinyvmm",
    bin_name = "tinyvmm",
    version,
    propagate_version = true
)]
struct Lab {
    /// What to measure.
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run one workload on tinyvmm, QEMU, crun and runc; print the VMs-vs-containers table.
    Compare(CompareArgs),
}

fn main() -> ExitCode {
    let lab = match Lab::try_parse() {
        Ok(lab) => lab,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_BAD_CONFIG),
            };
        }
    };
    let code = match lab.command {
        Command::Compare(args) => tinyvmm::lab::compare::run(&args),
    };
    ExitCode::from(code)
}
