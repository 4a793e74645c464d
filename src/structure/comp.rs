//! Components of sparse and ragged tensors as byte ranges that can be read piece by piece:
//! taken in place where the bytes already lie contiguous and little-endian (a safetensors
//! tensor, the `tensor_content` of a nested TensorProto), otherwise spooled once — in memory up
//! to a small limit, then into an unlinked temporary file — so that no component is ever held
//! whole in memory and several can be walked side by side. Nested TensorProtos are scanned with
//! `--max-fill-bytes` before any of their values are produced.

use std::io::Write;

use anyhow::{bail, Context, Result};

use crate::dtype::DType;
use crate::error::check_interrupted;
use crate::input::FileRange;
use crate::source::tensorproto::ScannedTensor;
use crate::tensor::{checked_elements, ChunkSink, Source, TensorMeta};

/// Spools up to this many bytes in memory before moving to a temporary file.
const SPOOL_IN_MEMORY: usize = 4 << 20;

/// Bytes read from a component at a time.
const READ_CHUNK: usize = 1 << 20;

/// A component: its dtype, its shape, and its elements.
#[derive(Clone, Debug)]
pub struct Comp {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub data: CompData,
}

#[derive(Clone, Debug)]
pub enum CompData {
    /// Fixed-size elements, little-endian, row-major.
    Fixed(FileRange),
    /// Variable-length elements (strings), held in memory: they come from serialized tensors
    /// or string tensors, whose bytes are bounded by the input and `--max-fill-bytes`.
    Strings(Vec<Vec<u8>>),
}

impl Comp {
    pub fn elements(&self) -> Result<u64> {
        checked_elements(&self.shape)
    }

    /// Reads component `index` of `src`: in place when the source can hand its bytes over,
    /// spooled otherwise. `budget` bounds the bytes of string components held in memory.
    pub fn from_source(
        src: &mut dyn Source,
        index: usize,
        meta: &TensorMeta,
        budget: u64,
    ) -> Result<Comp> {
        let data = match meta.dtype.item_size() {
            Some(size) => {
                let want = meta.num_elements()?.checked_mul(size as u64);
                match src.raw_range(index) {
                    Some(r) if !meta.big_endian && Some(r.len()) == want => CompData::Fixed(r),
                    _ => {
                        let mut spool = Spool::new();
                        src.read_dense(index, READ_CHUNK, &mut |c: &[u8]| {
                            check_interrupted()?;
                            if meta.big_endian && size > 1 {
                                let mut swapped = c.to_vec();
                                swapped.chunks_exact_mut(size).for_each(|e| e.reverse());
                                spool.write(&swapped)
                            } else {
                                spool.write(c)
                            }
                        })?;
                        CompData::Fixed(spool.finish()?)
                    }
                }
            }
            None => held_strings(budget, |sink| src.read_strings(index, sink))?,
        };
        Ok(Comp {
            dtype: meta.dtype,
            shape: meta.shape.clone(),
            data,
        })
        .and_then(|c| c.checked())
    }

    /// The dtype and shape of a serialized TensorProto, scanned (fill limit included) but
    /// not decoded.
    pub fn scan(bytes: Vec<u8>, max_fill: u64) -> Result<ScannedTensor> {
        ScannedTensor::scan(&FileRange::from_vec(bytes), max_fill)
    }

    /// Decodes a scanned TensorProto: its `tensor_content` in place, its typed fields spooled.
    pub fn from_scanned(t: &ScannedTensor, budget: u64) -> Result<Comp> {
        let data = if t.dtype.item_size().is_some() {
            match t.content_range() {
                Some(r) => CompData::Fixed(r),
                None => {
                    let mut spool = Spool::new();
                    t.read_dense(READ_CHUNK, &mut |c: &[u8]| {
                        check_interrupted()?;
                        spool.write(c)
                    })?;
                    CompData::Fixed(spool.finish()?)
                }
            }
        } else {
            held_strings(budget, |sink| t.read_strings(sink))?
        };
        Comp {
            dtype: t.dtype,
            shape: t.shape.clone(),
            data,
        }
        .checked()
    }

    /// Fails unless the data holds exactly the elements the shape says.
    fn checked(self) -> Result<Comp> {
        let n = self.elements()?;
        let ok = match &self.data {
            CompData::Fixed(r) => {
                n.checked_mul(self.dtype.item_size().unwrap_or(1) as u64) == Some(r.len())
            }
            CompData::Strings(v) => n == v.len() as u64,
        };
        if !ok {
            bail!(
                "a component of shape {:?} does not hold that many {} elements",
                self.shape,
                self.dtype
            );
        }
        Ok(self)
    }

    /// The fixed-size bytes, or an error naming the component.
    pub fn range(&self, what: &str) -> Result<&FileRange> {
        match &self.data {
            CompData::Fixed(r) => Ok(r),
            CompData::Strings(_) => bail!("{what} must have a numeric dtype, not {}", self.dtype),
        }
    }

    /// A reader of the elements of an int32 or int64 component, widened to i64.
    pub fn ints(&self, what: &str) -> Result<Ints> {
        let size = match self.dtype {
            DType::I64 => 8,
            DType::I32 => 4,
            other => bail!("{what} must be int32 or int64, not {other}"),
        };
        Ok(Ints {
            bytes: Bytes::new(self.range(what)?.clone()),
            size,
        })
    }

