//! Member data written in place: the kernel copy of an unconverted input range with its CRC-32,
//! and [`Reserved`], a member of a stored `.npz` whose room [`super::zip::ZipWriter::reserve`]
//! set aside so that a `--jobs` worker fills it while the writer goes on with the members after
//! it; and [`write_at`], how the zip writer's buffer reaches the file. Talks to: [`super::zip`]
//! (which reserves and completes), the pipeline's workers (which write through the
//! [`MemberWriter`] it implements).
//!
//! Why a hand-made `copy_file_range` loop: std's `io::copy` between files copies inside the
//! kernel too, but only at the files' own offsets, and members filled by several threads need
//! explicit ones. Measured on ext4 (BENCHMARKS.md): the kernel copy runs at `cp`'s speed when the
//! source and destination offsets agree within a page (the zip writer pads a copied member's
//! local header so they do), where a `write` from a user buffer sometimes ran at a fifth of it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use crc32fast::Hasher;

use super::{io_error, MemberWriter};
use crate::input::FileRange;

/// The page size that `copy_file_range` alignment is measured against.
pub const PAGE: u64 = 4096;
/// Ranges at least this long are copied inside the kernel (and aligned in an `.npz`).
pub const KERNEL_COPY_MIN: u64 = 1 << 20;
/// Bytes copied between interrupt checks, and checksummed right after while in the cache.
const PIECE: u64 = 8 << 20;
/// The checksum pass reads this much at a time (stays in the CPU cache).
const CRC_READ: usize = 256 << 10;
/// The checksum helper's stack: it only reads into a heap buffer and hashes.
const HELPER_STACK: usize = 256 << 10;
/// Bytes a reserved member buffers before a positioned write.
const BUFFER: usize = 1 << 20;

/// Taken around every write into an output file that several threads fill.
pub type WriteLock = Arc<Mutex<()>>;

/// Whether `range` is copied inside the kernel: a large range of a local file.
pub fn kernel_copies(range: &FileRange) -> bool {
    range.file().is_some() && range.len() >= KERNEL_COPY_MIN
}

/// Copies `range` (of a local file) to `out` at offset `at` inside the kernel, a piece at a
/// time, and returns the CRC-32 of the bytes, read from the input (or, where the reader has
/// already computed and checked it, [`FileRange::known_crc`], taken from there).
///
/// Each piece is copied holding `lock`, the output's write lock: two threads writing one file
/// at once only queue on its inode lock, spinning in the kernel (30 % of the CPU in a profile),
/// where taking turns lets one checksum its last piece while the other copies. A range of more
/// than one piece is checksummed on a helper thread while this one copies, so that the CRC of
/// one piece overlaps the kernel copy of another; where no thread can be started (an
/// address-space limit), the pieces are checksummed in turn after each copy.
pub fn copy_with_crc(range: &FileRange, out: &File, at: u64, lock: &WriteLock) -> Result<Hasher> {
    let Some(input) = range.file() else {
        bail!("internal: a kernel copy of a range that is not in a file");
    };
    if let Some(crc) = range.known_crc() {
        // a reader computed these bytes' CRC-32 and checked it against its input's (a zip
        // member's): the copy alone, with no second read of them
        let never = AtomicBool::new(false);
        copy_pieces(input, range, out, at, lock, &never, |_, _| Ok(()))?;
        return Ok(Hasher::new_with_initial_len(crc, range.len()));
    }
    // allocated here, not on the helper: a thread's first malloc takes it a glibc arena
    let mut buf = vec![0u8; CRC_READ.min(range.len() as usize)];
    if range.len() > PIECE {
        let stop = AtomicBool::new(false);
        let overlapped = std::thread::scope(|s| {
            let helper = std::thread::Builder::new()
                .name("crc".into())
                .stack_size(HELPER_STACK)
                .spawn_scoped(s, || {
                    let crc = crc_of(range, 0, range.len(), &mut buf, &stop);
                    if crc.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    crc
                });
            let Ok(helper) = helper else {
                return None;
            };
            let copied = copy_pieces(input, range, out, at, lock, &stop, |_, _| Ok(()));
            if copied.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            let crc = helper
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            Some(copied.and(crc))
        });
        if let Some(done) = overlapped {
            return done;
        }
    }
    // one piece, or no helper: each piece checksummed right after its copy, while in the cache
    let mut crc = Hasher::new();
    let never = AtomicBool::new(false);
    copy_pieces(input, range, out, at, lock, &never, |done, piece| {
        crc.combine(&crc_of(range, done, piece, &mut buf, &never)?);
        Ok(())
    })?;
    Ok(crc)
}

