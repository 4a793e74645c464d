//! zarr chunks: fetched from a [`Store`] (a folder, local or in a bucket, or an OCDBT
//! database), decoded through the codec chain of [`ArrayMeta`] and assembled into the whole
//! array, streamed row-major in pieces of the caller's chunk size.
//!
//! Two ways through. When every chunk spans the full extent of every axis but the first (one
//! chunk per array, as Orbax writes; or row blocks) and is stored in C order, chunk `i` is rows
//! `i*c0..` of the output as they stand: its bytes are streamed through the decoder (zstd,
//! gzip, zlib) or straight from the store, so memory stays at one piece whatever the chunk
//! size. Otherwise output rows are copied run by run from the decoded chunks of the current row
//! of chunks (those sharing the first axis' chunk index), each decoded once: held in memory up
//! to 64 MiB, beyond that (and any chunk of 8 MiB or more whose codec streams) decoded into an
//! anonymous temporary file, or read in place when raw. A chunk absent
//! from the store reads as the fill value, as zarr reads it. Every decoded size is checked
//! against the chunk shape, so a truncated or padded chunk is an error naming its key.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use super::meta::{ArrayMeta, Codec, Layout};
use crate::input::{FileRange, RangeReader};
use crate::tensor::ChunkSink;

/// Where chunk bytes come from.
pub trait Store: Send + Sync {
    /// The value stored under `key`, or `None` when there is none.
    fn get(&self, key: &str) -> Result<Option<FileRange>>;
    /// Where `key` lives, for messages (a file path, or a key in a database).
    fn describe(&self, key: &str) -> String;
}

/// The most bytes one chunk may decode to when it has to be held whole.
const MAX_CHUNK: u64 = 2 << 30;
/// Memory for the decoded chunks of one row of chunks in the general assembly path (beyond it,
/// chunks wait in temporary files).
const CACHE_BYTES: u64 = 64 << 20;

/// One array of a store: its metadata and the key prefix of its chunks (`""` or `sub/w/`).
pub struct ArrayReader<'a> {
    pub store: &'a dyn Store,
    pub prefix: &'a str,
    pub meta: &'a ArrayMeta,
}

