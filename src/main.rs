//! `tinyvmm`: parse the command line, build the VM, run it, exit with its code.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use clap::error::ErrorKind;
use tinyvmm::cli::{Cli, Command};
use tinyvmm::exit::EXIT_BAD_CONFIG;

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
        Command::Run(args) => tinyvmm::run_command(&args, process_start),
        Command::Compare(args) => tinyvmm::compare::run(&args),
    };
    ExitCode::from(code)
}
