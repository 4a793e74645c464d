//! Fortran-order arrays streamed in C order, in bounded memory, from a random-access range:
//! the first axis varies fastest in the file, so the output is read in slabs of first-axis
//! indices. A slab of `w` indices is one run of `w` elements at each position of the other
//! axes; the runs are read into a buffer of at most `budget` bytes and emitted in C order.
//! When even one index's worth of runs exceeds the budget, elements are read one by one
//! through a one-block cache (slow, but bounded). Used by `mod.rs` only.

use anyhow::Result;

use crate::input::FileRange;
use crate::tensor::ChunkSink;

/// The block the element-by-element fallback reads at a time.
const BLOCK: u64 = 1 << 20;

/// Streams the Fortran-order array of `shape` (elements of `item` bytes, starting at byte 0 of
/// `range`, which holds them all) in C order, in chunks of whole elements of at most about
/// `chunk` bytes.
pub fn stream_c_order(
    range: &FileRange,
    shape: &[u64],
    item: u64,
    chunk: usize,
    budget: u64,
    sink: &mut ChunkSink,
) -> Result<()> {
    let total: u64 = shape.iter().product();
    if total == 0 {
        return Ok(());
    }
    if shape.len() < 2 || total / shape[0] == 1 {
        // one axis (or all but one of length 1): the two orders agree
        return range
            .slice(0, total * item)?
            .stream(item as usize, chunk, sink);
    }
    let first = shape[0];
    let rest = total / first; // positions of the other axes
    let step = ((chunk as u64 / item).max(1) * item) as usize;
    let mut out: Vec<u8> = Vec::with_capacity(step);
    let mut emit = |bytes: &[u8], out: &mut Vec<u8>| -> Result<()> {
        out.extend_from_slice(bytes);
        if out.len() >= step {
            sink(out)?;
            out.clear();
        }
        Ok(())
    };
    let per_index = rest * item;
    if per_index <= budget {
        let w = (budget / per_index).clamp(1, first);
        let mut buf = vec![0u8; (w * per_index) as usize];
        let mut a = 0;
        while a < first {
            crate::error::check_interrupted()?;
            let w = w.min(first - a);
            let run = (w * item) as usize;
            // run r (position r of the other axes, first of them fastest) starts at a + r*first
            for r in 0..rest {
                let at = (a + r * first) * item;
                range.read_at(at, &mut buf[r as usize * run..(r as usize + 1) * run])?;
            }
            for i in 0..w {
                // C order: the other axes with the last fastest, i.e. r in "reversed" order
                for_each_c_position(&shape[1..], &mut |r| {
                    let at = (r * w + i) as usize * item as usize;
                    emit(&buf[at..at + item as usize], &mut out)
                })?;
            }
            a += w;
        }
    } else {
        let mut cache = crate::container::cursor::Window::new(range.clone(), BLOCK as usize);
        let mut el = vec![0u8; item as usize];
        for i in 0..first {
            crate::error::check_interrupted()?;
            for_each_c_position(&shape[1..], &mut |r| {
                cache.read((i + r * first) * item, &mut el)?;
                emit(&el, &mut out)
            })?;
        }
    }
    if !out.is_empty() {
        sink(&out)?;
    }
    Ok(())
}

/// Calls `f` with the Fortran-order linear position of each index of `dims` (the first axis
/// fastest in that position), visiting the indices in C order (the last axis fastest).
fn for_each_c_position(dims: &[u64], f: &mut dyn FnMut(u64) -> Result<()>) -> Result<()> {
    let mut strides = Vec::with_capacity(dims.len());
    let mut s = 1u64;
    for &d in dims {
        strides.push(s);
        s *= d;
    }
    let mut idx = vec![0u64; dims.len()];
    let mut pos = 0u64;
    loop {
        f(pos)?;
        let mut k = dims.len();
        loop {
            if k == 0 {
                return Ok(());
            }
            k -= 1;
            idx[k] += 1;
            pos += strides[k];
            if idx[k] < dims[k] {
                break;
            }
            pos -= strides[k] * idx[k];
            idx[k] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Fortran-order array of shape [2, 3, 4] whose element (i, j, k) is 100i + 10j + k.
    fn fortran() -> Vec<u8> {
        let mut v = vec![0u8; 24];
        for i in 0..2u8 {
            for j in 0..3u8 {
                for k in 0..4u8 {
                    v[(i + 2 * j + 6 * k) as usize] = 100 * i + 10 * j + k;
                }
            }
        }
        v
    }

    #[test]
    fn fortran_order_comes_out_in_c_order_whatever_the_budget_and_chunk() {
        let want: Vec<u8> = (0..2u8)
            .flat_map(|i| (0..3u8).flat_map(move |j| (0..4u8).map(move |k| 100 * i + 10 * j + k)))
            .collect();
        let range = FileRange::from_vec(fortran());
        for budget in [0, 1, 12, 13, 24, 1 << 20] {
            for chunk in [1, 5, 64] {
                let mut got = Vec::new();
                stream_c_order(&range, &[2, 3, 4], 1, chunk, budget, &mut |c: &[u8]| {
                    assert!(c.len() <= chunk.max(1) + 1);
                    got.extend_from_slice(c);
                    Ok(())
                })
                .unwrap();
                assert_eq!(got, want, "budget {budget} chunk {chunk}");
            }
        }
    }
}
