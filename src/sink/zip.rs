//! The `.npz` container: a streaming zip64 writer, written by hand for speed and bounded memory.
//!
//! Why not the `zip` crate: it seeks back after every member to patch the local header, which
//! also flushes its write buffer (12,101 `lseek` and 8,130 `write` calls for 2,016 members, and
//! the bytes pass through two user-space buffers), and it keeps every member's central-directory
//! record in memory (≈ 55 MiB for 100,000 members). Here:
//!
//! * Members are written front to back through one 1 MiB buffer. Into a file, the local header
//!   goes out with the sizes known up front and its CRC-32 (and, when deflated, compressed size)
//!   is filled in when the member ends: in the buffer when the header is still there (every small
//!   member), else with one positioned write (`pwrite`), which neither seeks nor flushes. Into a
//!   pipe or standard output, members carry data descriptors instead, which `np.load` reads.
//! * The CRC-32 is `crc32fast` (SIMD), computed while the bytes stream. A large payload copied
//!   unchanged from an input file moves inside the kernel (`copy_file_range`, [`super::slot`]),
//!   its CRC taken from the input a piece behind; its local header carries a zipalign extra
//!   field (0xd935) so that the data keeps its input offset within the page, the alignment at
//!   which the kernel copies at `cp`'s speed (a `write` from a user buffer sometimes ran at a
//!   fifth of it; BENCHMARKS.md has the numbers). Writes into a file are positioned (`pwrite`).
//! * `--jobs`: [`ZipWriter::reserve`] sets the room of a stored member aside, whose size is
//!   known up front, and goes on with the next member while a worker fills it in place
//!   ([`super::slot::Reserved`]); its central-directory record is written in turn with the CRC
//!   filled in by `finish`. The archive is byte for byte the one written in turn.
//! * Central-directory records are serialized as each member ends (46 bytes plus the name and a
//!   20- or 28-byte zip64 field) and spill to an unlinked temporary file past 1 MiB; duplicate
//!   names are caught with 8 bytes per member (a hash, confirmed against the records on a hit).
//! * The layout is what the `zip` crate wrote before (version 4.5, zip64 extra field on every
//!   member, 1980-01-01 00:00 timestamps, Unix mode 0644), plus the alignment field of copied
//!   members; outputs are byte-identical run to run and whatever `--jobs`.
//!
//! Deflate (`--compress`) is `flate2`'s raw deflate at the default level, streamed into the same
//! buffer. Talks to: [`super::npz`], the sink that drives it, and [`super::slot`].

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use crc32fast::Hasher;
use flate2::{Compress, Compression, FlushCompress, Status};

use super::digest::{Hashed, Hashing};
use super::io_error;
use super::slot::{self, Reserved, PAGE};
use crate::input::FileRange;

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const END64: u32 = 0x0606_4b50;
const LOCATOR64: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;
/// Version 4.5: zip64.
const VERSION: u16 = 45;
/// Made by Unix (3), version 4.5.
const MADE_BY: u16 = 3 << 8 | VERSION;
/// 1980-01-01 00:00:00 in MS-DOS form (time 0, date 0x21): the earliest a zip can say.
const DOS_DATE: u16 = 0x21;
/// Regular file, mode 0644.
const EXTERNAL_ATTRS: u32 = 0o100644 << 16;
/// The extra field that pads a local header to align the data (Android's zipalign).
const ALIGNMENT_FIELD: u16 = 0xd935;
const FLAG_DESCRIPTOR: u16 = 1 << 3;
const FLAG_UTF8: u16 = 1 << 11;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;
const MAX32: u64 = u32::MAX as u64;
/// The write buffer.
pub const BUFFER: usize = 1 << 20;
/// Central-directory bytes held in memory before they spill to a temporary file.
const CENTRAL_IN_MEMORY: usize = 1 << 20;
/// Bytes of a local header before the name, and of the zip64 extra field that follows it.
const LOCAL_FIXED: usize = 30;
const ZIP64_LOCAL: usize = 20;

