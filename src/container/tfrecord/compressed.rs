//! GZIP and ZLIB TFRecord streams (`TFRecordOptions(compression_type=...)` wraps the whole
//! stream): recognised from the first bytes, the decoder chosen here and nowhere else, inflated
//! once into an unlinked temporary file with the framing checked as the bytes arrive, and, when
//! the stream is damaged, the damaged record named. Talks to `input` (the ranges and temporary
//! files) and to `mod.rs` (the header rule); the readers reach it through `mod.rs::open`.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};

use anyhow::{bail, Context, Result};

use super::{header_len, Records, HEADER};
use crate::input::{FileRange, RangeReader};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zlib,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "GZIP",
            Compression::Zlib => "ZLIB",
        }
    }

    /// Recognises a GZIP member header or a ZLIB header (deflate, valid header checksum).
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        match head {
            [0x1f, 0x8b, 0x08, ..] => Some(Compression::Gzip),
            [cmf @ 0x78, flg, ..] if (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0 => {
                Some(Compression::Zlib)
            }
            _ => None,
        }
    }

    /// The decoder of this compression over `input`: every GZIP member in turn (as
    /// TensorFlow's reader), or one ZLIB stream.
    pub fn decoder<'a>(self, input: impl BufRead + 'a) -> Box<dyn Read + 'a> {
        match self {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(input)),
        }
    }
}

/// The first bytes a compressed head decompresses to (as many as it yields, up to 16).
pub fn prefix(head: &[u8], c: Compression) -> Vec<u8> {
    let mut reader = c.decoder(head);
    let mut out = [0u8; 16];
    let mut n = 0;
    while n < out.len() {
        match reader.read(&mut out[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    out[..n].to_vec()
}

/// Decompresses a whole stream of TFRecords into an unlinked temporary file; when that fails,
/// the error says which record the damage is in.
pub fn spool(src: &FileRange, c: Compression, limit: u64) -> Result<FileRange> {
    match inflate(src, c, limit) {
        Ok(file) => FileRange::whole(file),
        Err(e) => Err(e.context(damaged_record(src, c, limit))),
    }
}

/// Decompresses a whole GZIP (multi-member) or ZLIB stream of TFRecords into an unlinked
/// temporary file. The bytes are checked while they inflate: each record header's length CRC
/// as soon as its 12 bytes arrive (so a bomb of zeros stops after 12 bytes, not after spooling
/// a GiB), record lengths against `limit`, and the whole decompressed size against `limit`.
/// Bytes after the end of a ZLIB stream are refused, as they are after the last GZIP member.
/// A write error names the temporary directory (a full disk is not a corrupt stream).
fn inflate(src: &FileRange, compression: Compression, limit: u64) -> Result<File> {
    let mut input = io::BufReader::new(RangeReader::new(src.clone()));
    let tmp = tempfile::tempfile().with_context(|| {
        format!(
            "cannot create a temporary file in {} for the decompressed stream",
            std::env::temp_dir().display()
        )
    })?;
    let mut out = io::BufWriter::with_capacity(1 << 20, tmp);
    let name = compression.name();
    let mut framing = Framing::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    {
        let mut decoder = compression.decoder(&mut input);
        loop {
            let n = match decoder.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("corrupt {name} stream")))
                }
            };
            crate::error::check_interrupted()?;
            total += n as u64;
            if total > limit {
                bail!("{name} stream decompresses to more than {limit} bytes (--max-decompressed)");
            }
            framing.feed(&buf[..n], limit)?;
            out.write_all(&buf[..n])
                .map_err(|e| temp_write_error(e, name))?;
        }
    }
    if compression == Compression::Zlib
        && !input
            .fill_buf()
            .context("cannot read the input")?
            .is_empty()
    {
        bail!("corrupt ZLIB stream: trailing bytes after the end of the compressed data");
    }
    out.into_inner()
        .map_err(|e| temp_write_error(e.into_error(), name))
}

fn temp_write_error(e: io::Error, name: &str) -> anyhow::Error {
    let full = e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull;
    anyhow::Error::new(e).context(format!(
        "cannot write the decompressed {name} stream to a temporary file in {}{} (set TMPDIR to a directory with room)",
        std::env::temp_dir().display(),
        if full { ": the disk is full" } else { "" }
    ))
}

