//! The filter registry the HDF5 reader opens files with: hdf5-reader's own decoders, each given
//! an explicit output limit, and a faster inverse of the shuffle filter.
//!
//! Why every decoder is registered, not only the shuffle: hdf5-reader 0.12 bounds a stage's
//! output by the encoded-size bound of the filters before it, and gives up that bound (leaving
//! only its 4 GiB ceiling) as soon as one of them is a registered ("custom") filter. Registering
//! the shuffle alone would let a shuffled, deflated chunk inflate to 4 GiB. So the decoders that
//! can expand (deflate, szip, n-bit, scale-offset) are registered too, as calls of the crate's
//! own `decompress_with_limit` with [`stage_limit`] of the largest chunk any dataset of the file
//! declares ([`largest_chunk`]; at most the reader's chunk limit). h5py's LZF filter (32000),
//! which hdf5-reader does not have, is decoded here under the same limit. The crate still checks every
//! chunk's final output against that chunk's own size + 1. Fletcher-32 only strips 4 bytes: the
//! crate's check, registered to count it for `verify`. Talks to: `super` (which builds the registry when it opens a file and sets
//! the largest chunk after its walk) and hdf5-reader's filter registry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hdf5_reader::filters::{
    deflate, fletcher32, nbit, scaleoffset, szip, FilterRegistry, FILTER_DEFLATE,
    FILTER_FLETCHER32, FILTER_NBIT, FILTER_SCALEOFFSET, FILTER_SHUFFLE, FILTER_SZIP,
};
use hdf5_reader::messages::filter_pipeline::FilterDescription;
use hdf5_reader::Dataset;

/// The most bytes one filter stage may decode to, when no chunk of the file decodes to more than
/// `largest` bytes: the chunk plus room for the encoded-size growth of the filters stacked under
/// it (zlib's `compressBound` adds n/3277 + 13 per deflate, scale-offset 22 bytes, Fletcher-32 4),
/// so that a legitimate intermediate stage always fits and a chunk bomb stops at about its size.
pub fn stage_limit(largest: usize) -> usize {
    largest.saturating_add(largest / 256).saturating_add(1024)
}

/// The largest decoded chunk (chunk elements times element size) of `datasets`, at most `cap`
/// (the crate refuses larger chunks before decoding them).
pub fn largest_chunk<'a>(datasets: impl Iterator<Item = &'a Dataset>, cap: usize) -> usize {
    datasets
        .filter_map(|ds| {
            let dims = ds.chunks()?;
            let size = ds.raw_element_size().ok()? as u64;
            let bytes = dims
                .iter()
                .try_fold(size, |n, &d| n.checked_mul(u64::from(d)))
                .unwrap_or(u64::MAX);
            Some(usize::try_from(bytes).unwrap_or(usize::MAX).min(cap))
        })
        .max()
        .unwrap_or(0)
}

/// hdf5-reader's built-in filters, with [`unshuffle`] as the shuffle filter and every expanding
/// decoder bounded by [`stage_limit`] of `largest` (read at each call: the reader lowers it from
/// the chunk limit to the file's largest chunk once it has walked the file).
pub fn registry(largest: Arc<AtomicUsize>) -> FilterRegistry {
    let mut r = FilterRegistry::new();
    r.register(
        FILTER_SHUFFLE,
        Box::new(|_: &FilterDescription, data: &[u8], size: usize| Ok(unshuffle(data, size))),
    );
    let limit = move || stage_limit(largest.load(Ordering::Relaxed));
    let l = limit.clone();
    r.register(
        FILTER_DEFLATE,
        Box::new(move |_: &FilterDescription, data: &[u8], _| {
            deflate::decompress_with_limit(data, l())
        }),
    );
    let l = limit.clone();
    r.register(
        FILTER_SZIP,
        Box::new(move |f: &FilterDescription, data: &[u8], _| {
            szip::decompress_with_limit(data, &f.client_data, l())
        }),
    );
    let l = limit.clone();
    r.register(
        FILTER_NBIT,
        Box::new(move |f: &FilterDescription, data: &[u8], _| {
            nbit::decompress_with_limit(data, &f.client_data, l())
        }),
    );
    let l = limit.clone();
    r.register(
        FILTER_SCALEOFFSET,
        Box::new(move |f: &FilterDescription, data: &[u8], _| {
            scaleoffset::decompress_with_limit(data, &f.client_data, l())
        }),
    );
    // the crate's own check, counted for `verify` (it only strips 4 bytes: no limit needed)
    r.register(
        FILTER_FLETCHER32,
        Box::new(|_: &FilterDescription, data: &[u8], _| {
            let out = fletcher32::verify_and_strip(data)?;
            crate::checksum::verified(1);
            Ok(out)
        }),
    );
    r.register(
        FILTER_LZF,
        Box::new(move |_: &FilterDescription, data: &[u8], _| {
            lzf_decompress(data, limit()).map_err(|e| {
                hdf5_reader::error::Error::DecompressionError(format!("lzf filter: {e}"))
            })
        }),
    );
    r
}

