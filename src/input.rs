//! Opening inputs: files read by positioned reads (so memory never grows with the file), standard
//! input and compressed streams spooled to an anonymous temporary file, and content sniffing.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

/// A byte range of an open file, read with `pread` so that readers can share one handle; or of
/// a small in-memory buffer (a TensorProto nested inside another message), read the same way.
#[derive(Clone, Debug)]
pub struct FileRange {
    backing: Backing,
    offset: u64,
    len: u64,
}

#[derive(Clone, Debug)]
enum Backing {
    File(Arc<File>),
    Memory(Arc<Vec<u8>>),
    /// An object in a bucket or behind HTTP(S), read by ranged GETs (`remote.rs`).
    #[cfg(feature = "remote")]
    Remote(Arc<crate::remote::RemoteFile>),
}

impl FileRange {
    pub fn whole(file: File) -> Result<FileRange> {
        let len = file.metadata().context("cannot stat input")?.len();
        Ok(FileRange {
            backing: Backing::File(Arc::new(file)),
            offset: 0,
            len,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes already in memory, read through the same interface as a file.
    pub fn from_vec(bytes: Vec<u8>) -> FileRange {
        let len = bytes.len() as u64;
        FileRange {
            backing: Backing::Memory(Arc::new(bytes)),
            offset: 0,
            len,
        }
    }

    /// The bytes of an in-memory range.
    pub fn memory(&self) -> Option<&[u8]> {
        match &self.backing {
            Backing::Memory(m) => Some(&m[self.offset as usize..(self.offset + self.len) as usize]),
            _ => None,
        }
    }

    /// Where the range starts in its backing (a file offset for a file range).
    pub fn file_offset(&self) -> u64 {
        self.offset
    }

    /// The open file behind the range, when there is one.
    pub fn file(&self) -> Option<&File> {
        match &self.backing {
            Backing::File(f) => Some(f),
            _ => None,
        }
    }

    /// A sub-range; fails when it reaches past this range's end.
    pub fn slice(&self, offset: u64, len: u64) -> Result<FileRange> {
        let end = offset.checked_add(len);
        match end {
            Some(end) if end <= self.len => Ok(FileRange {
                backing: self.backing.clone(),
                offset: self.offset + offset,
                len,
            }),
            _ => bail!(
                "{len} bytes at offset {offset} reach past the end of the data ({} bytes)",
                self.len
            ),
        }
    }

    /// Fills `buf` from `pos` within the range.
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let end = pos.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            bail!(
                "unexpected end of data: wanted {} bytes at offset {pos}, only {} bytes present",
                buf.len(),
                self.len
            );
        }
        let at = self.offset + pos;
        match &self.backing {
            Backing::File(f) => f
                .read_exact_at(buf, at)
                .with_context(|| format!("read error at offset {at}")),
            Backing::Memory(m) => {
                buf.copy_from_slice(&m[at as usize..at as usize + buf.len()]);
                Ok(())
            }
            #[cfg(feature = "remote")]
            Backing::Remote(r) => r.read_at(at, buf),
        }
    }

    /// Reads `len` bytes at `pos` into a new vector (for small, bounded pieces only).
    pub fn read_vec(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read_at(pos, &mut v)?;
        Ok(v)
    }

    /// Appends the range to `out`. From a file into a file this is `copy_file_range` inside
    /// the kernel (std's `io::copy` does that for a `File` pair), so the bytes never pass
    /// through this process; it goes in pieces of 8 MiB, checking for an interrupt between
    /// them (the check fails with an `io::Error` wrapping `error::Interrupted`).
    pub fn copy_into(&self, out: &mut io::BufWriter<File>) -> io::Result<u64> {
        const PIECE: u64 = 8 << 20;
        let interrupted = || {
            crate::error::check_interrupted()
                .map_err(|_| io::Error::other(crate::error::Interrupted))
        };
        match &self.backing {
            Backing::File(f) => {
                use std::io::{Seek, SeekFrom};
                // A duplicate shares the file offset, which nothing else uses: all other
                // reads are positioned.
                let mut dup = f.try_clone()?;
                dup.seek(SeekFrom::Start(self.offset))?;
                let mut copied = 0u64;
                while copied < self.len {
                    interrupted()?;
                    let want = PIECE.min(self.len - copied);
                    let n = io::copy(&mut (&dup).take(want), out)?;
                    copied += n;
                    if n != want {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the input ended early",
                        ));
                    }
                }
                Ok(copied)
            }
            Backing::Memory(_) => {
                use std::io::Write;
                interrupted()?;
                out.write_all(self.memory().unwrap_or(&[]))?;
                Ok(self.len)
            }
            #[cfg(feature = "remote")]
            Backing::Remote(_) => {
                use std::io::Write;
                let mut buf = vec![0u8; (1u64 << 20).min(self.len) as usize];
                let mut pos = 0;
                while pos < self.len {
                    let n = (buf.len() as u64).min(self.len - pos) as usize;
                    self.read_at(pos, &mut buf[..n]).map_err(io::Error::other)?;
                    out.write_all(&buf[..n])?;
                    pos += n as u64;
                }
                Ok(self.len)
            }
        }
    }

    /// Streams the whole range through `sink` in chunks of at most `chunk` bytes that are a
    /// multiple of `unit`.
    pub fn stream(
        &self,
        unit: usize,
        chunk: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let step = ((chunk / unit.max(1)).max(1) * unit.max(1)) as u64;
        let mut buf = vec![0u8; step.min(self.len) as usize];
        let mut pos = 0u64;
        while pos < self.len {
            let n = step.min(self.len - pos) as usize;
            self.read_at(pos, &mut buf[..n])?;
            sink(&buf[..n])?;
            pos += n as u64;
        }
        Ok(())
    }
}

