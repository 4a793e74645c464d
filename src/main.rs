//! tensor2npy: serialized tensors (safetensors, TensorFlow TensorProto, TFRecord, checkpoints,
//! SavedModel variables) to NumPy `.npy` / `.npz`, streaming, without TensorFlow or Python.
//!
//! Data flows one way: `source` readers → the `tensor` stream → `transform` → `sink` writers;
//! `cli` parses, `cmd` dispatches.

mod cli;
mod cmd;
mod dtype;
mod input;
mod names;
mod pipeline;
mod proto;
mod sink;
mod source;
mod structure;
mod tensor;
mod transform;
mod wire;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => cmd::convert::run(args),
        Command::List(args) => cmd::list::run(args),
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
            } else {
                ExitCode::from(1)
            }
        }
    }
}
