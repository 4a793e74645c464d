//! TensorFlow checkpoint / SavedModel variables reader (the "tensor bundle": `P.index` plus
//! `P.data-NNNNN-of-NNNNN` shards), without TensorFlow. Keys come out exactly as
//! `tf.train.list_variables` prints them; partitioned variables are reassembled from their
//! OrderedCode-keyed slices; every entry's masked CRC32C is verified while it streams out.

mod locate;
pub mod table;

pub use locate::{prefix_for, shard_path, CHECKPOINT, SAVEDMODEL};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;

use crate::dtype::DType;
use crate::input::FileRange;
use crate::pipeline::check_interrupted;
use crate::source::proto::{mask_crc, BundleEntryProto, BundleHeaderProto};
use crate::source::wire::Cursor;
use crate::tensor::{checked_elements, ChunkSink, Kind, Source, TensorMeta};

/// The object-graph key TensorFlow 2 adds to every object-based checkpoint.
pub const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";

#[derive(Clone, Debug, Default)]
pub struct BundleOptions {
    pub verify: bool,
    pub include_internal: bool,
}

struct Piece {
    /// (start, length) per dimension, full extents resolved.
    extents: Vec<(u64, u64)>,
    entry: BundleEntryProto,
}

enum Entry {
    Plain(BundleEntryProto),
    Sliced(Vec<Piece>),
}

pub struct BundleSource {
    path: String,
    files: Vec<PathBuf>,
    shards: Vec<FileRange>,
    shard_paths: Vec<PathBuf>,
    metas: Vec<TensorMeta>,
    entries: Vec<Entry>,
    options: BundleOptions,
}

impl BundleSource {
    pub fn open(display: &str, prefix: &Path, options: BundleOptions) -> Result<BundleSource> {
        let index_path = PathBuf::from(format!("{}.index", prefix.display()));
        let index = crate::input::open_range(&index_path)?;
        let table = table::read_all(&index).with_context(|| index_path.display().to_string())?;
        let mut iter = table.into_iter();
        let header = match iter.next() {
            Some((k, v)) if k.is_empty() => BundleHeaderProto::decode(&v[..])
                .map_err(|e| anyhow!("corrupt bundle header: {e}"))?,
            _ => bail!(
                "{}: the index has no bundle header (first key must be empty)",
                index_path.display()
            ),
        };
        if let Some(v) = &header.version {
            if v.bad_consumers.contains(&1) || v.min_consumer > 1 {
                bail!(
                    "the checkpoint was written for a newer reader (min_consumer {})",
                    v.min_consumer
                );
            }
        }
        let big_endian = match header.endianness {
            0 => false,
            1 => true,
            e => bail!("unknown endianness {e} in the bundle header"),
        };
        let num_shards = header.num_shards.max(1);
        if num_shards > 100_000 {
            bail!("the bundle header claims {num_shards} shards");
        }
        let mut plain: Vec<(String, BundleEntryProto)> = Vec::new();
        let mut slice_keys: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for (key, value) in iter {
            if key.first() == Some(&0) {
                slice_keys.insert(key, value);
                continue;
            }
            let name = String::from_utf8(key.clone()).map_err(|_| {
                anyhow!(
                    "a checkpoint key is not UTF-8: {:?}",
                    String::from_utf8_lossy(&key)
                )
            })?;
            let entry = BundleEntryProto::decode(&value[..])
                .map_err(|e| anyhow!("key '{name}': corrupt bundle entry: {e}"))?;
            plain.push((name, entry));
        }

        let mut shard_paths = Vec::new();
        let mut shards = Vec::new();
        for s in 0..num_shards {
            let p = shard_path(prefix, s, num_shards);
            let shard = crate::input::open_range(&p)
                .with_context(|| format!("missing data shard {}", p.display()))?;
            shards.push(shard);
            shard_paths.push(p);
        }

        let mut source = BundleSource {
            path: display.to_string(),
            files: std::iter::once(index_path)
                .chain(shard_paths.iter().cloned())
                .collect(),
            shards,
            shard_paths,
            metas: Vec::new(),
            entries: Vec::new(),
            options,
        };
        for (name, entry) in plain {
            if name == OBJECT_GRAPH_KEY && !source.options.include_internal {
                // Not written, but its bytes are part of the checkpoint: verified all the same
                // (it is small), so that damage anywhere in the shards is caught.
                if source.options.verify {
                    source
                        .verify_hidden(&name, entry, &slice_keys, big_endian)
                        .with_context(|| format!("tensor '{name}'"))?;
                }
                continue;
            }
            source
                .add(&name, entry, &slice_keys, big_endian)
                .with_context(|| format!("tensor '{name}'"))?;
        }
        Ok(source)
    }