/// A zip archive being written; see the module doc.
pub struct ZipWriter {
    /// Shared with the members reserved for workers, which write their data in place.
    out: Arc<File>,
    /// Taken around writes into `out` while workers fill reserved members.
    lock: slot::WriteLock,
    /// The output is a regular file we own from offset 0: local headers are completed in place.
    /// Otherwise (a pipe, standard output) members end with data descriptors.
    seekable: bool,
    compress: bool,
    /// The write buffer, always `BUFFER` long; `buf[..filled]` is pending.
    buf: Vec<u8>,
    filled: usize,
    /// Bytes already handed to `out`; the archive offset of `buf[0]`.
    flushed: u64,
    central: Vec<u8>,
    spill: Option<File>,
    count: u64,
    seen: HashSet<u64, BuildHasherDefault<NoHash>>,
    member: Option<Member>,
    deflate: Option<Box<Compress>>,
    /// Central-directory bytes already in `spill`.
    spilled: u64,
    /// Members reserved for workers (see [`ZipWriter::reserve`]), and the CRC-32s they report
    /// back: (offset of the CRC field in the central directory, CRC).
    reserved: u64,
    crcs: Arc<Mutex<Vec<(u64, u32)>>>,
    /// `--manifest`: the archive's bytes hashed as they become final (see [`ZipWriter::hash`]),
    /// and where `finish` leaves the digest.
    hash: Option<(Hashing, Hashed)>,
}

/// The member being written.
struct Member {
    at: u64,
    name: Vec<u8>,
    flags: u16,
    crc: Hasher,
    raw: u64,
    /// Archive offset where the member's data starts.
    data_at: u64,
    /// Bytes of the alignment extra field in the local header (0: none).
    pad: u16,
}

/// The hash set's keys are already hashes.
#[derive(Default)]
struct NoHash(u64);

impl std::hash::Hasher for NoHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn name_hash(name: &[u8]) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(name)
}

impl ZipWriter {
    /// A writer into `out`: `seekable` when `out` is a fresh regular file positioned at 0.
    pub fn new(out: File, seekable: bool, compress: bool) -> ZipWriter {
        ZipWriter {
            out: Arc::new(out),
            lock: Default::default(),
            seekable,
            compress,
            buf: vec![0; BUFFER],
            filled: 0,
            flushed: 0,
            central: Vec::new(),
            spill: None,
            count: 0,
            seen: HashSet::default(),
            member: None,
            deflate: None,
            spilled: 0,
            reserved: 0,
            crcs: Arc::default(),
            hash: None,
        }
    }

    /// Hashes the archive as it is written, for `--manifest`; `finish` leaves the size and
    /// SHA-256 in `into`. Bytes are hashed as they go to the output once they are final: a
    /// member's local header in a file is completed when the member ends, so the member's bytes
    /// that left the buffer before that (a member over a buffer long) are read back from the file
    /// then. A member reserved for a worker ends hashing: `into` stays empty.
    pub fn hash(&mut self, into: Hashed) {
        if self.position() == 0 {
            self.hash = Some((Hashing::default(), into));
        }
    }

    /// The archive offset below which every byte is final: the start of the member being
    /// written into a file, whose local header is completed when it ends.
    fn settled(&self) -> u64 {
        match &self.member {
            Some(m) if self.seekable => m.at,
            _ => u64::MAX,
        }
    }

    /// Hashes the final bytes already in the file that hashing has not reached (a member's,
    /// once it has ended), reading them back.
    fn catch_up(&mut self) -> io::Result<()> {
        let end = self.flushed.min(self.settled());
        let Some((h, _)) = &mut self.hash else {
            return Ok(());
        };
        let mut buf = Vec::new();
        while h.bytes() < end {
            let n = (BUFFER as u64).min(end - h.bytes()) as usize;
            buf.resize(n, 0);
            self.out.read_exact_at(&mut buf, h.bytes())?;
            h.update(&buf);
        }
        Ok(())
    }

    /// Whether [`ZipWriter::reserve`] works here: a stored archive in a file.
    pub fn reservable(&self) -> bool {
        self.seekable && !self.compress
    }

    /// The archive offset of the next byte written.
    pub fn position(&self) -> u64 {
        self.flushed + self.filled as u64
    }

