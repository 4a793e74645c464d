//! The `tensor2npy` binary: parses the command line, runs the command, and turns errors into
//! one line on stderr and the contract's exit status (1 failure, 2 usage, 130 interrupted). A
//! closed output pipe (`tensor2npy list x | head -1`) is not a failure: like other Unix
//! filters, the tool then stops quietly with status 0.

use std::process::ExitCode;

use clap::Parser;

use tensor2npy::cli::{Cli, Command};
use tensor2npy::{cmd, names, pipeline, sink};

fn main() -> ExitCode {
    let cli = Cli::parse();
    pipeline::watch_interrupts();
    let result = match cli.command {
        Command::Convert(args) => cmd::convert::run(args),
        Command::List(args) => cmd::list::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Devices { json } => cmd::devices::run(json),
        Command::Man { subcommand, write } => {
            cmd::man::run(subcommand.as_deref(), write.as_deref())
        }
        Command::Completions { shell } => cmd::completions::run(shell),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Names come from the input: a control character in one must not reach the
            // terminal raw.
            eprintln!("tensor2npy: error: {}", names::shown(&format!("{e:#}")));
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

/// Whether the failure was writing to a pipe whose reader has gone.
fn closed_pipe(e: &anyhow::Error) -> bool {
    let broken = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(broken)
            || c.downcast_ref::<sink::WriteError>()
                .is_some_and(|w| broken(&w.0))
    })
}
