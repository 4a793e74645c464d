//! A sequential TFRecord record reader for `example`: `u64 length | masked crc32c(length) |
//! data | masked crc32c(data)`, read front to back through a 1 MiB buffer (one `pread` per
//! buffer, not several per record), keeping no per-record state, so that a dataset of millions
//! of records is walked in constant memory. Every length is checked against the bytes present
//! before anything is read; CRCs are checked when asked (the first pass over a file).

use anyhow::{bail, Result};

use crate::input::FileRange;
use crate::source::proto::mask_crc;

const BUFFER: u64 = 1 << 20;

pub struct Records {
    data: FileRange,
    check_crc: bool,
    /// The offset of the next record.
    pos: u64,
    /// File bytes `buf_start .. buf_start + buf.len()`.
    buf: Vec<u8>,
    buf_start: u64,
    /// The record last returned, when it did not fit the buffer.
    big: Vec<u8>,
    index: u64,
}

impl Records {
    pub fn new(data: FileRange, check_crc: bool) -> Records {
        Records {
            data,
            check_crc,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
            big: Vec::new(),
            index: 0,
        }
    }

    /// Makes `len` bytes at `offset` available; returns where they start in `buf`.
    fn window(&mut self, offset: u64, len: u64) -> Result<usize> {
        let end = offset + len;
        if offset < self.buf_start || end > self.buf_start + self.buf.len() as u64 {
            let n = BUFFER.max(len).min(self.data.len() - offset);
            self.buf.resize(n as usize, 0);
            self.data.read_at(offset, &mut self.buf)?;
            self.buf_start = offset;
        }
        Ok((offset - self.buf_start) as usize)
    }

    /// The next record: its header's byte offset and its payload; `None` at the end.
    pub fn next(&mut self) -> Result<Option<(u64, &[u8])>> {
        let total = self.data.len();
        let pos = self.pos;
        if pos >= total {
            return Ok(None);
        }
        let index = self.index;
        let at = || format!("record {index} at byte offset {pos}");
        if total - pos < 12 {
            bail!("{}: truncated header ({} bytes left)", at(), total - pos);
        }
        let h = self.window(pos, 12)?;
        let header: [u8; 12] = self.buf[h..h + 12].try_into().unwrap();
        let len = u64::from_le_bytes(header[..8].try_into().unwrap());
        if self.check_crc
            && mask_crc(crc32c::crc32c(&header[..8]))
                != u32::from_le_bytes(header[8..].try_into().unwrap())
        {
            bail!("{}: length checksum mismatch (corrupt file)", at());
        }
        let body = pos + 12;
        if len > total - body || total - body - len < 4 {
            bail!(
                "{}: truncated (the record claims {len} bytes, {} remain)",
                at(),
                total - body
            );
        }
        self.pos = body + len + 4;
        self.index += 1;
        let in_buffer = len + 4 <= BUFFER;
        let (start, bytes): (usize, &[u8]) = if in_buffer {
            let s = self.window(body, len + 4)?;
            (s, &self.buf)
        } else {
            self.big.resize(len as usize + 4, 0);
            self.data.read_at(body, &mut self.big)?;
            (0, &self.big)
        };
        let payload = &bytes[start..start + len as usize];
        if self.check_crc {
            let stored = u32::from_le_bytes(
                bytes[start + len as usize..start + len as usize + 4]
                    .try_into()
                    .unwrap(),
            );
            if mask_crc(crc32c::crc32c(payload)) != stored {
                bail!("{}: data checksum mismatch (corrupt file)", at());
            }
            crate::checksum::verified(2);
        }
        Ok(Some((pos, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u64).to_le_bytes().to_vec();
        v.extend(mask_crc(crc32c::crc32c(&v)).to_le_bytes());
        v.extend_from_slice(payload);
        v.extend(mask_crc(crc32c::crc32c(payload)).to_le_bytes());
        v
    }

    #[test]
    fn reads_records_in_order_and_checks_their_crcs() {
        let mut file = frame(b"abc");
        file.extend(frame(b""));
        file.extend(frame(&vec![7u8; (BUFFER + 5) as usize]));
        let mut r = Records::new(FileRange::from_vec(file.clone()), true);
        assert_eq!(r.next().unwrap().unwrap(), (0, &b"abc"[..]));
        assert_eq!(r.next().unwrap().unwrap().1, b"");
        assert_eq!(r.next().unwrap().unwrap().1.len(), (BUFFER + 5) as usize);
        assert!(r.next().unwrap().is_none());

        let mut bad = file.clone();
        bad[13] ^= 1;
        let mut r = Records::new(FileRange::from_vec(bad), true);
        let e = r.next().unwrap_err().to_string();
        assert!(e.contains("record 0") && e.contains("data checksum"), "{e}");

        let mut r = Records::new(FileRange::from_vec(file[..20].to_vec()), true);
        r.next().unwrap();
        let e = r.next().unwrap_err().to_string();
        assert!(e.contains("record 1") && e.contains("truncated"), "{e}");
    }
}
