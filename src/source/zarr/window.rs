//! The chunks of one array decoded side by side: a bounded window of chunks in flight on rayon's
//! global pool (sized to the `--jobs` workers through `crate::pool`, as the HDF5 reader's chunk
//! inflate is), handed to the output in order on the calling thread, which writes one chunk
//! while the pool decodes the next ones.
//!
//! Used by `chunks.rs` for its row-chunk path when the chunks are encoded and small enough that
//! a window of them fits [`WINDOW_BYTES`] (chunks up to 8 MiB); larger chunks, raw chunks and
//! `--jobs 1` keep the streaming path (one piece in memory). A damaged chunk is reported when its
//! turn comes, so the error names the first damaged chunk in order, as the streaming path does
//! (zstd's own words for the damage may differ: one call here, a stream there); the chunks
//! before it have been written.

use std::io::Read;

use anyhow::{bail, Context, Result};

use super::chunks::{decode, decoder, ArrayReader, Emitter};
use super::meta::Codec;
use crate::input::FileRange;

/// Bytes in flight at most, stored and decoded, all chunks of the window together.
pub const WINDOW_BYTES: u64 = 32 << 20;

/// How many chunks of `chunk_bytes` to keep in flight on the pool, or `None` when the chunks are
/// better streamed one at a time: a pool of one thread (`--jobs 1`), fewer than two chunks,
/// or chunks so large that two of them (their stored and decoded bytes, about twice the chunk)
/// pass [`WINDOW_BYTES`]. Called before the pool is used; builds it only when it will be used
/// (an array of one chunk, as Orbax writes, never does).
pub fn window(chunk_bytes: u64, chunks: u64) -> Option<usize> {
    crate::pool::window(chunk_bytes.max(1).saturating_mul(2), chunks, WINDOW_BYTES)
}

/// The buffers one chunk is decoded with, its stored bytes and its decoded bytes; once the chunk
/// is written they go to a later one, so that the window allocates nothing after it is full.
#[derive(Default)]
struct Buffers {
    stored: Vec<u8>,
    decoded: Vec<u8>,
}

/// A chunk's place in the output: the fill value (absent), or its decoding.
enum Slot {
    Fill(u64),
    Decoded {
        key: String,
        need: u64,
        result: Result<()>,
        buffers: Buffers,
    },
}

impl ArrayReader<'_> {
    /// The row-chunk path (see `chunks.rs`) with up to `window` chunks decoding at once.
    pub(super) fn stream_rows_window(&self, out: &mut Emitter, window: usize) -> Result<()> {
        let m = self.meta;
        let row: u64 = m.chunks[1..].iter().product::<u64>() * m.item as u64;
        let total = m.chunk_bytes();
        let mut queue = crate::pool::InOrder::new(window);
        let mut free: Vec<Buffers> = Vec::with_capacity(window);
        for i in 0..m.grid()[0] {
            crate::error::check_interrupted()?;
            let mut idx = vec![0u64; m.shape.len()];
            idx[0] = i;
            let key = format!("{}{}", self.prefix, m.chunk_key(&idx));
            let rows = m.chunks[0].min(m.shape[0] - i * m.chunks[0]);
            let need = rows * row;
            let got = self.store.get(&key);
            let turn = match got.with_context(|| self.store.describe(&key))? {
                None => queue.push_ready(Slot::Fill(need / m.item as u64))?,
                Some(range) => {
                    let codecs = m.layout.codecs.clone();
                    let mut buffers = free.pop().unwrap_or_default();
                    queue.push(move || {
                        let result = decode_chunk(&range, &codecs, total, &mut buffers);
                        Slot::Decoded {
                            key,
                            need,
                            result,
                            buffers,
                        }
                    })?
                }
            };
            if let Some(slot) = turn {
                self.emit(slot, out, &mut free)?;
            }
        }
        while let Some(slot) = queue.pop()? {
            self.emit(slot, out, &mut free)?;
        }
        Ok(())
    }

    /// Writes a chunk in its turn: its first `need` bytes, or its fill.
    fn emit(&self, slot: Slot, out: &mut Emitter, free: &mut Vec<Buffers>) -> Result<()> {
        match slot {
            Slot::Fill(n) => out.fill(&self.meta.fill, n),
            Slot::Decoded {
                key,
                need,
                result,
                buffers,
            } => {
                result.with_context(|| self.store.describe(&key))?;
                out.push_whole(&buffers.decoded[..need as usize])?;
                free.push(buffers);
                Ok(())
            }
        }
    }
}