    /// Reads an entry that is not listed (the object graph) into nothing, checking its CRC.
    fn verify_hidden(
        &mut self,
        name: &str,
        entry: BundleEntryProto,
        slice_keys: &HashMap<Vec<u8>, Vec<u8>>,
        big_endian: bool,
    ) -> Result<()> {
        self.add(name, entry, slice_keys, big_endian)?;
        let i = self.metas.len() - 1;
        let result = if self.metas[i].dtype.item_size().is_some() {
            self.read_dense(i, 1 << 20, &mut |_| Ok(()))
        } else {
            self.read_strings(i, &mut |_| Ok(()))
        };
        self.metas.pop();
        self.entries.pop();
        result
    }

    /// Adds one entry.
    fn add(
        &mut self,
        name: &str,
        entry: BundleEntryProto,
        slice_keys: &HashMap<Vec<u8>, Vec<u8>>,
        big_endian: bool,
    ) -> Result<()> {
        let dtype = DType::from_tf(entry.dtype)
            .filter(|_| entry.dtype > 0)
            .ok_or_else(|| anyhow!("unknown dtype {}", entry.dtype))?;
        let shape = entry.shape.clone().unwrap_or_default().concrete()?;
        let n = checked_elements(&shape)?;
        let mut meta = TensorMeta {
            name: name.to_string(),
            dtype,
            shape: shape.clone(),
            kind: if dtype == DType::String {
                Kind::String
            } else {
                Kind::Dense
            },
            stored_bytes: entry.size.max(0) as u64,
            max_string_len: None,
            big_endian,
            ragged_rank: 0,
        };
        if !entry.slices.is_empty() {
            let size = dtype
                .item_size()
                .ok_or_else(|| anyhow!("partitioned {dtype} tensors are not supported"))?;
            let mut pieces = Vec::new();
            for slice in &entry.slices {
                if slice.extent.len() != shape.len() && !slice.extent.is_empty() {
                    bail!(
                        "a slice has {} extents for a rank-{} tensor",
                        slice.extent.len(),
                        shape.len()
                    );
                }
                let mut extents = Vec::new();
                let mut key_extents = Vec::new();
                for (d, &dim) in shape.iter().enumerate() {
                    let (start, len) = match slice.extent.get(d) {
                        Some(e) => (e.start, e.length),
                        None => (0, None),
                    };
                    key_extents.push((start, len.unwrap_or(-1)));
                    let (s, l) = match len {
                        Some(l) => (start, l),
                        None => (0, dim as i64),
                    };
                    if s < 0 || l < 0 || (s as u64).checked_add(l as u64).is_none_or(|e| e > dim) {
                        bail!("slice extent ({start}, {len:?}) lies outside dimension {d} of size {dim}");
                    }
                    extents.push((s as u64, l as u64));
                }
                let key = slice_key(name, &key_extents);
                let value = slice_keys.get(&key).ok_or_else(|| {
                    anyhow!(
                        "missing slice {} of the partitioned tensor",
                        describe_extents(&extents)
                    )
                })?;
                let piece = BundleEntryProto::decode(&value[..])
                    .map_err(|e| anyhow!("corrupt slice entry: {e}"))?;
                let lens: Vec<u64> = extents.iter().map(|e| e.1).collect();
                let want = checked_elements(&lens)? * size as u64;
                if piece.size as u64 != want || DType::from_tf(piece.dtype) != Some(dtype) {
                    bail!(
                        "slice {} holds {} bytes of dtype {}, expected {want} bytes of {dtype}",
                        describe_extents(&extents),
                        piece.size,
                        piece.dtype
                    );
                }
                self.check_range(&piece)
                    .with_context(|| format!("slice {}", describe_extents(&extents)))?;
                pieces.push(Piece {
                    extents,
                    entry: piece,
                });
            }
            check_coverage(&shape, &pieces)?;
            meta.stored_bytes = pieces.iter().map(|p| p.entry.size as u64).sum();
            self.metas.push(meta);
            self.entries.push(Entry::Sliced(pieces));
            return Ok(());
        }
        self.check_range(&entry)?;
        match dtype.item_size() {
            Some(size) => {
                if n.checked_mul(size as u64) != Some(entry.size as u64) {
                    bail!(
                        "the entry holds {} bytes, but shape {shape:?} of {dtype} needs {}",
                        entry.size,
                        n.saturating_mul(size as u64)
                    );
                }
            }
            None if dtype == DType::String => {
                // The lengths lead the entry; reading them sizes the |S<n> output. Damage here
                // is what the entry's checksum would catch, and is reported as such.
                let range = self.range(&entry)?;
                let mut c = Cursor::new(range);
                let mut max = 0u64;
                let mut total = 0u64;
                for _ in 0..n {
                    let l = c.varint().map_err(|e| {
                        anyhow!("checksum mismatch: the string entry is corrupt ({e})")
                    })?;
                    max = max.max(l);
                    total = total.saturating_add(l);
                }
                let want = c.pos().saturating_add(4).saturating_add(total);
                if want != entry.size as u64 {
                    bail!(
                        "checksum mismatch: the string entry is corrupt (its lengths add up to {want} bytes, but it holds {})",
                        entry.size
                    );
                }
                meta.max_string_len = Some(max);
            }
            None => {
                meta.kind = Kind::Dense; // resource handles: refused by the dtype policy
            }
        }
        self.metas.push(meta);
        self.entries.push(Entry::Plain(entry));
        Ok(())
    }