    /// Every element of a small integer component (a dense shape), in memory.
    pub fn small_ints(&self, what: &str, most: u64) -> Result<Vec<i64>> {
        let n = self.elements()?;
        if n > most {
            bail!("{what} has {n} elements, more than the {most} it may have");
        }
        let mut r = self.ints(what)?;
        (0..n).map(|_| r.next()).collect()
    }

    /// Streams the elements as `Source::read_dense` / `read_strings` would.
    pub fn emit(&self, chunk: usize, sink: &mut crate::tensor::ChunkSink) -> Result<()> {
        match &self.data {
            CompData::Fixed(r) => r.stream(self.dtype.item_size().unwrap_or(1), chunk, &mut |c| {
                check_interrupted()?;
                sink(c)
            }),
            CompData::Strings(v) => v.iter().try_for_each(|s| sink(s)),
        }
    }
}

/// The strings `read` hands out, held in memory: more than `budget` bytes (24 a string for its
/// `Vec`) is refused.
fn held_strings(budget: u64, read: impl FnOnce(&mut ChunkSink) -> Result<()>) -> Result<CompData> {
    let mut v = Vec::new();
    let mut held = 0u64;
    read(&mut |s: &[u8]| {
        held += s.len() as u64 + 24;
        if held > budget {
            bail!("its strings take more than the {budget}-byte memory budget");
        }
        v.push(s.to_vec());
        Ok(())
    })?;
    Ok(CompData::Strings(v))
}

/// A forward reader of a byte range, one buffered window at a time.
pub struct Bytes {
    range: FileRange,
    buf: Vec<u8>,
    /// Offset of `buf` in the range, and the read position within `buf`.
    start: u64,
    at: usize,
}

impl Bytes {
    pub fn new(range: FileRange) -> Bytes {
        Bytes {
            range,
            buf: Vec::new(),
            start: 0,
            at: 0,
        }
    }

    /// The next `n` bytes (n at most a window).
    pub fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.at + n > self.buf.len() {
            let pos = self.start + self.at as u64;
            let left = self.range.len().saturating_sub(pos);
            if (n as u64) > left {
                bail!("a component ends early, at byte {pos}");
            }
            let len = (READ_CHUNK.max(n) as u64).min(left) as usize;
            self.buf.resize(len, 0);
            self.range.read_at(pos, &mut self.buf)?;
            self.start = pos;
            self.at = 0;
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: u64) {
        let in_buf = (self.buf.len() - self.at) as u64;
        if n <= in_buf {
            self.at += n as usize;
        } else {
            self.start += (self.at as u64) + n;
            self.at = 0;
            self.buf.clear();
        }
    }
}

/// A forward reader of int32 / int64 elements.
pub struct Ints {
    bytes: Bytes,
    size: usize,
}

impl Ints {
    pub fn next(&mut self) -> Result<i64> {
        let b = self.bytes.take(self.size)?;
        Ok(if self.size == 8 {
            i64::from_le_bytes(b.try_into().unwrap())
        } else {
            i32::from_le_bytes(b.try_into().unwrap()) as i64
        })
    }

    /// Fills `out` with the next `out.len()` elements.
    pub fn next_into(&mut self, out: &mut [i64]) -> Result<()> {
        for x in out {
            *x = self.next()?;
        }
        Ok(())
    }
}

/// Collects bytes in memory up to `SPOOL_IN_MEMORY`, then in an unlinked temporary file.
pub struct Spool {
    mem: Vec<u8>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Default for Spool {
    fn default() -> Self {
        Spool::new()
    }
}

impl Spool {
    pub fn new() -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
        }
    }

    pub fn write(&mut self, b: &[u8]) -> Result<()> {
        if self.file.is_none() && self.mem.len() + b.len() > SPOOL_IN_MEMORY {
            let tmp = tempfile::tempfile()
                .context("cannot create a temporary file for a sparse or ragged component")?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
            w.write_all(&self.mem).map_err(spool_error)?;
            self.mem = Vec::new();
            self.file = Some(w);
        }
        match &mut self.file {
            Some(w) => w.write_all(b).map_err(spool_error),
            None => {
                self.mem.extend_from_slice(b);
                Ok(())
            }
        }
    }

    pub fn finish(self) -> Result<FileRange> {
        match self.file {
            None => Ok(FileRange::from_vec(self.mem)),
            Some(w) => {
                let f = w.into_inner().map_err(|e| spool_error(e.into_error()))?;
                FileRange::whole(f)
            }
        }
    }
}

fn spool_error(e: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context(format!(
        "cannot write a sparse or ragged component to a temporary file in {} (is it full? TMPDIR chooses another)",
        std::env::temp_dir().display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spools_move_to_a_file_past_the_memory_limit_and_read_back_the_same() {
        let mut s = Spool::new();
        let piece: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        for _ in 0..6 {
            s.write(&piece).unwrap();
        }
        let r = s.finish().unwrap();
        assert!(r.file().is_some());
        assert_eq!(r.len(), 6 << 20);
        let mut b = Bytes::new(r);
        b.skip((5 << 20) + 7);
        assert_eq!(b.take(3).unwrap(), &[7, 8, 9]);
    }

    #[test]
    fn int_readers_widen_int32() {
        let bytes: Vec<u8> = [-3i32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let c = Comp {
            dtype: DType::I32,
            shape: vec![2],
            data: CompData::Fixed(FileRange::from_vec(bytes)),
        };
        assert_eq!(c.small_ints("x", 2).unwrap(), vec![-3, 7]);
        assert!(c.small_ints("x", 1).is_err());
    }
}
