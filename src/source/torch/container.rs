//! The two containers `torch.save` writes: the zip archive (`<root>/data.pkl`, `<root>/data/<key>`,
//! `<root>/byteorder`; the root folder is named after the first member, as torch's own reader
//! does; read through `container/zip.rs`, which checks every member's headers, sizes and
//! CRC-32, so a member outside the root folder or a renamed `byteorder` is refused) and the
//! legacy pickle stream (magic number, protocol version, sys_info, the data pickle, the storage
//! keys, then each storage as an 8-byte element count and its bytes). Both end in `build` of
//! `tree.rs` with the unpickled tree and a map from storage key to bytes. A zip holding
//! `archive_format` goes to `pt2.rs`; one holding `code/` is TorchScript, whose classes
//! `jit.rs` reads; both read their members through [`TorchArchive`]. `data.pkl` is read as a
//! stream (a deflated one inflated to a temporary file, within `--max-decompressed`), never
//! whole into memory; the storages tensors are read from are checked (CRC-32) or inflated only
//! when a tensor is read, so `list` inflates none of them (the other members are checked when
//! the archive is opened: `check_rest`).

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::{build, Naming, Opening, StorageData, TorchOptions, TorchSource, MAX_PICKLE};
use crate::container::zip::{Archive, Member, MemberData};
use crate::input::{FileRange, RangeReader};
use crate::source::pickle::{self, Value};

/// A PyTorch zip archive (torch.save, TorchScript, torch.export): `<root>/...` members, every
/// one inside the root folder, through the one ZIP reader of `container/zip.rs` (limits,
/// header and CRC-32 checks).
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
    /// Reads the central directory; refuses members outside the root folder, and an archive
    /// whose only central directory belongs to a zip stored inside it.
    pub fn open(data: &FileRange, max_decompressed: u64) -> Result<TorchArchive> {
        let zip = Archive::open(data, max_decompressed)?;
        // torch writes its archives from byte 0: a directory found further in is a zip stored
        // inside a truncated archive (a .pt2's sample inputs), not this one.
        if zip.offset() != 0 {
            bail!("not a readable zip archive (truncated or corrupt): the only central directory found belongs to a zip stored inside it, at byte {}", zip.offset());
        }
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

    /// Checks the CRC-32 of every member `skip` does not name (version records, ids, the
    /// program, storages no tensor uses: small or unused), so that no corrupt byte of the
    /// archive goes unnoticed. Nothing when the archive has no CRC-32s.
    pub fn check_rest(&mut self, skip: &dyn Fn(&str) -> bool) -> Result<()> {
        if !self.check_crc {
            return Ok(());
        }
        let mut rest: Vec<String> = self.members.keys().filter(|k| !skip(k)).cloned().collect();
        rest.sort();
        for name in rest {
            if let Some(m) = self.member(&name)? {
                m.check()?;
            }
        }
        Ok(())
    }
}

/// A member holding a pickle, as a range to stream it from: a stored one where it lies (its
/// CRC-32 checked first), a deflated one inflated to a temporary file; either at most `limit`
/// bytes.
fn pickle_range(m: Member, limit: u64) -> Result<FileRange> {
    if m.size > limit {
        bail!(
            "{} is {} bytes, more than the {limit} allowed (--max-decompressed)",
            m.name,
            m.size
        );
    }
    MemberData::new(m).range()
}

/// The `data/<key>` member of every storage `loaded` names, once per key; a storage the
/// archive does not hold is an error naming it. Nothing is read or inflated yet.
pub(crate) fn storage_members(
    arch: &mut TorchArchive,
    loaded: &pickle::Loaded,
) -> Result<HashMap<String, Arc<StorageData>>> {
    let mut storages: HashMap<String, Arc<StorageData>> = HashMap::new();
    for s in &loaded.storages {
        if storages.contains_key(&s.key) {
            continue;
        }
        let name = format!("data/{}", s.key);
        let Some(m) = arch.member(&name)? else {
            bail!(
                "storage '{}' is missing: the archive has no {}/{name}",
                s.key,
                arch.root
            );
        };
        storages.insert(s.key.clone(), Arc::new(MemberData::new(m)));
    }
    Ok(storages)
}

/// Unpickles a range.
fn unpickle(range: &FileRange, opts: &TorchOptions) -> Result<pickle::Loaded> {
    pickle::load_range(range, &opts.pickle)
}

/// Opens a zip checkpoint: its pickle is read now, its storages only when a tensor is read (a
/// deflated one is inflated then, at most `--max-decompressed` bytes), so `list` inflates
/// nothing.
pub(super) fn open_zip(at: Opening) -> Result<TorchSource> {
    let opts = at.opts;
    let mut arch = TorchArchive::open(&at.data, opts.max_bytes)?;
    let root = arch.root.clone();
    if arch.members.contains_key("archive_format") {
        return super::pt2::open(at, &mut arch);
    }
    let big_endian = arch.big_endian()?;
    let Some(pkl) = arch.member("data.pkl")? else {
        bail!("not a PyTorch archive: no {root}/data.pkl");
    };
    let pkl_range = pickle_range(pkl, MAX_PICKLE.min(opts.max_bytes))?;
    let loaded = unpickle(&pkl_range, opts).with_context(|| format!("{root}/data.pkl"))?;
    let script = if arch.members.keys().any(|k| k.starts_with("code/")) {
        Some(super::jit::classes(&mut arch)?)
    } else {
        None
    };

    let frozen = script.is_some().then(|| super::jit::constants(&arch));
    let storages = storage_members(&mut arch, &loaded)?;
    // Every other member (version records, ids, the TorchScript sources, storages no pickle
    // names): its CRC-32 is checked now.
    let used: HashSet<String> = storages.keys().map(|k| format!("data/{k}")).collect();
    arch.check_rest(&|name| name == "data.pkl" || name == "byteorder" || used.contains(name))?;
    let check = arch.check_crc;
    let naming = Naming {
        script,
        classes: loaded.classes,
        blobs: loaded.blobs,
        pickle: Some(pkl_range),
        max_bytes: opts.max_bytes,
    };
    let mut src = build(
        at.path,
        at.files,
        loaded.value,
        at.stem,
        storages,
        big_endian,
        naming,
    )?;
    if let Some(note) = frozen.flatten().filter(|_| src.metas.is_empty()) {
        src.notes.push(note);
    }
    if !check {
        src.notes.push(
            "the archive was written without CRC-32s (compute_crc32 = False): its data is not verified"
                .to_string(),
        );
    }
    Ok(src)
}

pub(super) fn open_legacy(at: Opening) -> Result<TorchSource> {
    let data = &at.data;
    let opts = at.opts;
    let mut r = BufReader::new(RangeReader::new(data.clone()));
    let mut pos = 0u64;
    let mut main_at = 0u64;
    let mut next = |what: &str| -> Result<pickle::Loaded> {
        if what == "data pickle" {
            main_at = pos;
        }
        let l = pickle::load_with(&mut r, &opts.pickle)
            .with_context(|| format!("the legacy file's {what}"))?;
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
            Arc::new(StorageData::checked(format!("storage '{key}'"), range)),
        );
    }
    let naming = Naming {
        classes: main.classes,
        blobs: main.blobs,
        pickle: Some(data.slice(main_at, main.consumed)?),
        max_bytes: opts.max_bytes,
        ..Default::default()
    };
    build(
        at.path, at.files, main.value, at.stem, storages, big_endian, naming,
    )
}
