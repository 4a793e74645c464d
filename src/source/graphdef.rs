//! Frozen TensorFlow graphs: the `Const` nodes of a binary `GraphDef` (`frozen_graph.pb`, the
//! output of `convert_variables_to_constants_v2` or TF1's `graph_util`), and of the graphs
//! inside a `saved_model.pb`. Each constant is named by its node name, or `<function>/<node>`
//! for the nodes of the function library, and decoded exactly as `tf.make_ndarray` decodes its
//! `value` attribute.
//!
//! The graph is walked field by field with `container::protobuf` on disk; for each constant only the byte
//! range of its `TensorProto` is recorded, and `tensorproto::ScannedTensor` (the one TensorProto
//! decoder of the project) scans and streams it from there, so the weights of a graph are never
//! loaded whole. The registry entry (`READER`) claims GraphDefs and `saved_model.pb` files by
//! structure; `with_saved_model_constants` serves `--constants` on SavedModel directories,
//! chaining the bundle reader's variables with these constants (`chain.rs`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::container::protobuf::{self as pbwalk, for_each_field, Value};
use crate::input::FileRange;
use crate::source::tensorproto::ScannedTensor;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{ChunkSink, InputFacts, Source, TensorMeta};

/// A `Const` node located in a graph.
#[derive(Clone, Debug)]
pub struct ConstNode {
    pub name: String,
    pub tensor: FileRange,
}

/// Collects the `Const` nodes of the `GraphDef` in `range`, library functions included.
pub fn graph_constants(range: &FileRange, prefix: &str, out: &mut Vec<ConstNode>) -> Result<()> {
    for_each_field(range, |field, v| {
        match field {
            1 => node(&pbwalk::len(1, "GraphDef.node", v)?, prefix, out)
                .context("in a node of the graph")?,
            2 => library(&pbwalk::len(2, "GraphDef.library", v)?, prefix, out)
                .context("in the function library")?,
            _ => {}
        }
        Ok(())
    })
}

fn library(range: &FileRange, prefix: &str, out: &mut Vec<ConstNode>) -> Result<()> {
    for_each_field(range, |field, v| {
        if field == 1 {
            function(
                &pbwalk::len(1, "FunctionDefLibrary.function", v)?,
                prefix,
                out,
            )?;
        }
        Ok(())
    })
}

fn function(range: &FileRange, prefix: &str, out: &mut Vec<ConstNode>) -> Result<()> {
    let mut name = String::new();
    let mut nodes = Vec::new();
    for_each_field(range, |field, v| {
        match field {
            // signature: an OpDef, whose field 1 is the function's name
            1 => for_each_field(&pbwalk::len(1, "FunctionDef.signature", v)?, |f, v| {
                if f == 1 {
                    name = pbwalk::string(&pbwalk::len(1, "OpDef.name", v)?)?;
                }
                Ok(())
            })?,
            3 => nodes.push(pbwalk::len(3, "FunctionDef.node_def", v)?),
            _ => {}
        }
        Ok(())
    })?;
    let inner = format!("{prefix}{name}/");
    for n in nodes {
        node(&n, &inner, out).with_context(|| format!("in function {name}"))?;
    }
    Ok(())
}

