//! Finding the tensors of a TFLite model: the flatbuffer is verified whole with the `flatbuffers`
//! crate's verifier against the published schema (`schema.fbs`, generated into
//! `schema_generated.rs`), then every tensor of every subgraph whose buffer holds data is located
//! as a byte range of the file: the buffer's `data` vector inside the flatbuffer, or its
//! `offset`/`size` after it (models over 2 GiB). Every size and offset is checked against the
//! bytes present before anything is read. Used by `mod.rs`, which streams the ranges.

use anyhow::{anyhow, bail, Context, Result};

use super::schema_generated::tflite as fb;
use crate::dtype::DType;
use crate::tensor::checked_elements;

/// The most tables the verifier walks (a model has a few per tensor and per operator).
const MAX_TABLES: usize = 1 << 24;

/// A tensor whose buffer holds data, located in the file.
#[derive(Clone, Debug)]
pub struct Found {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Where its bytes are, from the start of the file.
    pub offset: u64,
    pub len: u64,
    pub quant: Option<Quant>,
}

/// A tensor's affine quantization: real = scale · (q − zero_point), per tensor or along
/// `dimension`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quant {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub dimension: i32,
}

/// What a model holds: its tensors with data, and what was left out (with why).
pub struct Parsed {
    pub tensors: Vec<Found>,
    pub notes: Vec<String>,
}

/// The element type of a TFLite `TensorType`, or why it is not converted.
fn dtype_of(t: fb::TensorType) -> Result<DType, String> {
    Ok(match t {
        fb::TensorType::FLOAT32 => DType::F32,
        fb::TensorType::FLOAT16 => DType::F16,
        fb::TensorType::INT32 => DType::I32,
        fb::TensorType::UINT8 => DType::U8,
        fb::TensorType::INT64 => DType::I64,
        fb::TensorType::BOOL => DType::Bool,
        fb::TensorType::INT16 => DType::I16,
        fb::TensorType::COMPLEX64 => DType::C64,
        fb::TensorType::INT8 => DType::I8,
        fb::TensorType::FLOAT64 => DType::F64,
        fb::TensorType::COMPLEX128 => DType::C128,
        fb::TensorType::UINT64 => DType::U64,
        fb::TensorType::UINT32 => DType::U32,
        fb::TensorType::UINT16 => DType::U16,
        fb::TensorType::BFLOAT16 => DType::BF16,
        fb::TensorType::FLOAT8_E4M3FN => DType::F8E4M3FN,
        fb::TensorType::FLOAT8_E5M2 => DType::F8E5M2,
        other => {
            return Err(match other.variant_name() {
                Some(n) => format!("{} tensors are not converted", n.to_lowercase()),
                None => format!("unknown tensor type {}", other.0),
            })
        }
    })
}

/// True when `head` starts like a TFLite flatbuffer: the file identifier `TFL3` at bytes 4..8.
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 8 && &head[4..8] == b"TFL3"
}