    fn check_range(&self, e: &BundleEntryProto) -> Result<()> {
        self.range(e).map(|_| ())
    }

    fn range(&self, e: &BundleEntryProto) -> Result<FileRange> {
        let shard = usize::try_from(e.shard_id)
            .ok()
            .filter(|&s| s < self.shards.len())
            .ok_or_else(|| {
                anyhow!(
                    "shard_id {} is out of range ({} shards)",
                    e.shard_id,
                    self.shards.len()
                )
            })?;
        if e.offset < 0 || e.size < 0 {
            bail!("negative offset or size in the entry");
        }
        self.shards[shard].slice(e.offset as u64, e.size as u64).map_err(|_| {
            anyhow!(
                "the entry ({} bytes at offset {}) reaches past the end of {} ({} bytes; truncated shard?)",
                e.size,
                e.offset,
                self.shard_paths[shard].display(),
                self.shards[shard].len()
            )
        })
    }

    /// Streams an entry's bytes, verifying its masked CRC32C on the way.
    fn stream_checked(
        &self,
        e: &BundleEntryProto,
        unit: usize,
        chunk: usize,
        sink: &mut ChunkSink,
    ) -> Result<()> {
        let range = self.range(e)?;
        let mut crc = 0u32;
        let verify = self.options.verify;
        range.stream(unit, chunk, &mut |c: &[u8]| {
            if verify {
                crc = crc32c::crc32c_append(crc, c);
            }
            sink(c)
        })?;
        if verify && mask_crc(crc) != e.crc32c {
            bail!(
                "checksum mismatch: the data is corrupt (CRC32C {:#010x}, expected {:#010x})",
                mask_crc(crc),
                e.crc32c
            );
        }
        Ok(())
    }

