//! The write-once spool of `example`: every output array of a dataset written by one walk over
//! the records into one unlinked temporary file, each array in its own region, so that a dataset
//! of F features costs two passes over the records instead of 1 + F. Region sizes are exact
//! (pass 1 counted every value and byte), so the file is laid out before the walk; each array
//! gets a small buffer, flushed with positioned writes. Memory: those buffers (at most 4 MiB in
//! all). Disk: the arrays' own size, in the temporary directory.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context, Result};

use crate::container::protobuf::Cursor;
use crate::input::FileRange;
use crate::tensor::ChunkSink;

/// Buffers of all arrays together take about this much.
const BUFFERS: usize = 4 << 20;

pub struct SpoolWriter {
    file: File,
    regions: Vec<(u64, u64)>,
    bufs: Vec<Vec<u8>>,
    written: Vec<u64>,
    cap: usize,
}

/// The finished spool: each array's bytes, numbers little-endian, strings as `u64` length +
/// bytes.
pub struct Spool {
    data: FileRange,
    regions: Vec<(u64, u64)>,
}

impl SpoolWriter {
    /// A spool with one region of `sizes[i]` bytes per array.
    pub fn new(sizes: &[u64]) -> Result<SpoolWriter> {
        let mut regions = Vec::with_capacity(sizes.len());
        let mut end = 0u64;
        for &s in sizes {
            let start = end;
            end = end
                .checked_add(s)
                .context("the arrays' total size overflows 64 bits")?;
            regions.push((start, s));
        }
        let file = tempfile::tempfile().context("cannot create a temporary file for the arrays")?;
        file.set_len(end)
            .context("cannot size the temporary file for the arrays")?;
        Ok(SpoolWriter {
            file,
            regions,
            bufs: vec![Vec::new(); sizes.len()],
            written: vec![0; sizes.len()],
            cap: (BUFFERS / sizes.len().max(1)).clamp(4 << 10, 256 << 10),
        })
    }

    pub fn push(&mut self, array: usize, bytes: &[u8]) -> Result<()> {
        self.bufs[array].extend_from_slice(bytes);
        if self.bufs[array].len() >= self.cap {
            self.flush(array)?;
        }
        Ok(())
    }

    pub fn push_string(&mut self, array: usize, bytes: &[u8]) -> Result<()> {
        self.push(array, &(bytes.len() as u64).to_le_bytes())?;
        self.push(array, bytes)
    }

    fn flush(&mut self, array: usize) -> Result<()> {
        let (start, len) = self.regions[array];
        let buf = &mut self.bufs[array];
        let at = self.written[array];
        if at + buf.len() as u64 > len {
            bail!("more data than the file held when it was opened (did it change?)");
        }
        self.file
            .write_all_at(buf, start + at)
            .context("cannot write the temporary file for the arrays")?;
        self.written[array] += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    pub fn finish(mut self) -> Result<Spool> {
        for array in 0..self.regions.len() {
            self.flush(array)?;
            if self.written[array] != self.regions[array].1 {
                bail!("less data than the file held when it was opened (did it change?)");
            }
        }
        Ok(Spool {
            data: FileRange::whole(self.file)?,
            regions: self.regions,
        })
    }
}

impl Spool {
    fn region(&self, array: usize) -> Result<FileRange> {
        let (start, len) = self.regions[array];
        self.data.slice(start, len)
    }

    /// Streams a numeric array in chunks of whole `item`-byte elements.
    pub fn read_dense(
        &self,
        array: usize,
        item: usize,
        chunk: usize,
        sink: &mut ChunkSink,
    ) -> Result<()> {
        self.region(array)?.stream(item, chunk, sink)
    }

    /// Streams a string array, one call per element.
    pub fn read_strings(&self, array: usize, sink: &mut ChunkSink) -> Result<()> {
        let mut cursor = Cursor::new(self.region(array)?);
        while !cursor.at_end() {
            let len = u64::from_le_bytes(cursor.bytes(8)?.try_into().unwrap());
            if len > cursor.remaining() {
                bail!("a corrupt temporary file");
            }
            sink(cursor.bytes(len as usize)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_come_back_from_their_regions() {
        let mut w = SpoolWriter::new(&[12, 8 + 3 + 8]).unwrap();
        w.push(0, &1u32.to_le_bytes()).unwrap();
        w.push_string(1, b"abc").unwrap();
        w.push(0, &[2, 0, 0, 0, 3, 0, 0, 0]).unwrap();
        w.push_string(1, b"").unwrap();
        let spool = w.finish().unwrap();
        let mut got = Vec::new();
        spool
            .read_dense(0, 4, 4, &mut |c: &[u8]| {
                got.push(c.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(
            got,
            vec![vec![1, 0, 0, 0], vec![2, 0, 0, 0], vec![3, 0, 0, 0]]
        );
        let mut strings = Vec::new();
        spool
            .read_strings(1, &mut |c: &[u8]| {
                strings.push(c.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(strings, vec![b"abc".to_vec(), vec![]]);
    }

    #[test]
    fn a_region_that_is_not_filled_exactly_is_an_error() {
        let mut w = SpoolWriter::new(&[4]).unwrap();
        w.push(0, &[1, 2]).unwrap();
        assert!(w.finish().is_err());
        let mut w = SpoolWriter::new(&[1]).unwrap();
        w.push(0, &[1, 2]).unwrap();
        assert!(w.finish().is_err());
    }
}