impl ArrayReader<'_> {
    /// Streams the whole array row-major, in pieces of at most `chunk` bytes of whole elements.
    pub fn stream(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let m = self.meta;
        if m.shape.contains(&0) {
            return Ok(());
        }
        let mut out = Emitter::new((chunk / m.item).max(1) * m.item, sink);
        // Chunks exactly as wide as the array on every axis but the first (a wider chunk pads
        // its rows, so they are not output rows).
        let full_rows =
            m.shape.len() <= 1 || (m.chunks[1..].iter().zip(&m.shape[1..])).all(|(c, s)| c == s);
        let c_order = m.layout.perm.as_ref().is_none_or(|p| is_identity(p));
        if m.sharding.is_none() && c_order && full_rows && !m.shape.is_empty() {
            // Encoded chunks small enough are decoded side by side on the pool (`window.rs`).
            let window = match m.layout.codecs.is_empty() {
                true => None,
                false => super::window::window(m.chunk_bytes(), m.grid()[0]),
            };
            match window {
                Some(w) => self.stream_rows_window(&mut out, w)?,
                None => self.stream_rows(&mut out)?,
            }
        } else {
            self.assemble(&mut out)?;
        }
        out.flush()
    }

    /// The fast path: chunk `i` along axis 0 is output rows `i*c0..`, in order, one chunk at a
    /// time.
    pub(super) fn stream_rows(&self, out: &mut Emitter) -> Result<()> {
        let m = self.meta;
        let row: u64 = m.chunks[1..].iter().product::<u64>() * m.item as u64;
        let chunk_bytes = m.chunk_bytes();
        let n = m.grid()[0];
        for i in 0..n {
            let mut idx = vec![0u64; m.shape.len()];
            idx[0] = i;
            let key = format!("{}{}", self.prefix, m.chunk_key(&idx));
            let rows = m.chunks[0].min(m.shape[0] - i * m.chunks[0]);
            let need = rows * row;
            let at = || self.store.describe(&key);
            let Some(range) = self.store.get(&key).with_context(at)? else {
                out.fill(&m.fill, need / m.item as u64)?;
                continue;
            };
            match m.layout.codecs.as_slice() {
                [] => {
                    if range.len() != chunk_bytes {
                        bail!(
                            "{}: the chunk holds {} bytes, its shape {:?} needs {chunk_bytes}",
                            at(),
                            range.len(),
                            m.chunks
                        );
                    }
                    let mut left = need;
                    let mut pos = 0;
                    while left > 0 {
                        let n = left.min(out.room() as u64);
                        let mut b = vec![0u8; n as usize];
                        range.read_at(pos, &mut b).with_context(at)?;
                        out.push(&b)?;
                        pos += n;
                        left -= n;
                    }
                }
                [c @ (Codec::Zstd | Codec::Gzip | Codec::Zlib)] => {
                    let mut r = decoder(c, range).with_context(at)?;
                    stream_decoded(&mut r, need, chunk_bytes, out)
                        .with_context(|| format!("{}: corrupt {c:?} chunk", at()))?;
                }
                _ => {
                    let bytes = decode(&range, &m.layout.codecs, chunk_bytes).with_context(at)?;
                    out.push(&bytes[..need as usize])?;
                }
            }
        }
        Ok(())
    }

    /// The general path: every output row copied run by run from decoded (C-order) chunks.
    fn assemble(&self, out: &mut Emitter) -> Result<()> {
        let m = self.meta;
        let unit: Vec<u64> = match &m.sharding {
            Some(s) => s.inner.clone(),
            None => m.chunks.clone(),
        };
        let mut cache = Cache {
            map: HashMap::new(),
            bytes: 0,
            shard_index: None,
        };
        let mut scratch = Vec::new();
        if m.shape.is_empty() {
            return match self.unit(&[], &unit, &mut cache)? {
                Some(d) => d.copy(0, m.item, &mut scratch, out),
                None => out.fill(&m.fill, 1),
            };
        }
        let r = m.shape.len();
        let last = r - 1;
        // strides (elements) of a C-order unit chunk
        let mut stride = vec![1u64; r];
        for d in (0..last).rev() {
            stride[d] = stride[d + 1] * unit[d + 1];
        }
        let mut row = vec![0u64; last];
        let per_last = m.shape[last].div_ceil(unit[last]);
        let mut slab = u64::MAX;
        loop {
            crate::error::check_interrupted()?;
            // A new row of chunks along the first axis: the previous one's chunks are done.
            let this_slab = row.first().map_or(0, |r| r / unit[0]);
            if this_slab != slab {
                cache.clear();
                slab = this_slab;
            }
            let mut idx: Vec<u64> = row.iter().zip(&unit).map(|(i, u)| i / u).collect();
            idx.push(0);
            let base: u64 = row
                .iter()
                .zip(&unit)
                .zip(&stride)
                .map(|((i, u), s)| (i % u) * s)
                .sum();
            for j in 0..per_last {
                idx[last] = j;
                let run = unit[last].min(m.shape[last] - j * unit[last]);
                match self.unit(&idx, &unit, &mut cache)? {
                    Some(d) => {
                        let from = (base * m.item as u64) as usize;
                        d.copy(from, run as usize * m.item, &mut scratch, out)?;
                    }
                    None => out.fill(&m.fill, run)?,
                }
            }
            // next row
            let mut d = last;
            loop {
                if d == 0 {
                    return Ok(());
                }
                d -= 1;
                row[d] += 1;
                if row[d] < m.shape[d] {
                    break;
                }
                row[d] = 0;
            }
        }
    }

    /// Decoded unit chunk `idx` (a chunk, or an inner chunk of a shard) in C order; `None`
    /// when it is absent (the fill value).
    fn unit(&self, idx: &[u64], unit: &[u64], cache: &mut Cache) -> Result<Option<Decoded>> {
        if let Some(c) = cache.map.get(idx) {
            return Ok(c.clone());
        }
        let m = self.meta;
        let unit_bytes = unit.iter().product::<u64>() * m.item as u64;
        if unit_bytes > MAX_CHUNK {
            bail!("a chunk of {unit:?} elements is larger than {MAX_CHUNK} bytes");
        }
        let got = match &m.sharding {
            None => {
                let key = format!("{}{}", self.prefix, m.chunk_key(idx));
                let at = || self.store.describe(&key);
                match self.store.get(&key).with_context(at)? {
                    None => None,
                    Some(range) => {
                        Some(decode_unit(&range, &m.layout, unit, m.item, cache).with_context(at)?)
                    }
                }
            }
            Some(s) => {
                let ratio: Vec<u64> = m.chunks.iter().zip(&s.inner).map(|(c, i)| c / i).collect();
                let shard: Vec<u64> = idx.iter().zip(&ratio).map(|(i, r)| i / r).collect();
                let mut k = 0u64;
                for ((i, r), _) in idx.iter().zip(&ratio).zip(&shard) {
                    k = k * r + i % r;
                }
                let n_inner: u64 = ratio.iter().product();
                let key = format!("{}{}", self.prefix, m.chunk_key(&shard));
                let at = || self.store.describe(&key);
                let fresh = cache.shard_index.as_ref().is_none_or(|(k, _)| *k != key);
                if fresh {
                    let loaded = match self.store.get(&key).with_context(at)? {
                        None => None,
                        Some(mut range) => {
                            if !m.layout.codecs.is_empty() {
                                // bytes-to-bytes codecs after sharding_indexed compress the
                                // whole shard (zarr-python's default compressor beside a
                                // `serializer=ShardingCodec(...)`): undo them first
                                let whole = undo_codecs(&range, &m.layout.codecs, MAX_CHUNK);
                                range = FileRange::from_vec(whole.with_context(at)?);
                            }
                            let index = shard_index(&range, n_inner, s.index_crc, s.index_at_start)
                                .with_context(at)?;
                            Some((index, range))
                        }
                    };
                    cache.shard_index = Some((key.clone(), loaded));
                }
                let (_, loaded) = cache.shard_index.as_ref().expect("just set");
                match loaded {
                    None => None,
                    Some((index, range)) => {
                        let e = (k * 16) as usize;
                        let off = u64::from_le_bytes(index[e..e + 8].try_into().unwrap());
                        let len = u64::from_le_bytes(index[e + 8..e + 16].try_into().unwrap());
                        if off == u64::MAX && len == u64::MAX {
                            None
                        } else {
                            let part = range.slice(off, len).with_context(|| {
                                format!("{}: inner chunk {k} of the shard", at())
                            })?;
                            let d = decode_unit(&part, &s.layout, unit, m.item, cache)
                                .with_context(|| format!("{}: inner chunk {k}", at()))?;
                            Some(d)
                        }
                    }
                }
            }
        };
        cache.map.insert(idx.to_vec(), got.clone());
        Ok(got)
    }
}

