//! One module per subcommand, plus what they share: `settings.rs` (the command line resolved
//! once) and the opening of inputs (below); `plan.rs`, `survey.rs`, `planner.rs`, `members.rs`
//! and `execute.rs` serve `convert`.

pub mod completions;
pub mod convert;
pub mod devices;
mod execute;
pub mod list;
pub mod man;
mod members;
#[cfg(test)]
mod mock;
pub mod plan;
mod planner;
pub mod settings;
pub mod survey;
pub mod verify;

use anyhow::{Context, Result};

use crate::source;
use crate::structure::{self, StructureOptions};
use crate::tensor::Source;

pub use settings::{Inputs, Settings};

/// `--request-timeout`: one setting for every remote request of the run (reads and uploads).
fn apply_request_timeout(inputs: &Inputs) {
    #[cfg(feature = "remote")]
    if let Some(secs) = inputs.request_timeout {
        crate::remote::set_request_timeout(std::time::Duration::from_secs(secs.into()));
    }
    #[cfg(not(feature = "remote"))]
    let _ = inputs;
}

/// Standard input can be read only once.
fn check_stdin_once(inputs: &Inputs) -> Result<()> {
    if inputs.paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(crate::error::usage(
            "standard input (-) can be given only once",
        ));
    }
    apply_request_timeout(inputs);
    Ok(())
}

/// Opens every input named on the command line, with sparse and ragged tensors recognised.
pub fn open_inputs(inputs: &Inputs) -> Result<Vec<Box<dyn Source>>> {
    check_stdin_once(inputs)?;
    if inputs.concat {
        let src = source::chain::open_concat(&inputs.paths, &inputs.open)?;
        return Ok(vec![structure::wrap(src, &inputs.structure)?]);
    }
    inputs
        .paths
        .iter()
        .map(|p| open_one(p, &inputs.open, &inputs.structure))
        .collect()
}

/// The sources opened, and the paths they were opened from.
pub type Opened = (Vec<Box<dyn Source>>, Vec<std::path::PathBuf>);

/// Opens every input on its own (`--keep-going`): an input that cannot be opened goes to
/// `failed` (which may stop the run by returning its error) and is left out. Returns the
/// sources and the paths they were opened from, in order.
pub fn open_each(
    inputs: &Inputs,
    failed: &mut dyn FnMut(&std::path::Path, anyhow::Error) -> Result<()>,
) -> Result<Opened> {
    check_stdin_once(inputs)?;
    let (mut sources, mut kept) = (Vec::new(), Vec::new());
    for p in &inputs.paths {
        match open_one(p, &inputs.open, &inputs.structure) {
            Ok(src) => {
                sources.push(src);
                kept.push(p.clone());
            }
            Err(e) => failed(p, e)?,
        }
    }
    Ok((sources, kept))
}

/// Opens input `s` of the command line once more (for a `--jobs` worker), as
/// [`open_inputs`] did; not standard input, nor inputs read as one (`--concat`).
pub fn reopen_input(inputs: &Inputs, s: usize) -> Result<Box<dyn Source>> {
    let path = &inputs.paths[s];
    if inputs.concat || path.as_os_str() == "-" {
        anyhow::bail!("internal: {} cannot be opened twice", path.display());
    }
    open_one(path, &inputs.open, &inputs.structure)
}

fn open_one(
    p: &std::path::Path,
    opts: &source::OpenOptions,
    structure: &StructureOptions,
) -> Result<Box<dyn Source>> {
    let src = source::open(p, opts).map_err(|e| name_input(e, &p.display().to_string()))?;
    let display = src.display_path().to_string();
    // Errors in sparse/ragged component groups (a checksum inside one) name the input.
    structure::wrap(src, structure).map_err(|e| name_input(e, &display))
}

/// Every input as shown in messages, for the context of an error about them all.
pub fn all_inputs(sources: &[Box<dyn Source>]) -> String {
    sources
        .iter()
        .map(|s| s.display_path())
        .collect::<Vec<_>>()
        .join(", ")
}

/// After the first pass: every `--select` / `--exclude` pattern matched a tensor, and, where
/// there are patterns (`patterns`), they leave some tensor to convert (`selected` of them).
/// The errors name every input.
pub fn check_selection(
    sources: &[Box<dyn Source>],
    selector: &crate::select::Selector,
    selected: usize,
    patterns: bool,
) -> Result<()> {
    let all_inputs = || all_inputs(sources);
    selector.check_matched().with_context(all_inputs)?;
    if selected == 0 && patterns {
        return Err(anyhow::anyhow!(
            "--select / --exclude leave no tensor to convert (nothing was written)"
        )
        .context(all_inputs()));
    }
    Ok(())
}

/// `e` with the input's path in front, unless its message already names it (`cannot open
/// PATH: ...` must not print the path twice).
pub fn name_input(e: anyhow::Error, display: &str) -> anyhow::Error {
    if format!("{e:#}").contains(display) {
        e
    } else {
        e.context(display.to_string())
    }
}
