//! Sinks: where converted tensors go. The write path reads top to bottom: `sink.member(spec)`
//! writes a tensor's `.npy` header and hands out a [`Member`], the caller `write`s converted
//! chunks into it (or `copy`s an unchanged input range, which `.npy` files get inside the
//! kernel), then `commit`s it; `finish` makes the whole output visible. `npz` and `zip`
//! hold the archive, `npy` the header. A stored `.npz` in a file can also `reserve` a member's
//! room and hand out a writer another thread fills in place (`slot.rs`, for `--jobs`).
//!
//! A sink commits only when every tensor has been written: files are built under a
//! temporary name (`.tensor2npy-<pid>-*.tmp`) in the destination directory and renamed into
//! place (`atomic.rs`: locks, modes, parents), so a failure leaves nothing at the output path
//! and an existing output untouched. A process killed outright leaves its temporary behind; the
//! next run into the same directory removes those no live run holds locked. A directory output
//! (`dir.rs`) replaces only the files it writes. Devices and pipes (`/dev/stdout`, a FIFO) are
//! written directly, since they cannot be renamed over.

pub mod atomic;
pub mod digest;
mod dir;
pub mod names;
pub mod npy;
mod npz;
pub mod remote;
mod slot;
mod zip;

pub use dir::DirSink;
pub use npz::{npz_file, NpzSink};
pub use slot::kernel_copies;

use std::borrow::BorrowMut;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::input::FileRange;
use digest::{Hashed, Hashing};

pub use atomic::{clean_stale_temporaries, TEMP_PREFIX};
use atomic::{persist, temp_file_beside, Staged};
const BUFFER: usize = 1 << 20;

/// One tensor as a sink receives it: the `.npy` header, then `data_len` bytes of data.
pub struct MemberSpec<'a> {
    /// The tensor's output name (before `.npy` or an escaped path is made of it).
    pub name: &'a str,
    pub header: &'a [u8],
    pub data_len: u64,
    /// The input file offset of the data when it will be copied unchanged (`Member::copy` of
    /// one range): an `.npz` aligns such a member for the kernel copy.
    pub copy_from: Option<u64>,
}

/// Where the data of one member goes, as a sink hands it out: bytes, or input ranges copied
/// unchanged, then `commit`. A member dropped uncommitted spoils the sink's output, which is
/// then discarded (it is dropped without `finish` on every error path).
pub trait MemberWriter {
    fn write(&mut self, data: &[u8]) -> Result<()>;

    /// Appends `range` unchanged. Sinks that write plain files copy it inside the kernel; the
    /// others stream it.
    fn copy(&mut self, range: &FileRange) -> Result<()> {
        stream_copy(self, range)
    }

    fn commit(self: Box<Self>) -> Result<()>;
}

/// Appends `range` to `w` through its `write`, a buffer at a time, checking for interrupts: what
/// a writer that cannot copy inside the kernel does.
pub(crate) fn stream_copy<W: MemberWriter + ?Sized>(w: &mut W, range: &FileRange) -> Result<()> {
    range.stream(1, BUFFER, &mut |c: &[u8]| {
        crate::error::check_interrupted()?;
        w.write(c)
    })
}

