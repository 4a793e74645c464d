//! `tensor2npy man [SUBCOMMAND]`: prints the manual page that clap_mangen renders from the clap
//! definitions in `cli.rs`, so the page never drifts from `--help`. The committed copies in
//! `man/` are these pages (a test compares them).

use std::io::Write;

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::pipeline::usage;
use crate::sink::io_error;

/// The roff source of the main page, or of one subcommand's page (`tensor2npy-convert(1)`).
pub fn page(subcommand: Option<&str>) -> Result<Vec<u8>> {
    // The plain version: the page is the same whichever features the binary was built with.
    let cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    let cmd = match subcommand {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd.find_subcommand(name).cloned() else {
                return Err(usage(format!(
                    "no subcommand '{name}'; one of: {}",
                    cmd.get_subcommands()
                        .map(|c| c.get_name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            // The page of `tensor2npy convert` is named `tensor2npy-convert`.
            let page_name: &'static str = Box::leak(format!("tensor2npy-{name}").into_boxed_str());
            sub.name(page_name)
                .bin_name(format!("tensor2npy {name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .date("")
        .render(&mut out)
        .map_err(io_error)?;
    Ok(out)
}

/// Every page: `(file name, roff)` for the main page and each subcommand's.
pub fn pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = vec![("tensor2npy.1".to_string(), page(None)?)];
    for sub in Cli::command().get_subcommands() {
        let name = sub.get_name();
        out.push((format!("tensor2npy-{name}.1"), page(Some(name))?));
    }
    Ok(out)
}

pub fn run(subcommand: Option<&str>, write: Option<&Path>) -> Result<()> {
    if let Some(dir) = write {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, roff) in pages()? {
            let path = dir.join(name);
            std::fs::write(&path, roff)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        return Ok(());
    }
    let page = page(subcommand)?;
    std::io::stdout().write_all(&page).map_err(io_error)
}
