//! How the HDF5 reader gets bytes out of the `hdf5-reader` crate: the `Storage` it reads the
//! input through (positioned reads of a `FileRange`), element types that hand back raw stored
//! bytes, and the row-major block walk that keeps memory bounded for chunked and filtered data.
//! Each block is read with the crate's `read_slice_parallel`, which inflates the chunks it
//! covers on rayon's global pool (sized to the `--jobs` workers through `crate::pool`).

use anyhow::{anyhow, Result};
use hdf5_reader::error::Error as H5Error;
use hdf5_reader::{Dataset, Datatype, H5Type, SliceInfo, SliceInfoElem, Storage, StorageBuffer};

use crate::input::FileRange;
use crate::tensor::ChunkSink;

/// Positioned reads of a [`FileRange`] for the crate. Bounds are checked before anything is
/// allocated, so a corrupt address or length fails instead of allocating.
pub struct RangeStorage(pub FileRange);

impl Storage for RangeStorage {
    fn len(&self) -> u64 {
        self.0.len()
    }

    fn read_range(&self, offset: u64, len: usize) -> hdf5_reader::error::Result<StorageBuffer> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > self.0.len()) {
            return Err(H5Error::UnexpectedEof {
                offset,
                needed: len as u64,
                available: self.0.len().saturating_sub(offset),
            });
        }
        let mut buf = vec![0u8; len];
        self.0
            .read_at(offset, &mut buf)
            .map_err(|e| H5Error::Io(std::io::Error::other(format!("{e:#}"))))?;
        Ok(StorageBuffer::from_vec(buf))
    }
}

/// One element as the crate stores it, copied without interpretation (the dataset's own byte
/// order), so that `read_slice` hands back raw bytes of any fixed-size type.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Raw<const N: usize>([u8; N]);

impl<const N: usize> H5Type for Raw<N> {
    fn hdf5_type() -> Datatype {
        Datatype::Opaque {
            size: N as u32,
            tag: String::new(),
        }
    }

    fn from_bytes(bytes: &[u8], _dtype: &Datatype) -> hdf5_reader::error::Result<Self> {
        bytes.try_into().map(Raw).map_err(|_| {
            H5Error::InvalidData(format!("expected {N}-byte elements, got {}", bytes.len()))
        })
    }

    fn element_size(_dtype: &Datatype) -> usize {
        N
    }

    fn native_copy_compatible(_dtype: &Datatype) -> bool {
        true
    }
}

/// An element of any other size (fixed strings, variable-length references, odd array types).
#[derive(Clone)]
struct RawBox(Box<[u8]>);

impl H5Type for RawBox {
    fn hdf5_type() -> Datatype {
        Datatype::Opaque {
            size: 0,
            tag: String::new(),
        }
    }

    fn from_bytes(bytes: &[u8], _dtype: &Datatype) -> hdf5_reader::error::Result<Self> {
        Ok(RawBox(bytes.into()))
    }

    fn element_size(dtype: &Datatype) -> usize {
        hdf5_reader::dtype_element_size(dtype).unwrap_or(0)
    }
}

/// Calls `f` with every stored element of `ds` (raw bytes, `elem_size` each), row-major, reading
/// blocks of about `target` bytes through the crate.
pub fn for_each_element(
    ds: &Dataset,
    shape: &[u64],
    elem_size: usize,
    target: usize,
    f: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    for_each_block::<RawBox>(ds, shape, elem_size, target, &mut |block| {
        for e in block {
            f(&e.0)?;
        }
        Ok(())
    })
}

/// The most bytes a block may take when it is widened to a whole row of HDF5 chunks (so that
/// each chunk is inflated once): the largest chunk the reader decodes
/// (`hdf5::MAX_CHUNK_BYTES`); a row of chunks larger than this is read a slice at a time,
/// inflating its chunks once per slice, in bounded memory.
const MAX_ROW_BYTES: u64 = 64 << 20;

