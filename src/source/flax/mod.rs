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
//! The `rmp` crate decodes the markers; the walk reads headers through a small window and skips
//! over every byte string, so each array's data stays a byte range of the file (streamed, or
//! copied whole) and memory holds only the tree's metadata.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use rmp::Marker;

use super::{Input, OpenOptions, Reader, Sniff};
use crate::container::cursor::Window;
use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::{checked_elements, ChunkSink, Kind, Source, TensorMeta};

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

fn open(input: &Input, _opts: &OpenOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(FlaxSource::open(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
        &input.stem,
    )?))
}

/// Deepest nesting accepted (Python's own msgpack stops far earlier than a stack would).
const MAX_DEPTH: usize = 512;

/// A parsed value; arrays and strings keep byte ranges, not bytes.
#[derive(Debug)]
enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    /// A dense array: dtype, shape, and its bytes (several ranges for a chunked array); boxed,
    /// so that the scalars of a tree of a million leaves stay small.
    Array(Box<(DType, Vec<u64>, Vec<FileRange>)>),
    /// A str or bin scalar.
    Bytes(FileRange),
    Int(i128),
    Float(f64),
    Bool(bool),
    Complex(f64, f64),
    /// Nil or an unknown extension: no NumPy form.
    Unsupported(&'static str),
}

/// A bounded cursor over a range, read through a `container::cursor::Window`.
struct Cursor<'a> {
    data: &'a FileRange,
    pos: u64,
    end: u64,
    win: Window,
}

impl<'a> Cursor<'a> {
    /// A cursor over `data[pos..end]`; its window never reads past `end`.
    fn new(data: &'a FileRange, pos: u64, end: u64) -> Result<Cursor<'a>> {
        Ok(Cursor {
            data,
            pos,
            end,
            win: Window::new(data.slice(0, end)?, 64 << 10),
        })
    }

    fn take(&mut self, n: u64) -> Result<u64> {
        let at = self.pos;
        match at.checked_add(n) {
            Some(e) if e <= self.end => {
                self.pos = e;
                Ok(at)
            }
            _ => bail!(
                "truncated: {n} bytes at offset {at} reach past the end ({})",
                self.end
            ),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let at = self.take(N as u64)?;
        let mut out = [0u8; N];
        self.win.read(at, &mut out)?;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u64> {
        Ok(u16::from_be_bytes(self.bytes()?).into())
    }
    fn u32(&mut self) -> Result<u64> {
        Ok(u32::from_be_bytes(self.bytes()?).into())
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.bytes()?))
    }

    fn marker(&mut self) -> Result<Marker> {
        Ok(Marker::from_u8(self.u8()?))
    }

    /// The range of a str/bin payload of `len` bytes at the cursor, skipped.
    fn range(&mut self, len: u64) -> Result<FileRange> {
        let at = self.take(len)?;
        self.data.slice(at, len)
    }

    /// Reads a small str/bin payload (a key, a dtype name) into memory.
    fn small(&mut self, len: u64) -> Result<Vec<u8>> {
        if len > 4096 {
            bail!("a {len}-byte string where a short name was expected");
        }
        let at = self.take(len)?;
        self.data.read_vec(at, len as usize)
    }
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

fn str_len(c: &mut Cursor, m: Marker) -> Result<Option<u64>> {
    Ok(Some(match m {
        Marker::FixStr(n) => n.into(),
        Marker::Str8 | Marker::Bin8 => c.u8()?.into(),
        Marker::Str16 | Marker::Bin16 => c.u16()?,
        Marker::Str32 | Marker::Bin32 => c.u32()?,
        _ => return Ok(None),
    }))
}

fn value(c: &mut Cursor, depth: usize) -> Result<Node> {
    if depth > MAX_DEPTH {
        bail!("values nest deeper than {MAX_DEPTH} levels");
    }
    let m = c.marker()?;
    if let Some(len) = str_len(c, m)? {
        return Ok(Node::Bytes(c.range(len)?));
    }
    Ok(match m {
        Marker::FixPos(n) => Node::Int(n.into()),
        Marker::FixNeg(n) => Node::Int(n.into()),
        Marker::U8 => Node::Int(c.u8()?.into()),
        Marker::U16 => Node::Int(c.u16()?.into()),
        Marker::U32 => Node::Int(c.u32()?.into()),
        Marker::U64 => Node::Int(c.u64()?.into()),
        Marker::I8 => Node::Int((c.u8()? as i8).into()),
        Marker::I16 => Node::Int((c.u16()? as u16 as i16).into()),
        Marker::I32 => Node::Int((c.u32()? as u32 as i32).into()),
        Marker::I64 => Node::Int((c.u64()? as i64).into()),
        Marker::F32 => Node::Float(f32::from_bits(c.u32()? as u32).into()),
        Marker::F64 => Node::Float(f64::from_bits(c.u64()?)),
        Marker::True => Node::Bool(true),
        Marker::False => Node::Bool(false),
        Marker::Null => Node::Unsupported("nil (None)"),
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let n = match m {
                Marker::FixMap(n) => n.into(),
                Marker::Map16 => c.u16()?,
                _ => c.u32()?,
            };
            let mut entries = Vec::new();
            for _ in 0..n {
                let k = key(c)?;
                let v = value(c, depth + 1).with_context(|| format!("under key '{k}'"))?;
                entries.push((k, v));
            }
            Node::Map(entries)
        }
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let n = array_len(c, m)?;
            let mut items = Vec::new();
            for i in 0..n {
                items.push(value(c, depth + 1).with_context(|| format!("in item {i}"))?);
            }
            Node::List(items)
        }
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => {
            let len = match m {
                Marker::FixExt1 => 1,
                Marker::FixExt2 => 2,
                Marker::FixExt4 => 4,
                Marker::FixExt8 => 8,
                Marker::FixExt16 => 16,
                Marker::Ext8 => c.u8()?.into(),
                Marker::Ext16 => c.u16()?,
                _ => c.u32()?,
            };
            let code = c.u8()? as i8;
            let start = c.take(len)?;
            let mut inner = Cursor::new(c.data, start, start + len)?;
            let node = match code {
                1 | 3 => ndarray(&mut inner)?,
                2 => complex(&mut inner)?,
                _ => return Ok(Node::Unsupported("an unknown msgpack extension")),
            };
            if inner.pos != inner.end {
                bail!("extension {code} holds trailing bytes");
            }
            node
        }
        Marker::Reserved => bail!("the reserved marker 0xc1"),
        _ => bail!("unexpected marker {m:?}"),
    })
}

