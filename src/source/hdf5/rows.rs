//! Chunked HDF5 datasets whose chunks hold whole rows (every chunk dimension after the first
//! equals the dataset's, as h5py's `chunks=(16, 1024)` on a `[n, 1024]` kernel), read chunk by
//! chunk without hdf5-reader's slice machinery: each chunk's stored bytes in one positioned read,
//! inflated into a buffer kept for the next chunk, unshuffled straight into the bytes handed to
//! the output. The crate's path builds an owned, zeroed array per block and copies every chunk
//! into it; here the decoded chunk is the output (a chunk of whole rows is a run of the
//! dataset's row-major bytes), so neither happens.
//!
//! Taken only where every check the crate makes can be made here and nothing else is needed: a
//! pipeline of shuffle, deflate and Fletcher-32 only (any filter mask, each chunk's decode
//! order checked), every chunk of the grid present exactly once (no fill value to write), chunks
//! of at most the reader's chunk limit. Each chunk's stored range is checked against the input,
//! Fletcher-32 is verified, the inflate stops one byte past the chunk's size, and the decoded
//! chunk must be exactly its size (the crate's own check). Anything else (`None` from [`plan`])
//! keeps the crate's block walk (`blocks.rs`), which reports a damaged index in its own words.
//!
//! The chunks of one dataset are decoded side by side on rayon's global pool (sized to the
//! `--jobs` workers through `crate::pool`), a window of them in flight, written in order on the
//! calling thread, as the zarr reader's `window.rs` does; a damaged chunk is reported when its
//! turn comes (the first damaged chunk in order). Talks to `stored.rs` (the chunk index walk),
//! `filters.rs` (the unshuffle) and `mod.rs` (which asks for a plan before the block walk).

use std::cell::RefCell;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use flate2::{Decompress, FlushDecompress, Status};
use hdf5_reader::filters::{FILTER_DEFLATE, FILTER_FLETCHER32, FILTER_SHUFFLE};
use hdf5_reader::messages::HdfMessage;
use hdf5_reader::{Dataset, Hdf5File};

use super::filters::unshuffle_into;
use super::stored;
use crate::input::FileRange;
use crate::tensor::ChunkSink;

/// Bytes in flight at most (each chunk's stored, inflated and decoded buffers, all chunks of the
/// window together), as the zarr reader's window.
const WINDOW_BYTES: u64 = 32 << 20;

/// Bytes of decoded chunks one task decodes and the output gets in one piece run (see
/// [`Plan::batch`]): 64 KiB chunks in runs of 16, so that a 1 GiB dataset costs 1,024 tasks and
/// wake-ups, not 16,384.
const BATCH_BYTES: usize = 1 << 20;

/// How one chunk is stored and decoded.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    /// Where its stored bytes lie in the input, and how many.
    address: u64,
    size: usize,
    /// The first row it holds.
    row: u64,
    /// The stages that decode it, in order: Fletcher-32, inflate, unshuffle.
    fletcher32: bool,
    deflate: bool,
    shuffle: bool,
}

/// How to read one dataset chunk by chunk (see the module's doc).
pub(super) struct Plan {
    data: FileRange,
    chunks: Vec<Chunk>,
    /// Bytes of one decoded chunk (its rows times the row's bytes).
    chunk_bytes: usize,
    /// Bytes of one row of the dataset.
    row_bytes: u64,
    /// Rows of the dataset.
    rows: u64,
    elem_size: usize,
}

