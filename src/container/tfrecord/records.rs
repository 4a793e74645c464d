//! The TFRecord record reader: front to back through one 1 MiB `cursor::Window` (one `pread`
//! per window, not several per record), keeping no per-record state, so that a dataset of
//! millions of records is walked in constant memory. Every length is checked against the bytes
//! present before anything is read; data CRCs are checked when asked (the first pass over a
//! file). A record is handed out in memory ([`Records::next`]) or located as a range
//! ([`Records::next_range`], for records too big to hold); a record found before is read again
//! by its position ([`Records::payload`]).

use anyhow::{bail, Result};

use super::{data_crc_ok, header_len, FOOTER, HEADER};
use crate::container::cursor::Window;
use crate::input::FileRange;

/// The read window.
const BLOCK: usize = 1 << 20;
/// Records of at most this many bytes are handed out from memory by `payload`; larger ones as
/// ranges of the file.
const SMALL: u64 = BLOCK as u64 / 2;

pub struct Records {
    win: Window,
    check_crc: bool,
    /// The offset of the next record.
    pos: u64,
    index: u64,
    /// Set by [`Records::stop_at_cut`]: a file that ends inside a record (a header short, or
    /// data its checked length says is longer than what follows) ends there, its offset kept.
    stop_at_cut: bool,
    cut: Option<u64>,
}

impl Records {
    pub fn new(data: FileRange, check_crc: bool) -> Records {
        Records {
            win: Window::new(data, BLOCK),
            check_crc,
            pos: 0,
            index: 0,
            stop_at_cut: false,
            cut: None,
        }
    }

    /// Reads a file that may still be being written, as TensorBoard does: a last record cut
    /// short ends the records instead of being an error ([`Records::cut`] says where).
    pub fn stop_at_cut(mut self) -> Records {
        self.stop_at_cut = true;
        self
    }

    /// Where the records ended inside a record cut short (with [`Records::stop_at_cut`]).
    pub fn cut(&self) -> Option<u64> {
        self.cut
    }

    /// The number of records read so far.
    pub fn count(&self) -> u64 {
        self.index
    }

    /// The next record's header: its offset and its data length, checked against the bytes
    /// present; `None` at the end.
    fn header(&mut self) -> Result<Option<(u64, u64)>> {
        let total = self.win.len();
        let pos = self.pos;
        if pos >= total {
            return Ok(None);
        }
        let at = || format!("record {} at byte offset {pos}", self.index);
        if total - pos < HEADER {
            if self.stop_at_cut {
                self.cut = Some(pos);
                return Ok(None);
            }
            bail!("{}: truncated header ({} bytes left)", at(), total - pos);
        }
        let Some(len) = header_len(self.win.get(pos, HEADER as usize)?) else {
            bail!("{}: length checksum mismatch (corrupt file)", at());
        };
        let body = pos + HEADER;
        if len > total - body || total - body - len < FOOTER {
            if self.stop_at_cut {
                self.cut = Some(pos);
                return Ok(None);
            }
            bail!(
                "{}: truncated (the record claims {len} bytes, {} remain)",
                at(),
                total - body
            );
        }
        Ok(Some((pos, len)))
    }

    /// Moves past the record at `pos`, after its data CRC is checked (when asked).
    fn advance(&mut self, pos: u64, crc: impl FnOnce(&mut Window) -> Result<bool>) -> Result<()> {
        if self.check_crc {
            if !crc(&mut self.win)? {
                bail!(
                    "record {} at byte offset {pos}: data checksum mismatch (corrupt file)",
                    self.index
                );
            }
            crate::checksum::verified(2);
        }
        Ok(())
    }

    /// The next record: its header's byte offset and its data, in memory; `None` at the end.
    #[allow(clippy::should_implement_trait)] // a lending iterator: the data borrows the window
    pub fn next(&mut self) -> Result<Option<(u64, &[u8])>> {
        let Some((pos, len)) = self.header()? else {
            return Ok(None);
        };
        let (body, len) = (pos + HEADER, len as usize);
        self.advance(pos, |w| {
            let b = w.get(body, len + FOOTER as usize)?;
            Ok(data_crc_ok(crc32c::crc32c(&b[..len]), &b[len..]))
        })?;
        self.pos = body + len as u64 + FOOTER;
        self.index += 1;
        Ok(Some((pos, self.win.get(body, len)?)))
    }

