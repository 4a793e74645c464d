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

use crate::container::protobuf::Cursor;
use crate::dtype::DType;
use crate::error::check_interrupted;
use crate::input::FileRange;
use crate::source::proto::{mask_crc, BundleEntryProto, BundleHeaderProto};
use crate::tensor::{checked_elements, ChunkSink, Kind, Source, TensorMeta};

/// The object-graph key TensorFlow 2 adds to every object-based checkpoint.
pub const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";

/// What the command line sets for SavedModel directories.
#[derive(Clone, Debug, Default)]
pub struct SavedModelOptions {
    /// `--constants`: also the Const nodes of `saved_model.pb`'s graphs.
    pub constants: bool,
}

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
        let index_path = crate::input::with_suffix(prefix, ".index");
        let index = crate::input::open_range(&index_path)?;
        let table = table::read_all(&index).with_context(|| index_path.display().to_string())?;
        let mut iter = table.into_iter();
        let header = match iter.next() {
            Some((k, v)) if k.is_empty() => {
                BundleHeaderProto::decode(&v[..]).context("corrupt bundle header")?
            }
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
                .with_context(|| format!("key '{name}': corrupt bundle entry"))?;
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
            // The object graph is not written, but its bytes are part of the checkpoint:
            // verified all the same (it is small), so that damage anywhere in the shards is caught.
            let hidden = name == OBJECT_GRAPH_KEY && !source.options.include_internal;
            if hidden && !source.options.verify {
                continue;
            }
            source
                .add(&name, entry, &slice_keys, big_endian)
                .with_context(|| format!("tensor '{name}'"))?;
            if hidden {
                source
                    .verify_hidden()
                    .with_context(|| format!("tensor '{name}'"))?;
            }
        }
        Ok(source)
    }

    /// Reads the entry added last, which is not listed (the object graph), into nothing,
    /// checking its CRC, and takes it out again.
    fn verify_hidden(&mut self) -> Result<()> {
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
            facts: Default::default(),
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
                let piece = BundleEntryProto::decode(&value[..]).context("corrupt slice entry")?;
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
        check_crc(verify, mask_crc(crc) == e.crc32c, || {
            anyhow!(
                "checksum mismatch: the data is corrupt (CRC32C {:#010x}, expected {:#010x})",
                mask_crc(crc),
                e.crc32c
            )
        })
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
            let want = u32::from_le_bytes(stored[..].try_into().unwrap());
            check_crc(verify, mask_crc(crc) == want, || {
                corrupt("element checksum")
            })?;
            crc = crc32c::crc32c_append(crc, &stored);
        }
        check_crc(verify, mask_crc(crc) == e.crc32c && c.at_end(), || {
            anyhow!("checksum mismatch: the variant entry is corrupt")
        })
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

/// With `verify` on, refuses a checksum that did not match (`err`) and counts one that did;
/// with it off, passes.
fn check_crc(verify: bool, matched: bool, err: impl FnOnce() -> anyhow::Error) -> Result<()> {
    if !verify {
        return Ok(());
    }
    if !matched {
        return Err(err());
    }
    crate::checksum::verified(1);
    Ok(())
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

    fn metas(&self) -> &[TensorMeta] {
        &self.metas
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
        if verify {
            crate::checksum::verified(2);
        }
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}

#[cfg(test)]
mod tests;
