//! Sparse and ragged tensors. Recognises them among a source's tensors — the serialized forms
//! TensorFlow writes (`tf.io.serialize_sparse`, `serialize_many_sparse`, `RaggedTensorVariant`
//! variants) and component groups (`X/indices` + `X/values` + `X/dense_shape`,
//! `X/flat_values` + `X/row_splits_K`) — validates them, and re-exposes the source as the arrays
//! the user asked for: COO components or a densified array; ragged components, the flat values,
//! or a padded array.
//!
//! Memory: components are never decoded whole. A group's members are read in place (or spooled
//! to a temporary file by `comp`) and walked chunk by chunk; in COO or components mode they
//! pass through from the source unchanged. Serialized forms are held at their stored size, and
//! their nested TensorProtos are scanned and checked against each other (shapes, counts,
//! `--max-fill-bytes`) before any value is produced. Only unsorted sparse indices that must be
//! sorted use memory in proportion to their count, up to `memory_budget`.

mod comp;
mod ragged;
mod serialized;
mod sparse;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::{ChunkSink, Facts, InputFacts, Kind, Source, TensorMeta};

pub use comp::{Comp, CompData};
pub use ragged::Ragged;
pub use sparse::Sparse;

/// The most bytes held in memory to sort unsorted sparse indices, or for the serialized
/// elements and string components of one sparse or ragged tensor.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 << 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SparseMode {
    /// `X/indices`, `X/values`, `X/dense_shape`
    #[default]
    Coo,
    /// `X` as a dense array, like `tf.sparse.to_dense`
    Dense,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RaggedMode {
    /// `X/flat_values` and `X/row_splits_0`, `X/row_splits_1`, ... (outermost first)
    #[default]
    Components,
    /// `X` = the flat values alone, like `rt.flat_values`
    Flat,
    /// `X` padded into a dense array, like `rt.to_tensor()`
    Pad,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// `--max-fill-bytes`, for TensorProtos nested in serialized sparse and ragged tensors.
    pub max_fill_bytes: u64,
    /// See `DEFAULT_MEMORY_BUDGET`.
    pub memory_budget: u64,
}

/// The metadata of a component decoded from a serialized form: [`sparse::head`]'s, named, and
/// a string tensor's kind.
fn comp_meta(name: String, c: &Comp) -> TensorMeta {
    let mut m = sparse::head(c);
    m.name = name;
    if c.dtype == DType::String {
        m.kind = Kind::String;
    }
    m
}