    /// Starts member `name`, `len` bytes long uncompressed. Fails on a name already used.
    ///
    /// `align`, for a stored member whose payload will be copied from an input file: the member
    /// bytes that precede the payload and the payload's offset in its file. The local header then
    /// gets an alignment extra field (zipalign's 0xd935) sized so the payload's archive offset
    /// equals the file offset modulo the page size, which keeps the kernel copy at `cp`'s speed.
    pub fn begin(&mut self, name: &str, len: u64, align: Option<(u64, u64)>) -> Result<()> {
        let member = self.new_member(name, align)?;
        let (crc, sizes) = if self.seekable {
            // Stored sizes are final now; deflated ones and the CRC are filled in at the end.
            (0, (len, if self.compress { 0 } else { len }))
        } else {
            (0, (0, 0))
        };
        let header = self.local_header(&member, crc, sizes);
        self.put(&header).map_err(io_error)?;
        if self.compress {
            self.deflate
                .get_or_insert_with(|| Box::new(Compress::new(Compression::default(), false)))
                .reset();
        }
        self.member = Some(member);
        Ok(())
    }

    /// Reserves the next `len` bytes of a stored member for a worker to fill in place, with
    /// positioned writes, while this writer goes on with the members after it (`--jobs`): the
    /// archive comes out byte for byte as if the member had been written here. The worker
    /// writes the local header once it knows the CRC-32 and reports the CRC back; `finish`
    /// puts it into the central directory. Only into a seekable file, stored.
    pub fn reserve(&mut self, name: &str, len: u64, align: Option<(u64, u64)>) -> Result<Reserved> {
        if !self.seekable || self.compress {
            bail!("internal: only a stored archive in a file has room reserved in it");
        }
        let mut m = self.new_member(name, align)?;
        self.flush_buf().map_err(io_error)?;
        self.hash = None; // a worker fills it out of order: read back instead
        let header = self.local_header(&m, 0, (len, len));
        m.raw = len;
        let crc_at = self.spilled + self.central.len() as u64 + 16;
        self.central_record(&m, 0, len)?;
        self.count += 1;
        self.reserved += 1;
        self.flushed = m.data_at + len;
        Ok(Reserved::new(slot::Room {
            out: self.out.clone(),
            lock: self.lock.clone(),
            at: m.at,
            header,
            data_at: m.data_at,
            len,
            crc_at,
            crcs: self.crcs.clone(),
        }))
    }

    /// Checks the name and lays out a member starting at the current position.
    fn new_member(&mut self, name: &str, align: Option<(u64, u64)>) -> Result<Member> {
        if self.member.is_some() {
            bail!("internal: a zip member began before the previous one ended");
        }
        let name = name.as_bytes();
        if name.len() > u16::MAX as usize {
            bail!("the member name is longer than a zip archive allows (65,535 bytes)");
        }
        let hash = name_hash(name);
        if !self.seen.insert(hash) && self.has_member(name)? {
            bail!("two tensors are both named '{}' in the same .npz", {
                let n = String::from_utf8_lossy(name);
                n.strip_suffix(".npy").unwrap_or(&n).to_string()
            });
        }
        let mut flags = if name.is_ascii() { 0 } else { FLAG_UTF8 };
        if !self.seekable {
            flags |= FLAG_DESCRIPTOR;
        }
        let at = self.position();
        let unpadded = at + (LOCAL_FIXED + name.len() + ZIP64_LOCAL) as u64;
        let pad = match align {
            // Only where the kernel copies: a stored member of an archive in a file.
            Some((before, src)) if self.seekable && !self.compress => {
                let p = src.wrapping_sub(unpadded + before) % PAGE;
                // an extra field is at least 6 bytes: id, length, the alignment itself
                (if p > 0 && p < 6 { p + PAGE } else { p }) as u16
            }
            _ => 0,
        };
        Ok(Member {
            at,
            name: name.to_vec(),
            flags,
            crc: Hasher::new(),
            raw: 0,
            data_at: unpadded + pad as u64,
            pad,
        })
    }

