//! Sinks: where converted tensors go. Each takes a tensor as a `.npy` header plus a body written
//! in chunks, and commits only when every tensor has been written: files are built under a
//! temporary name (`.tensor2npy-<pid>-*.tmp`) in the destination directory and renamed into
//! place (`atomic.rs`: locks, modes, parents), so a failure leaves nothing at the output path
//! and an existing output untouched. A process killed outright leaves its temporary behind; the
//! next run into the same directory removes those no live run holds locked. A directory output
//! (`dir.rs`) replaces only the files it writes. Devices and pipes (`/dev/stdout`, a FIFO) are
//! written directly, since they cannot be renamed over.

pub mod atomic;
mod dir;
pub mod names;
pub mod npy;

pub use dir::DirSink;

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::input::FileRange;

pub use atomic::{clean_stale_temporaries, TEMP_PREFIX};
use atomic::{persist, temp_file_beside, Staged};
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
            range.stream(1, BUFFER, &mut |c: &[u8]| {
                crate::pipeline::check_interrupted()?;
                w.write_all(c).map_err(io_error)
            })
        })
    }

    /// Makes the output visible. Dropping a sink without finishing discards everything.
    fn finish(self: Box<Self>) -> Result<()>;
}

fn write_copy(w: &mut BufWriter<File>, header: &[u8], range: &FileRange) -> Result<()> {
    w.write_all(header).map_err(io_error)?;
    range.copy_into(w).map_err(io_error)?;
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

/// An I/O failure while writing an output, said plainly (a full disk reads better than "os
/// error 28"). The `io::Error` stays reachable in the chain, so that `main` can tell a closed
/// pipe (not an error for a Unix filter) from a real failure.
#[derive(Debug)]
pub struct WriteError(pub io::Error);

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.raw_os_error() {
            Some(28) => f.write_str("no space left on the device"),
            _ if self.0.kind() == io::ErrorKind::BrokenPipe => {
                f.write_str("the output pipe was closed")
            }
            _ => write!(f, "write failed: {}", self.0),
        }
    }
}

impl std::error::Error for WriteError {}

pub fn io_error(e: io::Error) -> anyhow::Error {
    // A write that failed because of an interrupt check inside a writer carries it along.
    if e.get_ref()
        .is_some_and(|i| i.is::<crate::pipeline::Interrupted>())
    {
        return anyhow!(crate::pipeline::Interrupted);
    }
    anyhow!(WriteError(e))
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

/// A zip failure; an I/O one keeps its typed error (a closed pipe, a full disk).
fn zip_error(e: zip::result::ZipError, what: &str) -> anyhow::Error {
    match e {
        zip::result::ZipError::Io(io) => io_error(io),
        e => anyhow!("{what}: {e}"),
    }
}

/// The writer under a `ZipWriter`. After the first failed write it discards everything (keeping
/// a consistent position), so that the `ZipWriter`'s own `Drop`, which retries finalizing an
/// unfinished archive, cannot fail again and print a second message of its own on stderr: the
/// first failure is reported once, by the sink.
pub struct Quiet<W> {
    inner: W,
    failed: bool,
    pos: u64,
    len: u64,
}

impl<W> Quiet<W> {
    fn new(inner: W) -> Self {
        Quiet {
            inner,
            failed: false,
            pos: 0,
            len: 0,
        }
    }

    fn moved(&mut self, n: usize) {
        self.pos += n as u64;
        self.len = self.len.max(self.pos);
    }
}

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            self.moved(buf.len());
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Ok(n) => {
                self.moved(n);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Ok(());
        }
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

impl<W: Seek> Seek for Quiet<W> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        if !self.failed {
            let r = self.inner.seek(to);
            if let Ok(p) = r {
                self.pos = p;
                if to == io::SeekFrom::End(0) {
                    self.len = p;
                }
                self.len = self.len.max(p);
            } else {
                self.failed = true;
            }
            return r;
        }
        let p = match to {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = p.unwrap_or(0);
        self.len = self.len.max(self.pos);
        Ok(self.pos)
    }
}

