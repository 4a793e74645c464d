//! The one buffered reader over a `FileRange`: a window of one block, refilled by a single
//! positioned read whenever a read falls outside it, so that walking many small structures
//! (protobuf fields, TFRecord headers, GGUF and msgpack headers, the strided gathers of
//! PyTorch views and Fortran-order `.npy`) costs one `pread` per block instead of one per
//! structure. In-memory ranges are served in place, without a buffer of the window's own.
//!
//! Owns no format knowledge: `protobuf.rs` builds its sequential cursor on it, `tfrecord/` its
//! record reader, and `source/gguf`, `source/flax`, `source/torch` and `source/numpy` their
//! header walks and gathers. Every read is checked against the range's end first.

use anyhow::{bail, Result};

use crate::input::FileRange;

/// A read window over a range (see the module docs).
pub struct Window {
    range: FileRange,
    block: u64,
    /// The window holds range bytes `start .. start + buf.len()`.
    start: u64,
    buf: Vec<u8>,
}

impl Window {
    /// A window of `block` bytes over `range`; nothing is read yet.
    pub fn new(range: FileRange, block: usize) -> Window {
        Window {
            range,
            block: block.max(1) as u64,
            start: 0,
            buf: Vec::new(),
        }
    }

    pub fn range(&self) -> &FileRange {
        &self.range
    }

    pub fn len(&self) -> u64 {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The `len` bytes at `pos`: in place for an in-memory range, else from the window, which
    /// is refilled from `pos` (with at least `len` bytes) when they are not all in it.
    pub fn get(&mut self, pos: u64, len: usize) -> Result<&[u8]> {
        let end = pos.checked_add(len as u64);
        if end.is_none_or(|e| e > self.range.len()) {
            bail!(
                "unexpected end of data: wanted {len} bytes at offset {pos}, only {} bytes present",
                self.range.len()
            );
        }
        if self.range.memory().is_some() {
            let mem = self.range.memory().unwrap_or_default();
            return Ok(&mem[pos as usize..pos as usize + len]);
        }
        if pos < self.start || pos + len as u64 > self.start + self.buf.len() as u64 {
            let n = self.block.max(len as u64).min(self.range.len() - pos);
            self.buf.resize(n as usize, 0);
            self.range.read_at(pos, &mut self.buf)?;
            self.start = pos;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }

    /// At least `want` bytes from `pos` (fewer only where the range ends first), and as many
    /// more as the window already holds: for decoding a varint of unknown length.
    pub fn ahead(&mut self, pos: u64, want: usize) -> Result<&[u8]> {
        let left = self.range.len().saturating_sub(pos);
        if self.range.memory().is_some() {
            let mem = self.range.memory().unwrap_or_default();
            return Ok(&mem[pos.min(self.range.len()) as usize..]);
        }
        let want = (want as u64).min(left) as usize;
        self.get(pos, want)?;
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..])
    }

    /// Fills `out` with the bytes at `pos`; a read larger than the block goes straight to the
    /// range, leaving the window as it is.
    pub fn read(&mut self, pos: u64, out: &mut [u8]) -> Result<()> {
        if out.len() as u64 > self.block {
            return self.range.read_at(pos, out);
        }
        out.copy_from_slice(self.get(pos, out.len())?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_range(bytes: &[u8]) -> FileRange {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        FileRange::whole(f).unwrap()
    }

    #[test]
    fn reads_come_from_the_window_and_stop_at_the_end() {
        let bytes: Vec<u8> = (0..=255).collect();
        for range in [file_range(&bytes), FileRange::from_vec(bytes.clone())] {
            let mut w = Window::new(range, 16);
            assert_eq!(w.get(3, 4).unwrap(), &bytes[3..7]);
            assert_eq!(w.get(10, 40).unwrap(), &bytes[10..50]);
            assert_eq!(w.ahead(250, 10).unwrap(), &bytes[250..]);
            assert_eq!(w.ahead(256, 1).unwrap(), b"");
            let mut out = [0u8; 20];
            w.read(100, &mut out).unwrap();
            assert_eq!(out, bytes[100..120]);
            assert!(w.get(250, 7).is_err());
            assert!(w.get(u64::MAX, 2).is_err());
        }
    }
}
