//! Moving an unconverted tensor's bytes from an input file into an output file, as close to
//! `cp` as the kernel allows, and the CRC-32 a zip member needs of them.
//!
//! Measured on ext4 (see BENCHMARKS.md): `copy_file_range` (through std's `io::copy` between two
//! files) runs at `cp`'s speed when the source and destination offsets are equal modulo the page
//! size, and 15–25 % slower when they are not, because the kernel's splice then moves every page
//! as two pieces. The `.npz` writer therefore pads a copied member's local header so the offsets
//! agree ([`super::zip`]); a `.npy` file cannot move its data (its header is what `np.save`
//! writes), so an unaligned copy there goes through a read-only memory map in windows and one
//! `write` per window, a single copy that does not care about alignment. The CRC-32 of a copied
//! member is computed on a second thread, reading the input through a memory map (no copy),
//! while the kernel copies, so it costs little wall time on a machine with a spare core.

use std::fs::File;
use std::io::{self, Write};

use anyhow::{Context, Result};
use crc32fast::Hasher;
use memmap2::MmapOptions;

use crate::input::FileRange;

/// The page size that `copy_file_range` alignment is measured against.
pub const PAGE: u64 = 4096;
/// Ranges at least this long are worth a kernel copy (and, in an `.npz`, alignment padding).
pub const KERNEL_COPY_MIN: u64 = 1 << 20;
/// Bytes mapped at a time: bounds resident memory (mapped file pages count towards it).
const WINDOW: u64 = 8 << 20;
/// Bytes read at a time for checksums of in-memory ranges.
const READ_CHUNK: usize = 1 << 20;

/// Whether `range` (in a file) would land at `dest` with its offset in the page matching.
pub fn aligned(range: &FileRange, dest: u64) -> bool {
    range.file_offset() % PAGE == dest % PAGE
}

/// The CRC-32 of `range`: read through a memory map (no copy) when it is in a file.
pub fn crc_of(range: &FileRange) -> Result<Hasher> {
    let mut h = Hasher::new();
    if range.file().is_some() {
        windows(range, &mut |w: &[u8]| {
            h.update(w);
            Ok(())
        })?;
        return Ok(h);
    }
    range.stream(1, READ_CHUNK, &mut |c: &[u8]| {
        h.update(c);
        Ok(())
    })?;
    Ok(h)
}

/// Hands `range` (in a file) to `f` a mapped window at a time.
fn windows(range: &FileRange, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let file = range.file().context("not a file range")?;
    let mut pos = 0u64;
    while pos < range.len() {
        let n = WINDOW.min(range.len() - pos);
        // SAFETY: the map is read-only and dropped before this function returns; a concurrent
        // writer truncating the input is the hazard every mmap-based reader shares (the
        // safetensors reader maps the same file).
        let map = unsafe {
            MmapOptions::new()
                .offset(range.file_offset() + pos)
                .len(n as usize)
                .map(file)
        }
        .context("cannot map the input")?;
        let _ = map.advise(memmap2::Advice::Sequential);
        f(&map)?;
        pos += n;
    }
    Ok(())
}

/// Appends `range` to `out` at `out`'s file offset, inside the kernel (`copy_file_range`).
pub fn kernel_copy(range: &FileRange, out: &mut File) -> io::Result<()> {
    range.copy_into(out).map(drop)
}

/// Runs `copy` while a second thread computes the CRC-32 of `range`, and returns the CRC.
fn with_crc(range: &FileRange, copy: impl FnOnce() -> Result<()>) -> Result<Hasher> {
    std::thread::scope(|s| {
        let crc = s.spawn(|| crc_of(range));
        let copied = copy();
        let crc = crc
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the checksum thread failed")));
        copied?;
        crc
    })
}

/// [`kernel_copy`], returning the CRC-32 of the bytes (computed alongside).
pub fn kernel_copy_with_crc(range: &FileRange, out: &mut File) -> Result<Hasher> {
    with_crc(range, || kernel_copy(range, out).map_err(super::io_error))
}

/// Appends `range` to `out` through a read-only memory map of the input, a window at a time:
/// one copy, whatever the alignment.
pub fn mapped_copy(range: &FileRange, out: &mut File) -> Result<()> {
    if range.file().is_none() {
        return kernel_copy(range, out).map_err(super::io_error);
    }
    windows(range, &mut |w: &[u8]| {
        out.write_all(w).map_err(super::io_error)
    })
}

/// [`mapped_copy`], returning the CRC-32 of the bytes, taken of each piece just before it is
/// written, while it is in the cache.
pub fn mapped_copy_with_crc(range: &FileRange, out: &mut File) -> Result<Hasher> {
    let mut h = Hasher::new();
    windows(range, &mut |w: &[u8]| {
        for piece in w.chunks(256 << 10) {
            h.update(piece);
            out.write_all(piece).map_err(super::io_error)?;
        }
        Ok(())
    })?;
    Ok(h)
}
