//! The `tensor2npy` binary: parses the command line, runs the command, and turns errors into
//! one line on stderr and the contract's exit status (1 failure, 2 usage, 75 a transient
//! failure worth retrying, 130 interrupted). A
//! closed output pipe (`tensor2npy list x | head -1`) is not a failure: like other Unix
//! filters, the tool then stops quietly with status 0.

use std::process::ExitCode;

use clap::Parser;

use tensor2npy::cli::{Cli, Command};
use tensor2npy::{cmd, error, sink};

fn main() -> ExitCode {
    // Vulkan's loader probes Wayland and complains on stderr when this is unset; any existing
    // directory quiets it. Set here, first, because changing the environment is only sound
    // while no other thread exists.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: the first statement of `main`: no other thread has been started yet.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = Cli::try_parse().unwrap_or_else(|e| suggest_convert(e).exit());
    error::watch_interrupts();
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
            eprintln!(
                "tensor2npy: error: {}",
                sink::names::shown(&format!("{e:#}"))
            );
            if e.downcast_ref::<error::UsageError>().is_some() {
                ExitCode::from(2)
            } else if e.downcast_ref::<error::Interrupted>().is_some() {
                ExitCode::from(130)
            } else if error::is_transient(&e) {
                ExitCode::from(75)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `tensor2npy model.safetensors` (a path where the subcommand goes): clap's error, with a tip
/// to run `tensor2npy convert model.safetensors`.
fn suggest_convert(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidSubcommand {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidSubcommand).cloned() else {
        return e;
    };
    let path = std::path::Path::new(&arg);
    if path.exists() || arg.contains('.') || arg.contains('/') || arg.contains("://") {
        e.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![format!(
                "to convert it, run 'tensor2npy convert {arg}' (or 'tensor2npy list {arg}' to see what it holds)"
            )
            .into()]),
        );
    }
    e
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