/// A decoded unit chunk in C order: in memory, or (when large, or when the memory budget is
/// spent) in a file: the stored chunk itself when it is raw, else an anonymous temporary file.
#[derive(Clone)]
enum Decoded {
    Mem(Arc<Vec<u8>>),
    File(FileRange),
}

impl Decoded {
    /// Sends bytes `[from, from + len)` of the chunk to `out`.
    fn copy(
        &self,
        from: usize,
        len: usize,
        scratch: &mut Vec<u8>,
        out: &mut Emitter,
    ) -> Result<()> {
        match self {
            Decoded::Mem(b) => out.push(&b[from..from + len]),
            Decoded::File(r) => {
                let mut pos = from as u64;
                let mut left = len;
                while left > 0 {
                    let n = left.min(1 << 20);
                    scratch.resize(n, 0);
                    r.read_at(pos, scratch)?;
                    out.push(scratch)?;
                    pos += n as u64;
                    left -= n;
                }
                Ok(())
            }
        }
    }
}

/// Chunks at least this large are decoded into a temporary file rather than memory, when their
/// codec streams.
const SPILL_AT: u64 = 8 << 20;

/// Decodes one stored unit chunk into C order, in memory or in a file (see [`Decoded`]).
fn decode_unit(
    range: &FileRange,
    layout: &Layout,
    unit: &[u64],
    item: usize,
    cache: &mut Cache,
) -> Result<Decoded> {
    let bytes = unit.iter().product::<u64>() * item as u64;
    let c_order = layout.perm.as_ref().is_none_or(|p| is_identity(p));
    if c_order && bytes >= SPILL_AT {
        match layout.codecs.as_slice() {
            [] => {
                if range.len() != bytes {
                    bail!(
                        "the chunk holds {} bytes, its shape needs {bytes}",
                        range.len()
                    );
                }
                return Ok(Decoded::File(range.clone()));
            }
            [c @ (Codec::Zstd | Codec::Gzip | Codec::Zlib)] => {
                let mut r = decoder(c, range.clone())?;
                let file = spill(&mut r, bytes).with_context(|| format!("corrupt {c:?} chunk"))?;
                return Ok(Decoded::File(file));
            }
            _ => {}
        }
    }
    let raw = decode(range, &layout.codecs, bytes)?;
    let chunk = to_c_order(raw, layout, unit, item);
    if cache.bytes + chunk.len() as u64 > CACHE_BYTES {
        // The budget is spent: keep it on disk, so that no chunk of this row is decoded twice.
        let file = spill(&mut chunk.as_slice(), bytes)?;
        return Ok(Decoded::File(file));
    }
    cache.bytes += chunk.len() as u64;
    Ok(Decoded::Mem(Arc::new(chunk)))
}

