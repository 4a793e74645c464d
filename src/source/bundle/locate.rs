//! Finding a checkpoint from what the user typed (a prefix, its `.index`, a SavedModel
//! directory, or a checkpoint directory whose `checkpoint` file names the latest one), and the
//! registry entries of the two bundle formats, which `source/mod.rs` lists.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::BundleSource;
use crate::input;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::Source;

pub static CHECKPOINT: Reader = Reader {
    name: "checkpoint",
    about: "a TensorFlow checkpoint: its prefix, its .index file, or a directory with a `checkpoint` file",
    extensions: &[".index"],
    sniff: |input| sniff(input, false),
    open: open_checkpoint,
};

pub static SAVEDMODEL: Reader = Reader {
    name: "savedmodel",
    about: "a SavedModel directory (its variables)",
    extensions: &[],
    sniff: |input| sniff(input, true),
    open: open_savedmodel,
};

fn is_savedmodel(dir: &Path) -> bool {
    input::is_file(&dir.join("variables").join("variables.index"))
}

fn sniff(input: &Input, savedmodel: bool) -> Sniff {
    let stdin = input.path.as_os_str() == "-";
    if stdin || (input.is_dir && is_savedmodel(&input.path)) != savedmodel {
        return Sniff::No;
    }
    match prefix_for(&input.path) {
        Some(_) => Sniff::Yes,
        None => Sniff::No,
    }
}

fn open_checkpoint(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    match prefix_for(&input.path) {
        Some(prefix) => Ok(Box::new(BundleSource::open(
            &input.display,
            &prefix,
            opts.bundle.clone(),
        )?)),
        None if input.is_dir => bail!(
            "{} is a directory without a `checkpoint` file naming an existing .index file: not a checkpoint directory",
            input.display
        ),
        None => bail!(
            "no checkpoint index found: neither {0}.index nor {0} is a bundle .index file",
            input.display
        ),
    }
}

fn open_savedmodel(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    if !input.is_dir || !is_savedmodel(&input.path) {
        bail!(
            "{} is not a SavedModel directory (no variables/variables.index)",
            input.display
        );
    }
    let variables = open_checkpoint(input, opts)?;
    if !opts.savedmodel.constants {
        return Ok(variables);
    }
    crate::source::graphdef::with_saved_model_constants(variables, &input.path, opts)
}

/// The bundle prefix for a checkpoint argument: `P`, `P.index`, a SavedModel directory, or a
/// checkpoint directory whose `checkpoint` file names the latest checkpoint (as
/// `tf.train.load_checkpoint(dir)` resolves it).
pub fn prefix_for(input: &Path) -> Option<PathBuf> {
    if input::is_dir(input) {
        let p = input.join("variables").join("variables");
        if input::is_file(&p.with_extension("index")) {
            return Some(p);
        }
        return latest_checkpoint(input);
    }
    let s = input.as_os_str().to_string_lossy();
    if let Some(p) = s.strip_suffix(".index") {
        if input::is_file(input) {
            return Some(PathBuf::from(p));
        }
    }
    let index = input::with_suffix(input, ".index");
    (!input::is_file(input) && input::is_file(&index)).then(|| input.to_path_buf())
}

/// `model_checkpoint_path` from a directory's text-format `checkpoint` file, when its index
/// exists. An absolute path whose index is gone (TF1's `Saver` writes absolute paths, so a
/// training directory copied to another machine names the old place) falls back to the same
/// file name inside `dir`.
fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let bytes = input::read_small(&dir.join("checkpoint"), 1 << 20).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("model_checkpoint_path:"))?;
    let quoted = line.split_once(':')?.1.trim();
    let name = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let p = Path::new(name);
    let prefix = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    if input::is_file(&input::with_suffix(&prefix, ".index")) {
        return Some(prefix);
    }
    let moved = dir.join(p.file_name()?);
    (p.is_absolute() && input::is_file(&input::with_suffix(&moved, ".index"))).then_some(moved)
}

pub fn shard_path(prefix: &Path, shard: i32, num: i32) -> PathBuf {
    input::with_suffix(prefix, &format!(".data-{shard:05}-of-{num:05}"))
}