/// Reads `ds` in row-major blocks of about `target` bytes: the first axis `k` whose trailing
/// extent fits is split into runs (aligned to the chunk shape), and every index of the axes
/// before it is taken one at a time. When a chunk spans several indices of one of those axes,
/// the walk splits that axis instead, a whole row of chunks at a time (at most
/// [`MAX_ROW_BYTES`]), so that every chunk is read and inflated once, not once per index.
fn for_each_block<T: H5Type>(
    ds: &Dataset,
    shape: &[u64],
    elem_size: usize,
    target: usize,
    f: &mut dyn FnMut(&[T]) -> Result<()>,
) -> Result<()> {
    crate::pool::ready();
    let h5 = |e: H5Error| anyhow!("{e}");
    if shape.is_empty() {
        let a = ds.read_array::<T>().map_err(h5)?;
        return f(a.as_slice().unwrap_or(&[]));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let target = target.max(elem_size) as u64;
    // trailing[k] = bytes of one step along axis k
    let mut trailing = vec![elem_size as u64; shape.len()];
    for k in (0..shape.len() - 1).rev() {
        trailing[k] = trailing[k + 1].saturating_mul(shape[k + 1]);
    }
    let mut k = (0..shape.len())
        .find(|&k| trailing[k] <= target)
        .unwrap_or(shape.len() - 1);
    let chunk = ds.chunks();
    if let Some(c) = &chunk {
        if let Some(j) = c.iter().take(k).position(|&e| e > 1) {
            let row = trailing[j].saturating_mul(u64::from(c[j]));
            if row <= MAX_ROW_BYTES.max(target) {
                k = j;
            }
        }
    }
    let mut run = (target / trailing[k]).max(1);
    if let Some(c) = &chunk {
        let c = u64::from(c.get(k).copied().unwrap_or(1)).max(1);
        run = if run >= c { run / c * c } else { c };
    }
    let mut outer = vec![0u64; k];
    loop {
        let mut start = 0;
        while start < shape[k] {
            let end = start.saturating_add(run).min(shape[k]);
            let mut sel: Vec<SliceInfoElem> = outer
                .iter()
                .map(|&i| SliceInfoElem::Slice {
                    start: i,
                    end: i + 1,
                    step: 1,
                })
                .collect();
            sel.push(SliceInfoElem::Slice {
                start,
                end,
                step: 1,
            });
            for &d in &shape[k + 1..] {
                sel.push(SliceInfoElem::Slice {
                    start: 0,
                    end: d,
                    step: 1,
                });
            }
            let slice = SliceInfo { selections: sel };
            // A damaged chunk among several inflated side by side fails in whichever thread
            // meets it first; the block is then read again in order, so that the error named is
            // always the first damaged chunk's (the same message on every run).
            let a = match ds.read_slice_parallel::<T>(&slice) {
                Ok(a) => a,
                Err(_) => ds.read_slice::<T>(&slice).map_err(h5)?,
            };
            match a.as_slice() {
                Some(s) => f(s)?,
                None => f(&a.iter().cloned().collect::<Vec<T>>())?,
            }
            start = end;
        }
        // the next index of the outer axes, odometer style
        let mut axis = k;
        loop {
            if axis == 0 {
                return Ok(());
            }
            axis -= 1;
            outer[axis] += 1;
            if outer[axis] < shape[axis] {
                break;
            }
            outer[axis] = 0;
        }
    }
}

/// Streams raw blocks of `N`-byte elements to `sink` in pieces of at most `chunk` bytes.
pub fn stream_fixed<const N: usize>(
    ds: &Dataset,
    shape: &[u64],
    chunk: usize,
    sink: &mut ChunkSink,
) -> Result<()> {
    let per = (chunk / N).max(1) * N;
    for_each_block::<Raw<N>>(ds, shape, N, chunk, &mut |block| {
        // SAFETY: `Raw<N>` is `repr(transparent)` over `[u8; N]` (size N, alignment 1, no
        // padding), so a slice of them is `size_of_val(block)` initialised bytes, borrowed as
        // long as `block`.
        let bytes = unsafe {
            std::slice::from_raw_parts(block.as_ptr().cast::<u8>(), std::mem::size_of_val(block))
        };
        for part in bytes.chunks(per) {
            sink(part)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_reads_are_checked_before_allocating() {
        let s = RangeStorage(FileRange::from_vec((0u8..10).collect()));
        assert_eq!(&*s.read_range(2, 3).unwrap(), &[2, 3, 4]);
        assert!(s.read_range(5, usize::MAX / 2).is_err());
        assert!(s.read_range(u64::MAX, 2).is_err());
    }

    /// Every chunked dataset of the layouts fixture, read in blocks of 64 bytes and of 1 MiB:
    /// the same bytes, and no piece over the bound.
    #[test]
    fn small_blocks_give_the_same_bytes_within_the_bound() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hdf5/layouts.h5");
        let file = std::fs::File::open(path).unwrap();
        let data = FileRange::whole(file).unwrap();
        let h5 =
            hdf5_reader::Hdf5File::from_storage(std::sync::Arc::new(RangeStorage(data))).unwrap();
        for name in ["chunked_gzip_shuffle", "wide", "three_d", "partial_fill"] {
            let ds = h5.dataset(name).unwrap();
            let shape = ds.shape().to_vec();
            let size = ds.raw_element_size().unwrap();
            let read = |chunk: usize| {
                let mut out = Vec::new();
                let mut sink = |b: &[u8]| {
                    assert!(b.len() <= chunk.max(size), "{name}: {} bytes", b.len());
                    out.extend_from_slice(b);
                    Ok(())
                };
                match size {
                    2 => stream_fixed::<2>(&ds, &shape, chunk, &mut sink).unwrap(),
                    4 => stream_fixed::<4>(&ds, &shape, chunk, &mut sink).unwrap(),
                    _ => unreachable!(),
                }
                out
            };
            let whole = ds.read_raw_bytes().unwrap();
            assert_eq!(read(64), whole, "{name}");
            assert_eq!(read(1 << 20), whole, "{name}");
        }
    }
}
