//! ZIP archives, read one way for every format packed in them (PyTorch checkpoints, Keras
//! `.keras`, NumPy `.npz`). The `zip` crate parses the central directory (zip64 included)
//! through `input::RangeReader`, so a local file and a remote object are read alike; this module
//! adds the limits and checks the readers rely on:
//!
//! - the archive: duplicate member names are refused (Python's `zipfile` would let the last win);
//! - a member, when opened: encryption refused, only stored and deflated members accepted, a
//!   stored member's two sizes must agree, a deflated one may not inflate past
//!   `--max-decompressed`, its bytes must lie inside the file, and its local header must match
//!   its central-directory entry (name, method, flags, sizes, CRC), so a damaged name cannot pass;
//! - its bytes: a stored member is a [`FileRange`] slice of the archive (so a sink can still copy
//!   it in the kernel), a deflated one is streamed; either way its CRC-32 is checked, as Python's
//!   `zipfile` does ("Bad CRC-32"): while streaming ([`Member::reader`],
//!   [`MemberData::stream_checking`]), or once before the first use of a random-access view
//!   ([`MemberData::range`], which then carries the CRC-32 on to a sink that needs it).
//!
//! Readers in `source/` call this; it knows nothing of tensors.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::input::{FileRange, RangeReader};

/// The default of `--max-decompressed` (what `OpenOptions` carries from the command line).
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 64 << 30;

/// One central-directory entry, as recorded (nothing checked against the data yet).
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    /// The uncompressed size.
    pub size: u64,
    pub compressed_size: u64,
    pub crc32: u32,
    pub deflated: bool,
}

/// An open ZIP archive: its central directory, and members opened on request.
pub struct Archive {
    data: FileRange,
    zip: zip::ZipArchive<RangeReader>,
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    max_decompressed: u64,
}

impl Archive {
    /// Reads the central directory. `max_decompressed` bounds what any one member may inflate to.
    pub fn open(data: &FileRange, max_decompressed: u64) -> Result<Archive> {
        // An archive holding another zip (a .pt2's sample inputs) can mislead the crate's
        // search for the central directory; an archive that ends with its
        // end-of-central-directory record (no comment, as torch and NumPy write it) is then
        // tried as one starting at byte 0. (A reader whose archives always start there refuses
        // a directory found further in: see [`Archive::offset`].)
        let mut tail = [0u8; 4];
        let ends_whole = data.len() >= 22
            && data.read_at(data.len() - 22, &mut tail).is_ok()
            && &tail == b"PK\x05\x06";
        let zip = zip::ZipArchive::new(RangeReader::new(data.clone()))
            .or_else(|e| {
                if !ends_whole {
                    return Err(e);
                }
                let known = zip::read::Config {
                    archive_offset: zip::read::ArchiveOffset::Known(0),
                };
                zip::ZipArchive::with_config(known, RangeReader::new(data.clone()))
            })
            .context("not a readable ZIP archive (truncated, or no central directory)")?;
        if zip.has_duplicate_names() {
            bail!(
                "the ZIP archive names a member twice (duplicate names in its central directory)"
            );
        }
        let mut entries = Vec::with_capacity(zip.len());
        let mut by_name = HashMap::with_capacity(zip.len());
        for i in 0..zip.len() {
            let f = zip
                .by_index_data(i)
                .with_context(|| format!("ZIP central directory entry {i} is corrupt"))?;
            let name = f
                .name()
                .with_context(|| format!("ZIP central directory entry {i}: its name"))?
                .into_owned();
            if by_name.insert(name.clone(), i).is_some() {
                bail!("the ZIP archive holds two members named '{name}'");
            }
            entries.push(Entry {
                name,
                size: f.size(),
                compressed_size: f.compressed_size(),
                crc32: f.crc32(),
                deflated: f.compression() == zip::CompressionMethod::Deflated,
            });
        }
        Ok(Archive {
            data: data.clone(),
            zip,
            entries,
            by_name,
            max_decompressed,
        })
    }