/// An `.npz` archive: stored (or deflated) members named `<name>.npy`, zip64 always, fixed
/// 1980-01-01 timestamps, members in the order added.
pub struct NpzSink<W: Write + Seek> {
    zip: Option<ZipWriter<W>>,
    options: SimpleFileOptions,
    members: std::collections::HashSet<String>,
    commit: Box<dyn FnOnce(W) -> Result<()>>,
}

fn npz_options(compress: bool) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(if compress {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        })
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644)
        .large_file(true)
}

impl<W: Write + Seek + 'static> NpzSink<W> {
    fn with_writer(w: W, compress: bool, commit: Box<dyn FnOnce(W) -> Result<()>>) -> Self {
        NpzSink {
            zip: Some(ZipWriter::new(w)),
            options: npz_options(compress),
            members: Default::default(),
            commit,
        }
    }
}

/// An `.npz` written to a file: built in a temporary file and renamed into place, or streamed
/// straight into a device or pipe.
pub fn npz_file(path: &Path, compress: bool) -> Result<Box<dyn Sink>> {
    if is_special(path) {
        return Ok(Box::new(NpzSink::stream(open_special(path)?, compress)));
    }
    Ok(Box::new(NpzSink::create(path, compress)?))
}

impl NpzSink<BufWriter<Quiet<File>>> {
    /// An archive built in a temporary file and renamed to `path` on success.
    fn create(path: &Path, compress: bool) -> Result<Self> {
        let tmp = temp_file_beside(path)?;
        let file = tmp.reopen()?;
        let target = path.to_path_buf();
        Ok(Self::with_writer(
            BufWriter::with_capacity(BUFFER, Quiet::new(file)),
            compress,
            Box::new(move |w: BufWriter<Quiet<File>>| {
                w.into_inner().map_err(|e| io_error(e.into_error()))?;
                persist(tmp, &target)
            }),
        ))
    }
}

impl<O: Write + 'static> NpzSink<zip::write::StreamWriter<BufWriter<Quiet<O>>>> {
    /// An archive streamed to a writer that cannot seek, such as standard output (members carry
    /// data descriptors, which `np.load` reads).
    pub fn stream(out: O, compress: bool) -> Self {
        let out = BufWriter::with_capacity(BUFFER, Quiet::new(out));
        NpzSink {
            zip: Some(ZipWriter::new_stream(out)),
            options: npz_options(compress),
            members: Default::default(),
            commit: Box::new(|w: zip::write::StreamWriter<BufWriter<Quiet<O>>>| {
                let mut inner = w.into_inner();
                inner.flush().map_err(io_error)?;
                inner.into_inner().map_err(|e| io_error(e.into_error()))?;
                Ok(())
            }),
        }
    }
}

impl<W: Write + Seek> Sink for NpzSink<W> {
    fn add(&mut self, name: &str, header: &[u8], data_len: u64, body: &mut Body) -> Result<()> {
        let member = names::npz_member(name)?;
        if !self.members.insert(member.clone()) {
            bail!("two tensors are both named '{name}' in the same .npz");
        }
        let zip = self.zip.as_mut().expect("sink used after finish");
        zip.start_file(member, self.options)
            .map_err(|e| zip_error(e, &format!("cannot start the .npz member for '{name}'")))?;
        write_member(zip, header, data_len, body)
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let zip = self.zip.take().expect("finished twice");
        let w = zip
            .finish()
            .map_err(|e| zip_error(e, "cannot finish the .npz archive"))?;
        (self.commit)(w)
    }
}

/// A single `.npy` file (exactly one tensor).
pub struct NpyFileSink {
    path: PathBuf,
    /// The temporary file to rename into place; `None` when writing a device or pipe directly.
    tmp: Option<Staged>,
    out: Option<BufWriter<File>>,
    written: bool,
}

impl NpyFileSink {
    pub fn create(path: &Path) -> Result<Self> {
        let (tmp, file) = if is_special(path) {
            (None, open_special(path)?)
        } else {
            let tmp = temp_file_beside(path)?;
            let file = tmp.reopen()?;
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
