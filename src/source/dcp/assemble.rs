//! Sharded tensors put back together: chunks (boxes of a global tensor, each at its element
//! offsets, each stored as its own C-order bytes somewhere in a file) checked to tile the tensor
//! exactly, then streamed out row-major in pieces of the caller's chunk size, in bounded memory.
//!
//! The zarr reader's assembly (`zarr/chunks.rs`) walks a regular grid of equal chunks named by
//! their grid index, with padded edge chunks; the chunks of a Distributed Checkpoint are boxes
//! of any size at any offset (uneven shards, 2-D meshes, FSDP's flat views), stored unpadded, so
//! they are placed here by their offsets instead.
//!
//! The output is cut into lines: trailing dimensions that every chunk spans whole are merged
//! into the last one first, so a row-sharded (`Shard(0)`) tensor is one line and each chunk one
//! contiguous read, and a column-sharded one is a line per row with one run per chunk. Each
//! run is read where it lies through a small per-chunk block cache; nothing holds more than
//! the output piece and those caches, whatever the tensor's size.

use anyhow::{bail, Result};

use crate::container::cursor::Window;
use crate::input::FileRange;
use crate::tensor::{checked_elements, ChunkSink};

/// A region (box) of a tensor: element offsets and extents, one per dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub offsets: Vec<u64>,
    pub sizes: Vec<u64>,
}

/// The most chunks one tensor may have.
const MAX_CHUNKS: usize = 1 << 20;
/// Memory for the block caches of all chunks together.
const CACHE_BYTES: u64 = 64 << 20;

impl Region {
    fn elements(&self) -> u64 {
        // bounded by the tensor's element count, checked by `check_tiling` first
        self.sizes.iter().product()
    }

    fn is_empty(&self) -> bool {
        self.sizes.contains(&0)
    }

    fn overlaps(&self, o: &Region) -> bool {
        (0..self.sizes.len()).all(|d| {
            self.offsets[d] < o.offsets[d] + o.sizes[d]
                && o.offsets[d] < self.offsets[d] + self.sizes[d]
        })
    }
}

/// Checks that `boxes` tile a tensor of `shape` exactly: each inside it, none overlapping
/// another, together covering every element.
pub fn check_tiling(shape: &[u64], boxes: &[&Region]) -> Result<()> {
    let total = checked_elements(shape)?;
    if boxes.len() > MAX_CHUNKS {
        bail!("{} chunks, more than the {MAX_CHUNKS} allowed", boxes.len());
    }
    let mut covered: u64 = 0;
    for (i, b) in boxes.iter().enumerate() {
        if b.offsets.len() != shape.len() || b.sizes.len() != shape.len() {
            bail!(
                "chunk {i} has {} offsets and {} sizes for a tensor of {} dimensions",
                b.offsets.len(),
                b.sizes.len(),
                shape.len()
            );
        }
        for d in 0..shape.len() {
            if b.offsets[d]
                .checked_add(b.sizes[d])
                .is_none_or(|e| e > shape[d])
            {
                bail!(
                    "chunk {i} (offsets {:?}, sizes {:?}) reaches past the tensor's shape {shape:?}",
                    b.offsets,
                    b.sizes
                );
            }
        }
        // inside the shape, so its element count fits
        covered = covered.saturating_add(b.elements());
    }
    // Overlaps: a sweep along the first dimension compares only boxes whose extents meet there.
    let mut order: Vec<usize> = (0..boxes.len()).filter(|&i| !boxes[i].is_empty()).collect();
    let first = |i: usize| boxes[i].offsets.first().copied().unwrap_or(0);
    order.sort_by_key(|&i| first(i));
    for (k, &i) in order.iter().enumerate() {
        let end = boxes[i]
            .offsets
            .first()
            .map_or(1, |o| o + boxes[i].sizes[0]);
        for &j in &order[k + 1..] {
            if first(j) >= end && !shape.is_empty() {
                break;
            }
            if boxes[i].overlaps(boxes[j]) {
                bail!(
                    "chunks {i} (offsets {:?}, sizes {:?}) and {j} (offsets {:?}, sizes {:?}) overlap",
                    boxes[i].offsets,
                    boxes[i].sizes,
                    boxes[j].offsets,
                    boxes[j].sizes
                );
            }
        }
    }
    if covered != total {
        bail!(
            "the chunks cover {covered} of the {total} elements of shape {shape:?}: they leave a hole"
        );
    }
    Ok(())
}

/// A chunk and its bytes: `prod(sizes) * item` bytes in C order.
pub struct Piece {
    pub region: Region,
    pub data: FileRange,
}

