//! The `.metadata` file of a Distributed Checkpoint: a pickle of `Metadata` dataclasses, read as
//! inert records by the restricted unpickler of `pickle/` (nothing imported or called; the
//! `pathlib.PosixPath` of `storage_meta.checkpoint_id` is allowed as a record, see
//! [`pickle::load_inert`]), then turned into plain values here: each tensor's name (the
//! planner's path joined with `/`), dtype, global size and chunks, each chunk with the file,
//! offset and length its bytes lie at; the names of the bytes items (non-tensor state).
//!
//! Everything is checked before any data is touched: sizes and offsets are integers, every chunk
//! lies inside its tensor, the chunks of a tensor neither overlap nor leave holes
//! (`assemble::check_tiling`), every chunk has its storage entry. Offsets and lengths are
//! checked against the file sizes by `mod.rs`, which knows the files.

use std::collections::HashMap;
use std::io::BufRead;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};

use super::assemble::{check_tiling, Region};
use crate::source::pickle::{self, Global, Record, TorchDType, Value};

/// Classes of `.metadata` whose module the unpickler would otherwise refuse.
const INERT: &[&str] = &[
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath",
];

/// The pickled metadata may build at most this much (values, strings).
const BUDGET: u64 = 1 << 30;

/// The storage entries by `(fqn, chunk offsets)`, as `MetadataIndex` keys them.
type StorageMap = HashMap<(String, Option<Vec<u64>>), Stored>;

/// Where one chunk's bytes lie.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The file name relative to the checkpoint folder.
    pub file: String,
    pub offset: u64,
    pub length: u64,
    /// Extensions applied on save (compression...), which this reader does not undo.
    pub transforms: Vec<String>,
}

/// One chunk of a tensor: where it sits in the whole tensor, and where its bytes are.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub region: Region,
    pub stored: Stored,
}

/// One tensor of the checkpoint.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// The flattened key DCP uses (`model.0.weight`).
    pub fqn: String,
    /// The planner's path joined with `/` (`model/0.weight`).
    pub name: String,
    pub dtype: TorchDType,
    pub size: Vec<u64>,
    pub chunks: Vec<Chunk>,
}

/// What `.metadata` holds.
#[derive(Debug, Default)]
pub struct Checkpoint {
    pub tensors: Vec<Tensor>,
    /// The bytes items (pickled Python values, each a `torch.save` archive): their names and,
    /// where the metadata records it, where they lie.
    pub bytes: Vec<(String, Option<Stored>)>,
    pub version: Option<String>,
}

/// Parses `.metadata`.
pub fn parse(input: &mut dyn BufRead) -> Result<Checkpoint> {
    let opts = pickle::Options {
        strict: false,
        strict_numpy: false,
        budget: BUDGET,
    };
    let loaded =
        pickle::load_inert(input, &opts, INERT).context("not a readable DCP metadata pickle")?;
    let md = record(&loaded.value, "Metadata")?;
    let state = attr(md, "state_dict_metadata")?;
    let planner = match md.attribute("planner_data") {
        Some(v @ Value::Dict(_)) => dict(&v, "planner_data")?,
        _ => Vec::new(),
    };
    let mut paths: HashMap<String, String> = HashMap::new();
    for (k, v) in planner {
        let fqn = string(&k, "a planner_data key")?;
        let parts = match &v {
            Value::Tuple(t) => t.to_vec(),
            Value::List(l) => l.borrow().clone(),
            v => bail!("planner_data['{fqn}'] is a {}, not a path", v.type_name()),
        };
        let parts = parts
            .iter()
            .map(|p| match p {
                Value::Str(s) => Ok(s.to_string()),
                Value::Int(i) => Ok(i.to_string()),
                v => bail!("planner_data['{fqn}'] holds a {}", v.type_name()),
            })
            .collect::<Result<Vec<_>>>()?;
        if parts.is_empty() {
            bail!("planner_data['{fqn}'] is an empty path");
        }
        paths.insert(fqn, parts.join("/"));
    }
    let storage = storage_data(&attr(md, "storage_data")?)?;
    let mut out = Checkpoint {
        version: md.attribute("version").and_then(|v| string(&v, "").ok()),
        ..Default::default()
    };
    for (k, v) in dict(&state, "state_dict_metadata")? {
        let fqn = string(&k, "a state_dict_metadata key")?;
        let name = paths.get(&fqn).cloned().unwrap_or_else(|| fqn.clone());
        let r = match &v {
            Value::Record(r) => r.clone(),
            v => bail!("state_dict_metadata['{fqn}'] is a {}", v.type_name()),
        };
        if r.class.ends_with(".BytesStorageMetadata") {
            let stored = storage.get(&(fqn.clone(), None)).cloned();
            out.bytes.push((name, stored));
            continue;
        }
        let t = tensor(&fqn, name.clone(), &r, &storage)
            .with_context(|| format!("the tensor '{name}'"))?;
        out.tensors.push(t);
    }
    Ok(out)
}

