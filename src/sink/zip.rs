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
//! * The CRC-32 is `crc32fast` (SIMD), computed while the bytes stream. Payloads copied unchanged
//!   from an input are read straight into the write buffer and checksummed there while in the
//!   cache: on the 2-core VMs this runs on, that beat a kernel copy (`copy_file_range`, even
//!   with members padded to the input's page offset) plus a checksum pass over a memory map on a
//!   second thread; BENCHMARKS.md has the numbers.
//! * Central-directory records are serialized as each member ends (46 bytes plus the name and a
//!   20- or 28-byte zip64 field) and spill to an unlinked temporary file past 1 MiB; duplicate
//!   names are caught with 8 bytes per member (a hash, confirmed against the records on a hit).
//! * The layout is what the `zip` crate wrote before (version 4.5, zip64 extra field on every
//!   member, 1980-01-01 00:00 timestamps, Unix mode 0644), so outputs stayed byte-identical
//!   run to run and to earlier releases.
//!
//! Deflate (`--compress`) is `flate2`'s raw deflate at the default level, streamed into the same
//! buffer. Talks to: [`super::npz`], the sink that drives it.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context, Result};
use crc32fast::Hasher;
use flate2::{Compress, Compression, FlushCompress, Status};

use super::io_error;
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
    out: File,
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
            out,
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
        }
    }

    /// The archive offset of the next byte written.
    pub fn position(&self) -> u64 {
        self.flushed + self.filled as u64
    }

    /// Starts member `name`, `len` bytes long uncompressed. Fails on a name already used.
    pub fn begin(&mut self, name: &str, len: u64) -> Result<()> {
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
        let member = Member {
            at,
            name: name.to_vec(),
            flags,
            crc: Hasher::new(),
            raw: 0,
            data_at: at + (LOCAL_FIXED + name.len() + ZIP64_LOCAL) as u64,
        };
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

    /// Appends `range` of an input unchanged as member data, read straight into the write
    /// buffer and checksummed there while it is in the cache (measured faster here than a
    /// kernel copy plus a separate checksum pass; see BENCHMARKS.md).
    pub fn copy(&mut self, range: &FileRange) -> Result<()> {
        if self.compress {
            return range.stream(1, BUFFER, &mut |c: &[u8]| self.write(c).map_err(io_error));
        }
        let len = range.len();
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
        Ok(())
    }

    /// Writes the central directory and the end records, flushes, and gives the file back.
    pub fn finish(mut self) -> Result<File> {
        if self.member.is_some() {
            bail!("internal: the archive was finished inside a member");
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
            let copied = io::copy(&mut spill.take(spilled), &mut self.out).map_err(io_error)?;
            self.flushed += copied;
            size += copied;
        }
        let central = std::mem::take(&mut self.central);
        self.put(&central).map_err(io_error)?;
        let mut e = Vec::with_capacity(98);
        let zip64 = self.count > 0xffff || start.max(size) > MAX32;
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
        Ok(self.out)
    }

    /// Buffers `data` (or writes it straight through when it is at least a buffer long).
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        if self.filled + data.len() > BUFFER {
            self.flush_buf()?;
        }
        if data.len() >= BUFFER {
            self.out.write_all(data)?;
            self.flushed += data.len() as u64;
        } else {
            self.buf[self.filled..self.filled + data.len()].copy_from_slice(data);
            self.filled += data.len();
        }
        Ok(())
    }

    /// Hands the buffer to the output; afterwards `out`'s file offset is `position()`.
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            self.out.write_all(&self.buf[..self.filled])?;
            self.flushed += self.filled as u64;
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
        put16(&mut h, ZIP64_LOCAL as u16);
        h.extend_from_slice(&m.name);
        put16(&mut h, 1);
        put16(&mut h, 16);
        put64(&mut h, raw);
        put64(&mut h, stored);
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
mod tests {
    use super::*;
    use std::io::Read;

    fn archive(f: File) -> ::zip::ZipArchive<File> {
        ::zip::ZipArchive::new(f).expect("a valid zip archive")
    }