/// One array of the structured view.
enum Item {
    /// An inner tensor, unchanged.
    Pass(usize),
    /// A component read from a serialized form, or a group's values under a new name.
    Comp(TensorMeta, Arc<Comp>),
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
        crate::error::check_interrupted()?;
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
    /// A whole sparse tensor described for `list`.
    Listed(TensorMeta),
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
        let budget = opts.memory_budget;
        let list = opts.view == View::List;
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
                let context = || format!("{path}: sparse tensor '{base}'");
                let (mi, mv, ms) = (&metas[i], &metas[v], &metas[s]);
                sparse::check_heads(mi, mv, ms).with_context(context)?;
                let src = inner.as_mut();
                let f = if list {
                    let shape = Comp::from_source(src, s, ms, budget).with_context(context)?;
                    Found::Listed(sparse::list_meta(base, mi, mv, shape).with_context(context)?)
                } else {
                    let values = if opts.sparse == SparseMode::Dense {
                        Some(Comp::from_source(src, v, mv, budget).with_context(context)?)
                    } else {
                        None
                    };
                    let sp = Sparse::new(
                        Comp::from_source(src, i, mi, budget).with_context(context)?,
                        values,
                        mv.clone(),
                        Comp::from_source(src, s, ms, budget).with_context(context)?,
                        opts,
                    )
                    .with_context(context)?;
                    Found::Sparse(sp, members.clone())
                };
                register(&mut grouped, &mut found, base, members, f);
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
                let context = || format!("{path}: ragged tensor '{base}'");
                let src = inner.as_mut();
                let splits: Vec<Comp> = members[1..]
                    .iter()
                    .map(|&k| Comp::from_source(src, k, &metas[k], budget))
                    .collect::<Result<_>>()
                    .with_context(context)?;
                let vm = &metas[members[0]];
                let values = if list || opts.ragged == RaggedMode::Components {
                    None
                } else {
                    Some(Comp::from_source(src, members[0], vm, budget).with_context(context)?)
                };
                let rt = Ragged::new(splits, values, vm.clone(), opts).with_context(context)?;
                register(
                    &mut grouped,
                    &mut found,
                    base,
                    members.clone(),
                    Found::Ragged(rt, members),
                );
            }
        }

        let mut items = Vec::new();
        // The reader's own notes (a checkpoint written without CRC-32s) come first.
        let mut notes = inner.input_facts().notes.to_vec();
        let mut skipped_variants: Vec<String> = Vec::new();
        for (i, m) in metas.iter().enumerate() {
            if let Some(&first) = grouped.get(&i) {
                if first == i {
                    let (base, f) = found.remove(&i).unwrap();
                    push_structure(&mut items, &base, f, opts)
                        .with_context(|| format!("{path}: '{base}'"))?;
                }
                continue;
            }
            let context = || format!("{path}: tensor '{}'", m.name);
            if m.dtype == DType::Variant {
                let elements = read_elements(inner.as_mut(), i, budget).with_context(context)?;
                match ragged::from_variant(&elements, &m.shape, opts).with_context(context)? {
                    Some(rt) => {
                        push_structure(&mut items, &m.name, Found::Ragged(rt, vec![]), opts)
                            .with_context(context)?
                    }
                    None => skipped_variants.push(m.name.clone()),
                }
                continue;
            }
            if m.dtype == DType::String && is_candidate(m) && !m.name.ends_with("/indices") {
                let elements = read_elements(inner.as_mut(), i, budget).with_context(context)?;
                match serialized::from_serialized(&m.name, &elements, &m.shape, opts)
                    .with_context(context)?
                {
                    Some(serialized::Serialized::Sparse(sp)) => {
                        push_structure(&mut items, &m.name, Found::Sparse(*sp, vec![]), opts)
                            .with_context(context)?;
                        continue;
                    }
                    Some(serialized::Serialized::Listed(meta)) => {
                        items.push(Item::Listed(meta));
                        continue;
                    }
                    None => {}
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

/// Every element of a variable-length tensor, in memory (serialized components), up to
/// `budget` bytes.
fn read_elements(src: &mut dyn Source, index: usize, budget: u64) -> Result<Vec<Vec<u8>>> {
    let mut elements = Vec::new();
    let mut held = 0u64;
    src.read_strings(index, &mut |s: &[u8]| {
        held += s.len() as u64 + 24;
        if held > budget {
            bail!("its serialized elements take more than the {budget}-byte memory budget");
        }
        crate::error::check_interrupted()?;
        elements.push(s.to_vec());
        Ok(())
    })?;
    Ok(elements)
}

fn register(
    grouped: &mut HashMap<usize, usize>,
    found: &mut HashMap<usize, (String, Found)>,
    base: &str,
    members: Vec<usize>,
    f: Found,
) {
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
    let comp = |items: &mut Vec<Item>, name: String, c: Comp| {
        items.push(Item::Comp(comp_meta(name, &c), Arc::new(c)));
    };
    match f {
        Found::Listed(meta) => items.push(Item::Listed(meta)),
        Found::Sparse(sp, members) => {
            if opts.view == View::List {
                items.push(Item::Listed(sp.list_meta(name)?));
            } else if opts.sparse == SparseMode::Dense {
                let meta = sp.dense_meta(name, opts)?;
                items.push(Item::Dense(meta, Arc::new(sp)));
            } else if members.is_empty() {
                for (suffix, c) in sp.components()? {
                    comp(items, format!("{name}/{suffix}"), c);
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
                    let meta = rt.padded_meta(name, opts)?;
                    items.push(Item::Padded(meta, Arc::new(rt)));
                }
                RaggedMode::Flat => {
                    let meta = rt.flat_meta(name);
                    let values = rt.values.context("the values were not read")?;
                    items.push(Item::Comp(meta, Arc::new(values)));
                }
                RaggedMode::Components if !members.is_empty() => {
                    items.extend(members.into_iter().map(Item::Pass))
                }
                RaggedMode::Components => {
                    for (suffix, c) in rt.components()? {
                        comp(items, format!("{name}/{suffix}"), c);
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
    /// The reader's format, and its notes followed by this wrapper's own.
    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts {
            format: self.inner.input_facts().format,
            notes: &self.notes,
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.meta(*i),
            // Assembled from several tensors: none of the reader's facts about one of them
            // holds, and a worker would assemble it all again.
            Item::Comp(m, _) | Item::Dense(m, _) | Item::Padded(m, _) | Item::Listed(m) => {
                Ok(TensorMeta {
                    facts: Facts {
                        serial: true,
                        ..Facts::default()
                    },
                    ..m.clone()
                })
            }
        }
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.read_dense(*i, chunk, sink),
            Item::Comp(_, c) => c.emit(chunk, sink),
            Item::Dense(_, sp) => sp.stream_dense(chunk, sink),
            Item::Padded(_, rt) => rt.stream_padded(chunk, sink),
            Item::Listed(m) => bail!("'{}' is listed whole and cannot be read", m.name),
        }
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.read_strings(*i, sink),
            Item::Comp(_, c) => c.emit(0, sink),
            Item::Dense(_, sp) => sp.stream_dense_strings(sink),
            Item::Padded(_, rt) => rt.stream_padded_strings(sink),
            Item::Listed(m) => bail!("'{}' is listed whole and cannot be read", m.name),
        }
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.inner.input_files()
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        match &self.items[index] {
            Item::Pass(i) => self.inner.raw_range(*i),
            Item::Comp(_, c) => match &c.data {
                CompData::Fixed(r) if r.file().is_some() => Some(r.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        self.inner.metadata()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain tensor with facts of its reader, and the three components of a sparse tensor;
    /// the reader has a format and a note.
    struct Mock {
        metas: Vec<TensorMeta>,
        notes: Vec<String>,
    }

    fn meta(name: &str, dtype: DType, shape: &[u64], facts: Facts) -> TensorMeta {
        TensorMeta {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            kind: Kind::Dense,
            stored_bytes: 8,
            max_string_len: None,
            big_endian: false,
            ragged_rank: 0,
            facts,
        }
    }

    impl Source for Mock {
        fn display_path(&self) -> &str {
            "mock"
        }
        fn metas(&self) -> &[TensorMeta] {
            &self.metas
        }
        fn read_dense(&mut self, index: usize, _: usize, sink: &mut ChunkSink) -> Result<()> {
            match self.metas[index].name.as_str() {
                "sp/dense_shape" => sink(&[3i64.to_le_bytes(), 4i64.to_le_bytes()].concat()),
                "sp/indices" => sink(&[0i64.to_le_bytes(), 1i64.to_le_bytes()].concat()),
                _ => sink(&[0u8; 8][..self.metas[index].dtype.item_size().unwrap()]),
            }
        }
        fn read_strings(&mut self, _: usize, _: &mut ChunkSink) -> Result<()> {
            bail!("no strings")
        }
        fn input_files(&self) -> Vec<PathBuf> {
            Vec::new()
        }
        fn input_facts(&self) -> InputFacts<'_> {
            InputFacts {
                format: Some("mock"),
                notes: &self.notes,
            }
        }
    }

    #[test]
    fn the_readers_facts_and_notes_survive_and_assembled_tensors_carry_none() {
        let w = Facts {
            source_dtype: Some("q4_K".into()),
            host_decode: Some("dequantized".into()),
            quantization: Some(serde_json::json!({"scale": [0.5]})),
            serial: false,
        };
        let inner = Mock {
            metas: vec![
                meta("w", DType::F32, &[2], w.clone()),
                meta("sp/indices", DType::I64, &[1, 2], w.clone()),
                meta("sp/values", DType::F32, &[1], w.clone()),
                meta("sp/dense_shape", DType::I64, &[2], w.clone()),
            ],
            notes: vec!["written without CRC-32s".into()],
        };
        let opts = StructureOptions {
            sparse: Default::default(),
            ragged: Default::default(),
            fill: None,
            duplicates: Duplicates::Sum,
            max_dense_bytes: u64::MAX,
            strict: false,
            view: View::List,
            max_fill_bytes: u64::MAX,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        };
        let s = wrap(Box::new(inner), &opts).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.input_facts().format, Some("mock"));
        assert_eq!(s.input_facts().notes[0], "written without CRC-32s");
        let (plain, sparse) = (s.meta(0).unwrap(), s.meta(1).unwrap());
        assert_eq!((plain.name.as_str(), plain.facts), ("w", w));
        assert_eq!((sparse.name.as_str(), sparse.kind), ("sp", Kind::Sparse));
        assert_eq!(
            sparse.facts,
            Facts {
                serial: true,
                ..Facts::default()
            }
        );
    }
}
