//! The HDF5 shuffle filter's inverse, registered in place of hdf5-reader's own: that one moves a
//! byte at a time with two bounds checks per byte, and took 16 % of the cycles of converting a
//! shuffled, deflated dataset (BENCHMARKS.md, round 6); this one gathers whole elements from the
//! byte planes of the chunk, 16 at a time for the widths of float and integer elements. Same bytes
//! out. Talks to: `super` (which registers it when it opens a file) and hdf5-reader's filter
//! registry.

use hdf5_reader::filters::{FilterRegistry, FILTER_SHUFFLE};
use hdf5_reader::messages::filter_pipeline::FilterDescription;

/// hdf5-reader's built-in filters, with [`unshuffle`] as the shuffle filter.
pub fn registry() -> FilterRegistry {
    let mut r = FilterRegistry::new();
    r.register(
        FILTER_SHUFFLE,
        Box::new(|_: &FilterDescription, data: &[u8], size: usize| Ok(unshuffle(data, size))),
    );
    r
}

/// Reverses the shuffle filter: `data` holds byte 0 of every element, then byte 1 of every
/// element, and so on; bytes past the last whole element stay where they are.
pub fn unshuffle(data: &[u8], size: usize) -> Vec<u8> {
    let n = data.len().checked_div(size).unwrap_or(0);
    if size <= 1 || n == 0 {
        return data.to_vec();
    }
    let mut out = vec![0u8; data.len()];
    let whole = n * size;
    match size {
        2 => gather::<2>(&data[..whole], &mut out[..whole], n),
        4 => gather::<4>(&data[..whole], &mut out[..whole], n),
        8 => gather::<8>(&data[..whole], &mut out[..whole], n),
        _ => {
            for (b, plane) in data[..whole].chunks_exact(n).enumerate() {
                for (o, &v) in out[b..].iter_mut().step_by(size).zip(plane) {
                    *o = v;
                }
            }
        }
    }
    out[whole..].copy_from_slice(&data[whole..]);
    out
}

/// [`unshuffle`] of `n` whole elements of `S` bytes, 16 at a time: constant bounds that the
/// compiler unrolls into byte shuffles (2.3x less CPU than hdf5-reader's loop for 4-byte
/// elements, measured with `perf stat` on 256 MiB of 64 KiB chunks).
fn gather<const S: usize>(data: &[u8], out: &mut [u8], n: usize) {
    let planes: [&[u8]; S] = std::array::from_fn(|b| &data[b * n..][..n]);
    let blocks = n / 16;
    for (k, dst) in out.chunks_exact_mut(16 * S).take(blocks).enumerate() {
        let src: [&[u8]; S] = std::array::from_fn(|b| &planes[b][k * 16..][..16]);
        for i in 0..16 {
            for b in 0..S {
                dst[i * S + b] = src[b][i];
            }
        }
    }
    for i in blocks * 16..n {
        for b in 0..S {
            out[i * S + b] = planes[b][i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hdf5-reader's own unshuffle is the reference: the same bytes for every element width,
    /// with and without trailing bytes.
    #[test]
    fn matches_hdf5_readers_unshuffle() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for size in [1, 2, 3, 4, 5, 8, 16] {
            for len in [0, 1, 7, 8, 64, 130, 999, 1000] {
                assert_eq!(
                    unshuffle(&data[..len], size),
                    hdf5_reader::filters::shuffle::unshuffle(&data[..len], size),
                    "size {size}, {len} bytes"
                );
            }
        }
    }
}