/// Streams the tensor of `shape` that `pieces` tile (checked again by [`check_tiling`]) row-major,
/// in pieces of at most `chunk` bytes of whole elements.
pub fn stream(
    shape: &[u64],
    item: u64,
    pieces: &[Piece],
    chunk: usize,
    sink: &mut ChunkSink,
) -> Result<()> {
    let total = checked_elements(shape)?;
    if total == 0 {
        return Ok(());
    }
    if item == 0 {
        bail!("elements of 0 bytes");
    }
    let regions: Vec<&Region> = pieces.iter().map(|p| &p.region).collect();
    check_tiling(shape, &regions)?;
    if total.checked_mul(item).is_none() {
        bail!("shape {shape:?} of {item}-byte elements has more bytes than fit in 64 bits");
    }
    for (i, p) in pieces.iter().enumerate() {
        let want = p.region.elements() * item;
        if p.data.len() != want {
            bail!(
                "chunk {i} holds {} bytes, its sizes {:?} need {want}",
                p.data.len(),
                p.region.sizes
            );
        }
    }
    let live: Vec<&Piece> = pieces.iter().filter(|p| !p.region.is_empty()).collect();
    // Merge the trailing dimensions every chunk spans whole into the last kept one.
    let r = shape.len();
    let mut t = r.saturating_sub(1);
    while t > 0
        && live
            .iter()
            .all(|p| p.region.offsets[t] == 0 && p.region.sizes[t] == shape[t])
    {
        t -= 1;
    }
    let inner: u64 = shape.get(t + 1..).map_or(1, |s| s.iter().product());
    let line_len = shape.get(t).map_or(1, |s| s * inner);
    // Each chunk in the merged view: offsets and sizes over dims 0..t, and its extent along
    // the merged last dimension.
    struct View {
        off: Vec<u64>,
        size: Vec<u64>,
        first: u64,
        len: u64,
    }
    let views: Vec<View> = live
        .iter()
        .map(|p| View {
            off: p.region.offsets[..t.min(r)].to_vec(),
            size: p.region.sizes[..t.min(r)].to_vec(),
            first: p.region.offsets.get(t).map_or(0, |o| o * inner),
            len: p.region.sizes.get(t).map_or(1, |s| s * inner),
        })
        .collect();
    let block = (CACHE_BYTES / live.len().max(1) as u64).clamp(64 << 10, 1 << 20);
    let mut caches: Vec<Window> = live
        .iter()
        .map(|p| Window::new(p.data.clone(), block as usize))
        .collect();
    let step = ((chunk as u64 / item).max(1) * item) as usize;
    let mut out: Vec<u8> = Vec::with_capacity(step.min(1 << 24));
    let mut idx = vec![0u64; t];
    let mut row0 = u64::MAX;
    let mut candidates: Vec<usize> = Vec::new();
    loop {
        crate::error::check_interrupted()?;
        // The chunks that hold this line, by their start along it.
        if idx.first().copied().unwrap_or(0) != row0 {
            row0 = idx.first().copied().unwrap_or(0);
            candidates = (0..views.len())
                .filter(|&k| {
                    views[k]
                        .off
                        .first()
                        .is_none_or(|&o| o <= row0 && row0 < o + views[k].size[0])
                })
                .collect();
        }
        let mut runs: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&k| {
                (1..t).all(|d| {
                    views[k].off[d] <= idx[d] && idx[d] < views[k].off[d] + views[k].size[d]
                })
            })
            .collect();
        runs.sort_by_key(|&k| views[k].first);
        let mut at = 0u64;
        for &k in &runs {
            let v = &views[k];
            if v.first != at {
                bail!("the chunks leave a hole at element {at} of line {idx:?}");
            }
            // the line's position inside the chunk, in elements
            let lin = idx
                .iter()
                .zip(&v.off)
                .zip(&v.size)
                .fold(0u64, |lin, ((i, o), s)| lin * s + (i - o));
            let mut pos = lin * v.len * item;
            let mut left = v.len * item;
            while left > 0 {
                let take = left.min((step - out.len()) as u64) as usize;
                let len = out.len();
                out.resize(len + take, 0);
                caches[k].read(pos, &mut out[len..])?;
                pos += take as u64;
                left -= take as u64;
                if out.len() == step {
                    sink(&out)?;
                    out.clear();
                }
            }
            at += v.len;
        }
        if at != line_len {
            bail!("the chunks leave a hole at element {at} of line {idx:?}");
        }
        // Next line, last dimension fastest.
        if !crate::tensor::next_index(&mut idx, &shape[..t]) {
            if !out.is_empty() {
                sink(&out)?;
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(offsets: &[u64], sizes: &[u64]) -> Region {
        Region {
            offsets: offsets.to_vec(),
            sizes: sizes.to_vec(),
        }
    }

    /// The pieces of a `shape` tensor holding 0..n as i32, cut into `boxes`.
    fn cut(shape: &[u64], boxes: &[Region]) -> Vec<Piece> {
        let strides: Vec<u64> = (0..shape.len())
            .map(|d| shape[d + 1..].iter().product())
            .collect();
        boxes
            .iter()
            .map(|bx| {
                let n = bx.elements();
                let mut bytes = Vec::new();
                for e in 0..n {
                    // element e of the box, row-major, at its global position
                    let mut rem = e;
                    let mut g = 0u64;
                    for d in (0..shape.len()).rev() {
                        let i = rem % bx.sizes[d];
                        rem /= bx.sizes[d];
                        g += (bx.offsets[d] + i) * strides[d];
                    }
                    bytes.extend_from_slice(&(g as i32).to_le_bytes());
                }
                Piece {
                    region: bx.clone(),
                    data: FileRange::from_vec(bytes),
                }
            })
            .collect()
    }

    fn assembled(shape: &[u64], boxes: &[Region], chunk: usize) -> Vec<i32> {
        let refs: Vec<&Region> = boxes.iter().collect();
        check_tiling(shape, &refs).unwrap();
        let pieces = cut(shape, boxes);
        let mut out = Vec::new();
        stream(shape, 4, &pieces, chunk, &mut |c: &[u8]| {
            assert!(c.len() <= chunk.max(4) && c.len().is_multiple_of(4));
            out.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        out.chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn rows_columns_and_grids_come_out_whole_in_c_order() {
        let cases: Vec<(Vec<u64>, Vec<Region>)> = vec![
            (vec![5, 3], vec![b(&[0, 0], &[3, 3]), b(&[3, 0], &[2, 3])]),
            (vec![2, 12], vec![b(&[0, 6], &[2, 6]), b(&[0, 0], &[2, 6])]),
            (
                vec![2, 3, 4],
                vec![b(&[0, 0, 0], &[2, 3, 2]), b(&[0, 0, 2], &[2, 3, 2])],
            ),
            (
                vec![4, 5],
                vec![
                    b(&[0, 0], &[2, 3]),
                    b(&[0, 3], &[2, 2]),
                    b(&[2, 0], &[2, 3]),
                    b(&[2, 3], &[2, 2]),
                ],
            ),
            (vec![3], vec![b(&[0], &[3]), b(&[3], &[0])]),
            (vec![], vec![b(&[], &[])]),
        ];
        for (shape, boxes) in cases {
            let n: u64 = shape.iter().product();
            let want: Vec<i32> = (0..n as i32).collect();
            for chunk in [4, 12, 1 << 20] {
                assert_eq!(assembled(&shape, &boxes, chunk), want, "{shape:?} {chunk}");
            }
        }
    }

    #[test]
    fn overlaps_holes_and_strays_are_refused() {
        let shape = [4u64, 4];
        let check = |boxes: &[Region]| {
            let refs: Vec<&Region> = boxes.iter().collect();
            check_tiling(&shape, &refs).map_err(|e| e.to_string())
        };
        let e = check(&[b(&[0, 0], &[3, 4]), b(&[2, 0], &[2, 4])]).unwrap_err();
        assert!(e.contains("overlap"), "{e}");
        let e = check(&[b(&[0, 0], &[2, 4]), b(&[3, 0], &[1, 4])]).unwrap_err();
        assert!(e.contains("hole"), "{e}");
        let e = check(&[b(&[0, 0], &[4, 4]), b(&[0, 0], &[0, 9])]).unwrap_err();
        assert!(e.contains("past the tensor"), "{e}");
        let e = check(&[b(&[0, 0], &[4, 2]), b(&[u64::MAX, 2], &[4, 2])]).unwrap_err();
        assert!(e.contains("past the tensor"), "{e}");
        let e = check(&[b(&[0], &[4])]).unwrap_err();
        assert!(e.contains("dimensions"), "{e}");
        // the same region twice covers the count but overlaps
        let e = check(&[b(&[0, 0], &[2, 4]), b(&[0, 0], &[2, 4])]).unwrap_err();
        assert!(e.contains("overlap"), "{e}");
        assert!(check(&[b(&[2, 0], &[2, 4]), b(&[0, 0], &[2, 4])]).is_ok());
    }
}