/// Opens a local file or a remote object (`s3://`, `gs://`, `az://`, `http(s)://`) as a range.
pub fn open_range(path: &Path) -> Result<FileRange> {
    if let Some(url) = url_of(path) {
        #[cfg(feature = "remote")]
        {
            let f = crate::remote::RemoteFile::open(url)?;
            let len = f.len();
            return Ok(FileRange {
                backing: Backing::Remote(Arc::new(f)),
                offset: 0,
                len,
            });
        }
        #[cfg(not(feature = "remote"))]
        bail!("{url}: this build of tensor2npy reads no remote inputs (built without the `remote` feature)");
    }
    FileRange::whole(open_file(path)?)
}

/// The URL a path stands for, when it names a remote object.
pub fn url_of(path: &Path) -> Option<&str> {
    let s = path.to_str()?;
    let (scheme, rest) = s.split_once("://")?;
    let known = [
        "s3", "s3a", "gs", "az", "abfs", "abfss", "azure", "http", "https",
    ];
    (known.contains(&scheme) && !rest.is_empty()).then_some(s)
}

/// Opens a file or remote object that may be absent: `None` when there is nothing by that name
/// (a zarr chunk never written), an error for anything else.
pub fn open_optional(path: &Path) -> Result<Option<FileRange>> {
    if url_of(path).is_some() {
        return match is_file(path) {
            true => open_range(path).map(Some),
            false => Ok(None),
        };
    }
    match File::open(path) {
        Ok(f) => FileRange::whole(f).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot open {}", path.display()))),
    }
}

/// The names of the sub-directories of a folder (prefixes under a bucket "directory").
pub fn list_dirs(path: &Path) -> Result<Vec<String>> {
    if let Some(url) = url_of(path) {
        #[cfg(feature = "remote")]
        return crate::remote::list_dirs(url.trim_end_matches('/'));
        #[cfg(not(feature = "remote"))]
        bail!("{url}: this build of tensor2npy reads no remote inputs");
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

/// `Path::is_file`, also for remote objects (a `HEAD` request).
pub fn is_file(path: &Path) -> bool {
    match url_of(path) {
        #[cfg(feature = "remote")]
        Some(url) => crate::remote::exists(url),
        #[cfg(not(feature = "remote"))]
        Some(_) => false,
        None => path.is_file(),
    }
}

/// `Path::is_dir`, also for a prefix in a bucket that holds objects.
pub fn is_dir(path: &Path) -> bool {
    match url_of(path) {
        #[cfg(feature = "remote")]
        Some(url) => crate::remote::is_dir(url.trim_end_matches('/')),
        #[cfg(not(feature = "remote"))]
        Some(_) => false,
        None => path.is_dir(),
    }
}

/// `path` with `suffix` appended to its last component (`ckpt` → `ckpt.index`), keeping a URL's
/// `//` intact.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// When a file or remote object was last modified; for a checkpoint prefix (no file by that
/// name), its `.index` file's time.
pub fn modified(path: &Path) -> Option<std::time::SystemTime> {
    if let Some(url) = url_of(path) {
        #[cfg(feature = "remote")]
        return crate::remote::modified(url)
            .or_else(|| crate::remote::modified(&format!("{url}.index")));
        #[cfg(not(feature = "remote"))]
        return {
            let _ = url;
            None
        };
    }
    let local = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    local(path).or_else(|| local(&with_suffix(path, ".index")))
}

/// A small file's bytes (a checkpoint's `checkpoint` state file), local or remote.
pub fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let r = open_range(path)?;
    if r.len() > limit {
        bail!(
            "{}: {} bytes is larger than expected",
            path.display(),
            r.len()
        );
    }
    r.read_vec(0, r.len() as usize)
}

/// Opens a path that must be a regular file, with the path in the error. Every path that
/// comes from an input (external data, shards, checkpoint parts, a folder's members) is opened
/// here: the file is opened with `O_NONBLOCK` and checked with `fstat` before anything is read,
/// so a named pipe or a device planted in a model folder is refused at once instead of
/// blocking `open()` forever; `O_NONBLOCK` is cleared again for the reads.
pub fn open_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let kind = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a named pipe (FIFO)"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        bail!(
            "{} is {what}: only regular files are read from an input",
            path.display()
        );
    }
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns, with integer flags only.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) >= 0
    };
    if !cleared {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cannot open {}", path.display()));
    }
    Ok(file)
}