/// The plan for `ds` (stored in `data`, of `shape` and `elem_size`-byte elements), or `None`
/// where the crate's block walk is needed (see the module's doc). `max_chunk` is the reader's
/// chunk limit.
pub(super) fn plan(
    file: &Hdf5File,
    data: &FileRange,
    ds: &Dataset,
    shape: &[u64],
    elem_size: usize,
    max_chunk: usize,
) -> Option<Plan> {
    let dims = ds.chunks()?;
    let (&first, rest) = shape.split_first()?;
    if dims.len() != shape.len() || first == 0 || elem_size == 0 {
        return None;
    }
    if dims[1..].iter().zip(rest).any(|(&c, &s)| u64::from(c) != s) || dims[0] == 0 {
        return None;
    }
    let row_bytes = rest
        .iter()
        .try_fold(elem_size as u64, |n, &d| n.checked_mul(d))?;
    let chunk_bytes = row_bytes.checked_mul(u64::from(dims[0]))?;
    if row_bytes == 0 || chunk_bytes > max_chunk as u64 {
        return None;
    }
    let header = file.get_or_parse_header(ds.address()).ok()?;
    let mut pipeline = Vec::new();
    for m in &header.messages {
        match m {
            HdfMessage::FilterPipeline(p) => pipeline = p.filters.iter().map(|f| f.id).collect(),
            HdfMessage::ExternalFiles(_) => return None,
            _ => {}
        }
    }
    if pipeline.len() > 8 {
        return None;
    }
    let entries = stored::chunk_entries(file, ds, elem_size as u64).ok()??;
    let step = u64::from(dims[0]);
    let count = first.div_ceil(step);
    if entries.len() as u64 != count {
        return None; // chunks never written (the fill value) or stale ones: the crate's walk
    }
    let mut chunks = Vec::with_capacity(entries.len());
    for e in &entries {
        let (&row, others) = e.offsets.split_first()?;
        if e.offsets.len() != shape.len() || others.iter().any(|&o| o != 0) || row % step != 0 {
            return None;
        }
        // The crate reads a chunk's stored size, or its decoded size where the index has none.
        let size = match e.size {
            0 => chunk_bytes,
            n => n,
        };
        // A stored chunk no larger than its data could deflate to (zlib's bound is about
        // 1/4096 over, Fletcher-32 adds 4 bytes): a hostile index cannot make each small chunk
        // read and hold the whole file; anything larger is the crate's walk.
        if size > chunk_bytes + chunk_bytes / 256 + 1024 {
            return None;
        }
        let stages = stages(&pipeline, e.filter_mask)?;
        chunks.push(Chunk {
            address: e.address,
            size: usize::try_from(size).ok()?,
            row,
            fletcher32: stages.0,
            deflate: stages.1,
            shuffle: stages.2,
        });
    }
    chunks.sort_by_key(|c| c.row);
    // every chunk of the grid exactly once (the count matched, so no gap and no duplicate)
    if chunks
        .iter()
        .enumerate()
        .any(|(i, c)| c.row != i as u64 * step)
    {
        return None;
    }
    // Addresses count from the superblock's base address (after a user block), as the crate
    // reads them through its offset view of the input.
    let base = file.superblock().base_address;
    let data = data.slice(base, data.len().checked_sub(base)?).ok()?;
    Some(Plan {
        data,
        chunks,
        chunk_bytes: chunk_bytes as usize,
        row_bytes,
        rows: first,
        elem_size,
    })
}

/// The decode stages of a chunk stored through `pipeline` (filter ids in the order they were
/// applied) with `mask` (bit i: filter i skipped): the unmasked filters, last applied first, must
/// be Fletcher-32, deflate and shuffle in that order, each at most once; `None` otherwise.
fn stages(pipeline: &[u16], mask: u32) -> Option<(bool, bool, bool)> {
    let mut order = [FILTER_FLETCHER32, FILTER_DEFLATE, FILTER_SHUFFLE].into_iter();
    let mut on = (false, false, false);
    for (i, &id) in pipeline.iter().enumerate().rev() {
        if mask & (1 << i) != 0 {
            continue;
        }
        // the next expected stage with this id; an id out of order or repeated fails
        loop {
            let want = order.next()?;
            if want == id {
                break;
            }
        }
        match id {
            FILTER_FLETCHER32 => on.0 = true,
            FILTER_DEFLATE => on.1 = true,
            _ => on.2 = true,
        }
    }
    Some(on)
}