    /// Where the archive starts in the file: 0 unless data precedes it (or the only central
    /// directory found belongs to a zip stored inside a truncated one).
    pub fn offset(&self) -> u64 {
        self.zip.offset()
    }

    /// The central directory, in its order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index of the member named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Opens member `index`: checks its encryption, method, sizes and local header, and locates
    /// its bytes. Nothing is inflated.
    pub fn member(&mut self, index: usize) -> Result<Member> {
        let e = self
            .entries
            .get(index)
            .with_context(|| format!("no ZIP member {index}"))?
            .clone();
        let name = &e.name;
        let start = {
            let f = self.zip.by_index_raw(index).with_context(|| {
                format!("ZIP member {name}: its local header is unreadable (truncated or corrupt)")
            })?;
            if f.encrypted() {
                bail!("ZIP member {name} is encrypted, which is not supported");
            }
            match f.compression() {
                zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated => {}
                other => bail!(
                    "ZIP member {name} is compressed with {other}, which is not supported (only stored and deflated)"
                ),
            }
            f.data_start()
                .with_context(|| format!("ZIP member {name}: no data offset"))?
        };
        if !e.deflated && e.compressed_size != e.size {
            bail!(
                "ZIP member {name} is stored, but its sizes disagree ({} and {} bytes)",
                e.compressed_size,
                e.size
            );
        }
        if e.deflated && e.size > self.max_decompressed {
            bail!(
                "ZIP member {name} inflates to {} bytes, more than --max-decompressed ({})",
                e.size,
                self.max_decompressed
            );
        }
        // The local header against the central directory: name, method, flags, sizes, CRC.
        self.zip
            .by_index_with_options(
                index,
                zip::ZipReadOptions::new().enforce_header_consistency(true),
            )
            .with_context(|| {
                format!("ZIP member {name}: its local header does not match the central directory")
            })?;
        let raw = self.data.slice(start, e.compressed_size).with_context(|| {
            format!("ZIP member {name} reaches past the end of the file (truncated)")
        })?;
        Ok(Member {
            name: e.name,
            size: e.size,
            crc32: Some(e.crc32),
            deflated: e.deflated,
            raw,
        })
    }

    /// Opens the member named `name`.
    pub fn member_named(&mut self, name: &str) -> Result<Member> {
        match self.index_of(name) {
            Some(i) => self.member(i),
            None => bail!("the ZIP archive has no member {name}"),
        }
    }
}

/// One member, located and checked against its headers; its bytes are read on request.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    /// The uncompressed size.
    pub size: u64,
    /// The CRC-32 to check, `None` when the writer recorded none (PyTorch's `compute_crc32 =
    /// False`).
    crc32: Option<u32>,
    deflated: bool,
    /// The bytes as stored (compressed or not).
    raw: FileRange,
}

impl Member {
    /// The same member, its CRC-32 not checked (an archive written without CRCs).
    pub fn without_crc(mut self) -> Member {
        self.crc32 = None;
        self
    }

    pub fn is_deflated(&self) -> bool {
        self.deflated
    }

    /// A stored member's bytes, not yet checked against its CRC-32 (see [`MemberData`]).
    pub fn stored_range(&self) -> Option<&FileRange> {
        (!self.deflated).then_some(&self.raw)
    }

    /// The uncompressed bytes as a stream: exactly `size` bytes, then an error instead of the
    /// end when the CRC-32 does not match or the data is longer or shorter than recorded.
    pub fn reader(&self) -> Box<dyn Read + Send> {
        self.reader_with(1 << 16)
    }

    /// [`Member::reader`] for the first bytes only (a header): a deflated member is read 4 KiB
    /// of compressed bytes at a time, so that opening many members reads little of each.
    pub fn head_reader(&self) -> Box<dyn Read + Send> {
        self.reader_with(4 << 10)
    }

