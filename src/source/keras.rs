//! Keras 3 `.keras` archives: a ZIP holding `config.json`, `metadata.json` and
//! `model.weights.h5`. The weights member is handed to the HDF5 reader (`hdf5.rs`) without
//! unpacking anything to disk: Keras stores it uncompressed, so it is a byte range of the
//! archive; a deflated member (an archive rewritten by another tool) is inflated into an
//! anonymous temporary file, bounded by `--max-decompressed`. The `zip` crate reads the
//! archive's directory.

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};

use super::hdf5::Hdf5Source;
use super::{Input, OpenOptions, Reader, Sniff};
use crate::input::FileRange;
use crate::tensor::Source;

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
    let src = Hdf5Source::open(&input.display, input.files.clone(), weights)
        .with_context(|| format!("{WEIGHTS} inside the .keras archive"))?;
    // A config that cannot be read only spoils the listing of metadata, not the weights.
    let json = archive_json(data)
        .unwrap_or_else(|e| serde_json::Value::String(format!("unreadable: {e:#}")));
    Ok(Box::new(src.with_metadata(Some(json))))
}

/// The archive's `config.json` (the model's architecture) and `metadata.json` (Keras version,
/// date saved) as `{"config": ..., "metadata": ...}`, each `null` when absent; each at most
/// 16 MiB.
fn archive_json(data: &FileRange) -> Result<serde_json::Value> {
    let reader = std::io::BufReader::new(crate::input::RangeReader::new(data.clone()));
    let mut zip = zip::ZipArchive::new(reader).context("not a readable ZIP archive")?;
    let mut out = serde_json::Map::new();
    for (key, member) in [("config", "config.json"), ("metadata", "metadata.json")] {
        let value = match zip.by_name(member) {
            Ok(m) => {
                let mut text = Vec::new();
                m.take(16 << 20)
                    .read_to_end(&mut text)
                    .with_context(|| format!("cannot read {member}"))?;
                serde_json::from_slice(&text).with_context(|| format!("{member} is not JSON"))?
            }
            Err(_) => serde_json::Value::Null,
        };
        out.insert(key.into(), value);
    }
    Ok(out.into())
}

/// The bytes of `model.weights.h5`: a slice of the archive when stored, an inflated temporary
/// file when deflated.
pub fn weights_member(data: &FileRange, max_decompressed: u64) -> Result<FileRange> {
    // Through positioned reads, so a local file and a remote object are read alike.
    let reader = std::io::BufReader::new(crate::input::RangeReader::new(data.clone()));
    let mut zip = zip::ZipArchive::new(reader).context("not a readable ZIP archive")?;
    let index = zip.index_for_name(WEIGHTS).ok_or_else(|| {
        anyhow!(
            "no {WEIGHTS} in the archive: not a Keras 3 .keras file (or one saved without weights)"
        )
    })?;
    let member = zip
        .by_index_raw(index)
        .with_context(|| format!("cannot read the {WEIGHTS} entry"))?;
    let (method, size) = (member.compression(), member.size());
    let packed = member.compressed_size();
    let start = member
        .data_start()
        .ok_or_else(|| anyhow!("the {WEIGHTS} entry has no data offset"))?;
    drop(member);
    if member_is_encrypted(&mut zip, index) {
        bail!("{WEIGHTS} is encrypted");
    }
    match method {
        zip::CompressionMethod::Stored => {
            if packed != size {
                bail!("{WEIGHTS} is stored, but its sizes disagree ({packed} and {size} bytes)");
            }
            data.slice(start, size)
                .with_context(|| format!("{WEIGHTS} reaches past the end of the archive"))
        }
        zip::CompressionMethod::Deflated => {
            if size > max_decompressed {
                bail!("{WEIGHTS} inflates to {size} bytes, more than --max-decompressed ({max_decompressed})");
            }
            let mut member = zip
                .by_index(index)
                .with_context(|| format!("cannot read {WEIGHTS}"))?;
            let mut tmp = tempfile::tempfile().context("cannot create a temporary file")?;
            let copied = std::io::copy(&mut (&mut member).take(size.saturating_add(1)), &mut tmp)
                .with_context(|| {
                format!("{WEIGHTS} is corrupt (truncated or bad deflate data)")
            })?;
            if copied != size {
                bail!("{WEIGHTS} ended after {copied} of {size} bytes");
            }
            FileRange::whole(tmp)
        }
        other => {
            bail!("{WEIGHTS} uses the ZIP compression method {other:?}, which is not supported")
        }
    }
}

fn member_is_encrypted<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    index: usize,
) -> bool {
    zip.by_index_raw(index).is_ok_and(|m| m.encrypted())
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
