//! Sparse and ragged tensors. Recognises them among a source's tensors — the serialized forms
//! TensorFlow writes (`tf.io.serialize_sparse`, `serialize_many_sparse`, `RaggedTensorVariant`
//! variants) and component groups (`X/indices` + `X/values` + `X/dense_shape`,
//! `X/flat_values` + `X/row_splits_K`) — validates them, and re-exposes the source as the arrays
//! the user asked for: COO components or a densified array; ragged components, the flat values,
//! or a padded array. Component tensors are small next to the dense results, so they are decoded
//! into memory; dense and padded results are streamed in row-major order.

mod ragged;
mod sparse;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::dtype::DType;
use crate::input::FileRange;
use crate::source::tensorproto::TensorProtoSource;
use crate::tensor::{ChunkSink, Kind, Source, TensorMeta};

pub use ragged::Ragged;
pub use sparse::Sparse;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SparseMode {
    /// `X/indices`, `X/values`, `X/dense_shape`
    #[default]
    Coo,
    /// `X` as a dense array, like `tf.sparse.to_dense`
    Dense,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RaggedMode {
    /// `X/flat_values` and `X/row_splits_0`, `X/row_splits_1`, ... (outermost first)
    #[default]
    Components,
    /// `X` = the flat values alone, like `rt.flat_values`
    Flat,
    /// `X` padded into a dense array, like `rt.to_tensor()`
    Pad,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Duplicates {
    /// Repeated indices are an error
    #[default]
    Error,
    /// Values at repeated indices are added (like `np.add.at`)
    Sum,
    /// The last value at a repeated index wins
    Last,
}

/// What the whole-tensor view is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The arrays a conversion writes.
    Convert,
    /// One row per logical tensor (kind `sparse` / `ragged`, dense shape).
    List,
}

#[derive(Clone, Debug)]
pub struct StructureOptions {
    pub sparse: SparseMode,
    pub ragged: RaggedMode,
    pub fill: Option<String>,
    pub duplicates: Duplicates,
    pub max_dense_bytes: u64,
    pub strict: bool,
    pub view: View,
}

/// A tensor decoded into memory: a component of a sparse or ragged tensor.
#[derive(Clone, Debug)]
pub struct Component {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub data: Data,
}

#[derive(Clone, Debug)]
pub enum Data {
    /// Elements in the dtype's little-endian layout.
    Fixed(Vec<u8>),
    Strings(Vec<Vec<u8>>),
}

impl Component {
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Fails unless the data holds exactly the elements the shape says.
    pub fn check_consistent(&self, what: &str) -> Result<()> {
        let n = crate::tensor::checked_elements(&self.shape)?;
        let ok = match &self.data {
            Data::Fixed(v) => {
                n.checked_mul(self.dtype.item_size().unwrap_or(1) as u64) == Some(v.len() as u64)
            }
            Data::Strings(v) => n == v.len() as u64,
        };
        if !ok {
            bail!(
                "{what} of shape {:?} does not hold that many {} elements",
                self.shape,
                self.dtype
            );
        }
        Ok(())
    }

    fn read(src: &mut dyn Source, index: usize, meta: &TensorMeta) -> Result<Component> {
        let data = if meta.dtype.item_size().is_some() {
            let mut v = Vec::new();
            src.read_dense(index, 1 << 20, &mut |c: &[u8]| {
                v.extend_from_slice(c);
                Ok(())
            })?;
            Data::Fixed(v)
        } else {
            let mut v = Vec::new();
            src.read_strings(index, &mut |s: &[u8]| {
                v.push(s.to_vec());
                Ok(())
            })?;
            Data::Strings(v)
        };
        Ok(Component {
            dtype: meta.dtype,
            shape: meta.shape.clone(),
            data,
        })
    }

    /// Decodes a serialized TensorProto held in memory.
    pub fn from_proto(bytes: Vec<u8>) -> Result<Component> {
        let range = FileRange::from_vec(bytes);
        let mut src = TensorProtoSource::open("component", vec![], range, String::new(), u64::MAX)?;
        let meta = src.meta(0)?;
        Component::read(&mut src, 0, &meta)
    }

    /// The elements of an integer index tensor (int32 or int64).
    pub fn integers(&self, what: &str) -> Result<Vec<i64>> {
        let Data::Fixed(bytes) = &self.data else {
            bail!("{what} must be int32 or int64, not {}", self.dtype);
        };
        Ok(match self.dtype {
            DType::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DType::I32 => bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            other => bail!("{what} must be int32 or int64, not {other}"),
        })
    }

    pub fn from_integers(dtype: DType, values: &[i64]) -> Component {
        let bytes = match dtype {
            DType::I32 => values
                .iter()
                .flat_map(|&v| (v as i32).to_le_bytes())
                .collect(),
            _ => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
        };
        Component {
            dtype,
            shape: vec![values.len() as u64],
            data: Data::Fixed(bytes),
        }
    }

    fn max_string_len(&self) -> Option<u64> {
        match &self.data {
            Data::Strings(v) => Some(v.iter().map(|s| s.len() as u64).max().unwrap_or(0)),
            Data::Fixed(_) => None,
        }
    }

    fn meta(&self, name: String) -> TensorMeta {
        TensorMeta {
            name,
            dtype: self.dtype,
            shape: self.shape.clone(),
            kind: if self.dtype == DType::String {
                Kind::String
            } else {
                Kind::Dense
            },
            stored_bytes: match &self.data {
                Data::Fixed(v) => v.len() as u64,
                Data::Strings(v) => v.iter().map(|s| s.len() as u64).sum(),
            },
            max_string_len: self.max_string_len(),
            big_endian: false,
            ragged_rank: 0,
        }
    }

    /// Streams the component as `Source::read_dense` / `read_strings` would.
    fn emit(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        match &self.data {
            Data::Fixed(v) => {
                let unit = self.dtype.item_size().unwrap_or(1);
                for c in v.chunks((chunk / unit).max(1) * unit) {
                    sink(c)?;
                }
                Ok(())
            }
            Data::Strings(v) => v.iter().try_for_each(|s| sink(s)),
        }
    }
}

/// One array of the structured view.
enum Item {
    /// An inner tensor, unchanged.
    Pass(usize),
    /// A component decoded into memory.
    Memory(TensorMeta, Arc<Component>),
    /// A sparse tensor streamed out dense.
    Dense(TensorMeta, Arc<Sparse>),
    /// A ragged tensor streamed out padded.
    Padded(TensorMeta, Arc<Ragged>),
    /// A whole sparse or ragged tensor, for `list` only.
    Listed(TensorMeta),
}

pub struct Structured {
    inner: Box<dyn Source>,
    items: Vec<Item>,
    notes: Vec<String>,
}

fn is_candidate(m: &TensorMeta) -> bool {
    if m.kind == Kind::Ragged {
        // A component its reader declares (and answers --ragged for) itself: tf.Example.
        return false;
    }
    let serialized_sparse =
        m.dtype == DType::String && (m.shape == [3] || (m.shape.len() == 2 && m.shape[1] == 3));
    serialized_sparse
        || m.dtype == DType::Variant
        || m.name.ends_with("/indices")
        || m.name.ends_with("/flat_values")
}

/// Wraps `inner` in the structured view, or returns it untouched when it holds nothing sparse
/// or ragged (so large plain inputs pay nothing).
pub fn wrap(inner: Box<dyn Source>, opts: &StructureOptions) -> Result<Box<dyn Source>> {
    let mut any = false;
    for i in 0..inner.len() {
        if is_candidate(&inner.meta(i)?) {
            any = true;
            break;
        }
    }
    if !any {
        return Ok(inner);
    }
    Ok(Box::new(Structured::new(inner, opts)?))
}

enum Found {
    Sparse(Sparse, Vec<usize>),
    Ragged(Ragged, Vec<usize>),
}

impl Structured {
    fn new(mut inner: Box<dyn Source>, opts: &StructureOptions) -> Result<Structured> {
        let metas: Vec<TensorMeta> = (0..inner.len())
            .map(|i| inner.meta(i))
            .collect::<Result<_>>()?;
        let by_name: HashMap<&str, usize> = metas
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        let path = inner.display_path().to_string();

        // Component groups, found by name.
        let mut grouped: HashMap<usize, usize> = HashMap::new(); // member -> first member
        let mut found: HashMap<usize, (String, Found)> = HashMap::new(); // first member -> structure
        for m in &metas {
            if let Some(base) = m.name.strip_suffix("/indices") {
                let (Some(&v), Some(&s)) = (
                    by_name.get(format!("{base}/values").as_str()),
                    by_name.get(format!("{base}/dense_shape").as_str()),
                ) else {
                    continue;
                };
                let i = by_name[m.name.as_str()];
                let members = vec![i, v, s];
                let comps: Vec<Component> = members
                    .iter()
                    .map(|&k| Component::read(inner.as_mut(), k, &metas[k]))
                    .collect::<Result<_>>()
                    .with_context(|| format!("{path}: sparse tensor '{base}'"))?;
                let [ind, val, shp] = <[Component; 3]>::try_from(comps).unwrap();
                let sp = Sparse::new(ind, val, shp, opts)
                    .with_context(|| format!("{path}: sparse tensor '{base}'"))?;
                register(&mut grouped, &mut found, base, Found::Sparse(sp, members));
            } else if let Some(base) = m
                .name
                .strip_suffix("/flat_values")
                .filter(|_| m.kind != Kind::Ragged)
            {
                let mut members = vec![by_name[m.name.as_str()]];
                while let Some(&k) =
                    by_name.get(format!("{base}/row_splits_{}", members.len() - 1).as_str())
                {
                    members.push(k);
                }
                if members.len() < 2 {
                    continue;
                }
                let values = Component::read(inner.as_mut(), members[0], &metas[members[0]])?;
                let splits: Vec<Component> = members[1..]
                    .iter()
                    .map(|&k| Component::read(inner.as_mut(), k, &metas[k]))
                    .collect::<Result<_>>()?;
                let rt = Ragged::new(splits, values, opts)
                    .with_context(|| format!("{path}: ragged tensor '{base}'"))?;
                register(&mut grouped, &mut found, base, Found::Ragged(rt, members));
            }
        }

        let mut items = Vec::new();
        let mut notes = Vec::new();
        let mut skipped_variants: Vec<String> = Vec::new();
        for (i, m) in metas.iter().enumerate() {
            if let Some(&first) = grouped.get(&i) {
                if first == i {
                    let (base, f) = found.remove(&i).unwrap();
                    push_structure(&mut items, &base, f, opts)?;
                }
                continue;
            }
            let context = || format!("{path}: tensor '{}'", m.name);
            if m.dtype == DType::Variant {
                let elements = read_elements(inner.as_mut(), i).with_context(context)?;
                match Ragged::from_variant(&elements, &m.shape, opts).with_context(context)? {
                    Some(rt) => {
                        push_structure(&mut items, &m.name, Found::Ragged(rt, vec![]), opts)?
                    }
                    None => skipped_variants.push(m.name.clone()),
                }
                continue;
            }
            if m.dtype == DType::String && is_candidate(m) && !m.name.ends_with("/indices") {
                let elements = read_elements(inner.as_mut(), i).with_context(context)?;
                if let Some(sp) =
                    Sparse::from_serialized(&elements, &m.shape, opts).with_context(context)?
                {
                    push_structure(&mut items, &m.name, Found::Sparse(sp, vec![]), opts)?;
                    continue;
                }
            }
            items.push(Item::Pass(i));
        }
        if !skipped_variants.is_empty() {
            let msg = format!(
                "skipped {} variant entr{} with no NumPy form (e.g. '{}')",
                skipped_variants.len(),
                if skipped_variants.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                skipped_variants[0]
            );
            if opts.strict {
                bail!("{path}: {msg}; --strict makes this an error");
            }
            notes.push(msg);
        }
        Ok(Structured {
            inner,
            items,
            notes,
        })
    }
}

/// Every element of a variable-length tensor, in memory (serialized components are small).
fn read_elements(src: &mut dyn Source, index: usize) -> Result<Vec<Vec<u8>>> {
    let mut elements = Vec::new();
    src.read_strings(index, &mut |s: &[u8]| {
        elements.push(s.to_vec());
        Ok(())
    })?;
    Ok(elements)
}

fn register(
    grouped: &mut HashMap<usize, usize>,
    found: &mut HashMap<usize, (String, Found)>,
    base: &str,
    f: Found,
) {
    let members = match &f {
        Found::Sparse(_, m) | Found::Ragged(_, m) => m.clone(),
    };
    let first = *members.iter().min().unwrap();
    for m in members {
        grouped.insert(m, first);
    }
    found.insert(first, (base.to_string(), f));
}

/// The arrays one sparse or ragged tensor becomes in the chosen mode.
fn push_structure(
    items: &mut Vec<Item>,
    name: &str,
    f: Found,
    opts: &StructureOptions,
) -> Result<()> {
    match f {
        Found::Sparse(sp, members) => {
            if opts.view == View::List {
                items.push(Item::Listed(sp.list_meta(name)));
            } else if opts.sparse == SparseMode::Dense {
                let sp = Arc::new(sp);
                let meta = sp.dense_meta(name, opts)?;
                items.push(Item::Dense(meta, sp));
            } else if members.is_empty() {
                for (suffix, c) in sp.components() {
                    let c = Arc::new(c);
                    items.push(Item::Memory(c.meta(format!("{name}/{suffix}")), c));
                }
            } else {
                items.extend(members.into_iter().map(Item::Pass));
            }
        }
        Found::Ragged(rt, members) => {
            if opts.view == View::List {
                items.push(Item::Listed(rt.list_meta(name)));
                return Ok(());
            }
            match opts.ragged {
                RaggedMode::Pad => {
                    let rt = Arc::new(rt);
                    let meta = rt.padded_meta(name, opts)?;
                    items.push(Item::Padded(meta, rt));
                }
                RaggedMode::Flat => {
                    let c = Arc::new(rt.values.clone());
                    items.push(Item::Memory(c.meta(name.to_string()), c));
                }
                RaggedMode::Components if !members.is_empty() => {
                    items.extend(members.into_iter().map(Item::Pass))
                }
                RaggedMode::Components => {
                    for (suffix, c) in rt.components() {
                        let c = Arc::new(c);
                        items.push(Item::Memory(c.meta(format!("{name}/{suffix}")), c));
                    }
                }
            }
        }
    }
    Ok(())
}

impl Source for Structured {
    fn display_path(&self) -> &str {
        self.inner.display_path()
    }
    fn format(&self) -> Option<&str> {
        self.inner.format()
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.meta(*i),
            Item::Memory(m, _) | Item::Dense(m, _) | Item::Padded(m, _) | Item::Listed(m) => {
                Ok(m.clone())
            }
        }
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.read_dense(*i, chunk, sink),
            Item::Memory(_, c) => c.emit(chunk, sink),
            Item::Dense(_, sp) => sp.stream_dense(chunk, sink),
            Item::Padded(_, rt) => rt.stream_padded(chunk, sink),
            Item::Listed(m) => bail!("'{}' is listed whole and cannot be read", m.name),
        }
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.read_strings(*i, sink),
            Item::Memory(_, c) => c.emit(0, sink),
            Item::Dense(_, sp) => sp.stream_dense_strings(sink),
            Item::Padded(_, rt) => rt.stream_padded_strings(sink),
            Item::Listed(m) => bail!("'{}' is listed whole and cannot be read", m.name),
        }
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.inner.input_files()
    }

    fn source_dtype(&self, index: usize) -> Option<String> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.source_dtype(*i),
            _ => None,
        }
    }

    fn host_decode(&self, index: usize) -> Option<String> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.host_decode(*i),
            _ => None,
        }
    }

    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        self.inner.metadata()
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// Bytes of one fill element of `dtype` (`--fill`, or zeros).
fn fill_bytes(dtype: DType, opts: &StructureOptions) -> Result<Vec<u8>> {
    match &opts.fill {
        Some(text) => crate::transform::parse_fill(dtype, text),
        None => Ok(vec![0u8; dtype.item_size().unwrap_or(0)]),
    }
}

/// Refuses a dense result larger than `--max-dense-bytes`, before anything is written.
fn check_dense_size(name: &str, shape: &[u64], item: u64, opts: &StructureOptions) -> Result<()> {
    let bytes = crate::tensor::checked_elements(shape)
        .ok()
        .and_then(|n| n.checked_mul(item.max(1)));
    match bytes {
        Some(b) if b <= opts.max_dense_bytes => Ok(()),
        _ => bail!(
            "'{name}': the dense result of shape {shape:?} would take {} bytes, over --max-dense-bytes ({})",
            bytes.map_or("more than 2^64".to_string(), |b| b.to_string()),
            opts.max_dense_bytes
        ),
    }
}
