//! TFRecord framing, read here once for every reader of TFRecord files (tensors, Example
//! datasets, TensorBoard event files): `u64 length | masked crc32c(length) | data | masked
//! crc32c(data)`, repeated.
//!
//! - this file: the header and CRC codec (`checksum::mask_crc` is the masked CRC-32C), and
//!   [`open`], which hands a reader the records' bytes, inflated first when the stream is
//!   compressed;
//! - `compressed.rs`: GZIP and ZLIB streams (the one place a decoder is chosen), spooled to a
//!   temporary file with the framing checked as they inflate, and the damaged-record locator;
//! - `records.rs`: the record reader, sequential (payloads in memory or located as ranges,
//!   CRCs checked when asked) and indexed (a record found before, read again).
//!
//! Knows nothing of what the records hold: the readers in `source/` interpret the payloads.

mod compressed;
mod records;

use anyhow::Result;

pub use self::compressed::Compression;
pub use self::records::Records;
use crate::checksum::mask_crc;
use crate::input::FileRange;

/// Bytes of a record header: the length and its masked CRC.
pub const HEADER: u64 = 12;
/// Bytes after a record's data: its masked CRC.
pub const FOOTER: u64 = 4;

/// The record length a header holds (the first 12 bytes of `h`), when its CRC checks out.
pub fn header_len(h: &[u8]) -> Option<u64> {
    let h: &[u8; 12] = h.get(..12)?.try_into().ok()?;
    let len = u64::from_le_bytes(h[..8].try_into().unwrap());
    let stored = u32::from_le_bytes(h[8..].try_into().unwrap());
    (mask_crc(crc32c::crc32c(&h[..8])) == stored).then_some(len)
}

/// True when `head` starts with a record header whose length CRC checks out.
pub fn is_header(head: &[u8]) -> bool {
    header_len(head).is_some()
}

/// True when a record's data CRC (`crc`, unmasked, over all of its data) matches the stored
/// footer.
pub fn data_crc_ok(crc: u32, footer: &[u8]) -> bool {
    footer.len() == FOOTER as usize && mask_crc(crc).to_le_bytes() == footer
}

/// One framed record (what `tf.io.TFRecordWriter` writes for `payload`).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u64).to_le_bytes().to_vec();
    v.extend(mask_crc(crc32c::crc32c(&v)).to_le_bytes());
    v.extend_from_slice(payload);
    v.extend(mask_crc(crc32c::crc32c(payload)).to_le_bytes());
    v
}

/// The compression of a stream whose first bytes are `head`: `None` for plain records (a
/// valid first header wins over a compression signature).
pub fn compression(head: &[u8]) -> Option<Compression> {
    Compression::sniff(head).filter(|_| !is_header(head))
}

/// The first bytes of the records (decompressed from a compressed head, as many as it yields,
/// at least 16 where there are that many), for sniffers.
pub fn records_head(head: &[u8]) -> Vec<u8> {
    match compression(head) {
        Some(c) => compressed::prefix(head, c),
        None => head.to_vec(),
    }
}

/// The start of the first record's data within `head` (as much of it as `head` holds), when
/// `head` starts with a valid header.
pub fn first_payload(head: &[u8]) -> Option<&[u8]> {
    let len = header_len(head)?;
    let end = (HEADER as usize).saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
    Some(&head[HEADER as usize..end.min(head.len())])
}

/// A TFRecord stream ready to read.
pub struct Opened {
    /// The records: the input itself, or its decompressed copy in a temporary file.
    pub data: FileRange,
    /// The stream was compressed (a second reader of it would inflate it all again).
    pub spooled: bool,
}

/// The records of a TFRecord stream whose first bytes are `head`: `data` itself, or, for a
/// GZIP / ZLIB stream, its decompressed copy (at most `limit` bytes), with the damaged record
/// named when the stream is corrupt.
pub fn open(data: &FileRange, head: &[u8], limit: u64) -> Result<Opened> {
    Ok(match compression(head) {
        Some(c) => Opened {
            data: compressed::spool(data, c, limit)?,
            spooled: true,
        },
        None => Opened {
            data: data.clone(),
            spooled: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_by_their_length_crc() {
        let f = frame(b"abc");
        assert_eq!(header_len(&f), Some(3));
        assert_eq!(first_payload(&f), Some(&b"abc"[..]));
        assert_eq!(first_payload(&f[..13]), Some(&b"a"[..]));
        assert!(data_crc_ok(crc32c::crc32c(b"abc"), &f[15..]));
        assert!(!data_crc_ok(crc32c::crc32c(b"abd"), &f[15..]));
        let mut bad = f.clone();
        bad[8] ^= 1;
        assert_eq!(header_len(&bad), None);
        assert_eq!(header_len(&f[..11]), None);
        // an empty record's length CRC: 29 03 98 07
        assert_eq!(&frame(b"")[8..12], &[0x29, 0x03, 0x98, 0x07]);
        // a plain stream that happens to start like a ZLIB header (78 9c) is still plain
        let zlib_like = frame(&vec![0; 0x9c78]);
        assert_eq!(Compression::sniff(&zlib_like), Some(Compression::Zlib));
        assert_eq!(compression(&zlib_like), None);
        assert_eq!(compression(&[0x78, 0x9c, 0, 0]), Some(Compression::Zlib));
    }
}
