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
    let mut of_step = found.iter().filter(|(n, _)| *n == s);
    let Some((_, file)) = of_step.next() else {
        bail!("{}: no step {s} (steps: {all})", dir.display());
    };
    if let Some((_, other)) = of_step.next() {
        bail!(
            "{}: two files are step {s} ({} and {}); remove one or name the file to read",
            dir.display(),
            file.display(),
            other.display()
        );
    }
    Ok((
        file.clone(),
        format!("Flax save_checkpoint folder, step {s} (steps: {all})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_step_is_numeric_and_a_step_named_twice_is_refused() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "checkpoint_3",
            "checkpoint_10",
            "checkpoint_7tmp",
            "other_99",
        ] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        let (file, said) = choose(d.path(), None).unwrap();
        assert_eq!(file, d.path().join("checkpoint_10"));
        assert!(said.contains("step 10 (steps: 3, 10)"), "{said}");
        assert_eq!(
            choose(d.path(), Some(3)).unwrap().0,
            d.path().join("checkpoint_3")
        );
        let e = choose(d.path(), Some(4)).unwrap_err().to_string();
        assert!(e.contains("no step 4"), "{e}");
        std::fs::write(d.path().join("checkpoint_010"), b"").unwrap();
        let e = choose(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("two files are step 10"), "{e}");
    }
}
