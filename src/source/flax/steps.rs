//! A folder of `flax.training.checkpoints.save_checkpoint` files written without Orbax
//! (`flax_use_orbax_checkpointing` off, or flax before it): one msgpack file per step,
//! `checkpoint_<step>` (the default prefix). Like `restore_checkpoint(dir, target=None)`, the
//! folder means its latest step; `--step N` picks another. The chosen file is read by the
//! Flax reader (`mod.rs`); the Orbax-backed `checkpoint_<step>` folders are the Orbax reader's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::input;

/// The prefix `save_checkpoint` names its files with unless told otherwise.
const PREFIX: &str = "checkpoint_";

/// The `checkpoint_<step>` files of a local folder, by step (unfinished saves, named
/// `checkpoint_<step>tmp` or `*.orbax-checkpoint-tmp-*`, are not steps).
pub fn steps(dir: &Path) -> Vec<(u64, PathBuf)> {
    if input::url_of(dir).is_some() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let digits = name.strip_prefix(PREFIX)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, e.path()))
        })
        .collect();
    out.sort_unstable();
    out
}

/// The file of the step asked for (the latest by default), and what `list` says was read.
pub fn choose(dir: &Path, step: Option<u64>) -> Result<(PathBuf, String)> {
    let found = steps(dir);
    let all = found
        .iter()
        .map(|(s, _)| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let Some((latest, _)) = found.last() else {
        bail!("{}: no {PREFIX}<step> file here", dir.display());
    };
    let s = step.unwrap_or(*latest);
    let Some((_, file)) = found.iter().find(|(n, _)| *n == s) else {
        bail!("{}: no step {s} (steps: {all})", dir.display());
    };
    Ok((
        file.clone(),
        format!("Flax save_checkpoint folder, step {s} (steps: {all})"),
    ))
}
