//! The two containers `torch.save` writes: the zip archive (`<root>/data.pkl`, `<root>/data/<key>`,
//! `<root>/byteorder`; the root folder is named after the first member, as torch's own reader
//! does) and the legacy pickle stream (magic number, protocol version, sys_info, the data
//! pickle, the storage keys, then each storage as an 8-byte element count and its bytes). Both
//! end in `build` of `mod.rs` with the unpickled tree and a map from storage key to bytes.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::{bail, Context, Result};

use super::{build, StorageData, TorchSource, MAX_PICKLE};
use crate::input::{FileRange, RangeReader};
use crate::source::pickle::{self, Value};

/// A `Read + Seek` view of a range, for the zip crate.
struct SeekRange {
    range: FileRange,
    pos: u64,
}

impl Read for SeekRange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.range.len().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.range
            .read_at(self.pos, &mut buf[..n])
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SeekRange {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.range.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

pub(super) fn open_zip(
    path: &str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &str,
) -> Result<TorchSource> {
    let reader = SeekRange {
        range: data.clone(),
        pos: 0,
    };
    let mut zip = zip::ZipArchive::new(reader)
        .context("not a readable zip archive (truncated or corrupt)")?;
    if zip.is_empty() {
        bail!("the zip archive is empty: not a PyTorch checkpoint");
    }
    // torch names the root folder after the first record (the file's stem when saved).
    let first = zip.by_index_raw(0)?.name()?.to_string();
    let Some((root, _)) = first.split_once('/') else {
        bail!("not a PyTorch archive: its first member '{first}' is not inside a folder");
    };
    let root = root.to_string();
    let mut members: HashMap<String, usize> = HashMap::new();
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i)?;
        if let Some(rest) = f.name()?.strip_prefix(&format!("{root}/")) {
            members.insert(rest.to_string(), i);
        }
    }
    let read_small = |zip: &mut zip::ZipArchive<SeekRange>, name: &str, limit: u64| {
        let i = members[name];
        let f = zip
            .by_index(i)
            .with_context(|| format!("cannot read {root}/{name}"))?;
        let mut v = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut v)
            .with_context(|| format!("{root}/{name} is corrupt (CRC-32 mismatch or bad data)"))?;
        if v.len() as u64 > limit {
            bail!("{root}/{name} is larger than {limit} bytes");
        }
        Ok::<_, anyhow::Error>(v)
    };
    if !members.contains_key("data.pkl") {
        bail!("not a PyTorch archive: no {root}/data.pkl");
    }
    let big_endian = if members.contains_key("byteorder") {
        match &read_small(&mut zip, "byteorder", 16)?[..] {
            b"little" => false,
            b"big" => true,
            other => bail!(
                "{root}/byteorder says '{}', not little or big",
                String::from_utf8_lossy(other)
            ),
        }
    } else {
        false
    };
    let pkl = read_small(&mut zip, "data.pkl", MAX_PICKLE)?;
    let loaded = pickle::load(&mut &pkl[..]).with_context(|| format!("{root}/data.pkl"))?;

    let mut storages: HashMap<String, Rc<StorageData>> = HashMap::new();
    for s in &loaded.storages {
        if storages.contains_key(&s.key) {
            continue;
        }
        let name = format!("data/{}", s.key);
        let Some(&i) = members.get(&name) else {
            bail!(
                "storage '{}' is missing: the archive has no {root}/{name}",
                s.key
            );
        };
        let f = zip.by_index_raw(i)?;
        if f.encrypted() {
            bail!("{root}/{name} is encrypted");
        }
        let stored = f.compression() == zip::CompressionMethod::Stored;
        let (range, crc) = if stored {
            let start = f
                .data_start()
                .with_context(|| format!("{root}/{name}: no data offset"))?;
            let range = data
                .slice(start, f.size())
                .with_context(|| format!("{root}/{name} reaches past the end of the file"))?;
            (range, Some(f.crc32()))
        } else {
            drop(f);
            (spool_member(&mut zip, i, &format!("{root}/{name}"))?, None)
        };
        storages.insert(
            s.key.clone(),
            Rc::new(StorageData {
                range,
                crc,
                checked: Cell::new(0),
                name: format!("{root}/{name}"),
            }),
        );
    }
    build(path, files, loaded.value, stem, storages, big_endian)
}

/// Inflates a compressed member into an unlinked temporary file; the zip crate checks its
/// CRC-32 at the end.
fn spool_member(zip: &mut zip::ZipArchive<SeekRange>, i: usize, name: &str) -> Result<FileRange> {
    let f = zip
        .by_index(i)
        .with_context(|| format!("cannot read {name}"))?;
    let size = f.size();
    let mut tmp = tempfile::tempfile().context("cannot create a temporary file")?;
    let copied = io::copy(&mut f.take(size.saturating_add(1)), &mut tmp)
        .with_context(|| format!("{name} is corrupt (CRC-32 mismatch or bad deflate data)"))?;
    if copied != size {
        bail!("{name} inflates to {copied} bytes, not the {size} its header says");
    }
    FileRange::whole(tmp)
}

pub(super) fn open_legacy(
    path: &str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &str,
) -> Result<TorchSource> {
    let mut r = BufReader::new(RangeReader::new(data.clone()));
    let mut pos = 0u64;
    let mut next = |what: &str| -> Result<pickle::Loaded> {
        let l = pickle::load(&mut r).with_context(|| format!("the legacy file's {what}"))?;
        pos += l.consumed;
        Ok(l)
    };
    let magic = next("magic number")?;
    if !matches!(magic.value, Value::BigInt) {
        bail!("not a legacy torch file: bad magic number");
    }
    match next("protocol version")?.value {
        Value::Int(1001) => {}
        _ => bail!("the legacy file's protocol version is not 1001"),
    }
    let sys_info = next("sys_info")?;
    let mut big_endian = false;
    if let Value::Dict(d) = &sys_info.value {
        for (k, v) in d.borrow().iter() {
            if let (Value::Str(k), Value::Bool(little)) = (k, v) {
                if &**k == "little_endian" {
                    big_endian = !little;
                }
            }
        }
    }
    let main = next("data pickle")?;
    let keys = next("storage key list")?;
    let Value::List(keys) = &keys.value else {
        bail!("the legacy file's storage key list is not a list");
    };
    let item_of: HashMap<&str, u64> = main
        .storages
        .iter()
        .map(|s| (s.key.as_str(), s.dtype.item_size))
        .collect();
    let mut storages = HashMap::new();
    for k in keys.borrow().iter() {
        let key = match k {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            _ => bail!("a storage key is not a string"),
        };
        let Some(&item) = item_of.get(key.as_str()) else {
            bail!("storage '{key}' is listed but no tensor uses it");
        };
        let mut count = [0u8; 8];
        data.read_at(pos, &mut count)
            .with_context(|| format!("storage '{key}': the file ends early (truncated)"))?;
        let count = if big_endian {
            u64::from_be_bytes(count)
        } else {
            u64::from_le_bytes(count)
        };
        let len = count
            .checked_mul(item)
            .context("a storage size overflows")?;
        let range = data.slice(pos + 8, len).with_context(|| {
            format!("storage '{key}' of {count} elements: the file ends early (truncated)")
        })?;
        pos += 8 + len;
        storages.insert(
            key.clone(),
            Rc::new(StorageData {
                range,
                crc: None,
                checked: Cell::new(1),
                name: format!("storage '{key}'"),
            }),
        );
    }
    build(path, files, main.value, stem, storages, big_endian)
}
