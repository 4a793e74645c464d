//! Opening inputs: files read by positioned reads (so memory never grows with the file), and
//! standard input and pipes spooled to an anonymous temporary file. Compressed TFRecord
//! streams are spooled by `container::tfrecord`; buffered reads go through
//! `container::cursor::Window`.

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
    /// The CRC-32 of exactly these bytes, where a reader has computed it and checked it against
    /// what the input records (a zip member's): a sink that needs this checksum takes it
    /// instead of reading the bytes again ([`FileRange::known_crc`]).
    crc: Option<u32>,
}

#[derive(Clone, Debug)]
enum Backing {
    File(Arc<File>),
    Memory(Arc<Vec<u8>>),
    /// An object in a bucket or behind HTTP(S), read by ranged GETs (`remote/`).
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
            crc: None,
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
            crc: None,
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

    /// The same range, its bytes' CRC-32 known to be `crc` (the caller computed it from these
    /// very bytes and checked it against a recorded one).
    pub fn with_crc(mut self, crc: u32) -> FileRange {
        self.crc = Some(crc);
        self
    }

    /// The CRC-32 of the range's bytes, when a reader computed and checked it
    /// ([`FileRange::with_crc`]); kept by a slice only when the slice is the whole range.
    pub fn known_crc(&self) -> Option<u32> {
        self.crc
    }

    /// A sub-range; fails when it reaches past this range's end.
    pub fn slice(&self, offset: u64, len: u64) -> Result<FileRange> {
        let end = offset.checked_add(len);
        match end {
            Some(end) if end <= self.len => Ok(FileRange {
                backing: self.backing.clone(),
                offset: self.offset + offset,
                len,
                crc: self.crc.filter(|_| offset == 0 && len == self.len),
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

    /// Tells a remote object that the whole range is about to be read in order, so that it is
    /// fetched in large GETs in flight from the start ([`crate::remote::RemoteFile::expect`]).
    fn expect_whole(&self) {
        #[cfg(feature = "remote")]
        if let Backing::Remote(r) = &self.backing {
            r.expect(self.offset, self.len);
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
                self.expect_whole();
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
        self.expect_whole();
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
                crc: None,
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