    /// The next record: its header's byte offset and its data as a range (in memory when it is
    /// small, else a range of the file, whose CRC is checked in pieces); `None` at the end.
    pub fn next_range(&mut self) -> Result<Option<(u64, FileRange)>> {
        let Some((pos, len)) = self.header()? else {
            return Ok(None);
        };
        let body = pos + HEADER;
        let data = self.payload(body, len)?;
        self.advance(pos, |w| {
            let crc = match data.memory() {
                Some(m) => crc32c::crc32c(m),
                None => {
                    let mut crc = 0u32;
                    data.stream(1, BLOCK, &mut |c: &[u8]| {
                        crc = crc32c::crc32c_append(crc, c);
                        Ok(())
                    })?;
                    crc
                }
            };
            Ok(data_crc_ok(crc, w.get(body + len, FOOTER as usize)?))
        })?;
        self.pos = body + len + FOOTER;
        self.index += 1;
        Ok(Some((pos, data)))
    }

    /// The data of a record found before, at byte `body` (just past its header), of `len`
    /// bytes: in memory when it is small, else a range of the file.
    pub fn payload(&mut self, body: u64, len: u64) -> Result<FileRange> {
        if len > SMALL {
            return self.win.range().slice(body, len);
        }
        Ok(FileRange::from_vec(
            self.win.get(body, len as usize)?.to_vec(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame;
    use super::*;

    fn file() -> Vec<u8> {
        let mut file = frame(b"abc");
        file.extend(frame(b""));
        file.extend(frame(&vec![7u8; BLOCK + 5]));
        file
    }

    #[test]
    fn reads_records_in_order_and_checks_their_crcs() {
        let file = file();
        let mut r = Records::new(FileRange::from_vec(file.clone()), true);
        assert_eq!(r.next().unwrap().unwrap(), (0, &b"abc"[..]));
        assert_eq!(r.next().unwrap().unwrap().1, b"");
        assert_eq!(r.next().unwrap().unwrap().1.len(), BLOCK + 5);
        assert!(r.next().unwrap().is_none());
        assert_eq!(r.count(), 3);

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

    #[test]
    fn stop_at_cut_ends_the_records_where_a_record_is_cut_short() {
        let file = file();
        // records at 0, 19 (empty: its footer at 31) and 35 (its data at 47): cut inside
        // the second's header and footer, the third's header and data
        for (end, count, cut) in [(20, 1, 19), (33, 1, 19), (45, 2, 35), (50, 2, 35)] {
            let data = FileRange::from_vec(file[..end].to_vec());
            let mut r = Records::new(data, true).stop_at_cut();
            while r.next().unwrap().is_some() {}
            assert_eq!((r.count(), r.cut()), (count, Some(cut)), "{end}");
        }
        // a whole file has no cut; a damaged length is still an error
        let mut r = Records::new(FileRange::from_vec(file.clone()), true).stop_at_cut();
        while r.next().unwrap().is_some() {}
        assert_eq!(r.cut(), None);
        let mut bad = file[..20].to_vec();
        bad.extend(&file[20..40]);
        bad[19] ^= 1;
        let mut r = Records::new(FileRange::from_vec(bad), true).stop_at_cut();
        r.next().unwrap();
        assert!(r.next().is_err());
    }

    #[test]
    fn ranges_and_indexed_reads_give_the_same_bytes() {
        use std::io::Write;
        let bytes = file();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes).unwrap();
        let mut r = Records::new(FileRange::whole(f).unwrap(), true);
        let mut found = Vec::new();
        while let Some((pos, data)) = r.next_range().unwrap() {
            found.push((pos + HEADER, data.len(), data.memory().is_some()));
        }
        assert_eq!(
            found,
            vec![(12, 3, true), (31, 0, true), (47, BLOCK as u64 + 5, false)]
        );
        let again = r.payload(12, 3).unwrap();
        assert_eq!(again.memory(), Some(&b"abc"[..]));
        let big = r.payload(47, BLOCK as u64 + 5).unwrap();
        assert_eq!(big.read_vec(BLOCK as u64, 5).unwrap(), vec![7u8; 5]);

        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut r = Records::new(FileRange::from_vec(bad), true);
        r.next_range().unwrap();
        r.next_range().unwrap();
        let e = r.next_range().unwrap_err().to_string();
        assert!(e.contains("record 2") && e.contains("data checksum"), "{e}");
    }
}