    fn reader_with(&self, compressed_buffer: usize) -> Box<dyn Read + Send> {
        let raw = RangeReader::new(self.raw.clone());
        let inner: Box<dyn Read + Send> = if self.deflated {
            Box::new(flate2::read::DeflateDecoder::new(BufReader::with_capacity(
                compressed_buffer,
                raw,
            )))
        } else {
            Box::new(raw)
        };
        Box::new(Checked {
            inner,
            hasher: crc32fast::Hasher::new(),
            got: 0,
            size: self.size,
            crc: self.crc32,
        })
    }

    /// The whole member in memory, refused beyond `limit` bytes (for small members only).
    pub fn read_vec(&self, limit: u64) -> Result<Vec<u8>> {
        if self.size > limit {
            bail!("ZIP member {} is larger than {limit} bytes", self.name);
        }
        let mut v = Vec::with_capacity(self.size as usize);
        self.reader()
            .read_to_end(&mut v)
            .with_context(|| format!("ZIP member {} is corrupt", self.name))?;
        Ok(v)
    }

    /// Reads the whole member, checking its CRC-32, and keeps nothing.
    pub fn check(&self) -> Result<()> {
        self.pump(&mut |_| Ok(()))
    }

    /// Inflates (or copies) the member into an unlinked temporary file, checking its CRC-32;
    /// bounded by its recorded size, which `--max-decompressed` bounded.
    pub fn spool(&self) -> Result<FileRange> {
        use std::io::Write;
        let tmp = tempfile::tempfile().with_context(|| {
            format!(
                "cannot create a temporary file in {} for ZIP member {}",
                std::env::temp_dir().display(),
                self.name
            )
        })?;
        let mut out = io::BufWriter::with_capacity(1 << 20, tmp);
        let write_error = |e: io::Error| {
            anyhow::Error::new(e).context(format!(
                "cannot write ZIP member {} to a temporary file in {}",
                self.name,
                std::env::temp_dir().display()
            ))
        };
        self.pump(&mut |c| out.write_all(c).map_err(write_error))?;
        let tmp = out.into_inner().map_err(|e| write_error(e.into_error()))?;
        FileRange::whole(tmp)
    }

    /// Streams the whole member through `f` in pieces of up to 1 MiB, checking its CRC-32 at
    /// the end and for an interrupt between pieces.
    fn pump(&self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut r = self.reader();
        let mut buf = vec![0u8; (1 << 20).min(self.size as usize + 1).max(1)];
        loop {
            crate::error::check_interrupted()?;
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("ZIP member {} is corrupt", self.name)))
                }
            };
            f(&buf[..n])?;
        }
    }
}

/// Compares a member's CRC-32 with the one its archive records, as Python's `zipfile` does
/// ("Bad CRC-32"); a match is counted for `verify`.
fn compare_crc(got: u32, want: u32) -> io::Result<()> {
    if got != want {
        return Err(io::Error::other(format!(
            "Bad CRC-32: the data gives {got:08x}, the archive records {want:08x}"
        )));
    }
    crate::checksum::verified(1);
    Ok(())
}

/// A member's bytes with their length and CRC-32 checked as they stream past.
struct Checked {
    inner: Box<dyn Read + Send>,
    hasher: crc32fast::Hasher,
    got: u64,
    size: u64,
    crc: Option<u32>,
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.got += n as u64;
        if self.got > self.size {
            return Err(io::Error::other(format!(
                "it holds more than the {} bytes its header records",
                self.size
            )));
        }
        self.hasher.update(&buf[..n]);
        if n == 0 {
            if self.got < self.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "it ends after {} of its {} bytes (truncated)",
                        self.got, self.size
                    ),
                ));
            }
            if let Some(want) = self.crc.take() {
                compare_crc(self.hasher.clone().finalize(), want)?;
            }
        }
        Ok(n)
    }
}

/// A member's bytes for random access, checked once before their first use: a stored member is
/// its slice of the archive, its CRC-32 computed on the first call; a deflated one is spooled
/// into a temporary file on the first call (its CRC-32 checked while it inflates). Until then
/// nothing is read, so listing an archive inflates nothing.
#[derive(Debug)]
pub struct MemberData {
    member: Member,
    ready: Mutex<Option<FileRange>>,
}