/// TFRecord framing checked as decompressed bytes arrive: `u64 length | masked crc32c(length)`
/// headers, each followed by `length` bytes and a 4-byte data CRC (verified later, by the
/// record reader, along with everything else).
#[derive(Default)]
struct Framing {
    header: Vec<u8>,
    /// Bytes of the current record's body and data CRC still to come.
    skip: u64,
    records: u64,
    /// Offset of the current record in the decompressed stream.
    offset: u64,
    seen: u64,
}

impl Framing {
    fn feed(&mut self, mut b: &[u8], limit: u64) -> Result<()> {
        while !b.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(b.len() as u64);
                self.skip -= n;
                self.seen += n;
                b = &b[n as usize..];
                continue;
            }
            if self.header.is_empty() {
                self.offset = self.seen;
            }
            let n = (HEADER as usize - self.header.len()).min(b.len());
            self.header.extend_from_slice(&b[..n]);
            self.seen += n as u64;
            b = &b[n..];
            if self.header.len() < HEADER as usize {
                continue;
            }
            let at = format!("record {} at byte offset {}", self.records, self.offset);
            let Some(len) = header_len(&self.header) else {
                bail!("{at} of the decompressed stream: length checksum mismatch (not TFRecords, or corrupt)");
            };
            if len > limit {
                bail!("{at} claims {len} bytes, more than --max-decompressed ({limit}) allows: the stream is truncated or a decompression bomb");
            }
            self.header.clear();
            self.skip = len + 4;
            self.records += 1;
        }
        Ok(())
    }
}

/// For a compressed stream that failed to decompress: which record the damage is in, found by
/// decompressing again as far as the stream goes and checking the records that came out.
fn damaged_record(data: &FileRange, c: Compression, limit: u64) -> String {
    let mut decoder = c.decoder(io::BufReader::new(RangeReader::new(data.clone())));
    let Ok(mut tmp) = tempfile::tempfile() else {
        return format!("corrupt {} stream", c.name());
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    // Inflating stops at the first header whose length CRC fails or whose length is past the
    // limit, so that a decompression bomb is not inflated again just to name the record.
    let mut framing = Framing::default();
    while total <= limit {
        match decoder.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tmp.write_all(&buf[..n]).is_err() || framing.feed(&buf[..n], limit).is_err() {
                    break;
                }
                total += n as u64;
            }
        }
    }
    let Ok(range) = FileRange::whole(tmp) else {
        return format!("corrupt {} stream", c.name());
    };
    let mut records = Records::new(range, true);
    let mut k = 0u64;
    while let Ok(Some(_)) = records.next() {
        k += 1;
    }
    format!("record {k} is damaged (the records before it decompress intact)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_sniffing_needs_a_valid_zlib_header_checksum() {
        assert_eq!(
            Compression::sniff(&[0x1f, 0x8b, 0x08, 0]),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::sniff(&[0x78, 0x9c]), Some(Compression::Zlib));
        assert_eq!(Compression::sniff(&[0x78, 0x01]), Some(Compression::Zlib));
        assert_eq!(Compression::sniff(&[0x78, 0x9d]), None);
        assert_eq!(Compression::sniff(&[0x0a, 0x00]), None);
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_compressed_head_is_read_through_its_first_bytes() {
        let record = super::super::frame(&[0x0a, 0x00]);
        let head = prefix(&gzip(&record), Compression::Gzip);
        assert_eq!(&head[..], &record[..head.len()]);
        assert_eq!(head.len(), 16.min(record.len()));
    }

    #[test]
    fn the_damaged_record_is_named() {
        let mut plain = super::super::frame(b"first");
        plain.extend(super::super::frame(b"second"));
        let good = FileRange::from_vec(gzip(&plain));
        let back = spool(&good, Compression::Gzip, 1 << 20).unwrap();
        assert_eq!(back.read_vec(0, plain.len()).unwrap(), plain);

        // the second record's data CRC damaged before compressing: it inflates, then fails
        let mut bad = plain.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let gz = gzip(&bad);
        assert_eq!(
            damaged_record(&FileRange::from_vec(gz), Compression::Gzip, 1 << 20),
            "record 1 is damaged (the records before it decompress intact)"
        );
        // a stream cut in the middle of the second record
        let mut gz = gzip(&plain);
        gz.truncate(gz.len() - 12);
        let e = spool(&FileRange::from_vec(gz), Compression::Gzip, 1 << 20).unwrap_err();
        assert!(format!("{e:#}").contains("corrupt GZIP stream"), "{e:#}");
    }
}
