//! The two containers `torch.save` writes: the zip archive (`<root>/data.pkl`, `<root>/data/<key>`,
//! `<root>/byteorder`; the root folder is named after the first member, as torch's own reader
//! does) and the legacy pickle stream (magic number, protocol version, sys_info, the data
//! pickle, the storage keys, then each storage as an 8-byte element count and its bytes). Both
//! end in `build` of `mod.rs` with the unpickled tree and a map from storage key to bytes. A zip
//! holding `archive_format` goes to `pt2.rs`; one holding `code/` is TorchScript, whose classes
//! `jit.rs` reads. `data.pkl` is read as a stream (a deflated one inflated to a temporary file,
//! within `--max-decompressed`), never whole into memory.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::{build, Naming, StorageData, TorchOptions, TorchSource, MAX_PICKLE};
use crate::input::{FileRange, RangeReader};
use crate::source::pickle::{self, Value};

/// One zip member, located through the central directory and its local header.
pub(super) struct Member {
    pub name: String,
    /// The member's bytes as stored (compressed or not).
    pub raw: FileRange,
    pub stored: bool,
    pub size: u64,
    pub crc: u32,
}

pub(super) fn member(
    zip: &mut zip::ZipArchive<RangeReader>,
    i: usize,
    data: &FileRange,
) -> Result<Member> {
    let f = zip.by_index_raw(i).context("corrupt zip directory")?;
    let name = f.name().context("a zip member name")?.to_string();
    if f.encrypted() {
        bail!("{name} is encrypted");
    }
    let stored = match f.compression() {
        zip::CompressionMethod::Stored => true,
        zip::CompressionMethod::Deflated => false,
        other => bail!("{name} is compressed with {other:?}, which is not supported"),
    };
    let start = f
        .data_start()
        .with_context(|| format!("{name}: no data offset"))?;
    let raw = data
        .slice(start, f.compressed_size())
        .with_context(|| format!("{name} reaches past the end of the file (truncated)"))?;
    if stored && f.compressed_size() != f.size() {
        bail!("{name}: a stored member whose sizes disagree");
    }
    Ok(Member {
        name,
        raw,
        stored,
        size: f.size(),
        crc: f.crc32(),
    })
}

/// Checks a member's CRC-32 as its bytes stream past; the mismatch is an error at the end.
struct CrcReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    want: Option<u32>,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            if let Some(want) = self.want.take() {
                let got = self.hasher.clone().finalize();
                if got != want {
                    return Err(io::Error::other(format!(
                        "CRC-32 mismatch: the data gives {got:08x}, the archive records {want:08x}"
                    )));
                }
                crate::checksum::verified(1);
            }
        }
        Ok(n)
    }
}

/// A reader of a member's uncompressed bytes, checking its CRC-32 unless `check` is off.
pub(super) fn member_reader(m: &Member, check: bool) -> Box<dyn Read> {
    let raw = RangeReader::new(m.raw.clone());
    let inner: Box<dyn Read> = if m.stored {
        Box::new(raw)
    } else {
        Box::new(flate2::read::DeflateDecoder::new(BufReader::new(raw)).take(m.size))
    };
    Box::new(CrcReader {
        inner,
        hasher: crc32fast::Hasher::new(),
        want: check.then_some(m.crc),
    })
}

pub(super) fn read_member(m: &Member, check: bool, limit: u64) -> Result<Vec<u8>> {
    if m.size > limit {
        bail!("{} is larger than {limit} bytes", m.name);
    }
    let mut v = Vec::new();
    member_reader(m, check)
        .take(limit.saturating_add(1))
        .read_to_end(&mut v)
        .with_context(|| format!("{} is corrupt", m.name))?;
    if v.len() as u64 != m.size {
        bail!(
            "{} holds {} bytes, not the {} its header says",
            m.name,
            v.len(),
            m.size
        );
    }
    Ok(v)
}

/// A member holding a pickle, as a range to stream it from: a stored one where it lies (its
/// CRC-32 checked first), a deflated one inflated to a temporary file; either at most `limit`
/// bytes.
fn pickle_range(m: &Member, check: bool, limit: u64) -> Result<FileRange> {
    if m.size > limit {
        bail!(
            "{} is {} bytes, more than the {limit} allowed (--max-decompressed)",
            m.name,
            m.size
        );
    }
    if !m.stored {
        return spool_member(m, check);
    }
    io::copy(&mut member_reader(m, check), &mut io::sink())
        .with_context(|| format!("{} is corrupt", m.name))?;
    Ok(m.raw.clone())
}

/// Unpickles a range.
fn unpickle(range: &FileRange, opts: &TorchOptions) -> Result<pickle::Loaded> {
    let mut r = BufReader::new(RangeReader::new(range.clone()));
    pickle::load_with(&mut r, &opts.pickle)
}