    /// Variant elements: `varint64 length | VariantTensorDataProto | masked running CRC32C`.
    fn read_variants(
        &self,
        e: &BundleEntryProto,
        range: FileRange,
        n: u64,
        sink: &mut ChunkSink,
    ) -> Result<()> {
        let verify = self.options.verify;
        let mut c = Cursor::new(range);
        let mut crc = 0u32;
        for i in 0..n {
            let corrupt =
                |what: &str| anyhow!("checksum mismatch: variant element {i} is corrupt ({what})");
            let len = c.varint().map_err(|e| corrupt(&e.to_string()))?;
            if len > c.remaining() {
                return Err(corrupt("its length reaches past the entry"));
            }
            crc = crc32c::crc32c_append(crc, &len.to_le_bytes());
            let payload = c.bytes(len as usize)?;
            crc = crc32c::crc32c_append(crc, payload);
            sink(payload)?;
            let stored = c.bytes(4).map_err(|e| corrupt(&e.to_string()))?.to_vec();
            if verify && mask_crc(crc) != u32::from_le_bytes(stored[..].try_into().unwrap()) {
                return Err(corrupt("element checksum"));
            }
            crc = crc32c::crc32c_append(crc, &stored);
        }
        if verify && (mask_crc(crc) != e.crc32c || !c.at_end()) {
            bail!("checksum mismatch: the variant entry is corrupt");
        }
        Ok(())
    }