/// Copies a decoded stream into an anonymous temporary file, checking it is `total` bytes.
fn spill(r: &mut dyn Read, total: u64) -> Result<FileRange> {
    use std::io::Write;
    let tmp = tempfile::tempfile().context("cannot create a temporary file for a zarr chunk")?;
    let mut w = std::io::BufWriter::new(tmp);
    read_exactly(r, 1 << 20, total, &mut |_, block| {
        w.write_all(block)
            .context("cannot write a decoded zarr chunk to a temporary file")
    })?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    FileRange::whole(file)
}

/// A shard's key, and its index and bytes (`None` when the shard is absent).
type ShardSlot = (String, Option<(Vec<u8>, FileRange)>);

/// The decoded chunks of the current row of chunks.
struct Cache {
    map: HashMap<Vec<u64>, Option<Decoded>>,
    /// Bytes held in memory.
    bytes: u64,
    /// The index of the last shard read (its key, its index and bytes; `None` when absent).
    shard_index: Option<ShardSlot>,
}

impl Cache {
    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

/// A shard's index of `n` (offset, length) pairs, its crc32c checked.
fn shard_index(range: &FileRange, n: u64, crc: bool, at_start: bool) -> Result<Vec<u8>> {
    let size = n
        .checked_mul(16)
        .and_then(|s| s.checked_add(if crc { 4 } else { 0 }))
        .filter(|s| *s <= range.len() && *s <= MAX_CHUNK)
        .ok_or_else(|| {
            anyhow!(
                "the shard ({} bytes) is too short for an index of {n} chunks",
                range.len()
            )
        })?;
    let pos = if at_start { 0 } else { range.len() - size };
    let mut index = range.read_vec(pos, size as usize)?;
    if crc {
        let body = index.len() - 4;
        let want = u32::from_le_bytes(index[body..].try_into().unwrap());
        if crc32c::crc32c(&index[..body]) != want {
            bail!("the shard index fails its crc32c check");
        }
        crate::checksum::verified(1);
        index.truncate(body);
    }
    Ok(index)
}

fn is_identity(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &j)| i == j)
}

/// A decoded chunk in its stored axis order, rearranged into C order.
fn to_c_order(raw: Vec<u8>, layout: &Layout, unit: &[u64], item: usize) -> Vec<u8> {
    let Some(perm) = layout.perm.as_ref().filter(|p| !is_identity(p)) else {
        return raw;
    };
    let r = unit.len();
    // C-order strides of the output chunk
    let mut ostride = vec![1usize; r];
    for d in (0..r.saturating_sub(1)).rev() {
        ostride[d] = ostride[d + 1] * unit[d + 1] as usize;
    }
    let sshape: Vec<usize> = perm.iter().map(|&a| unit[a] as usize).collect();
    let sstride: Vec<usize> = perm.iter().map(|&a| ostride[a]).collect();
    let mut out = vec![0u8; raw.len()];
    let mut pos = vec![0usize; r];
    for src in raw.chunks_exact(item) {
        let o: usize = pos.iter().zip(&sstride).map(|(p, s)| p * s).sum::<usize>() * item;
        out[o..o + item].copy_from_slice(src);
        for d in (0..r).rev() {
            pos[d] += 1;
            if pos[d] < sshape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    out
}

pub(super) fn decoder(c: &Codec, range: FileRange) -> Result<Box<dyn Read>> {
    let src = std::io::BufReader::new(RangeReader::new(range));
    Ok(match c {
        Codec::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(src).context("cannot start zstd")?)
        }
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(src)),
        Codec::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(src)),
        _ => bail!("{c:?} is not a streaming codec"),
    })
}

/// Streams the first `need` bytes of a decoded chunk, then checks that it decodes to exactly
/// `total` bytes.
fn stream_decoded(r: &mut dyn Read, need: u64, total: u64, out: &mut Emitter) -> Result<()> {
    let buf_len = out.room().clamp(4096, 1 << 20);
    read_exactly(r, buf_len, total, &mut |seen, block| {
        let keep = need.saturating_sub(seen).min(block.len() as u64) as usize;
        if keep > 0 {
            out.push(&block[..keep])?;
        }
        Ok(())
    })
}