/// Opens a command-line argument that is a pipe or a device (`<(cmd)`, `/dev/stdin`), which
/// the user named and which is read once, to be spooled. Never for a path found in an input.
pub fn open_stream(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// Copies standard input into an unlinked temporary file, so that it can be sniffed and read
/// at random offsets like any other input, in bounded memory.
pub fn spool_stdin() -> Result<File> {
    let mut tmp =
        tempfile::tempfile().context("cannot create a temporary file for standard input")?;
    io::copy(&mut io::stdin().lock(), &mut tmp).context("cannot read standard input")?;
    Ok(tmp)
}

/// Copies a pipe or device into an unlinked temporary file, like standard input.
pub fn spool(mut from: File) -> Result<File> {
    let mut tmp = tempfile::tempfile().context("cannot create a temporary file for the input")?;
    io::copy(&mut from, &mut tmp).context("cannot read the input")?;
    Ok(tmp)
}

/// Decompresses a whole GZIP (multi-member) or ZLIB stream of TFRecords into an unlinked
/// temporary file. The bytes are checked while they inflate: each record header's length CRC
/// as soon as its 12 bytes arrive (so a bomb of zeros stops after 12 bytes, not after spooling
/// a GiB), record lengths against `limit`, and the whole decompressed size against `limit`.
/// Bytes after the end of a ZLIB stream are refused, as they are after the last GZIP member.
/// A write error names the temporary directory (a full disk is not a corrupt stream).
pub fn spool_decompressed(src: &FileRange, compression: Compression, limit: u64) -> Result<File> {
    use std::io::{BufRead, Write};
    let mut input = io::BufReader::new(RangeReader::new(src.clone()));
    let tmp = tempfile::tempfile().with_context(|| {
        format!(
            "cannot create a temporary file in {} for the decompressed stream",
            std::env::temp_dir().display()
        )
    })?;
    let mut out = io::BufWriter::with_capacity(1 << 20, tmp);
    let name = compression.name();
    let mut framing = Framing::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    {
        let mut decoder: Box<dyn Read> = match compression {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut input)),
            Compression::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(&mut input)),
        };
        loop {
            let n = match decoder.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("corrupt {name} stream")))
                }
            };
            crate::error::check_interrupted()?;
            total += n as u64;
            if total > limit {
                bail!("{name} stream decompresses to more than {limit} bytes (--max-decompressed)");
            }
            framing.feed(&buf[..n], limit)?;
            out.write_all(&buf[..n])
                .map_err(|e| temp_write_error(e, name))?;
        }
    }
    if compression == Compression::Zlib
        && !input
            .fill_buf()
            .context("cannot read the input")?
            .is_empty()
    {
        bail!("corrupt ZLIB stream: trailing bytes after the end of the compressed data");
    }
    out.into_inner()
        .map_err(|e| temp_write_error(e.into_error(), name))
}

fn temp_write_error(e: io::Error, name: &str) -> anyhow::Error {
    let full = e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull;
    anyhow::Error::new(e).context(format!(
        "cannot write the decompressed {name} stream to a temporary file in {}{} (set TMPDIR to a directory with room)",
        std::env::temp_dir().display(),
        if full { ": the disk is full" } else { "" }
    ))
}