    fn assemble(
        &self,
        meta: &TensorMeta,
        pieces: &[Piece],
        chunk: usize,
        sink: &mut ChunkSink,
    ) -> Result<()> {
        let size = meta.dtype.item_size().unwrap_or(1) as u64;
        let shape = &meta.shape;
        let rank = shape.len();
        // An empty tensor has nothing to copy. Past this point every step of the loops below
        // copies at least one element that a slice holds, so they are bounded by the bytes
        // present, not by the dimensions (a [2^40, 2, 0] entry would otherwise spin for hours).
        if checked_elements(shape)? == 0 {
            return Ok(());
        }
        // The trailing dimensions every piece covers whole are copied as contiguous blocks.
        let mut k = rank;
        while k > 0 && pieces.iter().all(|p| p.extents[k - 1] == (0, shape[k - 1])) {
            k -= 1;
        }
        if k <= 1 {
            // Split along the first dimension only: each piece is one contiguous run of the
            // output, streamed once, in order, its checksum verified on the way.
            let mut order: Vec<&Piece> = pieces.iter().collect();
            order.sort_by_key(|p| p.extents.first().map_or(0, |e| e.0));
            for p in order {
                self.stream_checked(&p.entry, size as usize, chunk, sink)
                    .with_context(|| format!("slice {}", describe_extents(&p.extents)))?;
            }
            return Ok(());
        }
        // Pieces interleave row by row: verify each whole first, then copy the runs.
        if self.options.verify {
            for p in pieces {
                self.stream_checked(&p.entry, 1, chunk, &mut |_| Ok(()))
                    .with_context(|| format!("slice {}", describe_extents(&p.extents)))?;
            }
        }
        let block: u64 = shape[k..].iter().product::<u64>() * size;
        let line_dim = k - 1;
        let prefix_dims = &shape[..line_dim];
        let prefix_count: u64 = prefix_dims.iter().product();
        let mut index = vec![0u64; line_dim];
        for step in 0..prefix_count {
            if step % 4096 == 0 {
                check_interrupted()?;
            }
            let mut covering: Vec<&Piece> = pieces
                .iter()
                .filter(|p| {
                    index
                        .iter()
                        .enumerate()
                        .all(|(d, &i)| i >= p.extents[d].0 && i < p.extents[d].0 + p.extents[d].1)
                })
                .collect();
            covering.sort_by_key(|p| p.extents[line_dim].0);
            for p in covering {
                let lens: Vec<u64> = p.extents.iter().map(|e| e.1).collect();
                // Row-major offset of (index - start, 0, 0, ...) within the piece.
                let mut offset = 0u64;
                for d in 0..line_dim {
                    offset = offset * lens[d] + (index[d] - p.extents[d].0);
                }
                let run_elems_block = lens[line_dim];
                let offset_bytes = offset * run_elems_block * block;
                let run = run_elems_block * block;
                self.range(&p.entry)?.slice(offset_bytes, run)?.stream(
                    size as usize,
                    chunk,
                    sink,
                )?;
            }
            for d in (0..line_dim).rev() {
                index[d] += 1;
                if index[d] < prefix_dims[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(())
    }
}

fn describe_extents(extents: &[(u64, u64)]) -> String {
    let parts: Vec<String> = extents
        .iter()
        .map(|(s, l)| format!("{s}:{}", s + l))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The pieces must tile the tensor exactly: no overlap, no gap.
fn check_coverage(shape: &[u64], pieces: &[Piece]) -> Result<()> {
    for (i, a) in pieces.iter().enumerate() {
        for b in &pieces[i + 1..] {
            let overlap = a
                .extents
                .iter()
                .zip(&b.extents)
                .all(|(x, y)| x.0 < y.0 + y.1 && y.0 < x.0 + x.1 && x.1 > 0 && y.1 > 0);
            if overlap {
                bail!(
                    "slices {} and {} overlap",
                    describe_extents(&a.extents),
                    describe_extents(&b.extents)
                );
            }
        }
    }
    let total: u64 = pieces
        .iter()
        .map(|p| p.extents.iter().map(|e| e.1).product::<u64>())
        .sum();
    let want = checked_elements(shape)?;
    if total != want {
        bail!("the slices cover {total} of the tensor's {want} elements (a slice is missing)");
    }
    Ok(())
}

/// TensorFlow's slice key: OrderedCode of (0, name, rank, start_0, len_0, ...), with full
/// extents as (0, -1).
fn slice_key(name: &str, extents: &[(i64, i64)]) -> Vec<u8> {
    let mut k = vec![0u8];
    for &b in name.as_bytes() {
        match b {
            0 => k.extend_from_slice(&[0, 0xff]),
            0xff => k.extend_from_slice(&[0xff, 0]),
            b => k.push(b),
        }
    }
    k.extend_from_slice(&[0, 1]);
    let rank = extents.len() as u64;
    let bytes = rank.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    k.push((8 - skip) as u8);
    k.extend_from_slice(&bytes[skip..]);
    for &(s, l) in extents {
        write_signed_num_increasing(&mut k, s);
        write_signed_num_increasing(&mut k, l);
    }
    k
}

fn write_signed_num_increasing(out: &mut Vec<u8>, v: i64) {
    let x = if v < 0 { !v as u64 } else { v as u64 };
    let bits = 64 - x.leading_zeros() as usize;
    let len = bits / 7 + 1;
    let mut buf = [if v < 0 { 0xffu8 } else { 0 }; 10];
    buf[2..].copy_from_slice(&v.to_be_bytes());
    let begin = 10 - len;
    // `len` ones then a zero, across the first two bytes of the encoding.
    let header = (0xffff_u32 << (16 - len)) as u16;
    buf[begin] ^= (header >> 8) as u8;
    if len >= 2 {
        buf[begin + 1] ^= header as u8;
    }
    out.extend_from_slice(&buf[begin..]);
}

impl Source for BundleSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.metas.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.metas[index].clone())
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let meta = &self.metas[index];
        let unit = meta.dtype.item_size().unwrap_or(1);
        match &self.entries[index] {
            Entry::Plain(e) => self.stream_checked(e, unit, chunk, sink),
            Entry::Sliced(pieces) => self.assemble(meta, pieces, chunk, sink),
        }
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let meta = &self.metas[index];
        let Entry::Plain(e) = &self.entries[index] else {
            bail!("partitioned string tensors are not supported");
        };
        let n = meta.num_elements()?;
        let range = self.range(e)?;
        if meta.dtype == DType::Variant {
            return self.read_variants(e, range, n, sink);
        }
        let mut lengths = Cursor::new(range.clone());
        let mut crc = 0u32;
        for _ in 0..n {
            let l = lengths.varint()?;
            crc = if l <= u32::MAX as u64 {
                let v = l as u32;
                crc32c::crc32c_append(
                    crc,
                    &if meta.big_endian {
                        v.to_be_bytes()
                    } else {
                        v.to_le_bytes()
                    },
                )
            } else {
                crc32c::crc32c_append(
                    crc,
                    &if meta.big_endian {
                        l.to_be_bytes()
                    } else {
                        l.to_le_bytes()
                    },
                )
            };
        }
        let stored = lengths.bytes(4)?.to_vec();
        let verify = self.options.verify;
        if verify && mask_crc(crc) != u32::from_le_bytes(stored[..].try_into().unwrap()) {
            bail!("checksum mismatch in the string lengths: the data is corrupt");
        }
        crc = crc32c::crc32c_append(crc, &stored);
        let mut payload = lengths;
        let mut lengths = Cursor::new(range);
        for _ in 0..n {
            let l = lengths.varint()?;
            let s = payload.bytes(l as usize)?;
            if verify {
                crc = crc32c::crc32c_append(crc, s);
            }
            sink(s)?;
        }
        if verify && mask_crc(crc) != e.crc32c {
            bail!("checksum mismatch: the string data is corrupt");
        }
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{NpyType, Plan};
    use crate::source::proto::{TensorShapeProto, VersionDef};
    use crate::transform::Converter;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A block of entries (restart interval 1, so no shared prefixes) plus its trailer.
    fn block(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        let mut restarts = Vec::new();
        for (k, v) in entries {
            restarts.push(b.len() as u32);
            put_varint(&mut b, 0);
            put_varint(&mut b, k.len() as u64);
            put_varint(&mut b, v.len() as u64);
            b.extend_from_slice(k);
            b.extend_from_slice(v);
        }
        if restarts.is_empty() {
            restarts.push(0);
        }
        for r in &restarts {
            b.extend_from_slice(&r.to_le_bytes());
        }
        b.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        b
    }

    fn with_trailer(file: &mut Vec<u8>, block: &[u8]) -> (u64, u64) {
        let offset = file.len() as u64;
        file.extend_from_slice(block);
        let crc = crc32c::crc32c_append(crc32c::crc32c(block), &[0]);
        file.push(0);
        file.extend_from_slice(&mask_crc(crc).to_le_bytes());
        (offset, block.len() as u64)
    }

    /// An `.index` file holding `entries` (sorted by key) in one data block.
    fn table(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut file = Vec::new();
        let data = with_trailer(&mut file, &block(entries));
        let meta = with_trailer(&mut file, &block(&[]));
        let mut handle = Vec::new();
        put_varint(&mut handle, data.0);
        put_varint(&mut handle, data.1);
        let index = with_trailer(&mut file, &block(&[(b"\xff".to_vec(), handle)]));
        let mut footer = Vec::new();
        for v in [meta.0, meta.1, index.0, index.1] {
            put_varint(&mut footer, v);
        }
        footer.resize(40, 0);
        footer.extend_from_slice(&0x8b80_fb57u32.to_le_bytes());
        footer.extend_from_slice(&0xdb47_7524u32.to_le_bytes());
        file.extend_from_slice(&footer);
        file
    }

    fn entry(dtype: i32, shape: &[i64], offset: usize, data: &[u8]) -> Vec<u8> {
        let e = BundleEntryProto {
            dtype,
            shape: Some(TensorShapeProto {
                dim: shape
                    .iter()
                    .map(|&size| crate::source::proto::Dim { size, name: vec![] })
                    .collect(),
                unknown_rank: false,
            }),
            shard_id: 0,
            offset: offset as i64,
            size: data.len() as i64,
            crc32c: mask_crc(crc32c::crc32c(data)),
            slices: vec![],
        };
        e.encode_to_vec()
    }

    #[test]
    fn big_endian_bundles_are_byte_swapped_numbers_and_be_checksummed_string_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("ckpt");
        let f32s: Vec<u8> = [1.5f32, -2.0, 1e-40]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let c64: Vec<u8> = [3.0f32, -4.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        // "ab", "": lengths, then the masked CRC of the lengths as big-endian u32s, then bytes
        let mut strings = vec![2u8, 0];
        let mut crc = crc32c::crc32c(&2u32.to_be_bytes());
        crc = crc32c::crc32c_append(crc, &0u32.to_be_bytes());
        strings.extend_from_slice(&mask_crc(crc).to_le_bytes());
        strings.extend_from_slice(b"ab");
        let mut data = Vec::new();
        let (o1, o2) = (data.len(), f32s.len());
        data.extend_from_slice(&f32s);
        data.extend_from_slice(&c64);
        let o3 = data.len();
        data.extend_from_slice(&strings);
        let header = BundleHeaderProto {
            num_shards: 1,
            endianness: 1,
            version: Some(VersionDef {
                producer: 1,
                min_consumer: 0,
                bad_consumers: vec![],
            }),
        };
        let mut strings_entry =
            BundleEntryProto::decode(&entry(7, &[2], o3, &strings)[..]).unwrap();
        let mut full = 0u32;
        full = crc32c::crc32c_append(full, &2u32.to_be_bytes());
        full = crc32c::crc32c_append(full, &0u32.to_be_bytes());
        full = crc32c::crc32c_append(full, &strings[2..6]);
        full = crc32c::crc32c_append(full, b"ab");
        strings_entry.crc32c = mask_crc(full);
        let entries = vec![
            (vec![], header.encode_to_vec()),
            (b"c".to_vec(), entry(8, &[1], o2, &c64)),
            (b"f".to_vec(), entry(1, &[3], o1, &f32s)),
            (b"s".to_vec(), strings_entry.encode_to_vec()),
        ];
        std::fs::write(dir.path().join("ckpt.index"), table(&entries)).unwrap();
        std::fs::write(dir.path().join("ckpt.data-00000-of-00001"), &data).unwrap();

        let mut src = BundleSource::open(
            "ckpt",
            &prefix,
            BundleOptions {
                verify: true,
                ..Default::default()
            },
        )
        .unwrap();
        let names: Vec<String> = (0..src.len()).map(|i| src.meta(i).unwrap().name).collect();
        assert_eq!(names, ["c", "f", "s"]);
        let read = |src: &mut BundleSource, i: usize, out: NpyType| {
            let meta = src.meta(i).unwrap();
            assert!(meta.big_endian);
            let conv = Converter::new(meta.dtype, Plan::Numeric(out), true).unwrap();
            let mut bytes = Vec::new();
            src.read_dense(i, 4, &mut |c: &[u8]| conv.convert(c, &mut bytes))
                .unwrap();
            bytes
        };
        let want: Vec<u8> = [3.0f32, -4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(read(&mut src, 0, NpyType::C64), want);
        let want: Vec<u8> = [1.5f32, -2.0, 1e-40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(read(&mut src, 1, NpyType::F32), want);
        let mut got = Vec::new();
        src.read_strings(2, &mut |s: &[u8]| {
            got.push(s.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(got, [b"ab".to_vec(), vec![]]);
    }

    #[test]
    fn an_empty_sliced_entry_with_a_huge_first_dimension_is_read_at_once() {
        // Shape [2^40, 2, 0], two slices along the second dimension, an empty shard: the
        // assembly loop must not step through the 2^40 rows that hold nothing.
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("ckpt");
        let shape = [1i64 << 40, 2, 0];
        let extents = |d1: i64| crate::proto::TensorSliceProto {
            extent: vec![
                crate::proto::Extent {
                    start: 0,
                    length: None,
                },
                crate::proto::Extent {
                    start: d1,
                    length: Some(1),
                },
                crate::proto::Extent {
                    start: 0,
                    length: None,
                },
            ],
        };
        let mut whole = BundleEntryProto::decode(&entry(1, &shape, 0, &[])[..]).unwrap();
        whole.slices = vec![extents(0), extents(1)];
        let header = BundleHeaderProto {
            num_shards: 1,
            endianness: 0,
            version: Some(VersionDef {
                producer: 1,
                min_consumer: 0,
                bad_consumers: vec![],
            }),
        };
        let mut entries = vec![(vec![], header.encode_to_vec())];
        for d1 in [0, 1] {
            let key = slice_key("w", &[(0, -1), (d1, 1), (0, -1)]);
            entries.push((key, entry(1, &[1 << 40, 1, 0], 0, &[])));
        }
        entries.push((b"w".to_vec(), whole.encode_to_vec()));
        entries.sort();
        std::fs::write(dir.path().join("ckpt.index"), table(&entries)).unwrap();
        std::fs::write(dir.path().join("ckpt.data-00000-of-00001"), b"").unwrap();
        let mut src = BundleSource::open("ckpt", &prefix, BundleOptions::default()).unwrap();
        assert_eq!(src.meta(0).unwrap().shape, [1 << 40, 2, 0]);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut chunks = 0;
            let r = src.read_dense(0, 1 << 20, &mut |_| {
                chunks += 1;
                Ok(())
            });
            let _ = tx.send((r.is_ok(), chunks));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        assert_eq!(got.ok(), Some((true, 0)), "the read did not finish in 20 s");
    }

    #[test]
    fn slice_keys_match_the_documented_examples() {
        // `00 77 00 01 01 02 80 82 80 7f` -> w, rank 2, [(0,2), (0,full)]
        assert_eq!(
            slice_key("w", &[(0, 2), (0, -1)]),
            [0x00, 0x77, 0x00, 0x01, 0x01, 0x02, 0x80, 0x82, 0x80, 0x7f]
        );
        // `00 656d62 00 01 01 02 84 83 80 84` -> emb, [(4,3), (0,4)]
        assert_eq!(
            slice_key("emb", &[(4, 3), (0, 4)]),
            [0x00, 0x65, 0x6d, 0x62, 0x00, 0x01, 0x01, 0x02, 0x84, 0x83, 0x80, 0x84]
        );
    }

    #[test]
    fn signed_num_increasing_covers_every_length() {
        let enc = |v| {
            let mut o = Vec::new();
            write_signed_num_increasing(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(63), [0xbf]);
        assert_eq!(enc(-64), [0x40]);
        assert_eq!(enc(64), [0xc0, 0x40]);
        assert_eq!(enc(-65), [0x3f, 0xbf]);
        assert_eq!(enc(8191).len(), 2);
        assert_eq!(enc(8192).len(), 3);
        assert_eq!(enc(i64::MAX).len(), 10);
        // Encodings sort like the numbers they encode.
        let vals = [
            i64::MIN,
            -1 << 40,
            -8193,
            -65,
            -64,
            -1,
            0,
            1,
            63,
            64,
            8191,
            8192,
            1 << 40,
            i64::MAX,
        ];
        for w in vals.windows(2) {
            assert!(enc(w[0]) < enc(w[1]), "{} vs {}", w[0], w[1]);
        }
    }
}