/// One stored chunk decoded whole into `b.decoded` (`total` bytes, checked), with the messages
/// of the streaming path. A lone zstd, gzip or zlib codec is decoded from the stored bytes read
/// in one piece (zstd in one call, with a decompression context kept by each thread); any other
/// chain goes through `decode`.
fn decode_chunk(range: &FileRange, codecs: &[Codec], total: u64, b: &mut Buffers) -> Result<()> {
    let c = match codecs {
        [c @ (Codec::Zstd | Codec::Gzip | Codec::Zlib)] => c,
        _ => {
            b.decoded = decode(range, codecs, total)?;
            return Ok(());
        }
    };
    // Stored bytes no encoding of `total` bytes needs are streamed from the store instead.
    let bound = total.saturating_mul(2).saturating_add(1 << 20);
    if range.len() > bound {
        let mut r = decoder(c, range.clone())?;
        return read_into(&mut r, total, &mut b.decoded)
            .with_context(|| format!("corrupt {c:?} chunk"));
    }
    b.stored.resize(range.len() as usize, 0);
    range.read_at(0, &mut b.stored)?;
    let stored = &b.stored[..range.len() as usize];
    let out = &mut b.decoded;
    match c {
        Codec::Zstd => zstd_into(stored, total, out),
        Codec::Gzip => read_into(
            &mut flate2::bufread::MultiGzDecoder::new(stored),
            total,
            out,
        ),
        _ => read_into(&mut flate2::bufread::ZlibDecoder::new(stored), total, out),
    }
    .with_context(|| format!("corrupt {c:?} chunk"))
}

