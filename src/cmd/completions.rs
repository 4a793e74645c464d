//! `tensor2npy completions SHELL`: prints clap_complete's script for the shell.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::sink::io_error;

pub fn run(shell: clap_complete::Shell) -> Result<()> {
    // Generated into memory first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tensor2npy", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).map_err(io_error)?;
    out.flush().map_err(io_error)
}
