//! The `tensor2npy` binary: parses the command line, runs the command, and turns errors into
//! one line on stderr and the contract's exit status (1 failure, 2 usage).

use std::process::ExitCode;

use clap::Parser;

use tensor2npy::cli::{Cli, Command};
use tensor2npy::{cmd, pipeline};

fn main() -> ExitCode {
    let cli = Cli::parse();
    pipeline::watch_interrupts();
    let result = match cli.command {
        Command::Convert(args) => cmd::convert::run(args),
        Command::List(args) => cmd::list::run(args),
        Command::Devices { json } => cmd::devices::run(json),
        Command::Man { subcommand, write } => {
            cmd::man::run(subcommand.as_deref(), write.as_deref())
        }
        Command::Completions { shell } => {
            cmd::completions::run(shell);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tensor2npy: error: {e:#}");
            if e.downcast_ref::<pipeline::UsageError>().is_some() {
                ExitCode::from(2)
            } else if e.downcast_ref::<pipeline::Interrupted>().is_some() {
                ExitCode::from(130)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
