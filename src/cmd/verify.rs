//! `tensor2npy verify INPUT...`: reads every tensor of every input without writing anything, so
//! that every checksum the input carries is checked (checkpoint CRC32C of every entry, the
//! object graph and skipped variants included; TFRecord length and data CRCs; the CRC-32 of a
//! PyTorch archive's members), like `gzip -t`. Every input is checked and reported on its own
//! line, saying what was checked: how many checksums matched, or that the format carries none
//! and only its structure was read (`--require-checksums` makes that a failure). Damage names
//! the input and the tensor or record; the exit status is 1 when any input failed.
//! The readers count the checksums they verify in `checksum.rs`.

use std::io::Write;

use anyhow::{anyhow, Result};
use serde_json::json;

use crate::cli::VerifyArgs;
use crate::dtype::DType;
use crate::error::{check_interrupted, Interrupted};
use crate::sink::io_error;
use crate::sink::names::shown;
use crate::source;
use crate::tensor::{Kind, Source};

/// What checking one input found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every tensor was read; `checksums` of them matched (0: the input carries none).
    Read { tensors: usize, checksums: u64 },
    /// Damage, or an input that could not be read: the message.
    Failed(String),
}

impl Outcome {
    /// One line for people: `ok: 12 checksums verified, 3 tensors read`.
    pub fn line(&self, require_checksums: bool) -> String {
        match self {
            Outcome::Read { tensors, checksums } => {
                let t = plural(*tensors as u64, "tensor");
                if *checksums > 0 {
                    format!("ok: {} verified, {t} read", plural(*checksums, "checksum"))
                } else if require_checksums {
                    format!(
                        "FAILED: no checksum to verify (--require-checksums): structure checked, {t} read"
                    )
                } else {
                    format!("ok: this input carries no checksums: structure checked, {t} read")
                }
            }
            Outcome::Failed(e) => format!("FAILED: {e}"),
        }
    }

    /// Whether the input passes (with `--require-checksums`, only one whose checksums matched).
    pub fn passed(&self, require_checksums: bool) -> bool {
        match self {
            Outcome::Read { checksums, .. } => !require_checksums || *checksums > 0,
            Outcome::Failed(_) => false,
        }
    }
}

fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub fn run(args: VerifyArgs) -> Result<()> {
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(crate::error::usage(
            "standard input (-) can be given only once",
        ));
    }
    let opts = super::settings::verify_open(&args);
    let require = args.require_checksums;
    let mut out = std::io::stdout().lock();
    let mut report = Vec::new();
    let mut failed = 0usize;
    for p in &args.inputs {
        let display = p.display().to_string();
        let before = crate::checksum::verified_count();
        let result = source::open(p, &opts).and_then(|mut src| read_all(src.as_mut()));
        let outcome = match result {
            Ok(tensors) => Outcome::Read {
                tensors,
                checksums: crate::checksum::verified_count() - before,
            },
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => return Err(e),
            Err(e) => {
                // The line starts with the input's path: not twice.
                let msg = format!("{e:#}");
                let prefix = format!("{display}: ");
                Outcome::Failed(msg.strip_prefix(&prefix).unwrap_or(&msg).to_string())
            }
        };
        if !outcome.passed(require) {
            failed += 1;
        }
        if args.json {
            report.push(json_of(&display, &outcome, require));
        } else if !outcome.passed(require) {
            // Damage goes to stderr, like every error, and the next input is checked.
            eprintln!(
                "tensor2npy: {}: {}",
                shown(&display),
                shown(&outcome.line(require))
            );
        } else if !args.quiet {
            writeln!(out, "{display}: {}", outcome.line(require)).map_err(io_error)?;
        }
    }
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(|e| anyhow!(e))?;
        writeln!(out).map_err(io_error)?;
    }
    out.flush().map_err(io_error)?;
    match failed {
        0 => Ok(()),
        n => Err(anyhow!(
            "{n} of {} input{} failed verification",
            args.inputs.len(),
            if args.inputs.len() == 1 { "" } else { "s" }
        )),
    }
}

/// The `--json` object of one input.
fn json_of(input: &str, outcome: &Outcome, require: bool) -> serde_json::Value {
    match outcome {
        Outcome::Read { tensors, checksums } => json!({
            "input": input,
            "ok": outcome.passed(require),
            "tensors": tensors,
            "checksums": checksums,
            "checked": if *checksums > 0 { "checksums" } else { "structure" },
        }),
        Outcome::Failed(e) => json!({
            "input": input,
            "ok": false,
            "error": e,
        }),
    }
}

/// Reads every tensor of `src` into nothing; returns how many there were.
fn read_all(src: &mut dyn Source) -> Result<usize> {
    for i in 0..src.len() {
        check_interrupted()?;
        let meta = src.meta(i)?;
        let strings =
            meta.kind == Kind::String || matches!(meta.dtype, DType::String | DType::Variant);
        let result = if strings {
            src.read_strings(i, &mut |_| Ok(()))
        } else {
            src.read_dense(i, 1 << 20, &mut |_| check_interrupted())
        };
        result.map_err(|e| e.context(format!("tensor '{}'", meta.name)))?;
    }
    Ok(src.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_without_checksums_is_not_reported_as_checked() {
        let none = Outcome::Read {
            tensors: 1,
            checksums: 0,
        };
        assert!(none.line(false).contains("carries no checksums"));
        assert!(!none.line(false).contains("matched"));
        assert!(none.passed(false) && !none.passed(true));
        let some = Outcome::Read {
            tensors: 2,
            checksums: 3,
        };
        assert_eq!(some.line(true), "ok: 3 checksums verified, 2 tensors read");
        assert!(some.passed(true));
    }
}
