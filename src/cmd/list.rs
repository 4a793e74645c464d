//! `tensor2npy list`: tensors with dtype, shape and size, read from metadata only, printed as
//! they are read (a JSON array, or an aligned table). BYTES is what the tensor occupies in the
//! input (`bytes` in JSON); ragged dimensions print as `?` (`null` in JSON); names are escaped
//! for the terminal and aligned by display width. Notes about entries `convert` would skip go
//! to stderr unless `-q`.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use unicode_width::UnicodeWidthStr;

use crate::cli::ListArgs;
use crate::error::check_interrupted;
use crate::pipeline::npy_type;
use crate::select::Selector;
use crate::sink::io_error;
use crate::sink::names::{scrub_urls, shown};
use crate::tensor::TensorMeta;

pub fn run(args: ListArgs) -> Result<()> {
    let mut selector = Selector::new(&args.input.select, &args.input.exclude)?;
    let policy = args.dtypes.policy();
    let sources = super::open_inputs(&super::Inputs::list(&args))?;
    for src in &sources {
        if !args.quiet {
            for note in src.input_facts().notes {
                eprintln!(
                    "tensor2npy: note: {}: {}",
                    shown(src.display_path()),
                    shown(note)
                );
            }
        }
        for i in 0..src.len() {
            check_interrupted()?;
            selector.record(&src.meta(i)?.name);
        }
    }
    selector.check_matched().with_context(|| {
        sources
            .iter()
            .map(|s| s.display_path())
            .collect::<Vec<_>>()
            .join(", ")
    })?;

    let multi = sources.len() > 1;
    // What each input was read as, where its reader says (GraphDef, ONNX, TensorProto).
    let format_of: Vec<(&str, &str)> = sources
        .iter()
        .filter_map(|s| s.input_facts().format.map(|f| (s.display_path(), f)))
        .collect();
    if !args.json {
        for (path, f) in &format_of {
            eprintln!("{}: read as {f}", scrub_urls(path));
        }
    }
    // Each row carries the format's own name for the element type where it has one (q4_K), and
    // the quantization parameters where the format stores them (TFLite).
    let rows = sources.iter().flat_map(|src| {
        (0..src.len()).map(move |i| {
            check_interrupted()?;
            src.meta(i).map(|mut m| {
                let dtype = m
                    .facts
                    .source_dtype
                    .take()
                    .unwrap_or_else(|| m.dtype.name().to_string());
                let quantization = m.facts.quantization.take();
                (src.display_path(), m, dtype, quantization)
            })
        })
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let mut first = true;
        if args.metadata {
            // {INPUT: metadata} in sorted order (the last of equal names wins), each input's
            // metadata streamed by its reader rather than built in memory.
            let by_path: std::collections::BTreeMap<&str, &dyn crate::tensor::Source> = sources
                .iter()
                .map(|s| (s.display_path(), s.as_ref() as &dyn crate::tensor::Source))
                .collect();
            write!(out, "{{\"metadata\": {{").map_err(io_error)?;
            for (i, (path, src)) in by_path.into_iter().enumerate() {
                let key = Value::from(scrub_urls(path)).to_string();
                write!(out, "{}{key}:", if i == 0 { "" } else { "," }).map_err(io_error)?;
                if !src.write_metadata(&mut out)? {
                    write!(out, "null").map_err(io_error)?;
                }
            }
            write!(out, "}},\n\"tensors\": ").map_err(io_error)?;
        }
        writeln!(out, "[").map_err(io_error)?;
        for row in rows {
            let (source, m, dtype, quantization) = row?;
            if !selector.keep(&m.name) {
                continue;
            }
            let obj = json!({
                "name": m.name,
                "dtype": dtype,
                "npy_dtype": npy_type(&m, &policy).map(|t| t.descr()),
                "shape": shape_json(&m),
                "bytes": m.stored_bytes,
                "kind": m.kind.name(),
                "source": scrub_urls(source),
            });
            let mut obj = obj;
            if let Some(q) = quantization {
                obj["quantization"] = q;
            }
            if let Some((_, f)) = format_of.iter().find(|(p, _)| *p == source) {
                obj["format"] = json!(f);
            }
            let sep = if first { "" } else { ",\n" };
            write!(out, "{sep}  {obj}").map_err(io_error)?;
            first = false;
        }
        let close = if args.metadata { "}" } else { "" };
        writeln!(out, "{}]{close}", if first { "" } else { "\n" }).map_err(io_error)?;
        return out.flush().map_err(io_error);
    }
    // A table needs its column widths first: one pass to measure, one to print.
    let cells = |source: &str, m: &TensorMeta, dtype: &str| -> [String; 6] {
        let shape = m
            .shape
            .iter()
            .enumerate()
            .map(|(d, n)| {
                if d >= 1 && d <= m.ragged_rank {
                    "?".to_string()
                } else {
                    n.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        [
            shown(&if multi {
                format!("{source}: {}", m.name)
            } else {
                m.name.clone()
            })
            .into_owned(),
            dtype.to_string(),
            npy_type(m, &policy)
                .map(|t| t.descr())
                .unwrap_or_else(|| "-".into()),
            format!("[{shape}]"),
            m.stored_bytes.to_string(),
            m.kind.name().to_string(),
        ]
    };
    let header = ["NAME", "DTYPE", "NPY", "SHAPE", "BYTES", "KIND"].map(String::from);
    let mut widths = header.clone().map(|h| h.width());
    for row in rows.clone() {
        let (source, m, dtype, _) = row?;
        if selector.keep(&m.name) {
            for (w, c) in widths.iter_mut().zip(cells(source, &m, &dtype)) {
                *w = (*w).max(c.width());
            }
        }
    }
    let print = |out: &mut dyn Write, row: &[String; 6]| -> Result<()> {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                // Padding by display width: a CJK character takes two columns.
                let pad = " ".repeat(w.saturating_sub(c.width()));
                if i == 4 {
                    format!("{pad}{c}")
                } else {
                    format!("{c}{pad}")
                }
            })
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).map_err(io_error)
    };
    print(&mut out, &header)?;
    for row in rows {
        let (source, m, dtype, _) = row?;
        if selector.keep(&m.name) {
            print(&mut out, &cells(source, &m, &dtype))?;
        }
    }
    out.flush().map_err(io_error)
}

/// The shape as JSON: ragged dimensions are `null`.
fn shape_json(m: &TensorMeta) -> serde_json::Value {
    m.shape
        .iter()
        .enumerate()
        .map(|(d, &n)| {
            if d >= 1 && d <= m.ragged_rank {
                serde_json::Value::Null
            } else {
                n.into()
            }
        })
        .collect()
}
