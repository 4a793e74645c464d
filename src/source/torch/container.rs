//! The two containers `torch.save` writes: the zip archive (`<root>/data.pkl`, `<root>/data/<key>`,
//! `<root>/byteorder`; the root folder is named after the first member, as torch's own reader
//! does; read through `container/zip.rs`, which checks every member's headers, sizes and
//! CRC-32, so a member outside the root folder or a renamed `byteorder` is refused) and the legacy pickle stream (magic number, protocol version, sys_info, the data
//! pickle, the storage keys, then each storage as an 8-byte element count and its bytes). Both
//! end in `build` of `mod.rs` with the unpickled tree and a map from storage key to bytes.

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::{build, StorageData, TorchSource, MAX_PICKLE};
use crate::container::zip::{Archive, Member, MemberData, DEFAULT_MAX_DECOMPRESSED};
use crate::input::{FileRange, RangeReader};
use crate::source::pickle::{self, Value};

/// A PyTorch zip archive: `<root>/...` members, every one inside the root folder, through the
/// one ZIP reader of `container/zip.rs` (limits, header and CRC-32 checks).
pub(crate) struct TorchArchive {
    pub zip: Archive,
    /// The root folder, named after the first member (the file's stem when saved).
    pub root: String,
    /// Member index by name below `<root>/`.
    pub members: HashMap<String, usize>,
    /// False when torch.save wrote no CRC-32s (`compute_crc32 = False`: every one is 0).
    pub check_crc: bool,
}

impl TorchArchive {
    /// Reads the central directory; refuses members outside the root folder.
    pub fn open(data: &FileRange, max_decompressed: u64) -> Result<TorchArchive> {
        let zip = Archive::open(data, max_decompressed)?;
        let Some(first) = zip.entries().first() else {
            bail!("the zip archive is empty: not a PyTorch checkpoint");
        };
        // torch names the root folder after the first record (the file's stem when saved).
        let Some((root, _)) = first.name.split_once('/') else {
            bail!(
                "not a PyTorch archive: its first member '{}' is not inside a folder",
                first.name
            );
        };
        let root = root.to_string();
        let mut members = HashMap::new();
        let mut all_zero = true;
        for (i, e) in zip.entries().iter().enumerate() {
            all_zero &= e.crc32 == 0 || e.size == 0;
            let Some(rest) = e.name.strip_prefix(&format!("{root}/")) else {
                bail!(
                    "not a PyTorch archive: member '{}' is outside its root folder '{root}/'",
                    e.name
                );
            };
            members.insert(rest.to_string(), i);
        }
        Ok(TorchArchive {
            zip,
            root,
            members,
            check_crc: !all_zero,
        })
    }

    /// Opens `<root>/<name>`, when present.
    pub fn member(&mut self, name: &str) -> Result<Option<Member>> {
        let Some(&i) = self.members.get(name) else {
            return Ok(None);
        };
        let m = self.zip.member(i)?;
        Ok(Some(if self.check_crc { m } else { m.without_crc() }))
    }

    /// Reads `<root>/<name>` whole, CRC-checked, refusing more than `limit` bytes.
    pub fn read(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        match self.member(name)? {
            Some(m) => Ok(Some(m.read_vec(limit)?)),
            None => Ok(None),
        }
    }

    /// `<root>/byteorder`: true for `big`; absent means little-endian.
    pub fn big_endian(&mut self) -> Result<bool> {
        Ok(match self.read("byteorder", 16)?.as_deref() {
            None | Some(b"little") => false,
            Some(b"big") => true,
            Some(other) => bail!(
                "{}/byteorder says '{}', not little or big",
                self.root,
                String::from_utf8_lossy(other)
            ),
        })
    }
}

/// Opens a zip checkpoint with the default `--max-decompressed` (the signature other torch
/// archive readers have called; the registry uses [`open_zip_limited`]).
#[allow(dead_code)]
pub(super) fn open_zip(
    path: &str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &str,
) -> Result<TorchSource> {
    open_zip_limited(path, files, data, stem, DEFAULT_MAX_DECOMPRESSED)
}

/// Opens a zip checkpoint: its pickle is read now, its storages only when a tensor is read (a
/// deflated one is inflated then, at most `max_decompressed` bytes), so `list` inflates nothing.
pub(super) fn open_zip_limited(
    path: &str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &str,
    max_decompressed: u64,
) -> Result<TorchSource> {
    let mut arch = TorchArchive::open(&data, max_decompressed)?;
    let root = arch.root.clone();
    let big_endian = arch.big_endian()?;
    let Some(pkl) = arch.read("data.pkl", MAX_PICKLE)? else {
        bail!("not a PyTorch archive: no {root}/data.pkl");
    };
    let loaded = pickle::load(&mut &pkl[..]).with_context(|| format!("{root}/data.pkl"))?;

    let mut storages: HashMap<String, Arc<StorageData>> = HashMap::new();
    for s in &loaded.storages {
        if storages.contains_key(&s.key) {
            continue;
        }
        let name = format!("data/{}", s.key);
        let Some(m) = arch.member(&name)? else {
            bail!(
                "storage '{}' is missing: the archive has no {root}/{name}",
                s.key
            );
        };
        storages.insert(s.key.clone(), Arc::new(MemberData::new(m)));
    }
    // Every other member (version records, ids, storages no tensor uses) is small or unused:
    // check its CRC-32 now, so that no corrupt byte of the archive goes unnoticed.
    if arch.check_crc {
        let used: HashSet<String> = storages.keys().map(|k| format!("data/{k}")).collect();
        let mut rest: Vec<String> = arch.members.keys().cloned().collect();
        rest.sort();
        for name in rest {
            if name != "data.pkl" && name != "byteorder" && !used.contains(&name) {
                if let Some(m) = arch.member(&name)? {
                    m.check()?;
                }
            }
        }
    }
    let mut src = build(path, files, loaded.value, stem, storages, big_endian)?;
    if !arch.check_crc {
        src.notes.push(
            "the archive was written without CRC-32s (compute_crc32 = False): its data is not verified"
                .to_string(),
        );
    }
    Ok(src)
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
            Arc::new(MemberData::checked(format!("storage '{key}'"), range)),
        );
    }
    build(path, files, main.value, stem, storages, big_endian)
}