/// `storage_data`: `MetadataIndex(fqn, offset)` to `_StorageInfo`.
fn storage_data(v: &Value) -> Result<StorageMap> {
    let mut out = HashMap::new();
    for (k, v) in dict(v, "storage_data")? {
        let idx = record(&k, "MetadataIndex")?;
        let fqn = string(&attr(idx, "fqn")?, "MetadataIndex.fqn")?;
        let offset = match idx.attribute("offset") {
            None | Some(Value::None) => None,
            Some(o) => Some(ints(&o, "MetadataIndex.offset")?),
        };
        let info = match &v {
            Value::Record(r) => r.clone(),
            v => bail!("storage_data of '{fqn}' is a {}", v.type_name()),
        };
        let at = || format!("the storage entry of '{fqn}'");
        let file = string(
            &attr(&info, "relative_path").with_context(at)?,
            "relative_path",
        )
        .with_context(at)?;
        let offset_b = int(&attr(&info, "offset").with_context(at)?, "offset").with_context(at)?;
        let length = int(&attr(&info, "length").with_context(at)?, "length").with_context(at)?;
        let transforms = match &info.attribute("transform_descriptors") {
            None | Some(Value::None) => Vec::new(),
            Some(Value::List(l)) => l
                .borrow()
                .iter()
                .map(|d| string(d, "a transform descriptor"))
                .collect::<Result<_>>()?,
            Some(Value::Tuple(t)) => t
                .iter()
                .map(|d| string(d, "a transform descriptor"))
                .collect::<Result<_>>()?,
            Some(v) => bail!("{}: transform_descriptors is a {}", at(), v.type_name()),
        };
        out.insert(
            (fqn, offset),
            Stored {
                file,
                offset: offset_b,
                length,
                transforms,
            },
        );
    }
    Ok(out)
}

fn tensor(fqn: &str, name: String, r: &Record, storage: &StorageMap) -> Result<Tensor> {
    if !r.class.ends_with(".TensorStorageMetadata") {
        bail!("a {} entry, not tensor or bytes metadata", r.class);
    }
    let props = attr(r, "properties")?;
    let dtype = dtype_of(&props)?;
    let size = ints(&attr(r, "size")?, "size")?;
    crate::tensor::checked_elements(&size)?;
    let chunks = match &attr(r, "chunks")? {
        Value::List(l) => l.borrow().clone(),
        Value::Tuple(t) => t.to_vec(),
        v => bail!("chunks is a {}", v.type_name()),
    };
    let mut out = Vec::with_capacity(chunks.len());
    for (i, c) in chunks.iter().enumerate() {
        let cr = record(c, "ChunkStorageMetadata").with_context(|| format!("chunk {i}"))?;
        let region = Region {
            offsets: ints(&attr(cr, "offsets")?, "chunk offsets")?,
            sizes: ints(&attr(cr, "sizes")?, "chunk sizes")?,
        };
        let stored = storage
            .get(&(fqn.to_string(), Some(region.offsets.clone())))
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "chunk {i} (at {:?}) has no storage entry in the metadata",
                    region.offsets
                )
            })?;
        out.push(Chunk { region, stored });
    }
    let regions: Vec<&Region> = out.iter().map(|c| &c.region).collect();
    check_tiling(&size, &regions)?;
    Ok(Tensor {
        fqn: fqn.to_string(),
        name,
        dtype,
        size,
        chunks: out,
    })
}

