//! Flax msgpack reader: `flax.serialization.to_bytes(...)` / `msgpack_serialize` output
//! (Hugging Face's `flax_model.msgpack`), valued as `flax.serialization.msgpack_restore` gives
//! it and named by the nested keys joined with `/` (`params/Dense_0/kernel`).
//!
//! The encoding (flax/serialization.py): a tree of msgpack maps (and arrays, named by index);
//! each NumPy/JAX array is the extension type 1 whose payload is itself msgpack, the 3-array
//! `(shape, dtype.name, C-order bytes)`; NumPy scalars are the same under extension type 3;
//! Python complex numbers are extension type 2, `(real, imag)`; arrays over 2^30 bytes are split
//! into a map `{'__msgpack_chunked_array__': True, 'shape': {...}, 'chunks': {'0': flat, ...}}`
//! that `msgpack_restore` concatenates. Plain msgpack numbers, booleans, strings and bytes are
//! leaves too: integers become int64 (uint64 above its range), floats float64, strings `|S`
//! (UTF-8 bytes), as `np.asarray` makes them. Nil and unknown extensions have no NumPy form
//! (dtype `resource`: refused unless `--skip-unsupported`).
//!
//! A folder of legacy `flax.training.checkpoints.save_checkpoint` files (`checkpoint_<step>`)
//! means its latest step, or `--step N` (`steps.rs`).
//!
//! `decode.rs` holds the cursor and the decoder of one value. The `rmp` crate decodes the
//! markers; the walk reads headers through a small window and skips over every byte string, so each array's data stays a byte range of the file (streamed, or
//! copied whole) and memory holds only the tree's metadata.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use rmp::Marker;

use super::{Input, OpenOptions, Reader, Sniff};
mod decode;
mod steps;
use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::{checked_elements, ChunkSink, Kind, Source, TensorMeta};
use decode::{array_len, key, value, Cursor, Node, MAX_DEPTH};

pub static READER: Reader = Reader {
    name: "flax",
    about: "Flax msgpack checkpoints (flax.serialization.to_bytes, flax_model.msgpack)",
    extensions: &[".msgpack"],
    sniff,
    open,
};

/// A non-empty msgpack map (or a bare extension value) at the start whose whole tree walks
/// cleanly (the walk reads only headers) is sure; a map followed by a string key, or any `.msgpack` file, is
/// still plausible, so that a damaged file gets this reader's error rather than "unrecognised".
fn sniff(input: &Input) -> Sniff {
    if input.is_dir {
        return match steps::steps(&input.path).is_empty() {
            true => Sniff::No,
            false => Sniff::Yes,
        };
    }
    let head = &input.head;
    // An empty map (0x80, also a pickle's PROTO opcode) is claimed by its extension only.
    let is_map = matches!(head.first(), Some(0x81..=0x8f | 0xde | 0xdf));
    let is_ext = matches!(head.first(), Some(0xc7..=0xc9 | 0xd4..=0xd8));
    let key_at = match head.first() {
        Some(0xde) => 3,
        Some(0xdf) => 5,
        _ => 1,
    };
    let str_key = matches!(head.get(key_at), Some(0xa0..=0xbf | 0xd9..=0xdb));
    let named = input.has_extension(READER.extensions);
    match &input.data {
        // A lone empty map (one byte) is valid msgpack but says nothing: only its name claims it.
        Some(data)
            if (is_map || is_ext)
                && (named || data.len() > 1)
                && walk_tree(data, "", &mut Leaves::default()).is_ok() =>
        {
            Sniff::Yes
        }
        Some(d) if (is_map && str_key) || (named && !d.is_empty()) => Sniff::Maybe,
        _ => Sniff::No,
    }
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    if input.is_dir {
        let (file, format) = steps::choose(&input.path, opts.orbax.step)?;
        let mut files = input.files.clone();
        files.push(file.clone());
        let data = crate::input::open_range(&file)?;
        let mut src = FlaxSource::open(&file.display().to_string(), files, data, &input.stem)?;
        src.format = Some(format);
        return Ok(Box::new(src));
    }
    Ok(Box::new(FlaxSource::open(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
        &input.stem,
    )?))
}