/// Reads a decoded chunk to its end in blocks of at most `buf_len` bytes, handing each to
/// `each` with the count of bytes before it, and checks that it decodes to exactly `total`
/// bytes: a block that would pass `total` is refused before `each` sees it.
fn read_exactly(
    r: &mut dyn Read,
    buf_len: usize,
    total: u64,
    each: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; buf_len];
    let mut seen = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        crate::error::check_interrupted()?;
        let before = seen;
        seen += n as u64;
        if seen > total {
            bail!("it decodes to more than the {total} bytes of its chunk shape");
        }
        each(before, &buf[..n])?;
    }
    if seen != total {
        bail!("it decodes to {seen} bytes, its chunk shape needs {total}");
    }
    Ok(())
}

/// Decodes a stored chunk through `codecs` (applied by the writer in order) into memory, and
/// checks that it holds `expect` bytes.
pub fn decode(range: &FileRange, codecs: &[Codec], expect: u64) -> Result<Vec<u8>> {
    let bytes = undo_codecs(range, codecs, expect)?;
    if bytes.len() as u64 != expect {
        bail!(
            "the chunk decodes to {} bytes, its chunk shape needs {expect}",
            bytes.len()
        );
    }
    Ok(bytes)
}

/// Undoes `codecs` on a stored chunk, the first one applied decoding to at most `expect` bytes.
fn undo_codecs(range: &FileRange, codecs: &[Codec], expect: u64) -> Result<Vec<u8>> {
    if range.len() > MAX_CHUNK {
        bail!("a stored chunk of {} bytes is too large", range.len());
    }
    let mut bytes = range.read_vec(0, range.len() as usize)?;
    for (i, c) in codecs.iter().enumerate().rev() {
        // The first codec applied produces the chunk itself: its size is known.
        let limit = if i == 0 { expect } else { MAX_CHUNK };
        bytes = match c {
            Codec::Crc32c => {
                if bytes.len() < 4 {
                    bail!("too short for its crc32c");
                }
                let body = bytes.len() - 4;
                let want = u32::from_le_bytes(bytes[body..].try_into().unwrap());
                if crc32c::crc32c(&bytes[..body]) != want {
                    bail!("the chunk fails its crc32c check");
                }
                crate::checksum::verified(1);
                bytes.truncate(body);
                bytes
            }
            Codec::Blosc => super::blosc::decode(&bytes, limit)?,
            c => {
                let mut r = decoder(c, FileRange::from_vec(bytes))?;
                let mut v = Vec::new();
                (&mut r)
                    .take(limit + 1)
                    .read_to_end(&mut v)
                    .with_context(|| format!("corrupt {c:?} chunk"))?;
                if v.len() as u64 > limit {
                    bail!("a {c:?} chunk decodes to more than {limit} bytes");
                }
                v
            }
        };
    }
    Ok(bytes)
}

/// Collects output bytes into pieces of `piece` bytes for the sink.
pub(super) struct Emitter<'s, 'a> {
    buf: Vec<u8>,
    piece: usize,
    sink: &'s mut ChunkSink<'a>,
}

impl<'s, 'a> Emitter<'s, 'a> {
    pub(super) fn new(piece: usize, sink: &'s mut ChunkSink<'a>) -> Self {
        Emitter {
            buf: Vec::with_capacity(piece.min(1 << 24)),
            piece,
            sink,
        }
    }

    fn room(&self) -> usize {
        self.piece - self.buf.len()
    }

    pub(super) fn push(&mut self, mut b: &[u8]) -> Result<()> {
        while !b.is_empty() {
            if self.buf.is_empty() && b.len() >= self.piece {
                (self.sink)(&b[..self.piece])?;
                b = &b[self.piece..];
                continue;
            }
            let n = self.room().min(b.len());
            self.buf.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.buf.len() == self.piece {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Hands `b` (whole elements) to the sink as it stands, in pieces of at most `piece` bytes,
    /// when nothing is gathered before it; else gathers it like [`Emitter::push`].
    pub(super) fn push_whole(&mut self, b: &[u8]) -> Result<()> {
        if !self.buf.is_empty() {
            return self.push(b);
        }
        for part in b.chunks(self.piece) {
            (self.sink)(part)?;
        }
        Ok(())
    }

    pub(super) fn fill(&mut self, elem: &[u8], n: u64) -> Result<()> {
        let mut left = n;
        let per = (self.piece / elem.len()).max(1) as u64;
        let block: Vec<u8> = elem.repeat(per.min(n) as usize);
        while left > 0 {
            let k = left.min(per);
            self.push(&block[..k as usize * elem.len()])?;
            left -= k;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            (self.sink)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}
