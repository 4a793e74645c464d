//! Sinks: where converted tensors go. The write path reads top to bottom: `sink.member(spec)`
//! writes a tensor's `.npy` header and hands out a [`Member`], the caller `write`s converted
//! chunks into it (or `copy`s an unchanged input range, which `.npy` files get inside the
//! kernel), then `commit`s it; `finish` makes the whole output visible. `npz` and `zip`
//! hold the archive, `npy` the header.
//!
//! A sink commits only when every tensor has been written: files are built under a
//! temporary name (`.tensor2npy-<pid>-*.tmp`) in the destination directory and renamed into
//! place, so a failure leaves nothing at the output path and an existing output untouched. A
//! process killed outright leaves its temporary behind; the next run into the same directory
//! removes those whose process is gone. Devices and pipes (`/dev/stdout`, a FIFO) are written
//! directly, since they cannot be renamed over.

pub mod npy;
mod npz;
mod zip;

pub use npz::{npz_file, NpzSink};

use std::borrow::BorrowMut;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::input::FileRange;
use crate::names;

/// The prefix of every temporary file or directory tensor2npy creates beside an output.
pub const TEMP_PREFIX: &str = ".tensor2npy-";
const BUFFER: usize = 1 << 20;

/// One tensor as a sink receives it: the `.npy` header, then `data_len` bytes of data.
pub struct MemberSpec<'a> {
    /// The tensor's output name (before `.npy` or an escaped path is made of it).
    pub name: &'a str,
    pub header: &'a [u8],
    pub data_len: u64,
}

/// Where the data of one member goes, as a sink hands it out: bytes, or input ranges copied
/// unchanged, then `commit`. A member dropped uncommitted spoils the sink's output, which is
/// then discarded (it is dropped without `finish` on every error path).
pub trait MemberWriter {
    fn write(&mut self, data: &[u8]) -> Result<()>;

    /// Appends `range` unchanged. Sinks that write plain files copy it inside the kernel; the
    /// others stream it.
    fn copy(&mut self, range: &FileRange) -> Result<()> {
        range.stream(1, BUFFER, &mut |c: &[u8]| self.write(c))
    }

    fn commit(self: Box<Self>) -> Result<()>;
}

pub trait Sink {
    /// Starts a member: writes the header, and hands out the writer for the data.
    fn begin_member(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + '_>>;

    /// Makes the output visible. Dropping a sink without finishing discards everything.
    fn finish(self: Box<Self>) -> Result<()>;
}

impl dyn Sink + '_ {
    /// Starts a member whose writer checks, at `commit`, that exactly `data_len` bytes came.
    pub fn member(&mut self, spec: &MemberSpec) -> Result<Member<'_>> {
        Ok(Member {
            inner: self.begin_member(spec)?,
            written: 0,
            data_len: spec.data_len,
        })
    }
}

/// A member being written: `write` or `copy` the data, then `commit`.
pub struct Member<'a> {
    inner: Box<dyn MemberWriter + 'a>,
    written: u64,
    data_len: u64,
}

impl Member<'_> {
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        self.inner.write(data)
    }

    pub fn copy(&mut self, range: &FileRange) -> Result<()> {
        self.written += range.len();
        self.inner.copy(range)
    }

    /// Ends the member, refusing a short or long one.
    pub fn commit(self) -> Result<()> {
        if self.written != self.data_len {
            bail!(
                "internal: wrote {} data bytes where the header promises {}",
                self.written,
                self.data_len
            );
        }
        self.inner.commit()
    }
}

/// A member written to standard output.
struct StreamMember<'a> {
    out: &'a mut BufWriter<io::Stdout>,
}

impl MemberWriter for StreamMember<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(io_error)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// A member written into a file (a `.npy` file, or a device or pipe written in place), held
/// (`BufWriter<File>`) or borrowed from the sink (`&mut BufWriter<File>`).
struct FileMember<B> {
    out: B,
}

impl<B: BorrowMut<BufWriter<File>>> FileMember<B> {
    /// Writes the header into a file and hands out the member for the data.
    fn start(mut out: B, header: &[u8]) -> Result<FileMember<B>> {
        out.borrow_mut().write_all(header).map_err(io_error)?;
        Ok(FileMember { out })
    }
}

impl<B: BorrowMut<BufWriter<File>>> MemberWriter for FileMember<B> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out.borrow_mut().write_all(data).map_err(io_error)
    }

    /// One `copy_file_range` inside the kernel (see `FileRange::copy_into`).
    fn copy(&mut self, range: &FileRange) -> Result<()> {
        range.copy_into(self.out.borrow_mut()).map_err(io_error)?;
        Ok(())
    }

    /// Flushes the member's bytes (the file closes when a held writer is dropped).
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.out.borrow_mut().flush().map_err(io_error)
    }
}

/// Names an I/O failure plainly (a full disk reads better than "os error 28").
pub fn io_error(e: io::Error) -> anyhow::Error {
    match e.raw_os_error() {
        Some(28) => anyhow!("no space left on the device"),
        _ if e.kind() == io::ErrorKind::BrokenPipe => anyhow!("the output pipe was closed"),
        _ => anyhow!("write failed: {e}"),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_prefix() -> String {
    format!("{TEMP_PREFIX}{}-", std::process::id())
}

/// Removes temporaries left in `dir` by tensor2npy processes that no longer run (killed
/// outright, so their cleanup never ran).
pub fn clean_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            fs::remove_dir_all(&p).ok();
        } else {
            fs::remove_file(&p).ok();
        }
    }
}