impl MemberData {
    pub fn new(member: Member) -> MemberData {
        MemberData {
            member,
            ready: Mutex::new(None),
        }
    }

    /// Bytes already present, with nothing to check (a range of a file that is no archive).
    pub fn checked(name: String, range: FileRange) -> MemberData {
        MemberData {
            member: Member {
                name,
                size: range.len(),
                crc32: None,
                deflated: false,
                raw: range.clone(),
            },
            ready: Mutex::new(Some(range)),
        }
    }

    pub fn name(&self) -> &str {
        &self.member.name
    }

    /// The uncompressed size, as recorded (the bytes hold exactly this many once checked).
    pub fn len(&self) -> u64 {
        self.member.size
    }

    pub fn is_empty(&self) -> bool {
        self.member.size == 0
    }

    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Checks the bytes without keeping them: a stored member as [`MemberData::range`] does
    /// (remembered), a deflated one inflated and dropped (for a member no tensor reads).
    pub fn verify(&self) -> Result<()> {
        if self.member.deflated
            && self
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
        {
            return self.member.check();
        }
        self.range().map(drop)
    }

    /// The checked bytes; the first call reads (or inflates) the whole member. A failure is not
    /// remembered: the next call checks again, and fails again.
    pub fn range(&self) -> Result<FileRange> {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &*ready {
            return Ok(r.clone());
        }
        let r = match self.member.stored_range() {
            Some(r) => {
                self.member.check()?;
                r.clone()
            }
            None => self.member.spool()?,
        };
        // checked: a sink that needs these bytes' CRC-32 takes it from here
        let r = match self.member.crc32 {
            Some(crc) => r.with_crc(crc),
            None => r,
        };
        *ready = Some(r.clone());
        Ok(r)
    }

