//! `tinyvmm`: parse the command line, then either build and run a VM
//! (`run`, the core) or measure VMs against containers (`compare`, the lab).

use std::process::ExitCode;
use std::time::Instant;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use tinyvmm::cli::RunArgs;
use tinyvmm::exit::EXIT_BAD_CONFIG;
use tinyvmm::lab::compare::CompareArgs;

/// tinyvmm: boot a micro-VM on KVM, and measure what it costs against a container.
#[derive(Debug, Parser)]
#[command(name = "tinyvmm", version, propagate_version = true)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a guest; its console is this process's stdin/stdout.
    Run(RunArgs),
    /// Run one workload on tinyvmm, QEMU, crun and runc; print the VMs-vs-containers table.
    Compare(CompareArgs),
}

fn main() -> ExitCode {
    let process_start = Instant::now();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_BAD_CONFIG),
            };
        }
    };
    let code = match cli.command {
        Command::Run(args) => tinyvmm::vmm::launch::run_command(&args, process_start),
        Command::Compare(args) => tinyvmm::lab::compare::run(&args),
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_parse_and_unknown_ones_are_refused() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("tinyvmm").chain(args.iter().copied()))
        };
        assert!(matches!(parse(&["run"]).unwrap().command, Command::Run(_)));
        assert!(matches!(
            parse(&["compare", "--runs", "1"]).unwrap().command,
            Command::Compare(_)
        ));
        assert!(parse(&["fly"]).is_err());
        assert!(parse(&["run", "--vcpus", "two"]).is_err());
    }
}
