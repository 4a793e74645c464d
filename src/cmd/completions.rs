//! `tensor2npy completions SHELL`: prints clap_complete's script for the shell.

use clap::CommandFactory;

use crate::cli::Cli;

pub fn run(shell: clap_complete::Shell) {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "tensor2npy",
        &mut std::io::stdout(),
    );
}