/// Walks the whole tree of `data` into leaves, without building the tree: maps and lists are
/// descended in place, so memory holds the leaves alone (a file of a million scalar leaves
/// held its whole parsed tree beside them). A map holding `__msgpack_chunked_array__` (seen
/// only once its keys are read) is read again from its start as a tree and joined. A root that
/// is not a tree is named `stem`.
fn walk_tree(data: &FileRange, stem: &str, out: &mut Leaves) -> Result<()> {
    let mut c = Cursor::new(data, 0, data.len())?;
    walk(&mut c, 0, String::new(), stem, out)?;
    if c.pos != c.end {
        bail!(
            "{} bytes of trailing data after the msgpack value",
            c.end - c.pos
        );
    }
    Ok(())
}

fn walk(c: &mut Cursor, depth: usize, name: String, stem: &str, out: &mut Leaves) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!("values nest deeper than {MAX_DEPTH} levels");
    }
    let start = c.pos;
    let m = c.marker()?;
    let join = |k: &str| match name.is_empty() {
        true => k.to_string(),
        false => format!("{name}/{k}"),
    };
    match m {
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let n = match m {
                Marker::FixMap(n) => n.into(),
                Marker::Map16 => c.u16()?,
                _ => c.u32()?,
            };
            let first = out.len();
            let mut chunked = false;
            for _ in 0..n {
                let k = key(c)?;
                chunked |= k == "__msgpack_chunked_array__";
                walk(c, depth + 1, join(&k), stem, out)
                    .with_context(|| format!("under key '{k}'"))?;
            }
            if chunked {
                out.truncate(first);
                let end = c.pos;
                c.pos = start;
                let node = value(c, depth)?;
                debug_assert_eq!(c.pos, end);
                let name = match (name.is_empty(), depth) {
                    (true, 0) => stem.to_string(),
                    _ => name,
                };
                return flatten(node, name, out);
            }
            Ok(())
        }
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let n = array_len(c, m)?;
            for i in 0..n {
                walk(c, depth + 1, join(&i.to_string()), stem, out)
                    .with_context(|| format!("in item {i}"))?;
            }
            Ok(())
        }
        _ => {
            c.pos = start;
            let node = value(c, depth)?;
            let name = match (name.is_empty(), depth) {
                (true, 0) => stem.to_string(),
                _ => name,
            };
            flatten(node, name, out)
        }
    }
}

/// The leaves of a file in order, with their names in one buffer (a file of a million scalar
/// leaves held a million small name allocations beside them).
#[derive(Default)]
struct Leaves {
    list: Vec<Leaf>,
    /// Every name, one after another; leaf `i`'s ends at `ends[i]`.
    names: String,
    ends: Vec<usize>,
}

impl Leaves {
    fn len(&self) -> usize {
        self.list.len()
    }

    fn push(&mut self, name: &str, leaf: Leaf) {
        self.names.push_str(name);
        self.ends.push(self.names.len());
        self.list.push(leaf);
    }

    fn truncate(&mut self, n: usize) {
        self.list.truncate(n);
        self.ends.truncate(n);
        self.names.truncate(self.ends.last().copied().unwrap_or(0));
    }

    fn name(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1],
        };
        &self.names[start..self.ends[i]]
    }
}

/// One output tensor, kept compact: a file of a million scalar leaves holds a million of
/// these (its TensorMeta is built when asked for).
struct Leaf {
    shape: Box<[u64]>,
    dtype: DType,
    /// A str or bin scalar (`|S`), whose bytes are its one range.
    string: bool,
    data: LeafData,
}

