//! The write-once spool of `example`: every output array of a dataset written by one walk over
//! the records into one unlinked temporary file, each array in its own region, so that a dataset
//! of F features costs two passes over the records instead of 1 + F. Region sizes are exact
//! (pass 1 counted every value and byte), so the file is laid out before the walk; each array
//! gets a small buffer, flushed with positioned writes. Memory: those buffers (at most 4 MiB in
//! all). Disk: the arrays' own size, in the temporary directory.
//!
//! Groups of records written side by side each fill a part of their own (a sparse file laid
//! out like the whole spool, each region filled from its start); an array is read back as its
//! region in every part, in order, row splits shifted by the last split of the parts before.

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

/// What one writer wrote: each region's bytes from its start.
pub struct SpoolPart {
    data: FileRange,
    regions: Vec<(u64, u64)>,
    written: Vec<u64>,
}

/// The finished spool: each array's bytes, numbers little-endian, strings as `u64` length +
/// bytes, in parts, each with the shift of each array's row splits.
pub struct Spool {
    parts: Vec<(SpoolPart, Vec<i64>)>,
}

impl SpoolWriter {
    /// A spool with one region of `sizes[i]` bytes per array, one of `writers` sharing the
    /// buffer memory.
    pub fn new(sizes: &[u64], writers: usize) -> Result<SpoolWriter> {
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
            // writers side by side share half the buffers: each also holds its own window of
            // records and thread (the million-record test in tests/example.rs measures it)
            cap: (BUFFERS / writers.max(1) / if writers > 1 { 2 } else { 1 } / sizes.len().max(1))
                .clamp(4 << 10, 256 << 10),
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

    pub fn finish(mut self) -> Result<SpoolPart> {
        for array in 0..self.regions.len() {
            self.flush(array)?;
        }
        Ok(SpoolPart {
            data: FileRange::whole(self.file)?,
            regions: self.regions,
            written: self.written,
        })
    }
}

impl SpoolPart {
    fn region(&self, array: usize) -> Result<FileRange> {
        self.data.slice(self.regions[array].0, self.written[array])
    }
}

impl Spool {
    /// The parts written side by side, in record order, each with its last row split of every
    /// array (`splits` marks the arrays of row splits); the first failure in that order is the
    /// one returned. Every region must be filled exactly.
    pub fn join(
        each: Vec<Result<(SpoolPart, Vec<i64>)>>,
        splits: &[bool],
        sizes: &[u64],
    ) -> Result<Spool> {
        let mut shift = vec![0i64; sizes.len()];
        let mut filled = vec![0u64; sizes.len()];
        let mut parts = Vec::with_capacity(each.len());
        for r in each {
            let (part, last) = r?;
            for (f, w) in filled.iter_mut().zip(&part.written) {
                *f = f.saturating_add(*w);
            }
            parts.push((part, shift.clone()));
            for a in (0..sizes.len()).filter(|&a| splits[a]) {
                shift[a] = shift[a]
                    .checked_add(last[a])
                    .context("row splits past 2^63")?;
            }
        }
        for (a, &size) in sizes.iter().enumerate() {
            if filled[a] > size {
                bail!("more data than the file held when it was opened (did it change?)");
            }
            if filled[a] < size {
                bail!("less data than the file held when it was opened (did it change?)");
            }
        }
        Ok(Spool { parts })
    }

    /// Streams a numeric array in chunks of whole `item`-byte elements.
    pub fn read_dense(
        &self,
        array: usize,
        item: usize,
        chunk: usize,
        sink: &mut ChunkSink,
    ) -> Result<()> {
        let mut shifted = Vec::new();
        for (part, shift) in &self.parts {
            let region = part.region(array)?;
            match shift[array] {
                0 => region.stream(item, chunk, sink)?,
                by => region.stream(item, chunk, &mut |c: &[u8]| {
                    shifted.clear();
                    for split in c.chunks_exact(8) {
                        let v = i64::from_le_bytes(split.try_into().unwrap());
                        shifted.extend_from_slice(&v.wrapping_add(by).to_le_bytes());
                    }
                    sink(&shifted)
                })?,
            }
        }
        Ok(())
    }