pub(super) fn open_zip(
    path: &str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &str,
    opts: &TorchOptions,
) -> Result<TorchSource> {
    // input::RangeReader: positioned reads with Seek, for a local file or a remote object.
    let reader = RangeReader::new(data.clone());
    // An archive holding another zip (a .pt2's sample inputs) can mislead the crate's search
    // for the central directory; an archive that starts at byte 0 and ends with its
    // end-of-central-directory record (no comment, as torch writes it) is then tried as such.
    let mut tail = [0u8; 4];
    let ends_whole = data.len() >= 22 && data.read_at(data.len() - 22, &mut tail).is_ok();
    let ends_whole = ends_whole && &tail == b"PK\x05\x06";
    let mut zip = zip::ZipArchive::new(RangeReader::new(data.clone()))
        .or_else(|e| {
            if !ends_whole {
                return Err(e);
            }
            let known = zip::read::Config {
                archive_offset: zip::read::ArchiveOffset::Known(0),
            };
            zip::ZipArchive::with_config(known, reader)
        })
        .context("not a readable zip archive (truncated or corrupt)")?;
    // torch writes its archives from byte 0: a directory found further in is a zip stored
    // inside a truncated archive (a .pt2's sample inputs), not this one.
    if zip.offset() != 0 {
        bail!("not a readable zip archive (truncated or corrupt): the only central directory found belongs to a zip stored inside it, at byte {}", zip.offset());
    }
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
    // torch.save with `compute_crc32 = False` records 0 as every member's CRC-32.
    let mut all_zero = true;
    for i in 0..zip.len() {
        // The central directory alone (no local header read per member).
        let f = zip.by_index_data(i).context("corrupt zip directory")?;
        all_zero &= f.crc32() == 0 || f.size() == 0;
        if let Some(rest) = f.name()?.strip_prefix(&format!("{root}/")) {
            members.insert(rest.to_string(), i);
        }
    }
    let check = !all_zero;
    if members.contains_key("archive_format") {
        return super::pt2::open(path, files, &data, &mut zip, &members, &root, check, opts);
    }
    let Some(&pkl_index) = members.get("data.pkl") else {
        bail!("not a PyTorch archive: no {root}/data.pkl");
    };
    let big_endian = match members.get("byteorder") {
        Some(&i) => match &read_member(&member(&mut zip, i, &data)?, check, 16)?[..] {
            b"little" => false,
            b"big" => true,
            other => bail!(
                "{root}/byteorder says '{}', not little or big",
                String::from_utf8_lossy(other)
            ),
        },
        None => false,
    };
    let pkl_range = pickle_range(
        &member(&mut zip, pkl_index, &data)?,
        check,
        MAX_PICKLE.min(opts.max_bytes),
    )?;
    let loaded = unpickle(&pkl_range, opts).with_context(|| format!("{root}/data.pkl"))?;
    let script = if members.keys().any(|k| k.starts_with("code/")) {
        Some(super::jit::classes(&mut zip, &members, &data, check)?)
    } else {
        None
    };

    let mut storages: HashMap<String, Arc<StorageData>> = HashMap::new();
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
        let m = member(&mut zip, i, &data)?;
        let (range, crc) = if m.stored {
            (m.raw.clone(), check.then_some(m.crc))
        } else {
            (spool_member(&m, check)?, None)
        };
        storages.insert(
            s.key.clone(),
            Arc::new(StorageData {
                range,
                crc,
                checked: AtomicU8::new(0),
                name: m.name,
            }),
        );
    }
    // Every other member (version records, ids, storages no tensor uses) is small or unused:
    // check its CRC-32 now, so that no corrupt byte of the archive goes unnoticed.
    if check {
        let used: std::collections::HashSet<String> =
            storages.keys().map(|k| format!("data/{k}")).collect();
        for (name, &i) in &members {
            if name != "data.pkl" && name != "byteorder" && !used.contains(name) {
                let m = member(&mut zip, i, &data)?;
                io::copy(&mut member_reader(&m, true), &mut io::sink())
                    .with_context(|| format!("{} is corrupt", m.name))?;
            }
        }
    }
    let naming = Naming {
        script,
        classes: loaded.classes,
        blobs: loaded.blobs,
        pickle: Some(pkl_range),
        max_bytes: opts.max_bytes,
    };
    let mut src = build(
        path,
        files,
        loaded.value,
        stem,
        storages,
        big_endian,
        naming,
    )?;
    if !check {
        src.notes.push(
            "the archive was written without CRC-32s (compute_crc32 = False): its data is not verified"
                .to_string(),
        );
    }
    Ok(src)
}

/// Inflates a compressed member into an unlinked temporary file, checking its CRC-32.
pub(super) fn spool_member(m: &Member, check: bool) -> Result<FileRange> {
    let mut tmp = tempfile::tempfile().context("cannot create a temporary file")?;
    let copied = io::copy(
        &mut member_reader(m, check).take(m.size.saturating_add(1)),
        &mut tmp,
    )
    .with_context(|| format!("{} is corrupt", m.name))?;
    if copied != m.size {
        bail!(
            "{} inflates to {copied} bytes, not the {} its header says",
            m.name,
            m.size
        );
    }
    FileRange::whole(tmp)
}

pub(super) fn open_legacy(
    path: &str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &str,
    opts: &TorchOptions,
) -> Result<TorchSource> {
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
            Arc::new(StorageData {
                range,
                crc: None,
                checked: AtomicU8::new(1),
                name: format!("storage '{key}'"),
            }),
        );
    }
    let naming = Naming {
        classes: main.classes,
        blobs: main.blobs,
        pickle: Some(data.slice(main_at, main.consumed)?),
        max_bytes: opts.max_bytes,
        ..Default::default()
    };
    build(path, files, main.value, stem, storages, big_endian, naming)
}