enum LeafData {
    /// Byte ranges of the file (several for a chunked array).
    Ranges(Box<[FileRange]>),
    /// A plain msgpack scalar's little-endian bytes.
    Inline { bytes: [u8; 16], len: u8 },
    /// What the value was, when it has no NumPy form.
    Unsupported(&'static str),
}

impl Leaf {
    fn stored_bytes(&self) -> u64 {
        match &self.data {
            LeafData::Ranges(r) => r.iter().map(|p| p.len()).sum(),
            LeafData::Inline { len, .. } => u64::from(*len),
            LeafData::Unsupported(_) => 0,
        }
    }

    fn meta(&self, name: &str) -> TensorMeta {
        let stored_bytes = self.stored_bytes();
        TensorMeta {
            name: name.to_string(),
            dtype: self.dtype,
            shape: self.shape.to_vec(),
            kind: if self.string {
                Kind::String
            } else {
                Kind::Dense
            },
            stored_bytes,
            max_string_len: self.string.then_some(stored_bytes),
            big_endian: false,
            ragged_rank: 0,
            facts: Default::default(),
        }
    }
}

/// Flattens `node` under `name` into leaves, joining chunked arrays.
fn flatten(node: Node, name: String, out: &mut Leaves) -> Result<()> {
    let leaf = |dtype: DType, shape: Vec<u64>, data: LeafData| Leaf {
        shape: shape.into_boxed_slice(),
        dtype,
        string: false,
        data,
    };
    let inline = |dtype: DType, b: &[u8]| {
        let mut bytes = [0u8; 16];
        bytes[..b.len()].copy_from_slice(b);
        leaf(
            dtype,
            vec![],
            LeafData::Inline {
                bytes,
                len: b.len() as u8,
            },
        )
    };
    let leaf = match node {
        Node::Map(entries) => {
            if entries
                .iter()
                .any(|(k, _)| k == "__msgpack_chunked_array__")
            {
                return chunked(entries, name, out);
            }
            for (k, v) in entries {
                let full = if name.is_empty() {
                    k
                } else {
                    format!("{name}/{k}")
                };
                flatten(v, full, out)?;
            }
            return Ok(());
        }
        Node::List(items) => {
            for (i, v) in items.into_iter().enumerate() {
                let full = if name.is_empty() {
                    i.to_string()
                } else {
                    format!("{name}/{i}")
                };
                flatten(v, full, out)?;
            }
            return Ok(());
        }
        Node::Array(a) => {
            let (dtype, shape, parts) = *a;
            leaf(dtype, shape, LeafData::Ranges(parts.into_boxed_slice()))
        }
        Node::Int(n) => match i64::try_from(n) {
            Ok(v) => inline(DType::I64, &v.to_le_bytes()),
            Err(_) => inline(DType::U64, &(n as u64).to_le_bytes()),
        },
        Node::Float(f) => inline(DType::F64, &f.to_le_bytes()),
        Node::Bool(b) => inline(DType::Bool, &[u8::from(b)]),
        Node::Complex(re, im) => {
            let mut v = [0u8; 16];
            v[..8].copy_from_slice(&re.to_le_bytes());
            v[8..].copy_from_slice(&im.to_le_bytes());
            inline(DType::C128, &v)
        }
        Node::Bytes(range) => Leaf {
            string: true,
            ..leaf(DType::String, vec![], LeafData::Ranges(Box::new([range])))
        },
        Node::Unsupported(what) => leaf(DType::Resource, vec![], LeafData::Unsupported(what)),
    };
    out.push(&name, leaf);
    Ok(())
}

/// `{'__msgpack_chunked_array__': True, 'shape': {'0': d0, ...}, 'chunks': {'0': flat, ...}}`.
fn chunked(entries: Vec<(String, Node)>, name: String, out: &mut Leaves) -> Result<()> {
    let context = || format!("the chunked array '{name}'");
    let mut shape = None;
    let mut chunks = None;
    for (k, v) in entries {
        match (k.as_str(), v) {
            ("shape", Node::Map(dims)) => shape = Some(dims),
            ("chunks", Node::Map(parts)) => chunks = Some(parts),
            _ => {}
        }
    }
    let (Some(shape), Some(chunks)) = (shape, chunks) else {
        bail!("{} lacks its shape or chunks", context());
    };
    let dims = in_order(shape)
        .with_context(context)?
        .into_iter()
        .map(|d| match d {
            Node::Int(n) => u64::try_from(n).map_err(|_| anyhow!("a negative dimension")),
            _ => bail!("a dimension that is not an integer"),
        })
        .collect::<Result<Vec<u64>>>()
        .with_context(context)?;
    let mut dtype = None;
    let mut parts = Vec::new();
    let mut total = 0u64;
    for c in in_order(chunks).with_context(context)? {
        let Node::Array(a) = c else {
            bail!("{}: a chunk that is not an array", context());
        };
        let (d, s, p) = *a;
        if dtype.is_some_and(|t| t != d) || s.len() != 1 {
            bail!("{}: chunks of different dtypes or ranks", context());
        }
        dtype = Some(d);
        total += s[0];
        parts.extend(p);
    }
    let dtype = dtype.unwrap_or(DType::F32);
    if checked_elements(&dims)? != total {
        bail!(
            "{}: the chunks hold {total} elements, its shape {dims:?} needs more or fewer",
            context()
        );
    }
    flatten(Node::Array(Box::new((dtype, dims, parts))), name, out)
}

/// The values of a map keyed '0', '1', ... in key order.
fn in_order(entries: Vec<(String, Node)>) -> Result<Vec<Node>> {
    let mut v: Vec<Option<Node>> = (0..entries.len()).map(|_| None).collect();
    for (k, n) in entries {
        let i: usize = k
            .parse()
            .map_err(|_| anyhow!("a key '{k}' that is not an index"))?;
        let slot = v
            .get_mut(i)
            .ok_or_else(|| anyhow!("index {i} out of range"))?;
        *slot = Some(n);
    }
    v.into_iter()
        .map(|n| n.ok_or_else(|| anyhow!("a missing index")))
        .collect()
}

pub struct FlaxSource {
    path: String,
    files: Vec<PathBuf>,
    leaves: Leaves,
    /// For a `save_checkpoint` folder: which step was read (for `list`).
    format: Option<String>,
}

impl FlaxSource {
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        stem: &str,
    ) -> Result<FlaxSource> {
        let mut leaves = Leaves::default();
        walk_tree(&data, stem, &mut leaves).context("not a valid Flax msgpack file")?;
        leaves.list.shrink_to_fit();
        leaves.ends.shrink_to_fit();
        leaves.names.shrink_to_fit();
        Ok(FlaxSource {
            path: path.to_string(),
            files,
            leaves,
            format: None,
        })
    }
}