/// Copies `range` of `input` to `out` at `at` a piece at a time, each holding `lock`, calling
/// `after(offset, length)` after each piece; stops early, without error, when `stop` is set
/// (the checksum beside it failed, and its error is the one reported).
fn copy_pieces(
    input: &File,
    range: &FileRange,
    out: &File,
    at: u64,
    lock: &WriteLock,
    stop: &AtomicBool,
    mut after: impl FnMut(u64, u64) -> Result<()>,
) -> Result<()> {
    let mut done = 0u64;
    while done < range.len() && !stop.load(Ordering::Relaxed) {
        crate::error::check_interrupted()?;
        let piece = PIECE.min(range.len() - done);
        {
            let _turn = lock.lock().unwrap_or_else(|e| e.into_inner());
            copy_range(input, range.file_offset() + done, out, at + done, piece)
                .map_err(io_error)?;
        }
        after(done, piece)?;
        done += piece;
    }
    Ok(())
}

/// The CRC-32 of `len` bytes of `range` from `from`, read through `buf`; gives up (with an
/// error never reported) when `stop` is set.
fn crc_of(
    range: &FileRange,
    from: u64,
    len: u64,
    buf: &mut [u8],
    stop: &AtomicBool,
) -> Result<Hasher> {
    let mut crc = Hasher::new();
    let mut p = 0;
    while p < len {
        if stop.load(Ordering::Relaxed) {
            bail!("internal: the checksum was stopped");
        }
        let n = (buf.len() as u64).min(len - p) as usize;
        range.read_at(from + p, &mut buf[..n])?;
        crc.update(&buf[..n]);
        p += n as u64;
    }
    Ok(crc)
}

/// `copy_file_range(2)` of `len` bytes at explicit offsets (neither file's offset moves). Where
/// the kernel cannot (another filesystem on old kernels, overlayfs and procfs returning 0,
/// seccomp's EPERM), the bytes go through a buffer, as std's `io::copy` does; a short input is
/// then found by the buffered read.
fn copy_range(input: &File, mut from: u64, out: &File, mut to: u64, len: u64) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let mut off_in = from as libc::loff_t;
        let mut off_out = to as libc::loff_t;
        // SAFETY: both descriptors are open for the duration of the call, and the offset
        // pointers point at live locals.
        let n = unsafe {
            libc::copy_file_range(
                input.as_raw_fd(),
                &mut off_in,
                out.as_raw_fd(),
                &mut off_out,
                left as usize,
                0,
            )
        };
        if n > 0 {
            from += n as u64;
            to += n as u64;
            left -= n as u64;
            continue;
        }
        let e = io::Error::last_os_error();
        if n < 0 && e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        let fallback = n == 0
            || matches!(
                e.raw_os_error(),
                Some(
                    libc::EXDEV
                        | libc::ENOSYS
                        | libc::EOPNOTSUPP
                        | libc::EINVAL
                        | libc::EPERM
                        | libc::EBADF
                        | libc::ETXTBSY
                )
            );
        if fallback {
            return copy_through_buffer(input, from, out, to, left);
        }
        return Err(e);
    }
    Ok(())
}