    /// Appends member data.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let m = self.member.as_mut().expect("zip write outside a member");
        m.crc.update(data);
        m.raw += data.len() as u64;
        if self.compress {
            self.deflate_in(data, FlushCompress::None)
        } else {
            self.put(data)
        }
    }

    /// Appends `range` of an input unchanged as member data: inside the kernel when it is a
    /// large file range going into a stored archive in a file ([`slot::copy_with_crc`]), else
    /// read straight into the write buffer and checksummed there while it is in the cache.
    pub fn copy(&mut self, range: &FileRange) -> Result<()> {
        if self.compress {
            return range.stream(1, BUFFER, &mut |c: &[u8]| self.write(c).map_err(io_error));
        }
        let len = range.len();
        if self.seekable && slot::kernel_copies(range) {
            self.flush_buf().map_err(io_error)?;
            let crc = slot::copy_with_crc(range, &self.out, self.flushed, &self.lock)?;
            self.flushed += len;
            let m = self.member.as_mut().expect("zip copy outside a member");
            m.crc.combine(&crc);
            m.raw += len;
            return Ok(());
        }
        let mut pos = 0u64;
        while pos < len {
            if self.filled == BUFFER {
                self.flush_buf().map_err(io_error)?;
            }
            let n = ((BUFFER - self.filled) as u64).min(len - pos) as usize;
            let piece = &mut self.buf[self.filled..self.filled + n];
            range.read_at(pos, piece)?;
            let m = self.member.as_mut().expect("zip copy outside a member");
            m.crc.update(piece);
            m.raw += n as u64;
            self.filled += n;
            pos += n as u64;
        }
        Ok(())
    }

    /// Ends the current member: completes its local header (or writes a data descriptor) and
    /// records its central-directory entry.
    pub fn end(&mut self) -> Result<()> {
        if self.compress {
            self.deflate_in(&[], FlushCompress::Finish)
                .map_err(io_error)?;
        }
        let m = self.member.take().expect("zip end outside a member");
        let crc = m.crc.clone().finalize();
        let stored = self.position() - m.data_at;
        if self.seekable {
            let header = self.local_header(&m, crc, (m.raw, stored));
            self.patch(m.at, &header).map_err(io_error)?;
        } else {
            let mut d = Vec::with_capacity(24);
            put32(&mut d, DESCRIPTOR);
            put32(&mut d, crc);
            put64(&mut d, stored);
            put64(&mut d, m.raw);
            self.put(&d).map_err(io_error)?;
        }
        self.central_record(&m, crc, stored)?;
        self.count += 1;
        self.catch_up().map_err(io_error)
    }

    /// Writes the central directory and the end records, flushes, and gives the file back.
    pub fn finish(mut self) -> Result<File> {
        if self.member.is_some() {
            bail!("internal: the archive was finished inside a member");
        }
        let crcs = std::mem::take(&mut *self.crcs.lock().unwrap_or_else(|e| e.into_inner()));
        if crcs.len() as u64 != self.reserved {
            bail!("internal: a member reserved for a worker was not completed");
        }
        for (at, crc) in crcs {
            match at.checked_sub(self.spilled) {
                Some(i) => {
                    self.central[i as usize..i as usize + 4].copy_from_slice(&crc.to_le_bytes())
                }
                None => self
                    .spill
                    .as_ref()
                    .context("internal: no spilled directory")?
                    .write_all_at(&crc.to_le_bytes(), at)
                    .context("cannot complete the zip directory")?,
            }
        }
        let start = self.position();
        let mut size = self.central.len() as u64;
        if let Some(mut spill) = self.spill.take() {
            self.flush_buf().map_err(io_error)?;
            let spilled = spill
                .stream_position()
                .context("cannot read back the central directory")?;
            spill
                .seek(SeekFrom::Start(0))
                .context("cannot read back the central directory")?;
            let mut r = io::BufReader::with_capacity(BUFFER, spill.take(spilled));
            let mut copied = 0;
            loop {
                let chunk = r
                    .fill_buf()
                    .context("cannot read back the central directory")?;
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                self.emit_at(chunk).map_err(io_error)?;
                r.consume(n);
                copied += n as u64;
            }
            size += copied;
        }
        let central = std::mem::take(&mut self.central);
        self.put(&central).map_err(io_error)?;
        let mut e = Vec::with_capacity(98);
        // a value of exactly 0xffffffff in the end record means "see the zip64 record"
        let zip64 = self.count >= 0xffff || start.max(size) >= MAX32;
        if zip64 {
            put32(&mut e, END64);
            put64(&mut e, 44);
            put16(&mut e, VERSION);
            put16(&mut e, VERSION);
            put32(&mut e, 0);
            put32(&mut e, 0);
            put64(&mut e, self.count);
            put64(&mut e, self.count);
            put64(&mut e, size);
            put64(&mut e, start);
            put32(&mut e, LOCATOR64);
            put32(&mut e, 0);
            put64(&mut e, start + size);
            put32(&mut e, 1);
        }
        put32(&mut e, END);
        put32(&mut e, 0);
        let n = self.count.min(0xffff) as u16;
        put16(&mut e, n);
        put16(&mut e, n);
        put32(&mut e, if zip64 { u32::MAX } else { size as u32 });
        put32(&mut e, start.min(MAX32) as u32);
        put16(&mut e, 0);
        self.put(&e).map_err(io_error)?;
        self.flush_buf().map_err(io_error)?;
        self.catch_up().map_err(io_error)?;
        if let Some((h, into)) = self.hash.take() {
            if h.bytes() == self.flushed {
                into.set(h.finish()).ok();
            }
        }
        Arc::try_unwrap(self.out)
            .map_err(|_| anyhow::anyhow!("internal: a worker still holds the archive"))
    }

    /// Writes `data` at `position()` (the buffer is empty): positioned into a file, since
    /// reserved members leave the file offset behind; appended into a stream.
    fn emit_at(&mut self, data: &[u8]) -> io::Result<()> {
        let settled = self.settled();
        if let Some((h, _)) = &mut self.hash {
            // in step: hash the final part now; the rest is read back once final
            if h.bytes() == self.flushed {
                let n = settled.saturating_sub(self.flushed).min(data.len() as u64);
                h.update(&data[..n as usize]);
            }
        }
        if self.seekable {
            let _turn = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            super::slot::write_at(&self.out, data, self.flushed)?;
        } else {
            (&*self.out).write_all(data)?;
        }
        self.flushed += data.len() as u64;
        Ok(())
    }

    /// Buffers `data` (or writes it straight through when it is at least a buffer long).
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        if self.filled + data.len() > BUFFER {
            self.flush_buf()?;
        }
        if data.len() >= BUFFER {
            self.emit_at(data)?;
        } else {
            self.buf[self.filled..self.filled + data.len()].copy_from_slice(data);
            self.filled += data.len();
        }
        Ok(())
    }

    /// Hands the buffer to the output; afterwards `out`'s file offset is `position()`.
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            let (buf, filled) = (std::mem::take(&mut self.buf), self.filled);
            let done = self.emit_at(&buf[..filled]);
            self.buf = buf;
            done?;
            self.filled = 0;
        }
        Ok(())
    }

    /// Overwrites archive bytes at `at`: in the buffer if they are still there, else in the
    /// file with a positioned write.
    fn patch(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let split = self.flushed.saturating_sub(at).min(bytes.len() as u64) as usize;
        if split > 0 {
            self.out.write_all_at(&bytes[..split], at)?;
        }
        if split < bytes.len() {
            let from = (at + split as u64 - self.flushed) as usize;
            self.buf[from..from + bytes.len() - split].copy_from_slice(&bytes[split..]);
        }
        Ok(())
    }

    fn deflate_in(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            if BUFFER - self.filled < 64 << 10 {
                self.flush_buf()?;
            }
            let c = self
                .deflate
                .as_mut()
                .expect("a deflate member has a compressor");
            let (before_in, before_out) = (c.total_in(), c.total_out());
            let status = c
                .compress(input, &mut self.buf[self.filled..], flush)
                .map_err(io::Error::other)?;
            input = &input[(c.total_in() - before_in) as usize..];
            self.filled += (c.total_out() - before_out) as usize;
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => input.is_empty(),
            };
            if done {
                return Ok(());
            }
        }
    }

    fn local_header(&self, m: &Member, crc: u32, (raw, stored): (u64, u64)) -> Vec<u8> {
        let mut h = Vec::with_capacity(LOCAL_FIXED + m.name.len() + ZIP64_LOCAL);
        put32(&mut h, LOCAL);
        put16(&mut h, VERSION);
        put16(&mut h, m.flags);
        put16(&mut h, self.method());
        put16(&mut h, 0);
        put16(&mut h, DOS_DATE);
        put32(&mut h, crc);
        // With a data descriptor every size field of the local header is zero (APPNOTE 4.4.4).
        let defer = if self.seekable { u32::MAX } else { 0 };
        put32(&mut h, defer);
        put32(&mut h, defer);
        put16(&mut h, m.name.len() as u16);
        put16(&mut h, ZIP64_LOCAL as u16 + m.pad);
        h.extend_from_slice(&m.name);
        put16(&mut h, 1);
        put16(&mut h, 16);
        put64(&mut h, raw);
        put64(&mut h, stored);
        if m.pad > 0 {
            put16(&mut h, ALIGNMENT_FIELD);
            put16(&mut h, m.pad - 4);
            put16(&mut h, PAGE as u16);
            h.resize(h.len() + m.pad as usize - 6, 0);
        }
        h
    }

    fn method(&self) -> u16 {
        if self.compress {
            DEFLATED
        } else {
            STORED
        }
    }

    fn central_record(&mut self, m: &Member, crc: u32, stored: u64) -> Result<()> {
        let far = m.at >= MAX32;
        let c = &mut self.central;
        put32(c, CENTRAL);
        put16(c, MADE_BY);
        put16(c, VERSION);
        put16(c, m.flags);
        put16(c, if self.compress { DEFLATED } else { STORED });
        put16(c, 0);
        put16(c, DOS_DATE);
        put32(c, crc);
        put32(c, u32::MAX);
        put32(c, u32::MAX);
        put16(c, m.name.len() as u16);
        put16(c, if far { 28 } else { 20 });
        put16(c, 0); // comment
        put16(c, 0); // disk
        put16(c, 0); // internal attributes
        put32(c, EXTERNAL_ATTRS);
        put32(c, m.at.min(MAX32) as u32);
        c.extend_from_slice(&m.name);
        put16(c, 1);
        put16(c, if far { 24 } else { 16 });
        put64(c, m.raw);
        put64(c, stored);
        if far {
            put64(c, m.at);
        }
        if self.central.len() >= CENTRAL_IN_MEMORY {
            let spill = match &mut self.spill {
                Some(f) => f,
                None => self.spill.insert(
                    tempfile::tempfile()
                        .context("cannot create a temporary file for the zip directory")?,
                ),
            };
            spill.write_all(&self.central).map_err(io_error)?;
            self.spilled += self.central.len() as u64;
            self.central.clear();
        }
        Ok(())
    }

    /// Whether a member already written is named `name` exactly (after a hash hit).
    fn has_member(&mut self, name: &[u8]) -> Result<bool> {
        let mut found = false;
        let mut check = |records: &[u8]| -> usize {
            let mut p = 0;
            while p + 46 <= records.len() {
                let len =
                    |o: usize| u16::from_le_bytes([records[p + o], records[p + o + 1]]) as usize;
                let (n, x, c) = (len(28), len(30), len(32));
                let end = p + 46 + n + x + c;
                if end > records.len() {
                    break;
                }
                found |= &records[p + 46..p + 46 + n] == name;
                p = end;
            }
            p
        };
        if let Some(spill) = &mut self.spill {
            let end = spill.stream_position()?;
            let mut r = io::BufReader::with_capacity(1 << 16, &*spill);
            r.seek(SeekFrom::Start(0))?;
            let mut carry = Vec::new();
            let mut read = 0u64;
            while read < end {
                let chunk = r.fill_buf()?;
                let n = chunk.len().min((end - read) as usize);
                if n == 0 {
                    break;
                }
                carry.extend_from_slice(&chunk[..n]);
                r.consume(n);
                read += n as u64;
                let used = check(&carry);
                carry.drain(..used);
            }
            drop(r);
            spill.seek(SeekFrom::Start(end))?;
        }
        check(&self.central);
        Ok(found)
    }
}

fn put16(v: &mut Vec<u8>, n: u16) {
    v.extend_from_slice(&n.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, n: u32) {
    v.extend_from_slice(&n.to_le_bytes());
}
fn put64(v: &mut Vec<u8>, n: u64) {
    v.extend_from_slice(&n.to_le_bytes());
}

#[cfg(test)]
#[path = "zip_tests.rs"]
mod tests;