impl Source for FlaxSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.leaves.list.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.leaves.list[index].meta(self.leaves.name(index)))
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let leaf = &self.leaves.list[index];
        match &leaf.data {
            LeafData::Unsupported(what) => {
                bail!("the value is {what}, which has no NumPy form")
            }
            LeafData::Inline { bytes, len } => sink(&bytes[..usize::from(*len)]),
            LeafData::Ranges(parts) => {
                let unit = leaf.dtype.item_size().unwrap_or(1);
                for p in parts {
                    p.stream(unit, chunk, sink)?;
                }
                Ok(())
            }
        }
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let leaf = &self.leaves.list[index];
        let (true, LeafData::Ranges(parts)) = (leaf.string, &leaf.data) else {
            bail!("not a string");
        };
        let Some(range) = parts.first() else {
            bail!("not a string");
        };
        if range.len() > 64 << 20 {
            bail!("a string scalar of {} bytes is too large", range.len());
        }
        sink(&range.read_vec(0, range.len() as usize)?)
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        match &self.leaves.list[index].data {
            LeafData::Ranges(parts) => match &parts[..] {
                [one] => Some(one.clone()),
                _ => None,
            },
            LeafData::Inline { .. } | LeafData::Unsupported(_) => None,
        }
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn input_facts(&self) -> crate::tensor::InputFacts<'_> {
        crate::tensor::InputFacts {
            format: self.format.as_deref(),
            notes: &[],
        }
    }
}

#[cfg(test)]
mod tests;
