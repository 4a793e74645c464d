//! Keras 3 `.keras` archives: a ZIP holding `config.json`, `metadata.json` and
//! `model.weights.h5`. The weights member is handed to the HDF5 reader (`hdf5/`) without
//! unpacking anything to disk: Keras stores it uncompressed, so it is a byte range of the
//! archive, whose CRC-32 is checked once before the first tensor goes out (as Python's `zipfile`
//! reports "Bad CRC-32"), so `convert` and `verify` catch a damaged byte and `list` reads only
//! the HDF5 structure. A deflated member (an archive rewritten by another tool) is inflated into
//! an anonymous temporary file, CRC-checked, bounded by `--max-decompressed`. The archive is
//! read through `container/zip.rs`.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

use super::hdf5::Hdf5Source;
use super::{Input, OpenOptions, Reader, Sniff};
use crate::container::zip::{Archive, MemberData};
use crate::input::FileRange;
use crate::tensor::{ChunkSink, InputFacts, Source, TensorMeta};

pub static READER: Reader = Reader {
    name: "keras",
    about: "Keras 3 .keras archives (their model.weights.h5)",
    extensions: &[".keras"],
    sniff,
    open,
};

/// The member holding the weights.
pub const WEIGHTS: &str = "model.weights.h5";

/// A ZIP whose first member is one Keras writes (it writes metadata.json, config.json, then
/// the weights); other ZIPs (PyTorch, NumPy .npz) start with other names.
fn sniff(input: &Input) -> Sniff {
    let head = &input.head;
    if !head.starts_with(b"PK\x03\x04") || head.len() < 30 {
        return Sniff::No;
    }
    let name_len = u16::from_le_bytes([head[26], head[27]]) as usize;
    match head.get(30..30 + name_len) {
        Some(b"metadata.json" | b"config.json" | b"model.weights.h5") => Sniff::Yes,
        _ => Sniff::No,
    }
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let data = input.data()?;
    let weights = weights_member(data, opts.max_decompressed)?;
    // A stored member is parsed in place and checked before its first tensor goes out; a
    // deflated one was checked as it inflated.
    let bytes = match weights.member().stored_range() {
        Some(r) => r.clone(),
        None => weights.range()?,
    };
    let inner = match Hdf5Source::open(&input.display, input.files.clone(), bytes) {
        Ok(s) => s,
        // Damage that breaks the HDF5 structure is reported as what it is: a bad CRC-32.
        Err(e) => {
            weights.range()?;
            return Err(e.context(format!("{WEIGHTS} inside the .keras archive")));
        }
    };
    // A config that cannot be read (a bad CRC-32, not JSON) is shown by `list --metadata` and
    // fails `convert` and `verify` before the first tensor goes out, as a damaged weights
    // member does (Keras' own loader reads config.json first); `list` still lists.
    let (json, damaged) = match archive_json(data, opts.max_decompressed) {
        Ok(j) => (j, None),
        Err(e) => (
            serde_json::Value::String(format!("unreadable: {e:#}")),
            Some(format!("{e:#}")),
        ),
    };
    Ok(Box::new(KerasSource {
        inner: inner.with_metadata(Some(json)),
        weights,
        damaged,
    }))
}

/// The archive's `config.json` (the model's architecture) and `metadata.json` (Keras version,
/// date saved) as `{"config": ..., "metadata": ...}`, each `null` when absent; each at most
/// 16 MiB, read through `container/zip.rs` (headers and CRC-32 checked).
fn archive_json(data: &FileRange, max_decompressed: u64) -> Result<serde_json::Value> {
    let mut zip = Archive::open(data, max_decompressed)?;
    let mut out = serde_json::Map::new();
    for (key, member) in [("config", "config.json"), ("metadata", "metadata.json")] {
        let value = match zip.index_of(member) {
            Some(i) => {
                let text = zip
                    .member(i)?
                    .read_vec(16 << 20)
                    .with_context(|| format!("cannot read {member}"))?;
                serde_json::from_slice(&text).with_context(|| format!("{member} is not JSON"))?
            }
            None => serde_json::Value::Null,
        };
        out.insert(key.into(), value);
    }
    Ok(out.into())
}

/// `model.weights.h5` of the archive, opened with its headers checked; its bytes are checked
/// (CRC-32) on the first `range()`.
pub fn weights_member(data: &FileRange, max_decompressed: u64) -> Result<MemberData> {
    let mut zip = Archive::open(data, max_decompressed)?;
    let index = zip.index_of(WEIGHTS).ok_or_else(|| {
        anyhow!(
            "no {WEIGHTS} in the archive: not a Keras 3 .keras file (or one saved without weights)"
        )
    })?;
    Ok(MemberData::new(zip.member(index)?))
}

/// The HDF5 reader over the weights member, which checks the member before any data leaves.
struct KerasSource {
    inner: Hdf5Source,
    weights: MemberData,
    /// Why `config.json` or `metadata.json` could not be read, if it could not.
    damaged: Option<String>,
}

impl KerasSource {
    fn checked(&self) -> Result<()> {
        if let Some(why) = &self.damaged {
            return Err(anyhow!("{why}").context("the .keras archive's config"));
        }
        self.weights
            .range()
            .map(drop)
            .with_context(|| format!("{WEIGHTS} inside the .keras archive"))
    }
}

impl Source for KerasSource {
    fn display_path(&self) -> &str {
        self.inner.display_path()
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        self.inner.meta(index)
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        self.checked()?;
        self.inner.read_dense(index, chunk, sink)
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        self.checked()?;
        self.inner.read_strings(index, sink)
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.inner.input_files()
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        // Unchecked bytes are never handed out: read_dense then reports the damage.
        self.checked().ok()?;
        self.inner.raw_range(index)
    }

    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        self.inner.metadata()
    }

    fn write_metadata(&self, out: &mut dyn std::io::Write) -> Result<bool> {
        self.inner.write_metadata(out)
    }

    fn input_facts(&self) -> InputFacts<'_> {
        self.inner.input_facts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_head(first: &str) -> Input {
        let mut head = b"PK\x03\x04".to_vec();
        head.resize(26, 0);
        head.extend((first.len() as u16).to_le_bytes());
        head.extend([0, 0]);
        head.extend(first.as_bytes());
        Input {
            path: "m.zip".into(),
            display: "m.zip".into(),
            stem: "m".into(),
            is_dir: false,
            data: None,
            head,
            files: vec![],
        }
    }

    #[test]
    fn keras_archives_are_told_from_other_zips() {
        assert_eq!(sniff(&zip_head("metadata.json")), Sniff::Yes);
        assert_eq!(sniff(&zip_head("model.weights.h5")), Sniff::Yes);
        assert_eq!(sniff(&zip_head("archive/data.pkl")), Sniff::No);
        assert_eq!(sniff(&zip_head("arr_0.npy")), Sniff::No);
    }
}