fn node(range: &FileRange, prefix: &str, out: &mut Vec<ConstNode>) -> Result<()> {
    let mut name = String::new();
    let mut op = String::new();
    let mut value: Option<FileRange> = None;
    for_each_field(range, |field, v| {
        match field {
            1 => name = pbwalk::string(&pbwalk::len(1, "NodeDef.name", v)?)?,
            2 => op = pbwalk::string(&pbwalk::len(2, "NodeDef.op", v)?)?,
            5 => {
                // map<string, AttrValue> entry: key 1, value 2
                let mut key = String::new();
                let mut attr = None;
                for_each_field(&pbwalk::len(5, "NodeDef.attr", v)?, |f, v| {
                    match f {
                        1 => key = pbwalk::string(&pbwalk::len(1, "attr key", v)?)?,
                        2 => attr = Some(pbwalk::len(2, "attr value", v)?),
                        _ => {}
                    }
                    Ok(())
                })?;
                if let (true, Some(attr)) = (key == "value", attr) {
                    // AttrValue.tensor is field 8; the last occurrence of the oneof wins.
                    let mut tensor = None;
                    for_each_field(&attr, |f, v| {
                        if f == 8 {
                            tensor = Some(pbwalk::len(8, "AttrValue.tensor", v)?);
                        }
                        Ok(())
                    })?;
                    value = tensor;
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if op == "Const" {
        let Some(tensor) = value else {
            bail!("Const node {prefix}{name} has no tensor in its value attribute");
        };
        out.push(ConstNode {
            name: format!("{prefix}{name}"),
            tensor,
        });
    }
    Ok(())
}

/// The graphs of a `SavedModel` proto (`saved_model.pb`): `meta_graphs[*].graph_def`.
pub fn saved_model_constants(range: &FileRange, out: &mut Vec<ConstNode>) -> Result<()> {
    let mut graphs = Vec::new();
    for_each_field(range, |field, v| {
        if field == 2 {
            for_each_field(&pbwalk::len(2, "SavedModel.meta_graphs", v)?, |f, v| {
                if f == 2 {
                    graphs.push(pbwalk::len(2, "MetaGraphDef.graph_def", v)?);
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    // A SavedModel normally holds one meta graph; more are told apart by their index.
    let many = graphs.len() > 1;
    for (i, g) in graphs.iter().enumerate() {
        let prefix = if many { format!("{i}/") } else { String::new() };
        graph_constants(g, &prefix, out).with_context(|| format!("in meta graph {i}"))?;
    }
    Ok(())
}

/// True when `data` is structurally a `GraphDef`: only its fields with their wire types at the
/// top level, and its first node (if any) a `NodeDef` with a name and an op.
pub fn sniff(data: &FileRange) -> bool {
    let mut first_node = None;
    let mut any = false;
    let fits = pbwalk::fields_fit(
        data,
        64,
        |f| match f {
            1 | 2 | 4 | 5 => Some(2),
            3 => Some(0),
            _ => Some(99), // no other field at the top level
        },
        |f, v| {
            any = true;
            if let (1, Value::Len(r), None) = (f, v, &first_node) {
                first_node = Some(r.clone());
            }
        },
    );
    if !fits || !any {
        return false;
    }
    match first_node {
        None => true,
        Some(node) => node_like(&node),
    }
}

/// True when `node` parses as a NodeDef with a name and an op.
fn node_like(node: &FileRange) -> bool {
    let (mut name, mut op) = (false, false);
    pbwalk::fields_fit(
        node,
        1024,
        |f| match f {
            1..=5 => Some(2),
            _ => None,
        },
        |f, _| match f {
            1 => name = true,
            2 => op = true,
            _ => {}
        },
    ) && name
        && op
}

/// True when `data` is structurally a `SavedModel` proto whose first meta graph holds a graph.
pub fn sniff_saved_model(data: &FileRange) -> bool {
    let mut meta = None;
    let fits = pbwalk::fields_fit(
        data,
        64,
        |f| match f {
            1 => Some(0),
            2 => Some(2),
            _ => Some(99),
        },
        |f, v| {
            if let (2, Value::Len(r), None) = (f, v, &meta) {
                meta = Some(r.clone());
            }
        },
    );
    let Some(meta) = meta.filter(|_| fits) else {
        return false;
    };
    let mut graph = None;
    pbwalk::fields_fit(
        &meta,
        64,
        |f| (f <= 7).then_some(2),
        |f, v| {
            if let (2, Value::Len(r)) = (f, v) {
                graph = Some(r.clone());
            }
        },
    ) && graph.is_some_and(|g| sniff(&g))
}

pub static READER: Reader = Reader {
    name: "graphdef",
    about:
        "a frozen TensorFlow GraphDef (its Const nodes) or a saved_model.pb (its graphs' constants)",
    extensions: &[".pb", ".graphdef"],
    sniff: sniff_input,
    open: open_input,
};

/// `Yes` for a structurally valid GraphDef or SavedModel proto; `Maybe` when the first field is
/// a whole NodeDef but the rest does not parse (a truncated graph gets this reader's error).
fn sniff_input(input: &Input) -> Sniff {
    let Some(data) = input.protobuf_candidate() else {
        return Sniff::No;
    };
    if sniff(data) || sniff_saved_model(data) {
        return Sniff::Yes;
    }
    let mut first = None;
    pbwalk::fields_fit(
        data,
        1,
        |_| None,
        |f, v| {
            if let (1, Value::Len(r)) = (f, v) {
                first = Some(r.clone());
            }
        },
    );
    match first {
        Some(node) if node_like(&node) => Sniff::Maybe,
        _ => Sniff::No,
    }
}

fn open_input(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let data = input.data()?.clone();
    let saved_model = !sniff(&data) && sniff_saved_model(&data);
    Ok(Box::new(GraphDefSource::open(
        &input.display,
        input.files.clone(),
        data,
        saved_model,
        opts.max_fill_bytes,
    )?))
}

/// A SavedModel's variables followed by the constants of its `saved_model.pb` (`--constants`).
pub fn with_saved_model_constants(
    variables: Box<dyn Source>,
    dir: &std::path::Path,
    opts: &OpenOptions,
) -> Result<Box<dyn Source>> {
    let pb = dir.join("saved_model.pb");
    let data = crate::input::open_range(&pb)?;
    let files = match crate::input::url_of(&pb) {
        None => vec![pb.clone()],
        Some(_) => Vec::new(),
    };
    let constants = GraphDefSource::open(
        &pb.display().to_string(),
        files,
        data,
        true,
        opts.max_fill_bytes,
    )
    .with_context(|| pb.display().to_string())?;
    Ok(Box::new(
        crate::source::chain::Chain::pair(variables, Box::new(constants))?.finish(),
    ))
}

/// The constants of a frozen graph (or of the graphs of a `saved_model.pb`) as tensors.
pub struct GraphDefSource {
    path: String,
    files: Vec<PathBuf>,
    consts: Vec<(TensorMeta, ScannedTensor)>,
    format: String,
}

impl GraphDefSource {
    /// Reads a `GraphDef`, or with `saved_model` a `SavedModel` proto.
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        saved_model: bool,
        max_fill: u64,
    ) -> Result<Self> {
        let mut nodes = Vec::new();
        if saved_model {
            saved_model_constants(&data, &mut nodes).context("cannot read it as a SavedModel")?;
        } else {
            graph_constants(&data, "", &mut nodes).context("cannot read it as a GraphDef")?;
        }
        let mut consts = Vec::with_capacity(nodes.len());
        for n in nodes {
            let t = ScannedTensor::scan(&n.tensor, max_fill)
                .with_context(|| format!("constant {}", n.name))?;
            consts.push((t.meta(n.name), t));
        }
        let format = if saved_model {
            "saved_model.pb"
        } else {
            "graphdef"
        }
        .to_string();
        Ok(GraphDefSource {
            path: path.to_string(),
            files,
            consts,
            format,
        })
    }
}

impl Source for GraphDefSource {
    fn display_path(&self) -> &str {
        &self.path
    }
    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts {
            format: Some(&self.format),
            notes: &[],
        }
    }

    fn len(&self) -> usize {
        self.consts.len()
    }
    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.consts[index].0.clone())
    }
    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        self.consts[index].1.read_dense(chunk, sink)
    }
    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        self.consts[index].1.read_strings(sink)
    }
    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
    fn raw_range(&self, index: usize) -> Option<FileRange> {
        self.consts[index].1.content_range()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn put_len(out: &mut Vec<u8>, field: u8, body: &[u8]) {
        out.push(field << 3 | 2);
        let mut n = body.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(body);
    }

    fn const_node(name: &str, op: &str, tensor: &[u8]) -> Vec<u8> {
        let mut attr = Vec::new();
        put_len(&mut attr, 8, tensor);
        let mut entry = Vec::new();
        put_len(&mut entry, 1, b"value");
        put_len(&mut entry, 2, &attr);
        let mut n = Vec::new();
        put_len(&mut n, 1, name.as_bytes());
        put_len(&mut n, 2, op.as_bytes());
        put_len(&mut n, 5, &entry);
        n
    }

    // DT_FLOAT, shape [2], tensor_content 1.0, 2.0
    fn float_tensor() -> Vec<u8> {
        let mut t = vec![0x08, 0x01];
        put_len(&mut t, 2, &[0x12, 0x02, 0x08, 0x02]);
        let mut content = 1f32.to_le_bytes().to_vec();
        content.extend_from_slice(&2f32.to_le_bytes());
        put_len(&mut t, 4, &content);
        t
    }

    #[test]
    fn const_nodes_and_library_functions_become_named_tensors() {
        let mut g = Vec::new();
        put_len(&mut g, 1, &const_node("w", "Const", &float_tensor()));
        put_len(&mut g, 1, &const_node("x", "Identity", &float_tensor()));
        let mut sig = Vec::new();
        put_len(&mut sig, 1, b"fn");
        let mut f = Vec::new();
        put_len(&mut f, 1, &sig);
        put_len(&mut f, 3, &const_node("c", "Const", &float_tensor()));
        let mut lib = Vec::new();
        put_len(&mut lib, 1, &f);
        put_len(&mut g, 2, &lib);
        let data = FileRange::from_vec(g);
        assert!(sniff(&data));
        let mut src = GraphDefSource::open("g.pb", vec![], data, false, 1 << 20).unwrap();
        assert_eq!(src.len(), 2);
        assert_eq!(src.meta(0).unwrap().name, "w");
        assert_eq!(src.meta(1).unwrap().name, "fn/c");
        assert_eq!(src.meta(1).unwrap().dtype, DType::F32);
        let mut got = Vec::new();
        src.read_dense(1, 64, &mut |c: &[u8]| {
            got.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(got[4..8], 2f32.to_le_bytes());
    }

    #[test]
    fn a_tensorproto_is_not_a_graphdef_and_a_const_without_value_is_an_error() {
        assert!(!sniff(&FileRange::from_vec(float_tensor())));
        let mut n = Vec::new();
        put_len(&mut n, 1, b"w");
        put_len(&mut n, 2, b"Const");
        let mut g = Vec::new();
        put_len(&mut g, 1, &n);
        let e = GraphDefSource::open("g.pb", vec![], FileRange::from_vec(g), false, 1 << 20)
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("Const node w has no tensor"),
            "{e:#}"
        );
    }
}