/// One chunk's buffers: its stored bytes, the inflated (still shuffled) bytes and the decoded
/// chunk; kept for a later chunk once this one is written.
#[derive(Default)]
struct Buffers {
    stored: Vec<u8>,
    inflated: Vec<u8>,
    decoded: Vec<u8>,
}

thread_local! {
    /// Each thread's inflate state, made once and reset for every chunk.
    static INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

impl Plan {
    /// Streams the dataset's bytes to `sink` in pieces of at most `piece` bytes (whole elements).
    pub(super) fn stream(&self, piece: usize, sink: &mut ChunkSink) -> Result<()> {
        self.stream_in(self.batch(), piece, sink)
    }

    /// [`Plan::stream`] in runs of `batch` chunks.
    fn stream_in(&self, batch: usize, piece: usize, sink: &mut ChunkSink) -> Result<()> {
        let per = (piece / self.elem_size).max(1) * self.elem_size;
        let window = self.window(batch);
        let shared = Arc::new(self.clone_for_pool());
        let mut queue = crate::pool::InOrder::new(window);
        let mut free: Vec<Buffers> = Vec::new();
        let mut one = Buffers::default();
        for (i, run) in self.chunks.chunks(batch).enumerate() {
            crate::error::check_interrupted()?;
            if window < 2 {
                decode_batch(&shared, run, &mut one)?;
                self.emit(run, &one, per, sink)?;
                continue;
            }
            let mut b = free.pop().unwrap_or_default();
            let (p, run) = (shared.clone(), run.to_vec());
            let turn = queue.push(move || {
                let r = decode_batch(&p, &run, &mut b);
                (i, r, b)
            })?;
            if let Some(done) = turn {
                free.push(self.emit_batch(done, batch, per, sink)?);
            }
        }
        while let Some(done) = queue.pop()? {
            free.push(self.emit_batch(done, batch, per, sink)?);
        }
        Ok(())
    }

    /// Chunks decoded one after another by one task (and written in one piece run): about
    /// [`BATCH_BYTES`], so that small chunks do not each cost a task, a wake-up and a write.
    fn batch(&self) -> usize {
        (BATCH_BYTES / self.chunk_bytes.max(1)).max(1)
    }

    /// How many batches to decode at once: 1 (on this thread) for `--jobs 1`, one batch,
    /// batches too large for two of them in [`WINDOW_BYTES`], or when called on a thread of the
    /// pool itself (waiting for the pool could wait for this very thread).
    fn window(&self, batch: usize) -> usize {
        // stored, inflated and decoded: about three times the batch
        let each = (self.chunk_bytes as u64)
            .saturating_mul(batch as u64)
            .saturating_mul(3);
        let batches = self.chunks.len().div_ceil(batch) as u64;
        crate::pool::window(each, batches, WINDOW_BYTES).unwrap_or(1)
    }

    /// What a pool thread needs of the plan (not the chunk list).
    fn clone_for_pool(&self) -> Plan {
        Plan {
            data: self.data.clone(),
            chunks: Vec::new(),
            ..*self
        }
    }

    /// Writes batch `i` in its turn (its decoding's result `r`), and hands back its buffers.
    fn emit_batch(
        &self,
        (i, r, b): (usize, Result<()>, Buffers),
        batch: usize,
        per: usize,
        sink: &mut ChunkSink,
    ) -> Result<Buffers> {
        let run = self
            .chunks
            .chunks(batch)
            .nth(i)
            .expect("a batch of the plan");
        r?;
        self.emit(run, &b, per, sink)?;
        Ok(b)
    }

    /// Writes the rows of a decoded run of chunks that lie inside the dataset (an edge chunk is
    /// cut).
    fn emit(&self, run: &[Chunk], b: &Buffers, per: usize, sink: &mut ChunkSink) -> Result<()> {
        let first = run[0].row;
        let end = (run[run.len() - 1].row + self.chunk_rows()).min(self.rows);
        let need = ((end - first) * self.row_bytes) as usize;
        for part in b.decoded[..need].chunks(per) {
            sink(part)?;
        }
        Ok(())
    }

    fn chunk_rows(&self) -> u64 {
        self.chunk_bytes as u64 / self.row_bytes
    }
}

/// The chunk a message is about.
fn at(c: Chunk) -> String {
    format!(
        "chunk at row {} ({} bytes at offset {})",
        c.row, c.size, c.address
    )
}

/// Decodes a run of consecutive chunks into `b.decoded`, one after another (chunk k at
/// `k * chunk_bytes`); an error names the chunk. The buffers keep their length from run to run,
/// so that they are zeroed once, not per chunk.
fn decode_batch(p: &Plan, run: &[Chunk], b: &mut Buffers) -> Result<()> {
    let cb = p.chunk_bytes;
    let Buffers {
        stored,
        inflated,
        decoded,
    } = b;
    // one byte past the last chunk: the inflate's room to show a chunk too long
    let len = cb * run.len() + 1;
    if decoded.len() < len {
        decoded.resize(len, 0);
    }
    for (k, &c) in run.iter().enumerate() {
        decode(p, c, stored, inflated, &mut decoded[k * cb..][..cb + 1]).with_context(|| at(c))?;
    }
    Ok(())
}

/// Reads and decodes chunk `c` of `p` into `out[..p.chunk_bytes]` (`out` holds one byte more,
/// which the next chunk overwrites).
fn decode(
    p: &Plan,
    c: Chunk,
    stored: &mut Vec<u8>,
    inflated: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<()> {
    let expected = p.chunk_bytes;
    let end = c.address.checked_add(c.size as u64);
    if end.is_none_or(|e| e > p.data.len()) {
        bail!(
            "its {} stored bytes at offset {} lie past the end of the file ({} bytes)",
            c.size,
            c.address,
            p.data.len()
        );
    }
    let exact = |n: usize| -> Result<()> {
        if n != expected {
            bail!("it decodes to {n} bytes, its chunk shape needs {expected}");
        }
        Ok(())
    };
    if !(c.fletcher32 || c.deflate || c.shuffle) {
        exact(c.size)?;
        return p.data.read_at(c.address, &mut out[..expected]);
    }
    stored.resize(c.size, 0);
    p.data.read_at(c.address, stored)?;
    let mut bytes: &[u8] = stored;
    if c.fletcher32 {
        let Some(cut) = bytes.len().checked_sub(4) else {
            bail!("it is too short for its Fletcher-32 checksum");
        };
        let (payload, sum) = bytes.split_at(cut);
        let want = u32::from_le_bytes(sum.try_into().expect("4 bytes"));
        let got = hdf5_reader::checksum::fletcher32(payload);
        if got != want {
            bail!("Fletcher-32 checksum mismatch: stored {want:#010x}, computed {got:#010x}");
        }
        crate::checksum::verified(1);
        bytes = payload;
    }
    if c.deflate {
        if !c.shuffle {
            return exact(inflate(bytes, expected, out)?);
        }
        if inflated.len() < expected + 1 {
            inflated.resize(expected + 1, 0);
        }
        let n = inflate(bytes, expected, &mut inflated[..expected + 1])?;
        bytes = &inflated[..n];
    }
    exact(bytes.len())?;
    if c.shuffle {
        unshuffle_into(bytes, p.elem_size, &mut out[..expected]);
    } else {
        out[..expected].copy_from_slice(bytes); // Fletcher-32 alone
    }
    Ok(())
}

/// Inflates the zlib stream `src` into `out` (`expected + 1` bytes) and says how many bytes came
/// out: at most one past `expected`, so that a chunk bomb decodes no further; a stream that does
/// not finish in that room is refused, as hdf5-reader refuses it.
fn inflate(src: &[u8], expected: usize, out: &mut [u8]) -> Result<usize> {
    debug_assert_eq!(out.len(), expected + 1);
    INFLATE.with(|d| {
        let mut d = d.borrow_mut();
        let d = d.get_or_insert_with(|| Decompress::new(true));
        d.reset(true);
        let status = d
            .decompress(src, out, FlushDecompress::Finish)
            .map_err(|e| anyhow!("DEFLATE decompression failed: {e}"))?;
        let n = d.total_out() as usize;
        if n > expected {
            bail!("it inflates to more than the {expected} bytes of its chunk shape");
        }
        if !matches!(status, Status::StreamEnd) {
            bail!("DEFLATE decompression failed: stream did not finish");
        }
        Ok(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::hdf5::blocks::RangeStorage;

    /// The decode order: the unmasked filters, last applied first, must be Fletcher-32, deflate
    /// and shuffle, each at most once; any other filter or order keeps the crate's path.
    #[test]
    fn only_fletcher32_deflate_and_shuffle_in_order_are_taken() {
        let (s, d, f) = (FILTER_SHUFFLE, FILTER_DEFLATE, FILTER_FLETCHER32);
        assert_eq!(stages(&[], 0), Some((false, false, false)));
        assert_eq!(stages(&[s, d], 0), Some((false, true, true)));
        assert_eq!(stages(&[s, d, f], 0), Some((true, true, true)));
        assert_eq!(stages(&[d], 0), Some((false, true, false)));
        // deflate skipped for this chunk (mask bit 1): only the unshuffle
        assert_eq!(stages(&[s, d], 0b10), Some((false, false, true)));
        assert_eq!(stages(&[d, s], 0), None, "shuffle applied after deflate");
        assert_eq!(stages(&[d, d], 0), None, "deflate twice");
        assert_eq!(stages(&[32000], 0), None, "LZF");
        assert_eq!(stages(&[s, 32000], 0b10), Some((false, false, true)));
    }

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A chunk stops inflating one byte past its size; a short or cut stream is refused.
    #[test]
    fn the_inflate_stops_one_byte_past_the_chunk() {
        let mut out = vec![0u8; 16385 + 7];
        let bomb = zlib(&vec![0u8; 64 << 20]);
        let err = inflate(&bomb, 16384, &mut out[..16385])
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the 16384 bytes"), "{err}");
        assert_eq!(out[16385..], [0; 7], "nothing past the room was written");
        let plain: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = zlib(&plain);
        assert_eq!(inflate(&z, 5000, &mut out[..5001]).unwrap(), 5000);
        assert_eq!(&out[..5000], &plain[..]);
        // the same buffer again, for a chunk whose stream is cut
        let err = inflate(&z[..z.len() / 2], 5000, &mut out[..5001]).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
        // a stream of fewer bytes than the chunk inflates completely, then the size is checked
        assert_eq!(inflate(&z, 6000, &mut out[..6001]).unwrap(), 5000);
    }

    /// Every dataset of the fixtures that this path takes reads the same bytes as the crate's own
    /// whole-dataset read (which h5py's oracles check), in pieces of 64 bytes and of 1 MiB, on one
    /// thread and in a window on the pool; and the path is taken where it should be.
    #[test]
    fn the_fixtures_read_the_same_bytes_as_the_crates_path() {
        let mut taken = Vec::new();
        for fixture in ["layouts.h5", "filters.h5", "latest.h5"] {
            let path = format!("{}/fixtures/hdf5/{fixture}", env!("CARGO_MANIFEST_DIR"));
            let data = FileRange::whole(std::fs::File::open(&path).unwrap()).unwrap();
            let h5 = Hdf5File::from_storage(Arc::new(RangeStorage(data.clone()))).unwrap();
            let root = h5.root_group().unwrap();
            let (_, datasets) = root.members().unwrap();
            for ds in datasets {
                let size = ds.raw_element_size().unwrap();
                let shape = ds.shape().to_vec();
                let Some(plan) = plan(&h5, &data, &ds, &shape, size, 64 << 20) else {
                    continue;
                };
                let whole = ds.read_raw_bytes().unwrap();
                for piece in [64, 1 << 20] {
                    for window in [false, true] {
                        let mut got = Vec::new();
                        let mut sink = |b: &[u8]| {
                            assert!(b.len() <= piece.max(size));
                            got.extend_from_slice(b);
                            Ok(())
                        };
                        if window {
                            plan.stream(piece, &mut sink).unwrap();
                            // runs of one and two chunks, several in flight on the pool
                            for batch in [1, 2] {
                                let mut again = Vec::new();
                                plan.stream_in(batch, piece, &mut |b: &[u8]| {
                                    again.extend_from_slice(b);
                                    Ok(())
                                })
                                .unwrap();
                                assert_eq!(again, whole, "{fixture}: {} by {batch}", ds.name());
                            }
                        } else {
                            let mut b = Buffers::default();
                            for c in &plan.chunks {
                                let run = std::slice::from_ref(c);
                                decode_batch(&plan, run, &mut b).unwrap();
                                plan.emit(run, &b, piece, &mut sink).unwrap();
                            }
                        }
                        assert_eq!(got, whole, "{fixture}: {}", ds.name());
                    }
                }
                taken.push(format!("{fixture}:{}", ds.name()));
            }
        }
        for name in [
            "layouts.h5:one_d_chunked",
            "filters.h5:grown",
            "latest.h5:fixed_array",
            "latest.h5:extensible",
        ] {
            assert!(
                taken.iter().any(|t| t == name),
                "{name} not taken: {taken:?}"
            );
        }
    }

    /// Shuffle + deflate + Fletcher-32 on 4-byte elements, the crate's own pipeline as the
    /// reference: the same bytes, the checksum counted; a flipped checksum byte is refused.
    #[test]
    fn fletcher32_deflate_and_shuffle_decode_as_the_crates_pipeline() {
        use hdf5_reader::filters::apply_pipeline_with_limit;
        use hdf5_reader::messages::filter_pipeline::FilterDescription;
        let plain: Vec<u8> = (0..3000u32)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let n = plain.len() / 4;
        let mut shuffled = vec![0u8; plain.len()];
        for (i, e) in plain.chunks_exact(4).enumerate() {
            for b in 0..4 {
                shuffled[b * n + i] = e[b];
            }
        }
        let mut stored = zlib(&shuffled);
        let sum = hdf5_reader::checksum::fletcher32(&stored);
        stored.extend_from_slice(&sum.to_le_bytes());
        let ids = [FILTER_SHUFFLE, FILTER_DEFLATE, FILTER_FLETCHER32];
        let filters: Vec<FilterDescription> = ids
            .iter()
            .map(|&id| FilterDescription {
                id,
                name: None,
                client_data: vec![],
            })
            .collect();
        let theirs =
            apply_pipeline_with_limit(&stored, &filters, 0, 4, None, Some(plain.len() + 1))
                .unwrap();
        assert_eq!(theirs, plain);
        let (f, d, s) = stages(&ids, 0).unwrap();
        let chunk = Chunk {
            address: 3,
            size: stored.len(),
            row: 0,
            fletcher32: f,
            deflate: d,
            shuffle: s,
        };
        let mut bytes = vec![9u8; 3];
        bytes.extend_from_slice(&stored);
        let plan = |bytes: Vec<u8>| Plan {
            data: FileRange::from_vec(bytes),
            chunks: vec![chunk],
            chunk_bytes: plain.len(),
            row_bytes: 4,
            rows: n as u64,
            elem_size: 4,
        };
        let mut b = Buffers::default();
        let before = crate::checksum::verified_count();
        decode_batch(&plan(bytes.clone()), &[chunk], &mut b).unwrap();
        assert!(crate::checksum::verified_count() > before);
        assert_eq!(&b.decoded[..plain.len()], &plain[..]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let err = decode_batch(&plan(bytes.clone()), &[chunk], &mut b).unwrap_err();
        assert!(format!("{err:#}").contains("Fletcher-32"), "{err:#}");
        // a chunk whose stored range passes the end of the input
        bytes.truncate(last);
        let err = decode_batch(&plan(bytes), &[chunk], &mut b).unwrap_err();
        assert!(format!("{err:#}").contains("past the end"), "{err:#}");
        assert!(err.to_string().contains("chunk at row 0"), "{err}");
    }
}
