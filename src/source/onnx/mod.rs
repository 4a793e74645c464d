//! ONNX models (`model.onnx`, a `ModelProto`): every graph initializer by name, as
//! `onnx.numpy_helper.to_array(init, base_dir)` gives it; initializers of subgraphs (the
//! `then_branch`/`else_branch` of an If, a Loop's `body`) prefixed `<node>/<attribute>/`
//! (`<node>/<attribute>/<i>/` for a list of graphs; a node without a name is `<op_type>_<i>`);
//! sparse initializers as the `X/indices` (int64 [N, rank], linear indices unravelled),
//! `X/values`, `X/dense_shape` components the `structure` module recognises.
//!
//! The model is walked with `container::protobuf`, written here rather than decoded with prost because
//! `raw_data` must stay on disk: only byte ranges are recorded. External data (`location`,
//! `offset`, `length`) is resolved relative to the model's folder and streamed from the side
//! file; a location that is absolute or climbs out of the folder is refused. Tensor decoding
//! lives in `tensor.rs`.

mod sparse;
pub mod tensor;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use self::tensor::{Data, NoNumpyForm, OnnxTensor};
use crate::container::protobuf::{self as pbwalk, for_each_field, Value};
use crate::dtype::DType;
use crate::input::{self, FileRange};
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{ChunkSink, InputFacts, Source, TensorMeta};

/// Subgraphs nested deeper than this are refused (a hostile model could recurse the walker).
const MAX_DEPTH: usize = 32;

pub struct OnnxSource {
    path: String,
    files: Vec<PathBuf>,
    tensors: Vec<OnnxTensor>,
    notes: Vec<String>,
    format: String,
    /// `metadata_props` and the producer, for `list --metadata`.
    metadata: serde_json::Value,
}

struct Walk {
    tensors: Vec<OnnxTensor>,
    notes: Vec<String>,
}

impl OnnxSource {
    /// Reads the model in `data`; `base_dir` is the model's folder (external data), `None` for
    /// standard input, where external data is refused.
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        base_dir: Option<&Path>,
    ) -> Result<Self> {
        let mut walk = Walk {
            tensors: Vec::new(),
            notes: Vec::new(),
        };
        let mut graphs = 0;
        let mut ir_version = 0;
        let mut metadata = serde_json::Map::new();
        let mut props = serde_json::Map::new();
        for_each_field(&data, |field, v| {
            if let (1, Value::Varint(x)) = (field, &v) {
                ir_version = *x;
            }
            match (field, &v) {
                (2, Value::Len(r)) => {
                    metadata.insert("producer_name".into(), short_text(r)?.into());
                }
                (3, Value::Len(r)) => {
                    metadata.insert("producer_version".into(), short_text(r)?.into());
                }
                (14, Value::Len(r)) => {
                    // StringStringEntryProto: key = 1, value = 2.
                    let (mut key, mut value) = (String::new(), String::new());
                    for_each_field(r, |f, v| {
                        match (f, v) {
                            (1, Value::Len(r)) => key = short_text(&r)?,
                            (2, Value::Len(r)) => value = short_text(&r)?,
                            _ => {}
                        }
                        Ok(())
                    })
                    .context("ModelProto.metadata_props")?;
                    props.insert(key, value.into());
                }
                _ => {}
            }
            if field == 7 {
                graphs += 1;
                walk.graph(&pbwalk::len(7, "ModelProto.graph", v)?, "", 0)?;
            }
            Ok(())
        })
        .context("cannot read it as an ONNX model")?;
        if graphs == 0 {
            bail!("not an ONNX model: no graph");
        }
        let mut files = files;
        let mut opened: HashMap<String, FileRange> = HashMap::new();
        for t in &mut walk.tensors {
            let Data::External(ext) = &t.data else {
                continue;
            };
            let ext = ext.clone();
            let name = t.name.clone();
            let Some(base) = base_dir else {
                bail!("tensor {name}: its data lives in external file {}, which a model read from standard input cannot reach", ext.location);
            };
            let file =
                external_path(base, &ext.location).with_context(|| format!("tensor {name}"))?;
            let whole = match opened.get(&ext.location) {
                Some(r) => r.clone(),
                None => {
                    // A side file of a remote model is a remote object beside it.
                    let r = input::open_range(&file).with_context(|| {
                        format!("tensor {name}: cannot open its external data file")
                    })?;
                    if input::url_of(&file).is_none() {
                        files.push(file.clone());
                    }
                    opened.insert(ext.location.clone(), r.clone());
                    r
                }
            };
            let offset = ext.offset.unwrap_or(0);
            let len = match ext.length {
                Some(l) => l,
                None => whole.len().checked_sub(offset).unwrap_or(u64::MAX),
            };
            let range = whole.slice(offset, len).with_context(|| {
                format!(
                    "tensor {name}: external data (offset {offset}, length {len}) reaches past the end of {}",
                    file.display()
                )
            })?;
            t.data = Data::Raw(range);
            t.validate()
                .with_context(|| format!("external data in {}", file.display()))?;
        }
        let format = format!("onnx (ir_version {ir_version})");
        metadata.insert("ir_version".into(), ir_version.into());
        metadata.insert("metadata_props".into(), props.into());
        Ok(OnnxSource {
            path: path.to_string(),
            files,
            tensors: walk.tensors,
            notes: walk.notes,
            format,
            metadata: metadata.into(),
        })
    }
}