/// A filter of `ds`'s pipeline that [`registry`] does not decode and that some chunk was stored
/// through (its bit clear in the chunk's filter mask: h5py adds third-party filters as optional
/// ones, which chunks may skip), said as "NAME-compressed TYPE (filter id N ...)" with the name of
/// the plugin h5py users add through hdf5plugin (or PyTables' blosc and bzip2); `None` when every
/// stored chunk
/// decodes (or the chunks cannot be listed: reading them then says why).
pub fn unknown_filter(
    file: &hdf5_reader::Hdf5File,
    ds: &Dataset,
    elem_size: u64,
) -> Option<String> {
    let header = file.get_or_parse_header(ds.address()).ok()?;
    let unknown: Vec<(usize, u16)> = header
        .messages
        .iter()
        .find_map(|m| match m {
            hdf5_reader::messages::HdfMessage::FilterPipeline(p) => Some(p),
            _ => None,
        })?
        .filters
        .iter()
        .enumerate()
        .filter(|(_, f)| !KNOWN.contains(&f.id))
        .map(|(i, f)| (i, f.id))
        .collect();
    if unknown.is_empty() {
        return None;
    }
    let chunks = super::stored::chunk_entries(file, ds, elem_size).ok()??;
    let &(_, id) = unknown.iter().find(|&&(i, _)| {
        chunks
            .iter()
            .any(|c| i >= 32 || c.filter_mask & (1u32 << i) == 0)
    })?;
    let name = match id {
        305 => "LZO",
        307 => "bzip2",
        32001 => "Blosc",
        32004 => "LZ4",
        32008 => "bitshuffle",
        32013 => "ZFP",
        32015 => "Zstandard",
        32017 => "SZ",
        32026 => "Blosc2",
        _ => "third-party",
    };
    Some(format!(
        "{name}-compressed {} (filter id {id}, not decoded here)",
        type_name(ds.dtype())
    ))
}

/// The stored type in a word, for the message naming a filter not decoded.
fn type_name(dt: &hdf5_reader::Datatype) -> String {
    use hdf5_reader::Datatype as D;
    match dt {
        D::FixedPoint { size, signed, .. } => {
            format!("{}{}", if *signed { "int" } else { "uint" }, 8 * size)
        }
        D::FloatingPoint { size, .. } => format!("float{}", 8 * size),
        _ => "data".into(),
    }
}

/// The filter ids [`registry`] decodes.
const KNOWN: [u16; 7] = [
    FILTER_DEFLATE,
    FILTER_SHUFFLE,
    FILTER_FLETCHER32,
    FILTER_SZIP,
    FILTER_NBIT,
    FILTER_SCALEOFFSET,
    FILTER_LZF,
];

/// h5py's LZF filter (`compression="lzf"`), registered with HDF5 as id 32000.
pub const FILTER_LZF: u16 = 32000;

/// Decodes a raw LZF stream (liblzf's `lzf_decompress`, which h5py's filter calls on the whole
/// chunk): a control byte below 32 copies that many + 1 literal bytes; any other is a back
/// reference of `(ctrl >> 5) + 2` bytes (7 means one more length byte follows) at distance
/// `((ctrl & 31) << 8) + next byte + 1`. Never writes more than `limit` bytes; a reference
/// before the start or a stream cut short is an error. (The `lzf` crate is deprecated.)
pub fn lzf_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(2).min(limit));
    let mut i = 0;
    let byte = |i: usize| data.get(i).copied().ok_or("the stream ends inside a token");
    while i < data.len() {
        let ctrl = usize::from(data[i]);
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = data.get(i..i + run).ok_or("a literal run past the end")?;
            if out.len() + run > limit {
                return Err(format!("decodes to more than {limit} bytes"));
            }
            out.extend_from_slice(lit);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(byte(i)?);
                i += 1;
            }
            let dist = ((ctrl & 0x1f) << 8) + usize::from(byte(i)?) + 1;
            i += 1;
            len += 2;
            let from = out
                .len()
                .checked_sub(dist)
                .ok_or("a back reference before the start")?;
            if out.len() + len > limit {
                return Err(format!("decodes to more than {limit} bytes"));
            }
            for k in 0..len {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
    Ok(out)
}

/// Reverses the shuffle filter: `data` holds byte 0 of every element, then byte 1 of every
/// element, and so on; bytes past the last whole element stay where they are. hdf5-reader's own
/// moves a byte at a time with two bounds checks per byte.
pub fn unshuffle(data: &[u8], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    unshuffle_into(data, size, &mut out);
    out
}

