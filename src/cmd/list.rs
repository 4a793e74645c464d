//! `tensor2npy list`: tensors with dtype, shape and size, read from metadata only.

use anyhow::Result;
use serde_json::json;

use crate::cli::ListArgs;
use crate::dtype::DtypePolicy;
use crate::pipeline::{npy_type, Selector};

pub fn run(args: ListArgs) -> Result<()> {
    let selector = Selector::new(&args.input.select, &args.input.exclude)?;
    let policy = DtypePolicy {
        bf16: args.bf16,
        f8: args.f8,
        casts: args.cast.clone(),
    };
    let sources = super::open_inputs(&args.input)?;
    let all_names = sources
        .iter()
        .flat_map(|s| s.tensors().iter().map(|m| m.name.as_str()));
    selector.check_matched(all_names)?;

    let mut rows = Vec::new();
    for src in &sources {
        for meta in src.tensors().iter().filter(|m| selector.keep(&m.name)) {
            let npy = npy_type(meta, &policy).map(|t| t.descr());
            rows.push((src.display_path().to_string(), meta.clone(), npy));
        }
    }
    if args.json {
        let doc: Vec<_> = rows
            .iter()
            .map(|(source, m, npy)| {
                json!({
                    "name": m.name,
                    "dtype": m.dtype.name(),
                    "npy_dtype": npy,
                    "shape": m.shape,
                    "bytes": m.stored_bytes,
                    "kind": m.kind.name(),
                    "source": source,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|(source, m, npy)| {
            let shape = format!(
                "[{}]",
                m.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let name = if sources.len() > 1 {
                format!("{source}: {}", m.name)
            } else {
                m.name.clone()
            };
            [
                name,
                m.dtype.name().to_string(),
                npy.clone().unwrap_or_else(|| "-".into()),
                shape,
                m.stored_bytes.to_string(),
                m.kind.name().to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "DTYPE", "NPY", "SHAPE", "BYTES", "KIND"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&table) {
        let cells: Vec<String> = row
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
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