/// A string field of the model's metadata, at most 1 MiB (lossy UTF-8).
fn short_text(r: &FileRange) -> Result<String> {
    if r.len() > 1 << 20 {
        bail!("a metadata string of {} bytes (more than 1 MiB)", r.len());
    }
    Ok(String::from_utf8_lossy(&r.read_vec(0, r.len() as usize)?).into_owned())
}

/// The side file of external data, refusing locations that could leave the model's folder.
fn external_path(base: &Path, location: &str) -> Result<PathBuf> {
    let p = Path::new(location);
    let bad = p.is_absolute()
        || location.contains('\\')
        || location.contains('\0')
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if bad {
        bail!("external data location {location:?} is refused: it must be a relative path inside the model's folder");
    }
    let file = base.join(p);
    // The links rule of every reader (`folder.rs`): a link that stays inside the model's
    // folder is followed, one that leads out is refused.
    crate::source::folder::check_inside(base, &file)
        .with_context(|| format!("external data location {location:?} is refused"))?;
    Ok(file)
}

impl Walk {
    fn graph(&mut self, range: &FileRange, prefix: &str, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            bail!("subgraphs nested more than {MAX_DEPTH} deep");
        }
        let mut node_index = 0usize;
        for_each_field(range, |field, v| {
            match field {
                5 => match OnnxTensor::scan(&pbwalk::len(5, "GraphProto.initializer", v)?) {
                    Ok(mut t) => {
                        t.name = format!("{prefix}{}", t.name);
                        self.tensors.push(t);
                    }
                    Err(e) if e.downcast_ref::<NoNumpyForm>().is_some() => {
                        self.notes.push(format!("skipped {e}"));
                    }
                    Err(e) => return Err(e),
                },
                15 => self.sparse(
                    &pbwalk::len(15, "GraphProto.sparse_initializer", v)?,
                    prefix,
                )?,
                1 => {
                    self.node(
                        &pbwalk::len(1, "GraphProto.node", v)?,
                        prefix,
                        node_index,
                        depth,
                    )?;
                    node_index += 1;
                }
                _ => {}
            }
            Ok(())
        })
    }

    /// Looks for subgraph attributes (`g`, `graphs`) of a node.
    fn node(&mut self, range: &FileRange, prefix: &str, index: usize, depth: usize) -> Result<()> {
        let mut name = String::new();
        let mut op = String::new();
        let mut attrs = Vec::new();
        for_each_field(range, |field, v| {
            match field {
                3 => name = pbwalk::string(&pbwalk::len(3, "NodeProto.name", v)?)?,
                4 => op = pbwalk::string(&pbwalk::len(4, "NodeProto.op_type", v)?)?,
                5 => attrs.push(pbwalk::len(5, "NodeProto.attribute", v)?),
                _ => {}
            }
            Ok(())
        })?;
        for a in attrs {
            let mut attr_name = String::new();
            let mut graphs = Vec::new();
            for_each_field(&a, |field, v| {
                match field {
                    1 => attr_name = pbwalk::string(&pbwalk::len(1, "AttributeProto.name", v)?)?,
                    6 => graphs.push((false, pbwalk::len(6, "AttributeProto.g", v)?)),
                    11 => graphs.push((true, pbwalk::len(11, "AttributeProto.graphs", v)?)),
                    _ => {}
                }
                Ok(())
            })?;
            let node = if name.is_empty() {
                format!("{op}_{index}")
            } else {
                name.clone()
            };
            let mut listed = 0usize;
            for (in_list, g) in graphs {
                let inner = if in_list {
                    listed += 1;
                    format!("{prefix}{node}/{attr_name}/{}/", listed - 1)
                } else {
                    format!("{prefix}{node}/{attr_name}/")
                };
                self.graph(&g, &inner, depth + 1)
                    .with_context(|| format!("in subgraph {inner}"))?;
            }
        }
        Ok(())
    }

    /// A `SparseTensorProto`: values 1, indices 2, dims 3.
    fn sparse(&mut self, range: &FileRange, prefix: &str) -> Result<()> {
        let (mut values, mut indices, mut dims) = (None, None, Vec::new());
        for_each_field(range, |field, v| {
            match field {
                1 => values = Some(OnnxTensor::scan(&pbwalk::len(1, "values", v)?)?),
                2 => indices = Some(OnnxTensor::scan(&pbwalk::len(2, "indices", v)?)?),
                3 => pbwalk::each_varint(v, |d| {
                    if dims.len() >= 64 {
                        bail!("more than 64 dimensions");
                    }
                    dims.push(d as i64);
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })?;
        let Some(mut values) = values else {
            bail!("a sparse initializer without values");
        };
        let name = format!("{prefix}{}", values.name);
        let Some(indices) = indices else {
            bail!("sparse initializer {name} has no indices");
        };
        if matches!(indices.data, Data::External(_)) || matches!(values.data, Data::External(_)) {
            bail!("sparse initializer {name}: external data in sparse tensors is not supported");
        }
        if dims.iter().any(|&d| d < 0) {
            bail!("sparse initializer {name}: negative dimension in {dims:?}");
        }
        let nnz = values.elements;
        let rank = dims.len() as u64;
        // Indices are [NNZ, rank] coordinates, or [NNZ] positions in the flattened shape,
        // unravelled as they stream (sparse.rs); every position is checked here, once.
        let unravel = if indices.shape == [nnz, rank] {
            None
        } else if indices.shape == [nnz] {
            Some(dims.clone())
        } else {
            bail!(
                "sparse initializer {name}: indices of shape {:?} fit neither [{nnz}, {rank}] nor [{nnz}]",
                indices.shape
            );
        };
        let coords = nnz.checked_mul(rank).ok_or_else(|| {
            anyhow::anyhow!("sparse initializer {name}: {nnz} x {rank} coordinates overflow")
        })?;
        let indices = sparse::Indices {
            src: indices,
            unravel,
            name: name.clone(),
        };
        indices.check()?;
        let indices = OnnxTensor {
            name: format!("{name}/indices"),
            dtype: DType::I64,
            elements: coords,
            shape: vec![nnz, rank],
            data: Data::Indices(Box::new(indices)),
            max_string_len: 0,
            stored_bytes: coords.saturating_mul(8),
        };
        let component = |suffix: &str, shape: Vec<u64>, v: &[i64]| OnnxTensor {
            name: format!("{name}/{suffix}"),
            dtype: DType::I64,
            elements: v.len() as u64,
            shape,
            data: Data::Memory(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            max_string_len: 0,
            stored_bytes: v.len() as u64 * 8,
        };
        let dense_shape = component("dense_shape", vec![rank], &dims);
        values.name = format!("{name}/values");
        self.tensors.push(indices);
        self.tensors.push(values);
        self.tensors.push(dense_shape);
        Ok(())
    }
}

pub static READER: Reader = Reader {
    name: "onnx",
    about: "an ONNX model (its graph initializers; external data read beside it)",
    extensions: &[".onnx"],
    sniff: sniff_input,
    open: open_input,
};

/// `Yes` for a structurally valid ModelProto; `Maybe` for a `.onnx` file that starts with an
/// `ir_version` (a truncated model gets this reader's error).
fn sniff_input(input: &Input) -> Sniff {
    let Some(data) = input.protobuf_candidate() else {
        return Sniff::No;
    };
    if sniff(data) {
        return Sniff::Yes;
    }
    let starts_with_version = input.head.first() == Some(&0x08)
        && crate::container::protobuf::varint(&input.head[1..]).is_some_and(|(v, _)| v <= 100);
    if starts_with_version && input.has_extension(READER.extensions) {
        Sniff::Maybe
    } else {
        Sniff::No
    }
}

fn open_input(input: &Input, _opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let base = if input.path.as_os_str() == "-" {
        None
    } else {
        Some(input.path.parent().unwrap_or(Path::new("")))
    };
    Ok(Box::new(OnnxSource::open(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
        base,
    )?))
}

/// True when `data` is structurally an ONNX `ModelProto`: an `ir_version`, a `graph` whose
/// fields are all length-delimited, and no top-level field of the wrong wire type.
pub fn sniff(data: &FileRange) -> bool {
    let (mut version, mut graph) = (false, None);
    let fits = pbwalk::fields_fit(
        data,
        1 << 12,
        |f| match f {
            1 | 5 => Some(0),
            2..=4 | 6..=8 | 14 | 20 | 25 | 26 => Some(2),
            _ => None,
        },
        |f, v| match (f, v) {
            (1, _) => version = true,
            (7, Value::Len(r)) => graph = Some(r.clone()),
            _ => {}
        },
    );
    let Some(graph) = graph.filter(|_| fits && version) else {
        return false;
    };
    pbwalk::fields_fit(&graph, 16, |_| Some(2), |_, _| {})
}

impl Source for OnnxSource {
    fn display_path(&self) -> &str {
        &self.path
    }
    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts {
            format: Some(&self.format),
            notes: &self.notes,
        }
    }

    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        Ok(Some(self.metadata.clone()))
    }
    fn len(&self) -> usize {
        self.tensors.len()
    }
    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.tensors[index].meta())
    }
    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        self.tensors[index].read_dense(chunk, sink)
    }
    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        self.tensors[index].read_strings(sink)
    }
    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
    fn raw_range(&self, index: usize) -> Option<FileRange> {
        self.tensors[index].raw_range()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(out: &mut Vec<u8>, field: u8, body: &[u8]) {
        out.push(field << 3 | 2);
        let mut n = body.len();
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(body);
    }

    fn model(graph: &[u8]) -> Vec<u8> {
        let mut m = vec![0x08, 0x09]; // ir_version 9
        len_field(&mut m, 7, graph);
        m
    }

    #[test]
    fn locations_outside_the_model_folder_are_refused() {
        let base = Path::new("models");
        assert_eq!(
            external_path(base, "w.bin").unwrap(),
            Path::new("models/w.bin")
        );
        assert!(external_path(base, "./sub/w.bin").is_ok());
        for bad in ["../w.bin", "sub/../../w.bin", "/etc/passwd", "a\\..\\b"] {
            assert!(external_path(base, bad).is_err(), "{bad}");
        }
        // Symbolic links that lead out of the folder, to a file or through a folder, are refused;
        // one that stays inside is followed (the rule of every reader, folder.rs).
        let dir = tempfile::tempdir().unwrap();
        let (m, out) = (dir.path().join("m"), dir.path().join("out"));
        std::fs::create_dir_all(&m).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("w.bin"), [0u8; 4]).unwrap();
        std::fs::write(m.join("real.bin"), [0u8; 4]).unwrap();
        std::os::unix::fs::symlink(out.join("w.bin"), m.join("link.bin")).unwrap();
        std::os::unix::fs::symlink(&out, m.join("sub")).unwrap();
        std::os::unix::fs::symlink("real.bin", m.join("inside.bin")).unwrap();
        assert!(external_path(&m, "real.bin").is_ok());
        assert!(external_path(&m, "inside.bin").is_ok());
        for bad in ["link.bin", "sub/w.bin"] {
            let e = external_path(&m, bad).unwrap_err();
            assert!(format!("{e}").contains("refused"), "{bad}: {e}");
        }
    }

    #[test]
    fn models_are_told_from_tensorprotos_and_subgraph_depth_is_bounded() {
        // A TensorFlow int32 TensorProto: dtype 3, shape, int_val in field 7 (packed).
        let tf = FileRange::from_vec(vec![0x08, 0x03, 0x12, 0x00, 0x3a, 0x03, 1, 2, 3]);
        assert!(!sniff(&tf));
        let mut init = vec![0x08, 0x02, 0x10, 0x06]; // dims [2], INT32
        len_field(&mut init, 8, b"w");
        len_field(&mut init, 9, &[1, 0, 0, 0, 2, 0, 0, 0]);
        let mut graph = Vec::new();
        len_field(&mut graph, 5, &init);
        let data = FileRange::from_vec(model(&graph));
        assert!(sniff(&data));
        let src = OnnxSource::open("m.onnx", vec![], data, None).unwrap();
        assert_eq!(src.meta(0).unwrap().name, "w");
        assert_eq!(src.raw_range(0).unwrap().len(), 8);

        // If nodes nested 40 deep
        let mut g = graph.clone();
        for _ in 0..40 {
            let mut attr = Vec::new();
            len_field(&mut attr, 1, b"then_branch");
            len_field(&mut attr, 6, &g);
            let mut node = Vec::new();
            len_field(&mut node, 4, b"If");
            len_field(&mut node, 5, &attr);
            g = Vec::new();
            len_field(&mut g, 1, &node);
        }
        let e = OnnxSource::open("m.onnx", vec![], FileRange::from_vec(model(&g)), None)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("nested more than"), "{e:#}");
    }

    #[test]
    fn external_data_from_standard_input_and_bad_linear_sparse_indices_are_errors() {
        let mut init = vec![0x08, 0x01, 0x10, 0x01]; // dims [1], FLOAT
        len_field(&mut init, 8, b"w");
        let mut entry = Vec::new();
        len_field(&mut entry, 1, b"location");
        len_field(&mut entry, 2, b"w.bin");
        len_field(&mut init, 13, &entry);
        init.extend_from_slice(&[0x70, 0x01]); // data_location EXTERNAL
        let mut graph = Vec::new();
        len_field(&mut graph, 5, &init);
        let e = OnnxSource::open("-", vec![], FileRange::from_vec(model(&graph)), None)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("tensor w"), "{e:#}");

        // sparse [2, 2] with linear index 4 (outside)
        let mut values = vec![0x08, 0x01, 0x10, 0x01];
        len_field(&mut values, 8, b"sp");
        len_field(&mut values, 9, &1f32.to_le_bytes());
        let mut indices = vec![0x08, 0x01, 0x10, 0x07];
        len_field(&mut indices, 9, &4i64.to_le_bytes());
        let mut sp = Vec::new();
        len_field(&mut sp, 1, &values);
        len_field(&mut sp, 2, &indices);
        sp.extend_from_slice(&[0x18, 0x02, 0x18, 0x02]);
        let mut graph = Vec::new();
        len_field(&mut graph, 15, &sp);
        let e = OnnxSource::open("m.onnx", vec![], FileRange::from_vec(model(&graph)), None)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("linear index 4"), "{e:#}");
    }
}