pub trait Sink {
    /// Starts a member: writes the header, and hands out the writer for the data.
    fn begin_member(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + '_>>;

    /// Makes the output visible. Dropping a sink without finishing discards everything.
    fn finish(self: Box<Self>) -> Result<()>;

    /// `--manifest`: hashes the output from here on as it is written, and hands out the cell
    /// where `finish` leaves its size and SHA-256 (left empty when it could not be hashed in
    /// order after all). `None` where this sink does not hash (standard output, a device or a
    /// pipe). Called before the first member.
    fn hash(&mut self) -> Option<Hashed> {
        None
    }

    /// Whether [`Sink::reserve`] can set room aside here (a stored `.npz` in a file).
    fn can_reserve(&self) -> bool {
        false
    }

    /// Sets aside the room of the next member, header written, and hands out a writer another
    /// thread can fill while this sink goes on with the members after it (`--jobs`); the output
    /// comes out byte for byte as if the member had been written in its turn. Only where
    /// [`Sink::can_reserve`] says so.
    fn reserve(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + Send>> {
        bail!(
            "internal: '{}': this output cannot be filled out of order",
            spec.name
        )
    }
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

impl<'a> Member<'a> {
    /// A member over any writer, for tests.
    #[cfg(test)]
    pub fn reserved_local(inner: Box<dyn MemberWriter + 'a>, data_len: u64) -> Member<'a> {
        Member {
            inner,
            written: 0,
            data_len,
        }
    }

    /// The member of a writer handed out by [`Sink::reserve`].
    pub fn reserved(inner: Box<dyn MemberWriter + Send + 'a>, data_len: u64) -> Member<'a> {
        Member {
            inner,
            written: 0,
            data_len,
        }
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.grow(data.len() as u64)?;
        self.inner.write(data)
    }

    pub fn copy(&mut self, range: &FileRange) -> Result<()> {
        self.grow(range.len())?;
        self.inner.copy(range)
    }

    /// Counts `n` more data bytes, refusing them before they are written when they would pass
    /// the length the header promises (what `--max-output` charged).
    fn grow(&mut self, n: u64) -> Result<()> {
        match self.written.checked_add(n) {
            Some(w) if w <= self.data_len => {
                self.written = w;
                Ok(())
            }
            _ => bail!(
                "internal: {n} more data bytes would pass the {} the header promises",
                self.data_len
            ),
        }
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
/// (`BufWriter<File>`) or borrowed from the sink (`&mut BufWriter<File>`), its bytes hashed on
/// their way when the sink hashes (`--manifest`).
struct FileMember<'h, B> {
    out: B,
    hash: Option<&'h mut Hashing>,
}

impl<'h, B: BorrowMut<BufWriter<File>>> FileMember<'h, B> {
    /// Writes the header into a file and hands out the member for the data.
    fn start(out: B, header: &[u8], hash: Option<&'h mut Hashing>) -> Result<FileMember<'h, B>> {
        let mut m = FileMember { out, hash };
        m.write(header)?;
        Ok(m)
    }
}

impl<B: BorrowMut<BufWriter<File>>> MemberWriter for FileMember<'_, B> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(h) = self.hash.as_deref_mut() {
            h.update(data);
        }
        self.out.borrow_mut().write_all(data).map_err(io_error)
    }

    /// One `copy_file_range` inside the kernel (see `FileRange::copy_into`); streamed through
    /// the hash instead when the file is hashed, so that its bytes are read once, from the input.
    fn copy(&mut self, range: &FileRange) -> Result<()> {
        if self.hash.is_some() {
            return stream_copy(self, range);
        }
        range.copy_into(self.out.borrow_mut()).map_err(io_error)?;
        Ok(())
    }

    /// Flushes the member's bytes (the file closes when a held writer is dropped).
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.out.borrow_mut().flush().map_err(io_error)
    }
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
        .is_some_and(|i| i.is::<crate::error::Interrupted>())
    {
        return anyhow!(crate::error::Interrupted);
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

/// Whether `p` is a terminal (`-o /dev/tty`). Only a character device is opened to find out,
/// and for writing, without blocking: opening a FIFO for reading would wait for a writer forever.
pub fn is_terminal(p: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device())
        && std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(p)
            .is_ok_and(|f| std::io::IsTerminal::is_terminal(&f))
}

/// Opens a device, FIFO or socket for writing. A FIFO is opened without blocking and retried
/// until a reader opens it, so that the wait ends with Ctrl-C (a blocking `open` of a FIFO
/// without a reader never returns, and is restarted after a signal); it is then written as a
/// stream, like standard output. Nothing here ever opens the output for reading.
fn open_special(path: &Path) -> Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let context = || format!("cannot open {} for writing", path.display());
    let fifo = fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    if !fifo {
        return fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(context);
    }
    let file = loop {
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => break f,
            // ENXIO: no process has the FIFO open for reading yet.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                crate::error::check_interrupted()?;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e).with_context(context),
        }
    };
    // Writes block again (the reader sets the pace), as they do to a pipe on standard output.
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(context);
    }
    Ok(file)
}

/// A single `.npy` file (exactly one tensor).
pub struct NpyFileSink {
    path: PathBuf,
    /// The temporary file to rename into place; `None` when writing a device or pipe directly.
    tmp: Option<Staged>,
    out: Option<BufWriter<File>>,
    written: bool,
    /// `--manifest`: the bytes hashed so far, and where the digest goes.
    hash: Option<(Hashing, Hashed)>,
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
            hash: None,
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
        let hash = self.hash.as_mut().map(|(h, _)| h);
        Ok(Box::new(FileMember::start(w, spec.header, hash)?))
    }

    fn hash(&mut self) -> Option<Hashed> {
        self.tmp.as_ref()?;
        let cell = Hashed::default();
        self.hash = Some((Hashing::default(), cell.clone()));
        Some(cell)
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let w = self.out.take().expect("finished twice");
        w.into_inner().map_err(|e| io_error(e.into_error()))?;
        if let Some((h, cell)) = self.hash.take() {
            cell.set(h.finish()).ok();
        }
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
