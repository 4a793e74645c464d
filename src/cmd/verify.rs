//! `tensor2npy verify INPUT...`: reads every tensor of every input without writing anything, so
//! that every checksum the input carries is checked (checkpoint CRC32C of every entry, the
//! object graph and skipped variants included; TFRecord length and data CRCs), like `gzip -t`.
//! Stops at the first damage, naming the input and the tensor or record (exit 1).

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::VerifyArgs;
use crate::dtype::DType;
use crate::pipeline::check_interrupted;
use crate::sink::io_error;
use crate::source::{self, bundle::BundleOptions, OpenOptions};
use crate::tensor::{Kind, Source};

pub fn run(args: VerifyArgs) -> Result<()> {
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(crate::pipeline::usage(
            "standard input (-) can be given only once",
        ));
    }
    let opts = OpenOptions {
        from: args.from,
        stack: false,
        bundle: BundleOptions {
            verify: true,
            include_internal: true,
        },
        max_fill_bytes: args.max_fill_bytes,
        max_decompressed: args.max_decompressed,
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    for p in &args.inputs {
        let display = p.display().to_string();
        let mut src = source::open(p, &opts).with_context(|| display.clone())?;
        let n = read_all(src.as_mut()).with_context(|| display.clone())?;
        if !args.quiet {
            let s = if n == 1 { "" } else { "s" };
            writeln!(
                out,
                "{display}: ok ({n} tensor{s} read, every checksum matched)"
            )
            .map_err(io_error)?;
        }
    }
    out.flush().map_err(io_error)
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
        result.with_context(|| format!("tensor '{}'", meta.name))?;
    }
    Ok(src.len())
}