    /// Streams a string array, one call per element.
    pub fn read_strings(&self, array: usize, sink: &mut ChunkSink) -> Result<()> {
        for (part, _) in &self.parts {
            let mut cursor = Cursor::new(part.region(array)?);
            while !cursor.at_end() {
                let len = u64::from_le_bytes(cursor.bytes(8)?.try_into().unwrap());
                if len > cursor.remaining() {
                    bail!("a corrupt temporary file");
                }
                sink(cursor.bytes(len as usize)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(w: SpoolWriter, sizes: &[u64]) -> Result<Spool> {
        Spool::join(
            vec![Ok((w.finish()?, vec![0; sizes.len()]))],
            &vec![false; sizes.len()],
            sizes,
        )
    }

    /// The chunks of `array` read in chunks of `chunk` bytes of `unit`-byte elements.
    fn chunks(spool: &Spool, array: usize, unit: usize, chunk: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        spool
            .read_dense(array, unit, chunk, &mut |c: &[u8]| {
                got.push(c.to_vec());
                Ok(())
            })
            .unwrap();
        got
    }

    /// The strings of `array`, one a call of the sink.
    fn strings(spool: &Spool, array: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        spool
            .read_strings(array, &mut |c: &[u8]| {
                got.push(c.to_vec());
                Ok(())
            })
            .unwrap();
        got
    }

    #[test]
    fn arrays_come_back_from_their_regions() {
        let sizes = [12, 8 + 3 + 8];
        let mut w = SpoolWriter::new(&sizes, 1).unwrap();
        w.push(0, &1u32.to_le_bytes()).unwrap();
        w.push_string(1, b"abc").unwrap();
        w.push(0, &[2, 0, 0, 0, 3, 0, 0, 0]).unwrap();
        w.push_string(1, b"").unwrap();
        let spool = one(w, &sizes).unwrap();
        assert_eq!(
            chunks(&spool, 0, 4, 4),
            vec![vec![1, 0, 0, 0], vec![2, 0, 0, 0], vec![3, 0, 0, 0]]
        );
        assert_eq!(strings(&spool, 1), vec![b"abc".to_vec(), vec![]]);
    }

    /// Two parts read back in order: values after values, strings after strings, the second
    /// part's row splits shifted by the first part's last split.
    #[test]
    fn parts_are_read_in_order_with_their_splits_shifted() {
        let sizes = [24, 8 + 1 + 8 + 2, 16];
        let mut a = SpoolWriter::new(&sizes, 2).unwrap();
        let mut b = SpoolWriter::new(&sizes, 2).unwrap();
        for (w, split, s, f) in [(&mut a, 0i64, &b"x"[..], 1.5f64), (&mut b, 3, b"yz", 2.5)] {
            w.push(0, &split.to_le_bytes()).unwrap();
            w.push_string(1, s).unwrap();
            w.push(2, &f.to_le_bytes()).unwrap();
        }
        a.push(0, &2i64.to_le_bytes()).unwrap();
        let each = vec![
            Ok((a.finish().unwrap(), vec![2, 0, 0])),
            Ok((b.finish().unwrap(), vec![3, 0, 0])),
        ];
        let spool = Spool::join(each, &[true, false, false], &sizes).unwrap();
        let read = |array: usize| chunks(&spool, array, 8, 8).concat();
        let splits: Vec<u8> = [0i64, 2, 5].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(read(0), splits);
        let values: Vec<u8> = [1.5f64, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(read(2), values);
        assert_eq!(strings(&spool, 1), vec![b"x".to_vec(), b"yz".to_vec()]);
    }

    #[test]
    fn a_region_that_is_not_filled_exactly_is_an_error() {
        let mut w = SpoolWriter::new(&[4], 1).unwrap();
        w.push(0, &[1, 2]).unwrap();
        assert!(one(w, &[4]).is_err());
        let mut w = SpoolWriter::new(&[1], 1).unwrap();
        w.push(0, &[1, 2]).unwrap();
        assert!(one(w, &[1]).is_err());
        // two parts that together overfill a region
        let parts = (0..2)
            .map(|_| {
                let mut w = SpoolWriter::new(&[3], 2).unwrap();
                w.push(0, &[1, 2]).unwrap();
                Ok((w.finish().unwrap(), vec![0]))
            })
            .collect();
        assert!(Spool::join(parts, &[false], &[3]).is_err());
    }
}