/// [`unshuffle`] into `out`, which holds as many bytes as `data` (`rows.rs` writes a chunk
/// straight into the buffer that goes to the output).
pub fn unshuffle_into(data: &[u8], size: usize, out: &mut [u8]) {
    assert_eq!(data.len(), out.len(), "unshuffle_into: unequal lengths");
    let n = data.len().checked_div(size).unwrap_or(0);
    if size <= 1 || n == 0 {
        out.copy_from_slice(data);
        return;
    }
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
}

/// [`unshuffle`] of `n` whole elements of `S` bytes, 16 at a time: constant bounds that the
/// compiler unrolls into byte shuffles.
fn gather<const S: usize>(data: &[u8], out: &mut [u8], n: usize) {
    let planes: [&[u8]; S] = std::array::from_fn(|b| &data[b * n..][..n]);
    let blocks = n / 16;
    for (k, dst) in out.chunks_exact_mut(16 * S).take(blocks).enumerate() {
        let src: [&[u8; 16]; S] =
            std::array::from_fn(|b| planes[b][k * 16..][..16].try_into().unwrap());
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
    use hdf5_reader::filters::apply_pipeline_with_limit;

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

    /// A stream with literals, a short and a long back reference (overlapping), as liblzf
    /// writes them; broken streams are refused, and the limit holds.
    #[test]
    fn lzf_decodes_literals_and_back_references() {
        // "abc" literal, then a 3-byte copy at distance 3, then a 12-byte copy at distance 1
        let stream = [2, b'a', b'b', b'c', 1 << 5, 2, 7 << 5, 3, 0];
        let out = lzf_decompress(&stream, 100).unwrap();
        assert_eq!(out, [b"abcabc".as_slice(), &[b'c'; 12]].concat());
        assert!(lzf_decompress(&stream, 10)
            .unwrap_err()
            .contains("more than 10"));
        assert!(lzf_decompress(&[2, b'a'], 100)
            .unwrap_err()
            .contains("past the end"));
        assert!(lzf_decompress(&[0, b'a', 1 << 5, 5], 100)
            .unwrap_err()
            .contains("before the start"));
        assert!(lzf_decompress(&[0, b'a', 1 << 5], 100)
            .unwrap_err()
            .contains("ends inside"));
    }

    /// Arbitrary bytes are decoded or refused, never a panic, never past the limit.
    #[test]
    fn lzf_never_panics_on_arbitrary_bytes() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..2000 {
            let data: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if let Ok(out) = lzf_decompress(&data, 64) {
                assert!(out.len() <= 64);
            }
        }
    }

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn pipeline(ids: &[u16]) -> Vec<FilterDescription> {
        ids.iter()
            .map(|&id| FilterDescription {
                id,
                name: None,
                client_data: vec![],
            })
            .collect()
    }

    /// Shuffle + deflate through the registry: the same bytes as the crate's built-ins, and a
    /// chunk that inflates past the file's largest chunk is refused at the stage limit (the
    /// crate alone would have let this stage run to 4 GiB once the shuffle was registered).
    #[test]
    fn shuffled_deflate_decodes_the_same_and_keeps_a_limit() {
        let plain: Vec<u8> = (0..4096u32).flat_map(|i| (i * 7).to_le_bytes()).collect();
        let shuffled = {
            let n = plain.len() / 4;
            let mut s = vec![0u8; plain.len()];
            for (i, e) in plain.chunks_exact(4).enumerate() {
                for b in 0..4 {
                    s[b * n + i] = e[b];
                }
            }
            s
        };
        let stored = zlib(&shuffled);
        let filters = pipeline(&[FILTER_SHUFFLE, FILTER_DEFLATE]);
        let largest = Arc::new(AtomicUsize::new(plain.len()));
        let reg = registry(largest.clone());
        let ours = apply_pipeline_with_limit(&stored, &filters, 0, 4, Some(&reg), Some(16385));
        let theirs = apply_pipeline_with_limit(&stored, &filters, 0, 4, None, Some(16385));
        assert_eq!(ours.unwrap(), plain);
        assert_eq!(theirs.unwrap(), plain);

        // 64 MiB of zeros (64 KiB stored) in a file whose largest chunk is 16 KiB: the inflate
        // stops at the stage limit, and the crate's own check of the chunk's size refuses it.
        let bomb = zlib(&vec![0u8; 64 << 20]);
        let err = apply_pipeline_with_limit(&bomb, &filters, 0, 4, Some(&reg), Some(16385))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limit 16385"), "{err}");
        // The deflate stage alone, as the pipeline calls a registered filter (no limit passed):
        // it stops at the stage limit, where the crate's 4 GiB would have let all 64 MiB out.
        let inflated = reg.apply_with_limit(&filters[1], &bomb, 4, None).unwrap();
        assert_eq!(inflated.len(), stage_limit(16384));
        assert_eq!(stage_limit(16384), 16384 + 64 + 1024);
    }
}
