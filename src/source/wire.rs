//! Protobuf wire-format primitives for the streaming readers: varints from byte slices, and a
//! buffered sequential cursor over a `FileRange` so that a multi-GiB message is walked field by
//! field without being loaded.

use anyhow::{bail, Result};

use crate::input::FileRange;

/// Decodes a varint at the start of `b`; returns the value and its length.
pub fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return None; // more than 64 bits
            }
            return Some((v, i + 1));
        }
    }
    None
}

/// The number of values in a packed repeated varint field (one per byte without the
/// continuation bit), read in 64 KiB pieces; a field whose last value is cut off is an error.
pub fn count_packed_varints(r: &FileRange) -> Result<u64> {
    let mut count = 0u64;
    r.stream(1, 1 << 16, &mut |c: &[u8]| {
        count += c.iter().filter(|&&b| b < 0x80).count() as u64;
        Ok(())
    })?;
    let mut last = [0u8];
    if !r.is_empty() {
        r.read_at(r.len() - 1, &mut last)?;
        if last[0] >= 0x80 {
            bail!("a packed varint field ends in the middle of a value");
        }
    }
    Ok(count)
}

/// A buffered forward-only reader over a file range.
pub struct Cursor {
    range: FileRange,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

const CURSOR_BUF: usize = 64 * 1024;

impl Cursor {
    pub fn new(range: FileRange) -> Cursor {
        Cursor {
            range,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.range.len()
    }

    pub fn remaining(&self) -> u64 {
        self.range.len() - self.pos
    }

    /// Makes at least `want` bytes (or all that remain) available at `pos`.
    fn fill(&mut self, want: usize) -> Result<&[u8]> {
        if let Some(mem) = self.range.memory() {
            // In-memory ranges are read in place, without a buffer of the cursor's own.
            return Ok(&mem[self.pos as usize..]);
        }
        let offset = (self.pos - self.buf_start) as usize;
        if self.pos < self.buf_start || offset + want > self.buf.len() {
            let n = (CURSOR_BUF.max(want) as u64).min(self.remaining()) as usize;
            self.buf.resize(n, 0);
            self.range.read_at(self.pos, &mut self.buf)?;
            self.buf_start = self.pos;
        }
        let offset = (self.pos - self.buf_start) as usize;
        Ok(&self.buf[offset..])
    }

    pub fn varint(&mut self) -> Result<u64> {
        let pos = self.pos;
        let avail = self.fill(10)?;
        match varint(avail) {
            Some((v, n)) => {
                self.pos += n as u64;
                Ok(v)
            }
            None if avail.len() < 10 && avail.last().is_none_or(|b| b & 0x80 != 0) => {
                bail!("truncated varint at offset {pos}")
            }
            None => bail!("malformed varint at offset {pos}"),
        }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&[u8]> {
        if (n as u64) > self.remaining() {
            bail!(
                "unexpected end of data at offset {}: {n} bytes wanted, {} left",
                self.pos,
                self.remaining()
            );
        }
        let pos = self.pos as usize;
        self.pos += n as u64;
        if self.range.memory().is_some() {
            return Ok(&self.range.memory().unwrap()[pos..pos + n]);
        }
        self.pos -= n as u64;
        self.fill(n)?;
        let offset = (self.pos - self.buf_start) as usize;
        self.pos += n as u64;
        Ok(&self.buf[offset..offset + n])
    }

    /// A sub-range of `n` bytes starting here; advances past it.
    pub fn take_range(&mut self, n: u64) -> Result<FileRange> {
        let r = self.range.slice(self.pos, n)?;
        self.pos += n;
        Ok(r)
    }
}