fn temp_file_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path);
    clean_stale_temporaries(&dir);
    tempfile::Builder::new()
        .prefix(&temp_prefix())
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

/// A character device, FIFO or socket: written in place, never replaced.
pub fn is_special(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs::metadata(path).is_ok_and(|m| {
        let t = m.file_type();
        t.is_char_device() || t.is_fifo() || t.is_socket() || t.is_block_device()
    })
}

fn open_special(path: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))
}

/// Renames the finished temporary over `path`. No fsync: like `cp`, durability is the file
/// system's (ext4 and xfs order a rename-over after the data it replaces); the rename keeps
/// readers from ever seeing a partial file.
fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.persist(path).map_err(|e| {
        anyhow!(
            "cannot move the finished output to {}: {}",
            path.display(),
            e.error
        )
    })?;
    Ok(())
}

/// A single `.npy` file (exactly one tensor).
pub struct NpyFileSink {
    path: PathBuf,
    /// The temporary file to rename into place; `None` when writing a device or pipe directly.
    tmp: Option<tempfile::NamedTempFile>,
    out: Option<BufWriter<File>>,
    written: bool,
}

impl NpyFileSink {
    pub fn create(path: &Path) -> Result<Self> {
        let (tmp, file) = if is_special(path) {
            (None, open_special(path)?)
        } else {
            let tmp = temp_file_beside(path)?;
            let file = tmp.reopen().context("cannot reopen the temporary file")?;
            (Some(tmp), file)
        };
        Ok(NpyFileSink {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(BUFFER, file)),
            written: false,
        })
    }
}

impl Sink for NpyFileSink {
    fn begin_member(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + '_>> {
        if self.written {
            bail!(
                "a .npy file holds one tensor; '{}' would be the second",
                spec.name
            );
        }
        self.written = true;
        let w = self.out.as_mut().expect("sink used after finish");
        Ok(Box::new(FileMember::start(w, spec.header)?))
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let w = self.out.take().expect("finished twice");
        w.into_inner().map_err(|e| io_error(e.into_error()))?;
        match self.tmp.take() {
            Some(tmp) => persist(tmp, &self.path),
            None => Ok(()),
        }
    }
}

/// One `.npy` streamed to standard output.
#[derive(Default)]
pub struct StdoutNpySink {
    out: Option<BufWriter<io::Stdout>>,
}

impl StdoutNpySink {
    fn out(&mut self) -> &mut BufWriter<io::Stdout> {
        self.out
            .get_or_insert_with(|| BufWriter::with_capacity(BUFFER, io::stdout()))
    }
}

impl Sink for StdoutNpySink {
    fn begin_member(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + '_>> {
        let out = self.out();
        out.write_all(spec.header).map_err(io_error)?;
        Ok(Box::new(StreamMember { out }))
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.out().flush().map_err(io_error)
    }
}

/// A directory of `.npy` files, built as a temporary directory beside the target and renamed
/// into place; an existing target directory is replaced only once the new one is complete.
pub struct DirSink {
    target: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

impl DirSink {
    pub fn create(target: &Path) -> Result<Self> {
        if target.exists() && !target.is_dir() {
            bail!("{} exists and is not a directory", target.display());
        }
        let parent = parent_dir(target);
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        clean_stale_temporaries(&parent);
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix())
            .suffix(".tmp")
            .tempdir_in(&parent)
            .with_context(|| {
                format!(
                    "cannot create a temporary directory in {}",
                    parent.display()
                )
            })?;
        Ok(DirSink {
            target: target.to_path_buf(),
            tmp: Some(tmp),
        })
    }
}

impl DirSink {
    /// Creates the file a tensor's `.npy` goes to, refusing a second tensor at the same path.
    fn create_file(&self, name: &str) -> Result<BufWriter<File>> {
        let rel = names::dir_path(name)?;
        let root = self.tmp.as_ref().expect("sink used after finish").path();
        let path = root.join(&rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| {
                anyhow!(
                    "cannot create directory {} for '{name}': {e}",
                    rel.display()
                )
            })?;
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => anyhow!(
                    "two tensors map to the same file {} ('{name}' is the second)",
                    rel.display()
                ),
                _ => anyhow!("cannot create {}: {e}", rel.display()),
            })?;
        Ok(BufWriter::with_capacity(BUFFER, file))
    }
}

impl Sink for DirSink {
    fn begin_member(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + '_>> {
        let w = self.create_file(spec.name)?;
        Ok(Box::new(FileMember::start(w, spec.header)?))
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let tmp = self.tmp.take().expect("finished twice");
        let new = tmp.keep();
        let result = replace_dir(&new, &self.target);
        if result.is_err() {
            fs::remove_dir_all(&new).ok();
        }
        result
    }
}

fn replace_dir(new: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        let old = tempfile::Builder::new()
            .prefix(&temp_prefix())
            .suffix(".old")
            .tempdir_in(parent_dir(target))
            .context("cannot make room to replace the existing output directory")?
            .keep();
        fs::remove_dir(&old).ok();
        fs::rename(target, &old)
            .with_context(|| format!("cannot move the existing {} aside", target.display()))?;
        if let Err(e) = fs::rename(new, target) {
            fs::rename(&old, target).ok();
            bail!(
                "cannot move the finished output to {}: {e}",
                target.display()
            );
        }
        fs::remove_dir_all(&old).ok();
        Ok(())
    } else {
        fs::rename(new, target)
            .with_context(|| format!("cannot move the finished output to {}", target.display()))
    }
}