fn copy_through_buffer(input: &File, from: u64, out: &File, to: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER.min(len as usize)];
    let mut done = 0;
    while done < len {
        let n = (buf.len() as u64).min(len - done) as usize;
        input.read_exact_at(&mut buf[..n], from + done)?;
        out.write_all_at(&buf[..n], to + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Where a reserved member goes in an archive file, as [`super::zip::ZipWriter::reserve`] lays
/// it out.
pub(super) struct Room {
    pub out: Arc<File>,
    pub lock: WriteLock,
    /// Archive offsets of the local header and of the data, and the data's length.
    pub at: u64,
    pub header: Vec<u8>,
    pub data_at: u64,
    pub len: u64,
    /// Where the CRC goes in the central directory, and where to report it.
    pub crc_at: u64,
    pub crcs: Arc<Mutex<Vec<(u64, u32)>>>,
}

/// A stored member whose room is reserved in an archive file: its data goes in with positioned
/// writes, and `commit` writes the local header with the CRC-32 and reports the CRC to the
/// archive's writer.
pub struct Reserved {
    room: Room,
    crc: Hasher,
    buf: Vec<u8>,
    /// Archive offset of `buf[0]`.
    pos: u64,
}

impl Reserved {
    pub(super) fn new(room: Room) -> Reserved {
        Reserved {
            crc: Hasher::new(),
            buf: Vec::new(),
            pos: room.data_at,
            room,
        }
    }

    /// Writes `data` at archive offset `at`, taking the output's write lock.
    fn put_at(&self, data: &[u8], at: u64) -> io::Result<()> {
        let _turn = self.room.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.room.out.write_all_at(data, at)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.put_at(&self.buf, self.pos)?;
            self.pos += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn check_room(&self, more: u64) -> Result<()> {
        let end = self.pos + self.buf.len() as u64 + more;
        if end > self.room.data_at + self.room.len {
            bail!("internal: more data than the reserved member holds");
        }
        Ok(())
    }
}

impl MemberWriter for Reserved {
    fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.check_room(data.len() as u64)?;
        self.crc.update(data);
        if self.buf.is_empty() && data.len() >= BUFFER {
            // a whole converted chunk: written from where it is, not copied into the buffer
            self.put_at(data, self.pos).map_err(io_error)?;
            self.pos += data.len() as u64;
            return Ok(());
        }
        while !data.is_empty() {
            // grows as data comes (a header alone stays small), up to BUFFER
            let n = (BUFFER - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == BUFFER {
                self.flush().map_err(io_error)?;
            }
        }
        Ok(())
    }

    fn copy(&mut self, range: &FileRange) -> Result<()> {
        if !kernel_copies(range) {
            return super::stream_copy(self, range);
        }
        self.check_room(range.len())?;
        self.flush().map_err(io_error)?;
        let crc = copy_with_crc(range, &self.room.out, self.pos, &self.room.lock)?;
        self.crc.combine(&crc);
        self.pos += range.len();
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush().map_err(io_error)?;
        if self.pos != self.room.data_at + self.room.len {
            bail!("internal: a reserved member was left short");
        }
        let crc = self.crc.clone().finalize();
        // The CRC-32 field of a local header is at byte 14.
        self.room.header[14..18].copy_from_slice(&crc.to_le_bytes());
        self.put_at(&self.room.header, self.room.at)
            .map_err(io_error)?;
        self.room
            .crcs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.room.crc_at, crc));
        Ok(())
    }
}

/// The most bytes one `pwrite` of the buffer puts into the output ([`write_at`]).
const WRITE_PIECE: usize = 32 << 10;

/// Writes `data` at `at`, [`WRITE_PIECE`] bytes per `pwrite`: the kernel sizes page-cache
/// folios after a write's length and offset, and the 1 MiB folios of a 1 MiB write at a 1 MiB
/// offset come from high-order free memory that a VM's free page reporting has returned to its
/// host, each page then faulting in the host (71 % of a TorchScript conversion in
/// `copy_folio_from_iter_atomic`, about 3x the time of 32 KiB writes; benches/NOTES.md, round 8).
pub(super) fn write_at(out: &File, data: &[u8], at: u64) -> io::Result<()> {
    let mut done = 0;
    for piece in data.chunks(WRITE_PIECE) {
        out.write_all_at(piece, at + done)?;
        done += piece.len() as u64;
    }
    Ok(())
}