thread_local! {
    /// Each pool thread's zstd decompression context, made once.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A zstd frame decoded in one call into `out`, which must come to exactly `total` bytes.
fn zstd_into(stored: &[u8], total: u64, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.reserve_exact(total as usize + 1);
    let n = ZSTD.with(|z| -> Result<usize> {
        let mut z = z.borrow_mut();
        if z.is_none() {
            *z = Some(zstd::bulk::Decompressor::new().context("cannot start zstd")?);
        }
        let z = z.as_mut().expect("just made");
        match z.decompress_to_buffer(stored, out) {
            Ok(n) => Ok(n),
            // zstd's own name for a frame larger than the room given
            Err(e) if e.to_string() == "Destination buffer is too small" => Ok(usize::MAX),
            Err(e) => Err(e.into()),
        }
    })? as u64;
    if n > total {
        bail!("it decodes to more than the {total} bytes of its chunk shape");
    }
    if n != total {
        bail!("it decodes to {n} bytes, its chunk shape needs {total}");
    }
    Ok(())
}

/// A decoded stream read into `out`, which must come to exactly `total` bytes (the checks and
/// messages of `chunks::read_exactly`).
fn read_into(r: &mut dyn Read, total: u64, out: &mut Vec<u8>) -> Result<()> {
    out.resize(total as usize, 0);
    let mut seen = 0;
    while seen < out.len() {
        match r.read(&mut out[seen..]) {
            Ok(0) => bail!("it decodes to {seen} bytes, its chunk shape needs {total}"),
            Ok(n) => seen += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut one = [0u8; 1];
    loop {
        match r.read(&mut one) {
            Ok(0) => return Ok(()),
            Ok(_) => bail!("it decodes to more than the {total} bytes of its chunk shape"),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::source::zarr::chunks::Store;
    use crate::source::zarr::meta::parse_v2;

    /// Chunks in memory, by key.
    struct Mem(HashMap<String, Vec<u8>>);

    impl Store for Mem {
        fn get(&self, key: &str) -> Result<Option<FileRange>> {
            Ok(self.0.get(key).cloned().map(FileRange::from_vec))
        }
        fn describe(&self, key: &str) -> String {
            format!("mem/{key}")
        }
    }

    /// 42 rows of 3 float32 in chunks of 4 rows (the last one half used), compressed by `id`
    /// (zstd, gzip or zlib); chunk 5 absent (its fill value 7.0 read instead).
    fn array_of(id: &str) -> (Mem, Vec<u8>, super::super::meta::ArrayMeta) {
        let meta = parse_v2(
            format!(
                r#"{{"zarr_format": 2, "shape": [42, 3], "chunks": [4, 3], "dtype": "<f4",
                "fill_value": 7.0, "order": "C", "filters": null,
                "compressor": {{"id": "{id}", "level": 1}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let compress = |b: &[u8]| -> Vec<u8> {
            use std::io::Write;
            let level = flate2::Compression::fast();
            match id {
                "gzip" => {
                    let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                    e.write_all(b).unwrap();
                    e.finish().unwrap()
                }
                "zlib" => {
                    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                    e.write_all(b).unwrap();
                    e.finish().unwrap()
                }
                _ => zstd::bulk::compress(b, 1).unwrap(),
            }
        };
        let (mut chunks, mut want) = (HashMap::new(), Vec::new());
        for c in 0..11u32 {
            let vals: Vec<f32> = (0..12).map(|i| (c * 12 + i) as f32 * 0.5).collect();
            let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            let rows = if c == 10 { 2 } else { 4 };
            if c == 5 {
                want.extend(std::iter::repeat_n(7f32.to_le_bytes(), 12).flatten());
                continue;
            }
            want.extend_from_slice(&bytes[..rows * 12]);
            chunks.insert(format!("{c}.0"), compress(&bytes));
        }
        (Mem(chunks), want, meta)
    }

    /// Runs the streaming path (`window` None) or the window, in pieces of 20 bytes; the bytes
    /// written (up to a failure) and the error.
    fn run(
        store: &Mem,
        meta: &super::super::meta::ArrayMeta,
        window: Option<usize>,
    ) -> (Vec<u8>, Option<String>) {
        let mut got = Vec::new();
        let mut sink = |b: &[u8]| {
            assert!(b.len() <= 20);
            got.extend_from_slice(b);
            Ok(())
        };
        let mut out = Emitter::new(20, &mut sink);
        let r = ArrayReader {
            store,
            prefix: "",
            meta,
        };
        let done = match window {
            None => r.stream_rows(&mut out),
            Some(w) => r.stream_rows_window(&mut out, w),
        }
        .and_then(|()| out.flush());
        drop(out);
        (got, done.err().map(|e| format!("{e:#}")))
    }

    fn array() -> (Mem, Vec<u8>, super::super::meta::ArrayMeta) {
        array_of("zstd")
    }

    /// One chunk, or chunks too large for two in the window, stream one at a time; a window
    /// never holds more than twice the pool's threads or [`WINDOW_BYTES`].
    #[test]
    fn the_window_is_bounded() {
        assert_eq!(window(1 << 20, 1), None);
        assert_eq!(window(9 << 20, 1000), None);
        let threads = rayon::current_num_threads();
        for (bytes, n) in [(1 << 20, 1000), (8 << 20, 1000), (64, 3)] {
            match window(bytes, n) {
                None => assert_eq!(threads, 1),
                Some(w) => {
                    assert!(w >= 2 && w <= 2 * threads && w as u64 <= n, "{w}");
                    assert!(w as u64 * bytes * 2 <= WINDOW_BYTES, "{w} x {bytes}");
                }
            }
        }
    }

    #[test]
    fn the_window_writes_what_the_stream_writes() {
        for id in ["zstd", "gzip", "zlib"] {
            let (store, want, meta) = array_of(id);
            for w in [2, 3, 16] {
                assert_eq!(
                    run(&store, &meta, Some(w)),
                    (want.clone(), None),
                    "{id} {w}"
                );
            }
            assert_eq!(run(&store, &meta, None), (want, None), "{id}");
        }
    }

    /// Chunks 6 and 8 damaged: every window names chunk 6 as the streaming path does (zstd's
    /// own words for the damage may differ: one call against a stream), after writing the same
    /// bytes before it.
    #[test]
    fn a_damaged_chunk_is_named_in_order_as_the_stream_names_it() {
        let (mut store, _, meta) = array();
        for k in ["6.0", "8.0"] {
            let c = store.0.get_mut(k).unwrap();
            c.truncate(c.len() / 2);
        }
        let (before, err) = run(&store, &meta, None);
        let err = err.unwrap();
        assert!(err.starts_with("mem/6.0: corrupt Zstd chunk"), "{err}");
        for w in [2, 3, 16] {
            let (got, e) = run(&store, &meta, Some(w));
            let e = e.unwrap();
            assert!(
                e.starts_with("mem/6.0: corrupt Zstd chunk: "),
                "window {w}: {e}"
            );
            // Whole pieces only: the streaming path may have written part of chunk 6.
            assert_eq!(got[..], before[..got.len()], "window {w}");
            assert!(
                got.len() >= 6 * 48 / 20 * 20,
                "window {w}: {} bytes",
                got.len()
            );
        }
    }
}
