//! `tinyvmm`: parse the command line, then build and run a VM (`run`, the
//! core), or hand `compare` to the lab's own executable, `tinyvmm-lab`,
//! beside this one (so this binary carries no lab code).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Instant;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use tinyvmm::cli::RunArgs;
use tinyvmm::exit::{EXIT_BAD_CONFIG, EXIT_KVM_UNAVAILABLE};
use tinyvmm::snapshot::cli::RestoreArgs;

/// The lab's executable, expected in this executable's directory.
const LAB: &str = "tinyvmm-lab";

/// tinyvmm: boot a micro-VM on KVM, and measure what it costs against a container.
#[derive(Debug, Parser)]
#[command(name = "tinyvmm", version, propagate_version = true)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
// Parsed once per process: the size of `run`'s options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a guest; its console is this process's stdin/stdout.
    Run(Box<RunArgs>),
    /// Resume a VM saved with `run --snapshot-on-marker DIR` (or
    /// `--snapshot-dir DIR` and SIGUSR1).
    Restore(RestoreArgs),
    /// Run one workload on tinyvmm, QEMU, crun and runc; print the
    /// VMs-vs-containers table (`tinyvmm compare --help` for its options).
    #[command(disable_help_flag = true)]
    Compare {
        /// Passed to `tinyvmm-lab compare`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
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
        Command::Run(args) => match args.bundle.clone() {
            Some(dir) => tinyvmm::bundle::launch::run_command(&args, &dir, process_start),
            None => tinyvmm::vmm::launch::run_command(&args, process_start),
        },
        Command::Restore(args) => tinyvmm::snapshot::cli::restore_command(&args, process_start),
        Command::Compare { args } => exec_lab(args),
    };
    ExitCode::from(code)
}

/// Replaces this process with `tinyvmm-lab compare ARGS`; returns only on
/// failure, with one line saying how to get the lab.
fn exec_lab(args: Vec<OsString>) -> u8 {
    let lab = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(LAB)))
        .filter(|p| p.is_file());
    let Some(lab) = lab else {
        eprintln!(
            "tinyvmm: compare needs `{LAB}` beside this executable; build both with `cargo build --release`"
        );
        return EXIT_KVM_UNAVAILABLE;
    };
    let err = std::process::Command::new(&lab)
        .arg("compare")
        .args(args)
        .exec();
    eprintln!("tinyvmm: running {}: {err}", lab.display());
    EXIT_KVM_UNAVAILABLE
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
        let Command::Compare { args } = parse(&["compare", "--runs", "1", "--help"])
            .unwrap()
            .command
        else {
            panic!("not compare");
        };
        assert_eq!(args, ["--runs", "1", "--help"]);
        assert!(parse(&["fly"]).is_err());
        assert!(parse(&["run", "--vcpus", "two"]).is_err());
    }
}
