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
    /// For a string tensor: its longest element (the buffer is a TFLite string table).
    pub max_string_len: Option<u64>,
    /// An int4 tensor: two elements a byte, low nibble first, unpacked to int8 (`dtype`) as
    /// the interpreter's `get_tensor` returns them.
    pub int4: bool,
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
        fb::TensorType::STRING => DType::String,
        fb::TensorType::INT4 => DType::I8,
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
            let int4 = tensor.type_() == fb::TensorType::INT4;
            if sparse && (dtype == DType::String || int4) {
                notes.push(format!("skipped {}: a sparse string or int4 tensor", at()));
                continue;
            }
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
            let mut max_string_len = None;
            if dtype == DType::String {
                let n = checked_elements(&shape).map_err(|e| anyhow!("{}: {e}", at()))?;
                let Some(bytes) = usize::try_from(offset)
                    .ok()
                    .zip(usize::try_from(len).ok())
                    .and_then(|(o, l)| buf.get(o..o.checked_add(l)?))
                else {
                    notes.push(format!(
                        "skipped {}: a string tensor stored after the first 2 GiB",
                        at()
                    ));
                    continue;
                };
                let table = string_table(bytes, len, n).with_context(at)?;
                max_string_len = Some(table.iter().map(|&(a, b)| b - a).max().unwrap_or(0));
            }
            let want = checked_elements(&shape).ok().and_then(|n| match int4 {
                true => Some(n.div_ceil(2)),
                false => n.checked_mul(dtype.item_size().unwrap_or(1) as u64),
            });
            if max_string_len.is_none() && want != Some(len) {
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
                (!scale.is_empty()
                    && per_tensor
                    && q.details_type() == fb::QuantizationDetails::NONE)
                    .then(|| Quant {
                        scale,
                        zero_point: q.zero_point().iter().flatten().collect(),
                        dimension: q.quantized_dimension(),
                    })
            });
            tensors.push(Found {
                name,
                dtype,
                shape,
                offset,
                len,
                quant,
                max_string_len,
                int4,
            });
        }
    }
    Ok(Parsed { tensors, notes })
}

/// The `(start, end)` byte ranges of the `n` elements of a TFLite string tensor's buffer
/// (`tflite/string_util.h`): an int32 count, `count + 1` int32 offsets from the buffer's start,
/// then the bytes. The count must be `n`, and the offsets must rise within the buffer, after the
/// table. `head` holds at least the table; `len` is the whole buffer's length.
pub fn string_table(head: &[u8], len: u64, n: u64) -> Result<Vec<(u64, u64)>> {
    let bytes = head;
    let int = |i: u64| -> Option<u64> {
        let at = usize::try_from(i.checked_mul(4)?).ok()?;
        let b = bytes.get(at..at.checked_add(4)?)?;
        u64::try_from(i32::from_le_bytes(b.try_into().ok()?)).ok()
    };
    let count = int(0).ok_or_else(|| anyhow!("a string buffer of {len} bytes has no count"))?;
    if count != n {
        bail!("its string buffer holds {count} strings, but its shape has {n} elements");
    }
    let table_end = n
        .checked_add(2)
        .and_then(|k| k.checked_mul(4))
        .filter(|&e| e <= bytes.len() as u64 && e <= len)
        .ok_or_else(|| anyhow!("a string buffer of {len} bytes cannot hold {n} offsets"))?;
    let mut out = Vec::with_capacity(n as usize);
    let mut start = int(1).filter(|&o| o >= table_end && o <= len);
    for i in 0..n {
        let end = int(i + 2);
        match (start, end) {
            (Some(a), Some(b)) if a <= b && b <= len => out.push((a, b)),
            _ => bail!("string {i}: its offsets are out of order or past its buffer"),
        }
        start = end;
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::string_table;

    fn table(words: &[&[u8]]) -> Vec<u8> {
        let n = words.len();
        let mut out = (n as i32).to_le_bytes().to_vec();
        let mut at = 4 * (n + 2);
        out.extend((at as i32).to_le_bytes());
        for w in words {
            at += w.len();
            out.extend((at as i32).to_le_bytes());
        }
        words.iter().for_each(|w| out.extend_from_slice(w));
        out
    }

    #[test]
    fn a_string_table_gives_each_elements_range() {
        let t = table(&[b"ab", b"", b"xyz"]);
        let ranges = string_table(&t, t.len() as u64, 3).unwrap();
        let got: Vec<&[u8]> = ranges
            .iter()
            .map(|&(a, b)| &t[a as usize..b as usize])
            .collect();
        assert_eq!(got, [&b"ab"[..], b"", b"xyz"]);
        assert_eq!(string_table(&table(&[]), 8, 0).unwrap(), vec![]);
    }

    #[test]
    fn a_damaged_string_table_is_refused() {
        let t = table(&[b"ab", b"cd"]);
        let n = t.len() as u64;
        let err = |t: &[u8], len: u64, k: u64| string_table(t, len, k).unwrap_err().to_string();
        assert!(err(&t, n, 3).contains("holds 2 strings"));
        assert!(err(&t[..2], 2, 2).contains("no count"));
        assert!(err(&t[..12], 12, 2).contains("cannot hold 2 offsets"));
        assert!(err(&t, n - 1, 2).contains("string 1"));
        let mut back = t.clone();
        back[8..12].copy_from_slice(&30i32.to_le_bytes()); // the middle offset past the end
        assert!(err(&back, n, 2).contains("string 0"));
        let mut neg = t.clone();
        neg[0..4].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(string_table(&neg, n, 2).is_err());
    }
}