/// Verifies the flatbuffer in `buf` (the file's first bytes, at most 2 GiB) and locates every
/// tensor with data; `file_len` is the whole file's length, which external buffers must fit.
pub fn parse(buf: &[u8], file_len: u64) -> Result<Parsed> {
    if !sniff(buf) {
        bail!("not a TFLite model: no \"TFL3\" file identifier at byte 4");
    }
    let opts = flatbuffers::VerifierOptions {
        max_tables: MAX_TABLES,
        ..Default::default()
    };
    let model = fb::root_as_model_with_opts(&opts, buf)
        .map_err(|e| anyhow!("{}", verifier_message(&e)))
        .context("invalid TFLite flatbuffer (truncated or damaged)")?;
    let buffers = model.buffers();
    let n_buffers = buffers.map_or(0, |b| b.len());
    let base = buf.as_ptr() as usize;
    let mut tensors = Vec::new();
    let mut notes = Vec::new();
    for (s, graph) in model.subgraphs().iter().flatten().enumerate() {
        let prefix = match (s, graph.name()) {
            (0, _) => String::new(),
            (_, Some(n)) if !n.is_empty() => format!("{n}/"),
            _ => format!("{s}/"),
        };
        for (t, tensor) in graph.tensors().iter().flatten().enumerate() {
            let name = format!("{prefix}{}", tensor.name().unwrap_or_default());
            let at = || format!("tensor {t} '{name}' of subgraph {s}");
            let b = tensor.buffer() as usize;
            if b == 0 {
                continue;
            }
            let Some(buffer) = buffers.filter(|_| b < n_buffers).map(|v| v.get(b)) else {
                bail!("{}: buffer {b} does not exist ({n_buffers} buffers)", at());
            };
            let (offset, len) = match buffer.data() {
                Some(d) if !d.is_empty() => {
                    let bytes = d.bytes();
                    ((bytes.as_ptr() as usize - base) as u64, bytes.len() as u64)
                }
                _ if buffer.offset() > 1 => {
                    let (o, n) = (buffer.offset(), buffer.size());
                    if o.checked_add(n).is_none_or(|end| end > file_len) {
                        bail!(
                            "{}: buffer {b} at offset {o} with {n} bytes reaches past the end of the file ({file_len} bytes)",
                            at()
                        );
                    }
                    (o, n)
                }
                _ => continue,
            };
            let dtype = match dtype_of(tensor.type_()) {
                Ok(d) => d,
                Err(why) => {
                    notes.push(format!("skipped {}: {why}", at()));
                    continue;
                }
            };
            // A sparse (TACO) tensor's buffer holds only its stored values: the interpreter's
            // get_tensor returns them as a 1-D array, and so do we (its per-axis
            // quantization, which names dense axes, is dropped with a note).
            let sparse = tensor.sparsity().is_some();
            let shape = if sparse {
                let size = dtype.item_size().unwrap_or(1) as u64;
                if size == 0 || len % size != 0 {
                    bail!(
                        "{}: its sparse buffer of {len} bytes is not a whole number of {}",
                        at(),
                        dtype.name()
                    );
                }
                notes.push(format!(
                    "{}: sparse (TACO format), written as its {} stored values, as get_tensor returns them",
                    at(),
                    len / size
                ));
                vec![len / size]
            } else {
                tensor
                    .shape()
                    .iter()
                    .flatten()
                    .map(|d| {
                        u64::try_from(d).map_err(|_| anyhow!("{}: negative dimension {d}", at()))
                    })
                    .collect::<Result<Vec<u64>>>()?
            };
            let want = checked_elements(&shape)
                .ok()
                .and_then(|n| n.checked_mul(dtype.item_size().unwrap_or(1) as u64));
            if want != Some(len) {
                bail!(
                    "{}: its buffer holds {len} bytes, but shape {shape:?} of {} needs {}",
                    at(),
                    dtype.name(),
                    want.map_or("more than 2^64".to_string(), |w| w.to_string())
                );
            }
            let quant = tensor.quantization().and_then(|q| {
                let scale: Vec<f32> = q.scale()?.iter().collect();
                let per_tensor = !sparse || scale.len() == 1;
                if !per_tensor {
                    notes.push(format!(
                        "{}: its {} per-axis scales are not applied to its sparse values",
                        at(),
                        scale.len()
                    ));
                }
                (!scale.is_empty() && per_tensor && q.details_type() == fb::QuantizationDetails::NONE).then(
                    || Quant {
                        scale,
                        zero_point: q.zero_point().iter().flatten().collect(),
                        dimension: q.quantized_dimension(),
                    },
                )
            });
            tensors.push(Found {
                name,
                dtype,
                shape,
                offset,
                len,
                quant,
            });
        }
    }
    Ok(Parsed { tensors, notes })
}

/// The verifier's message on one line (its trace comes with escaped line breaks).
fn verifier_message(e: &flatbuffers::InvalidFlatbuffer) -> String {
    let s = e.to_string();
    let parts: Vec<&str> = s
        .split(['\n', '\t'])
        .flat_map(|l| l.split("\\n"))
        .flat_map(|l| l.split("\\t"))
        .map(|l| l.trim().trim_end_matches('.'))
        .filter(|l| !l.is_empty())
        .collect();
    parts.join(", ")
}

impl Quant {
    /// Checks that the parameters fit the tensor (`shape`) before they are written or used:
    /// as many zero points as scales, and one scale per index of the quantized dimension unless
    /// there is one scale for all.
    pub fn check(&self, shape: &[u64]) -> Result<()> {
        let k = self.scale.len();
        if self.zero_point.len() != k {
            bail!(
                "{k} scales but {} zero points in its quantization",
                self.zero_point.len()
            );
        }
        if k > 1 {
            let d = usize::try_from(self.dimension)
                .ok()
                .filter(|&d| d < shape.len())
                .ok_or_else(|| {
                    anyhow!(
                        "quantized dimension {} is not a dimension of shape {shape:?}",
                        self.dimension
                    )
                })?;
            if shape[d] != k as u64 {
                bail!("{k} scales along dimension {d} of shape {shape:?}");
            }
        }
        Ok(())
    }

    /// The zero points as the interpreter's `quantization_parameters` give them (int32).
    pub fn zero_points_i32(&self) -> Result<Vec<i32>> {
        self.zero_point
            .iter()
            .map(|&z| i32::try_from(z).map_err(|_| anyhow!("zero point {z} does not fit int32")))
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scale": self.scale,
            "zero_point": self.zero_point,
            "quantized_dimension": self.dimension,
        })
    }
}