fn array_len(c: &mut Cursor, m: Marker) -> Result<u64> {
    Ok(match m {
        Marker::FixArray(n) => n.into(),
        Marker::Array16 => c.u16()?,
        Marker::Array32 => c.u32()?,
        _ => bail!("expected an array, found {m:?}"),
    })
}

/// A map key as a Python string: msgpack_restore keeps str keys, and ints (strict_map_key is
/// off) read as their decimal form once joined into a name.
fn key(c: &mut Cursor) -> Result<String> {
    let m = c.marker()?;
    if let Some(len) = str_len(c, m)? {
        return Ok(String::from_utf8_lossy(&c.small(len)?).into_owned());
    }
    let n: i128 = match m {
        Marker::FixPos(n) => n.into(),
        Marker::FixNeg(n) => n.into(),
        Marker::U8 => c.u8()?.into(),
        Marker::U16 => c.u16()?.into(),
        Marker::U32 => c.u32()?.into(),
        Marker::U64 => c.u64()?.into(),
        Marker::I8 => (c.u8()? as i8).into(),
        Marker::I16 => (c.u16()? as u16 as i16).into(),
        Marker::I32 => (c.u32()? as u32 as i32).into(),
        Marker::I64 => (c.u64()? as i64).into(),
        _ => bail!("a map key of type {m:?}; only strings and integers are supported"),
    };
    Ok(n.to_string())
}

fn int(c: &mut Cursor) -> Result<u64> {
    match value(c, MAX_DEPTH)? {
        Node::Int(n) => u64::try_from(n).map_err(|_| anyhow!("a negative dimension {n}")),
        _ => bail!("a dimension that is not an integer"),
    }
}

/// Extension types 1 and 3: msgpack `(shape, dtype name, bytes)`.
fn ndarray(c: &mut Cursor) -> Result<Node> {
    let m = c.marker()?;
    if array_len(c, m)? != 3 {
        bail!("an ndarray extension that is not (shape, dtype, bytes)");
    }
    let m = c.marker()?;
    let rank = array_len(c, m).context("the ndarray shape")?;
    if rank > 64 {
        bail!("an ndarray of rank {rank}");
    }
    let mut shape = Vec::new();
    for _ in 0..rank {
        shape.push(int(c)?);
    }
    let m = c.marker()?;
    let name_len = str_len(c, m)?.ok_or_else(|| anyhow!("the ndarray dtype is not a string"))?;
    let name = String::from_utf8_lossy(&c.small(name_len)?).into_owned();
    let m = c.marker()?;
    let len = str_len(c, m)?.ok_or_else(|| anyhow!("the ndarray data is not a byte string"))?;
    let data = c.range(len)?;
    let dtype = numpy_dtype(&name);
    let Some(dtype) = dtype else {
        return Ok(Node::Unsupported(
            "an ndarray of a dtype with no NumPy form here",
        ));
    };
    let want = checked_elements(&shape)?
        .checked_mul(dtype.item_size().unwrap_or(1) as u64)
        .ok_or_else(|| anyhow!("the ndarray shape {shape:?} overflows"))?;
    if want != len {
        bail!("an ndarray of shape {shape:?} and dtype {name} needs {want} bytes, but holds {len}");
    }
    Ok(Node::Array(Box::new((dtype, shape, vec![data]))))
}

/// NumPy's `dtype.name` of the fixed-size types (with ml_dtypes' bfloat16, float8 and int4).
fn numpy_dtype(name: &str) -> Option<DType> {
    DType::ALL.iter().copied().find(|d| {
        d.name() == name
            && d.item_size().is_some()
            && !matches!(
                d,
                DType::QInt8 | DType::QUInt8 | DType::QInt16 | DType::QUInt16 | DType::QInt32
            )
    })
}

/// Extension type 2: msgpack `(real, imag)`.
fn complex(c: &mut Cursor) -> Result<Node> {
    let m = c.marker()?;
    if array_len(c, m)? != 2 {
        bail!("a complex extension that is not (real, imag)");
    }
    let mut part = || -> Result<f64> {
        Ok(match value(c, MAX_DEPTH)? {
            Node::Float(f) => f,
            Node::Int(i) => i as f64,
            _ => bail!("a complex part that is not a number"),
        })
    };
    let (re, im) = (part()?, part()?);
    Ok(Node::Complex(re, im))
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
}

#[cfg(test)]
mod tests;
