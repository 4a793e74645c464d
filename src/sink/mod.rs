//! Sinks: where converted tensors go. Each takes a tensor as a `.npy` header plus a body written
//! in chunks, and commits only when every tensor has been written: files are built under a
//! temporary name (`.tensor2npy-<pid>-*.tmp`) in the destination directory and renamed into
//! place, so a failure leaves nothing at the output path and an existing output untouched. A
//! process killed outright leaves its temporary behind; the next run into the same directory
//! removes those whose process is gone. Devices and pipes (`/dev/stdout`, a FIFO) are written
//! directly, since they cannot be renamed over.

mod copy;
pub mod npy;
mod npz;
mod zip;

pub use npz::{npz_file, NpzSink};

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::input::FileRange;
use crate::names;

/// The prefix of every temporary file or directory tensor2npy creates beside an output.
pub const TEMP_PREFIX: &str = ".tensor2npy-";
const BUFFER: usize = 1 << 20;

/// Writes a tensor's body; returns after the last chunk.
pub type Body<'a> = dyn FnMut(&mut dyn Write) -> Result<()> + 'a;

pub trait Sink {
    /// Adds one tensor: its `.npy` header, then the body, which must write exactly `data_len`
    /// bytes.
    fn add(&mut self, name: &str, header: &[u8], data_len: u64, body: &mut Body) -> Result<()>;

    /// Adds a tensor whose data is `range` unchanged. Sinks that write plain files copy it
    /// inside the kernel; the others stream it.
    fn add_copy(&mut self, name: &str, header: &[u8], range: &FileRange) -> Result<()> {
        self.add(name, header, range.len(), &mut |w: &mut dyn Write| {
            range.stream(1, BUFFER, &mut |c: &[u8]| w.write_all(c).map_err(io_error))
        })
    }

    /// Makes the output visible. Dropping a sink without finishing discards everything.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Writes a header and an unconverted range into a fresh file: inside the kernel when the range
/// lands at the same offset in a page as it has in its input, else through a memory map.
fn write_copy(w: &mut BufWriter<File>, header: &[u8], range: &FileRange) -> Result<()> {
    w.write_all(header).map_err(io_error)?;
    if range.len() < copy::KERNEL_COPY_MIN || copy::aligned(range, header.len() as u64) {
        range.copy_into(w).map_err(io_error)?;
    } else {
        w.flush().map_err(io_error)?;
        copy::mapped_copy(range, w.get_mut())?;
    }
    Ok(())
}

/// Counts what the body writes, so a short or long body is caught before it is committed.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    written: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_member(w: &mut dyn Write, header: &[u8], data_len: u64, body: &mut Body) -> Result<()> {
    w.write_all(header).map_err(io_error)?;
    let mut counted = Counted {
        inner: w,
        written: 0,
    };
    body(&mut counted)?;
    if counted.written != data_len {
        bail!(
            "internal: wrote {} data bytes where the header promises {data_len}",
            counted.written
        );
    }
    Ok(())
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
    fn add(&mut self, name: &str, header: &[u8], data_len: u64, body: &mut Body) -> Result<()> {
        if self.written {
            bail!("a .npy file holds one tensor; '{name}' would be the second");
        }
        self.written = true;
        let w = self.out.as_mut().expect("sink used after finish");
        write_member(w, header, data_len, body)
    }

    fn add_copy(&mut self, name: &str, header: &[u8], range: &FileRange) -> Result<()> {
        if self.written {
            bail!("a .npy file holds one tensor; '{name}' would be the second");
        }
        self.written = true;
        write_copy(
            self.out.as_mut().expect("sink used after finish"),
            header,
            range,
        )
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
    fn add(&mut self, _name: &str, header: &[u8], data_len: u64, body: &mut Body) -> Result<()> {
        write_member(self.out(), header, data_len, body)
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
    fn add(&mut self, name: &str, header: &[u8], data_len: u64, body: &mut Body) -> Result<()> {
        let mut w = self.create_file(name)?;
        write_member(&mut w, header, data_len, body)?;
        w.into_inner().map_err(|e| io_error(e.into_error()))?;
        Ok(())
    }

    fn add_copy(&mut self, name: &str, header: &[u8], range: &FileRange) -> Result<()> {
        let mut w = self.create_file(name)?;
        write_copy(&mut w, header, range)?;
        w.into_inner().map_err(|e| io_error(e.into_error()))?;
        Ok(())
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
