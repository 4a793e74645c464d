//! `tensor2npy list`: tensors with dtype, shape and size, read from metadata only, printed as
//! they are read (a JSON array, or an aligned table).

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use crate::cli::ListArgs;
use crate::pipeline::{check_interrupted, npy_type, Selector};
use crate::sink::io_error;
use crate::structure::{Duplicates, StructureOptions, View};
use crate::tensor::TensorMeta;

pub fn run(args: ListArgs) -> Result<()> {
    let mut selector = Selector::new(&args.input.select, &args.input.exclude)?;
    let policy = args.dtypes.policy();
    let structure = StructureOptions {
        sparse: Default::default(),
        ragged: Default::default(),
        fill: None,
        duplicates: Duplicates::Sum, // listing does not judge duplicates; converting does
        max_dense_bytes: u64::MAX,
        strict: args.input.strict,
        view: View::List,
        max_fill_bytes: args.input.max_fill_bytes,
        memory_budget: crate::structure::DEFAULT_MEMORY_BUDGET,
    };
    let sources = super::open_inputs(&args.input, &structure)?;
    for src in &sources {
        for i in 0..src.len() {
            check_interrupted()?;
            selector.record(&src.meta(i)?.name);
        }
    }
    selector.check_matched()?;

    let multi = sources.len() > 1;
    let rows = sources.iter().flat_map(|src| {
        (0..src.len()).map(move |i| {
            check_interrupted()?;
            src.meta(i).map(|m| (src.display_path(), m))
        })
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let mut first = true;
        writeln!(out, "[").map_err(io_error)?;
        for row in rows {
            let (source, m) = row?;
            if !selector.keep(&m.name) {
                continue;
            }
            let obj = json!({
                "name": m.name,
                "dtype": m.dtype.name(),
                "npy_dtype": npy_type(&m, &policy).map(|t| t.descr()),
                "shape": shape_json(&m),
                "bytes": m.stored_bytes,
                "kind": m.kind.name(),
                "source": source,
            });
            let sep = if first { "" } else { ",\n" };
            write!(out, "{sep}  {obj}").map_err(io_error)?;
            first = false;
        }
        writeln!(out, "{}]", if first { "" } else { "\n" }).map_err(io_error)?;
        return out.flush().map_err(io_error);
    }
    // A table needs its column widths first: one pass to measure, one to print.
    let cells = |source: &str, m: &TensorMeta| -> [String; 6] {
        let shape = m
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        [
            if multi {
                format!("{source}: {}", m.name)
            } else {
                m.name.clone()
            },
            m.dtype.name().to_string(),
            npy_type(m, &policy)
                .map(|t| t.descr())
                .unwrap_or_else(|| "-".into()),
            format!("[{shape}]"),
            m.stored_bytes.to_string(),
            m.kind.name().to_string(),
        ]
    };
    let header = ["NAME", "DTYPE", "NPY", "SHAPE", "BYTES", "KIND"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows.clone() {
        let (source, m) = row?;
        if selector.keep(&m.name) {
            for (w, c) in widths.iter_mut().zip(cells(source, &m)) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let print = |out: &mut dyn Write, row: &[String; 6]| -> Result<()> {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 4 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).map_err(io_error)
    };
    print(&mut out, &header)?;
    for row in rows {
        let (source, m) = row?;
        if selector.keep(&m.name) {
            print(&mut out, &cells(source, &m))?;
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