    /// Streams the whole member through `sink` in pieces of at most `chunk` bytes, each a
    /// multiple of `unit`. The first time, a stored member's CRC-32 is checked on the bytes as
    /// they go by, instead of in a read of its own before ([`MemberData::range`]): `sink` has
    /// had every byte when a mismatch fails the call, so this is for a caller that passes the
    /// bytes on as the values of one output whose failure discards it, never for bytes that
    /// steer a reader. A deflated member is inflated (and checked) first, as by `range`.
    pub fn stream_checking(
        &self,
        unit: usize,
        chunk: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let checked = self.ready.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (Some(raw), None) = (self.member.stored_range(), checked) else {
            return self.range()?.stream(unit, chunk, sink);
        };
        let mut hasher = crc32fast::Hasher::new();
        raw.stream(unit, chunk, &mut |c: &[u8]| {
            hasher.update(c);
            sink(c)
        })?;
        let mut range = raw.clone();
        if let Some(want) = self.member.crc32 {
            compare_crc(hasher.finalize(), want)
                .with_context(|| format!("ZIP member {} is corrupt", self.member.name))?;
            range = range.with_crc(want);
        }
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some(range);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn archive(members: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, data, deflate) in members {
            let method = if *deflate {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            };
            let opts = zip::write::SimpleFileOptions::default().compression_method(method);
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    fn open(bytes: Vec<u8>, limit: u64) -> Result<Archive> {
        Archive::open(&FileRange::from_vec(bytes), limit)
    }

    #[test]
    fn stored_and_deflated_members_read_back_with_their_crc() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let bytes = archive(&[("a", &data, false), ("b", &data, true)]);
        let mut z = open(bytes, 1 << 20).unwrap();
        for name in ["a", "b"] {
            let m = z.member_named(name).unwrap();
            assert_eq!(m.read_vec(1 << 20).unwrap(), data);
            let d = MemberData::new(m);
            assert_eq!(d.range().unwrap().read_vec(0, 5000).unwrap(), data);
        }
        assert_eq!(
            z.member_named("a").unwrap().stored_range().unwrap().len(),
            5000
        );
    }

    #[test]
    fn a_flipped_byte_is_a_bad_crc_and_a_deflated_member_past_the_limit_is_refused() {
        let data = vec![7u8; 4000];
        let mut bytes = archive(&[("a", &data, false)]);
        let at = bytes.windows(8).position(|w| w == [7; 8]).unwrap();
        bytes[at + 100] ^= 1;
        let mut z = open(bytes, 1 << 20).unwrap();
        let d = MemberData::new(z.member(0).unwrap());
        let e = format!("{:#}", d.range().unwrap_err());
        assert!(e.contains("Bad CRC-32"), "{e}");

        let bytes = archive(&[("big", &vec![0u8; 100_000], true)]);
        let mut z = open(bytes.clone(), 50_000).unwrap();
        let e = format!("{:#}", z.member(0).unwrap_err());
        assert!(e.contains("--max-decompressed"), "{e}");
        assert!(open(bytes, 100_000).unwrap().member(0).is_ok());
    }

    #[test]
    fn a_member_streamed_whole_is_checked_as_it_goes_and_a_checked_range_carries_its_crc() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8).collect();
        let crc = crc32fast::hash(&data);
        let mut bytes = archive(&[("a", &data, false), ("b", &data, true)]);
        let mut z = open(bytes.clone(), 1 << 20).unwrap();
        for name in ["a", "b"] {
            let d = MemberData::new(z.member_named(name).unwrap());
            let mut got = Vec::new();
            d.stream_checking(4, 1000, &mut |c: &[u8]| {
                assert!(c.len() <= 1000 && c.len().is_multiple_of(4));
                got.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, data);
            // checked now: the range carries the CRC-32, a slice of part of it does not
            let r = d.range().unwrap();
            assert_eq!(r.read_vec(0, 5000).unwrap(), data);
            assert_eq!(r.known_crc(), Some(crc), "{name}");
            assert_eq!(r.slice(0, 5000).unwrap().known_crc(), Some(crc));
            assert_eq!(r.slice(1, 4999).unwrap().known_crc(), None);
        }
        // checked by `range` first, the same
        let d = MemberData::new(z.member_named("a").unwrap());
        assert_eq!(d.range().unwrap().known_crc(), Some(crc));
        // no CRC to check: none carried
        let d = MemberData::new(z.member_named("a").unwrap().without_crc());
        assert_eq!(d.range().unwrap().known_crc(), None);

        // a flipped byte: every byte streamed, then the error, and nothing remembered
        let at = bytes.windows(8).position(|w| w == &data[..8]).unwrap();
        bytes[at + 4321] ^= 1;
        let mut z = open(bytes, 1 << 20).unwrap();
        let d = MemberData::new(z.member_named("a").unwrap());
        for _ in 0..2 {
            let mut n = 0;
            let e = d
                .stream_checking(1, 1 << 20, &mut |c: &[u8]| {
                    n += c.len();
                    Ok(())
                })
                .unwrap_err();
            let e = format!("{e:#}");
            assert!(
                e.contains("ZIP member a is corrupt") && e.contains("Bad CRC-32"),
                "{e}"
            );
            assert_eq!(n, 5000);
        }
        assert!(d.range().is_err());
    }

    #[test]
    fn a_local_name_that_differs_from_the_central_one_is_refused() {
        let mut bytes = archive(&[("m/byteorder", b"big", false)]);
        // rename the central directory's copy of the name only
        let at = bytes
            .windows(11)
            .rposition(|w| w == b"m/byteorder")
            .unwrap();
        bytes[at + 2] = b'B';
        let mut z = open(bytes, 1 << 20).unwrap();
        assert_eq!(z.entries()[0].name, "m/Byteorder");
        let e = format!("{:#}", z.member(0).unwrap_err());
        assert!(e.contains("does not match the central directory"), "{e}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut bytes = archive(&[("a/x", b"1", false), ("a/y", b"2", false)]);
        // make the second name equal to the first, in both headers
        for at in bytes
            .windows(3)
            .enumerate()
            .filter(|(_, w)| *w == b"a/y")
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
        {
            bytes[at + 2] = b'x';
        }
        let e = format!("{:#}", open(bytes, 1 << 20).err().unwrap());
        assert!(e.contains("twice"), "{e}");
    }
}