/// TFRecord framing checked as decompressed bytes arrive: `u64 length | masked crc32c(length)`
/// headers, each followed by `length` bytes and a 4-byte data CRC (verified later, by the
/// reader, along with everything else).
#[derive(Default)]
struct Framing {
    header: Vec<u8>,
    /// Bytes of the current record's body and data CRC still to come.
    skip: u64,
    records: u64,
    /// Offset of the current record in the decompressed stream.
    offset: u64,
    seen: u64,
}

impl Framing {
    fn feed(&mut self, mut b: &[u8], limit: u64) -> Result<()> {
        while !b.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(b.len() as u64);
                self.skip -= n;
                self.seen += n;
                b = &b[n as usize..];
                continue;
            }
            if self.header.is_empty() {
                self.offset = self.seen;
            }
            let n = (12 - self.header.len()).min(b.len());
            self.header.extend_from_slice(&b[..n]);
            self.seen += n as u64;
            b = &b[n..];
            if self.header.len() < 12 {
                continue;
            }
            let len = u64::from_le_bytes(self.header[..8].try_into().unwrap());
            let stored = u32::from_le_bytes(self.header[8..].try_into().unwrap());
            let at = format!("record {} at byte offset {}", self.records, self.offset);
            if crate::checksum::mask_crc(crc32c::crc32c(&self.header[..8])) != stored {
                bail!("{at} of the decompressed stream: length checksum mismatch (not TFRecords, or corrupt)");
            }
            if len > limit {
                bail!("{at} claims {len} bytes, more than --max-decompressed ({limit}) allows: the stream is truncated or a decompression bomb");
            }
            self.header.clear();
            self.skip = len + 4;
            self.records += 1;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zlib,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "GZIP",
            Compression::Zlib => "ZLIB",
        }
    }

    /// Recognises a GZIP member header or a ZLIB header (deflate, valid header checksum).
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        match head {
            [0x1f, 0x8b, 0x08, ..] => Some(Compression::Gzip),
            [cmf @ 0x78, flg, ..] if (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0 => {
                Some(Compression::Zlib)
            }
            _ => None,
        }
    }
}

/// The last block of a `FileRange` read, serving the small reads of a strided gather (a
/// PyTorch view, a Fortran-order `.npy`) that fall inside it; a read larger than the block
/// goes straight to the range.
pub struct BlockCache<'a> {
    range: &'a FileRange,
    block: u64,
    start: u64,
    buf: Vec<u8>,
}

impl<'a> BlockCache<'a> {
    pub fn new(range: &'a FileRange, block: u64) -> BlockCache<'a> {
        BlockCache {
            range,
            block,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// Fills `out` with the bytes at `pos`.
    pub fn read(&mut self, pos: u64, out: &mut [u8]) -> Result<()> {
        let len = out.len() as u64;
        if len > self.block {
            return self.range.read_at(pos, out);
        }
        let end = self.start + self.buf.len() as u64;
        if pos < self.start || pos + len > end {
            let n = self.block.min(self.range.len() - pos);
            self.buf.resize(n as usize, 0);
            self.range.read_at(pos, &mut self.buf)?;
            self.start = pos;
        }
        let at = (pos - self.start) as usize;
        out.copy_from_slice(&self.buf[at..at + out.len()]);
        Ok(())
    }
}

/// A sequential reader over a `FileRange`.
pub struct RangeReader {
    range: FileRange,
    pos: u64,
}

impl RangeReader {
    pub fn new(range: FileRange) -> RangeReader {
        RangeReader { range, pos: 0 }
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.range.len - self.pos;
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

/// Random access for readers such as the `zip` crate's, local or remote alike.
impl io::Seek for RangeReader {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let target = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => self.range.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) => {
                self.pos = t.min(self.range.len);
                Ok(self.pos)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the data",
            )),
        }
    }
}

/// The absolute, symlink-free form of a path that may not exist yet.
pub fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (parent.canonicalize(), path.file_name()) {
        (Ok(p), Some(name)) => p.join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_sniffing_needs_a_valid_zlib_header_checksum() {
        assert_eq!(
            Compression::sniff(&[0x1f, 0x8b, 0x08, 0]),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::sniff(&[0x78, 0x9c]), Some(Compression::Zlib));
        assert_eq!(Compression::sniff(&[0x78, 0x01]), Some(Compression::Zlib));
        assert_eq!(Compression::sniff(&[0x78, 0x9d]), None);
        assert_eq!(Compression::sniff(&[0x0a, 0x00]), None);
    }
}