/// `TensorProperties`: its `BUILD` state is a tuple opening with the dtype (older files: a
/// dict with `dtype`).
fn dtype_of(props: &Value) -> Result<TorchDType> {
    let r = record(props, "TensorProperties")?;
    let state = r.state.borrow().clone();
    let d = match &state {
        Value::Tuple(t) => t.first().cloned(),
        Value::Dict(_) => r.attribute("dtype"),
        _ => None,
    };
    match &d {
        Some(Value::Global(g)) => match &**g {
            Global::DType(d) => Ok(*d),
            _ => bail!("TensorProperties names no torch dtype"),
        },
        _ => bail!("TensorProperties has no dtype"),
    }
}

fn record<'a>(v: &'a Value, class: &str) -> Result<&'a Rc<Record>> {
    match v {
        Value::Record(r) if r.class.rsplit('.').next() == Some(class) => Ok(r),
        Value::Record(r) => bail!("a {} where a {class} belongs", r.class),
        v => bail!("a {} where a {class} belongs", v.type_name()),
    }
}

fn attr(r: &Record, name: &str) -> Result<Value> {
    r.attribute(name)
        .ok_or_else(|| anyhow!("{} has no '{name}'", r.class))
}

fn dict(v: &Value, what: &str) -> Result<Vec<(Value, Value)>> {
    match v {
        Value::Dict(d) => Ok(d.borrow().clone()),
        v => bail!("{what} is a {}, not a dict", v.type_name()),
    }
}

fn string(v: &Value, what: &str) -> Result<String> {
    match v {
        Value::Str(s) => Ok(s.to_string()),
        v => bail!("{what} is a {}, not a str", v.type_name()),
    }
}

fn int(v: &Value, what: &str) -> Result<u64> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        v => bail!("{what} is a {}, not a non-negative int", v.type_name()),
    }
}

/// A `torch.Size` (a tuple once read) or a list of non-negative ints.
fn ints(v: &Value, what: &str) -> Result<Vec<u64>> {
    let items = match v {
        Value::Tuple(t) => t.to_vec(),
        Value::List(l) => l.borrow().clone(),
        v => bail!("{what} is a {}, not a tuple of ints", v.type_name()),
    };
    if items.len() > 64 {
        bail!("{what} has {} dimensions", items.len());
    }
    items.iter().map(|i| int(i, what)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_rank_metadata_reads_as_named_chunked_tensors() {
        // Written by torch 2.15 (fixtures/gen_dcp.py); the values below are what torch's own
        // unpickling of it shows.
        let bytes = include_bytes!("../../../fixtures/dcp/sharded/.metadata");
        let ck = parse(&mut &bytes[..]).unwrap();
        assert_eq!(ck.version.as_deref(), Some("1.0.0"));
        let rows = ck.tensors.iter().find(|t| t.fqn == "layers.rows").unwrap();
        assert_eq!(rows.name, "layers/rows");
        assert_eq!(rows.size, vec![5, 3]);
        assert_eq!(rows.dtype.name, "float32");
        let regions: Vec<(Vec<u64>, Vec<u64>)> = rows
            .chunks
            .iter()
            .map(|c| (c.region.offsets.clone(), c.region.sizes.clone()))
            .collect();
        assert_eq!(
            regions,
            vec![(vec![0, 0], vec![3, 3]), (vec![3, 0], vec![2, 3])]
        );
        let files: Vec<&str> = rows.chunks.iter().map(|c| c.stored.file.as_str()).collect();
        assert_eq!(files, vec!["__0_0.distcp", "__1_0.distcp"]);
        let half = ck.tensors.iter().find(|t| t.name == "layers/half").unwrap();
        assert_eq!(half.dtype.name, "bfloat16");
        // the checkpoint_id is a pathlib.PosixPath: a record, in a plain load too (paths are
        // plain values in any pickle: `records.rs` DATA_CLASSES)
        assert!(pickle::load_with(&mut &bytes[..], &pickle::Options::default()).is_ok());
    }
}