    fn read_member(z: &mut ::zip::ZipArchive<File>, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        // read_to_end checks the CRC-32 against the data
        z.by_name(name).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn seekable_stored_and_deflated_and_streamed_members_read_back() {
        for (seekable, compress) in [(true, false), (true, true), (false, false), (false, true)] {
            let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), seekable, compress);
            // a member longer than the buffer, so its header is completed with a pwrite
            let big = bytes(3 * BUFFER + 17, 1);
            let small = bytes(100, 2);
            w.begin("big.npy", big.len() as u64).unwrap();
            for c in big.chunks(100_000) {
                w.write(c).unwrap();
            }
            w.end().unwrap();
            w.begin("ü/small.npy", small.len() as u64).unwrap();
            w.write(&small).unwrap();
            w.end().unwrap();
            w.begin("empty.npy", 0).unwrap();
            w.end().unwrap();
            let mut z = archive(w.finish().unwrap());
            assert_eq!(z.len(), 3);
            assert_eq!(read_member(&mut z, "big.npy"), big, "{seekable} {compress}");
            assert_eq!(read_member(&mut z, "ü/small.npy"), small);
            assert!(read_member(&mut z, "empty.npy").is_empty());
            let m = z.by_name("big.npy").unwrap();
            assert_eq!(m.crc32(), crc32fast::hash(&big));
            assert_eq!(
                m.compression(),
                if compress {
                    ::zip::CompressionMethod::Deflated
                } else {
                    ::zip::CompressionMethod::Stored
                }
            );
        }
    }

    #[test]
    fn a_hundred_thousand_members_spill_the_directory_and_need_zip64_end_records() {
        let n = 100_000;
        let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
        for i in 0..n {
            w.begin(&format!("m{i}.npy"), 4).unwrap();
            w.write(&(i as u32).to_le_bytes()).unwrap();
            w.end().unwrap();
        }
        assert!(w.spill.is_some(), "the directory spilled to a file");
        assert!(w.central.capacity() <= 2 * CENTRAL_IN_MEMORY);
        // a duplicate is found in the spilled part and in the part still in memory
        let err = w.begin("m5.npy", 4).unwrap_err().to_string();
        assert!(err.contains("two tensors are both named 'm5'"), "{err}");
        let err = w.begin(&format!("m{}.npy", n - 1), 4).unwrap_err();
        assert!(err.to_string().contains("both named"));
        let f = w.finish().unwrap();
        let mut z = archive(f);
        assert_eq!(z.len(), n);
        assert_eq!(read_member(&mut z, "m77777.npy"), 77777u32.to_le_bytes());
        assert_eq!(
            z.by_index(n - 1).unwrap().name().unwrap(),
            format!("m{}.npy", n - 1)
        );
    }

    #[test]
    fn copied_ranges_read_back_beside_written_bytes_stored_or_deflated() {
        use std::io::Write;
        let data = bytes((3 << 20) + 11, 7);
        for (seekable, compress) in [(true, false), (false, false), (true, true)] {
            let mut input = tempfile::tempfile().unwrap();
            input.write_all(&[9u8; 1000]).unwrap();
            input.write_all(&data).unwrap();
            let range = FileRange::whole(input)
                .unwrap()
                .slice(1000, data.len() as u64)
                .unwrap();
            let header = bytes(128, 3);
            let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), seekable, compress);
            w.begin("first.npy", 5).unwrap();
            w.write(b"hello").unwrap();
            w.end().unwrap();
            w.begin("x.npy", (header.len() + data.len()) as u64)
                .unwrap();
            w.write(&header).unwrap();
            w.copy(&range).unwrap();
            w.end().unwrap();
            let mut z = archive(w.finish().unwrap());
            let got = read_member(&mut z, "x.npy");
            assert!(got[..128] == header[..] && got[128..] == data[..]);
            assert_eq!(read_member(&mut z, "first.npy"), b"hello");
        }
    }

    #[test]
    fn a_name_longer_than_a_zip_allows_is_refused() {
        let mut w = ZipWriter::new(tempfile::tempfile().unwrap(), true, false);
        assert!(w.begin(&"x".repeat(70_000), 0).is_err());
    }
}
