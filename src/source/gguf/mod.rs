//! GGUF reader (llama.cpp's model format), giving what `gguf.GGUFReader` and
//! `gguf.quants.dequantize` give: tensors under their stored names, shapes in NumPy order
//! (GGUF stores dimensions innermost first), plain types as they are, bfloat16 by the dtype
//! policy, and block-quantized types dequantized to float32 block row by block row (or, with
//! `--quant raw`, their blocks as `|u1` arrays of GGUFReader's byte shape).
//!
//! `header.rs` parses and bounds-checks the header; `dequant.rs` and `iq.rs` hold one
//! dequantizer per GGML type. Dequantization is reader work done on the host: it never reaches
//! the device stage, which `--stats` says per tensor (`Source::host_decode`).

mod dequant;
pub mod header;
mod iq;
mod iq_grids;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::dtype::DType;
use crate::input::FileRange;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{checked_elements, ChunkSink, Kind, Source, TensorMeta};
use dequant::BlockFn;

pub static READER: Reader = Reader {
    name: "gguf",
    about: "GGUF files (llama.cpp), quantized types dequantized like gguf-py",
    extensions: &[".gguf"],
    sniff,
    open,
};

/// The magic, then a version GGUFReader reads (2 or 3, in either byte order).
fn sniff(input: &Input) -> Sniff {
    match input.head.get(..8) {
        Some([b'G', b'G', b'U', b'F', v @ ..]) => {
            let le = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            if matches!(le, 2 | 3) || matches!(le.swap_bytes(), 2 | 3) {
                Sniff::Yes
            } else {
                Sniff::Maybe
            }
        }
        _ => Sniff::No,
    }
}

/// What the command line sets for GGUF files.
#[derive(Clone, Debug, Default)]
pub struct GgufOptions {
    /// `--quant`: what block-quantized tensors become.
    pub quant: GgufQuant,
}

/// `--quant` as GGUF reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GgufQuant {
    /// Dequantized to float32 like gguf-py.
    #[default]
    Dequant,
    /// The blocks as `|u1` bytes.
    Raw,
    /// TFLite's `--quant params`, which GGUF refuses: its blocks have no such arrays.
    Params,
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    if opts.gguf.quant == GgufQuant::Params {
        anyhow::bail!(
            "{}: --quant params is for TFLite models; GGUF blocks have no scale and zero-point arrays (use --quant raw or dequant)",
            input.display
        );
    }
    Ok(Box::new(GgufSource::open(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
        opts.gguf.quant == GgufQuant::Raw,
    )?))
}

/// What a GGML type becomes.
#[derive(Clone, Copy)]
enum Form {
    /// Elements NumPy has a type for (bfloat16 included: the dtype policy decides).
    Plain(DType),
    /// Blocks gguf-py dequantizes.
    Quant(BlockFn),
    /// Blocks gguf-py has no dequantizer for.
    NoDequant,
}

/// One GGML type (`GGMLQuantizationType`, `GGML_QUANT_SIZES`), named as ggml names it.
struct GgmlType {
    id: u32,
    name: &'static str,
    block: u64,
    size: u64,
    form: Form,
}

const fn t(id: u32, name: &'static str, block: u64, size: u64, form: Form) -> GgmlType {
    GgmlType {
        id,
        name,
        block,
        size,
        form,
    }
}

use dequant as dq;
use Form::{NoDequant, Plain, Quant};

static TYPES: &[GgmlType] = &[
    t(0, "f32", 1, 4, Plain(DType::F32)),
    t(1, "f16", 1, 2, Plain(DType::F16)),
    t(2, "q4_0", 32, 18, Quant(dq::q4_0)),
    t(3, "q4_1", 32, 20, Quant(dq::q4_1)),
    t(6, "q5_0", 32, 22, Quant(dq::q5_0)),
    t(7, "q5_1", 32, 24, Quant(dq::q5_1)),
    t(8, "q8_0", 32, 34, Quant(dq::q8_0)),
    t(9, "q8_1", 32, 40, NoDequant),
    t(10, "q2_K", 256, 84, Quant(dq::q2_k)),
    t(11, "q3_K", 256, 110, Quant(dq::q3_k)),
    t(12, "q4_K", 256, 144, Quant(dq::q4_k)),
    t(13, "q5_K", 256, 176, Quant(dq::q5_k)),
    t(14, "q6_K", 256, 210, Quant(dq::q6_k)),
    t(15, "q8_K", 256, 292, NoDequant),
    t(16, "iq2_xxs", 256, 66, Quant(iq::iq2_xxs)),
    t(17, "iq2_xs", 256, 74, Quant(iq::iq2_xs)),
    t(18, "iq3_xxs", 256, 98, Quant(iq::iq3_xxs)),
    t(19, "iq1_s", 256, 50, Quant(iq::iq1_s)),
    t(20, "iq4_nl", 32, 18, Quant(dq::iq4_nl)),
    t(21, "iq3_s", 256, 110, Quant(iq::iq3_s)),
    t(22, "iq2_s", 256, 82, Quant(iq::iq2_s)),
    t(23, "iq4_xs", 256, 136, Quant(dq::iq4_xs)),
    t(24, "i8", 1, 1, Plain(DType::I8)),
    t(25, "i16", 1, 2, Plain(DType::I16)),
    t(26, "i32", 1, 4, Plain(DType::I32)),
    t(27, "i64", 1, 8, Plain(DType::I64)),
    t(28, "f64", 1, 8, Plain(DType::F64)),
    t(29, "iq1_m", 256, 56, Quant(iq::iq1_m)),
    t(30, "bf16", 1, 2, Plain(DType::BF16)),
    t(34, "tq1_0", 256, 54, Quant(dq::tq1_0)),
    t(35, "tq2_0", 256, 66, Quant(dq::tq2_0)),
    t(39, "mxfp4", 32, 17, Quant(dq::mxfp4)),
    t(40, "nvfp4", 64, 36, Quant(dq::nvfp4)),
    t(41, "q1_0", 128, 18, NoDequant),
];

fn ggml_type(id: u32) -> Option<&'static GgmlType> {
    TYPES.iter().find(|t| t.id == id)
}

/// How one tensor is read.
#[derive(Clone, Copy)]
enum Mode {
    /// Elements copied (byte-swapped downstream when the file is big-endian).
    Plain,
    /// Blocks dequantized to float32.
    Dequant(BlockFn),
    /// Blocks copied as bytes (`--quant raw`).
    Raw,
    /// No way to convert it: listed, refused or skipped.
    Unsupported,
}

struct Entry {
    mode: Mode,
    /// The GGML type's name for block types (`q4_K`), or the unknown id.
    type_name: Option<String>,
    range: Option<FileRange>,
    block: usize,
    size: usize,
}

pub struct GgufSource {
    path: String,
    files: Vec<PathBuf>,
    data: FileRange,
    entries: Vec<Entry>,
    /// Entry `i`'s metadata, its facts (GGML type, host dequantization) included.
    metas: Vec<TensorMeta>,
}

impl GgufSource {
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        quant_raw: bool,
    ) -> Result<GgufSource> {
        let h = header::parse(&data, false)?;
        let mut entries = Vec::with_capacity(h.tensors.len());
        let mut metas = Vec::with_capacity(h.tensors.len());
        for ti in h.tensors {
            let name = ti.name;
            let ctx = || format!("tensor '{name}'");
            let mut shape: Vec<u64> = ti.dims.iter().rev().copied().collect();
            let elements = checked_elements(&shape).with_context(ctx)?;
            let Some(ty) = ggml_type(ti.type_id) else {
                let entry = Entry {
                    mode: Mode::Unsupported,
                    type_name: Some(format!("ggml type {} (unknown)", ti.type_id)),
                    range: None,
                    block: 1,
                    size: 0,
                };
                metas.push(meta(name, DType::Resource, shape, 0, false, &entry));
                entries.push(entry);
                continue;
            };
            let ne0 = ti.dims.first().copied().unwrap_or(1);
            if ne0 % ty.block != 0 {
                bail!(
                    "tensor '{name}': its row size ({ne0}) is not a multiple of the {} block size ({})",
                    ty.name,
                    ty.block
                );
            }
            // No overflow: elements / block * size <= elements * size / block, and the range
            // check below bounds the result by the file length.
            let bytes = (elements / ty.block)
                .checked_mul(ty.size)
                .with_context(|| format!("tensor '{name}': its size overflows"))?;
            let range = h
                .data_start
                .checked_add(ti.offset)
                .context("the data offset overflows")
                .and_then(|start| data.slice(start, bytes))
                .with_context(|| {
                    format!(
                        "tensor '{name}' ({}): {bytes} bytes at data offset {}",
                        ty.name, ti.offset
                    )
                })?;
            let block_name = (ty.block > 1).then(|| ty.name.to_string());
            let (dtype, mode) = match ty.form {
                Plain(d) => (d, Mode::Plain),
                _ if quant_raw => {
                    if let Some(last) = shape.last_mut() {
                        *last = (*last / ty.block)
                            .checked_mul(ty.size)
                            .with_context(|| format!("tensor '{name}': its row size overflows"))?;
                    }
                    (DType::U8, Mode::Raw)
                }
                Quant(f) => (DType::F32, Mode::Dequant(f)),
                NoDequant => (DType::Resource, Mode::Unsupported),
            };
            // GGUFReader views plain tensors of a swapped file in the file's byte order, and
            // hands bfloat16 and blocks to gguf.quants as little-endian bytes.
            let big_endian =
                h.swapped && matches!(mode, Mode::Plain) && dtype != DType::BF16 && ty.size > 1;
            let entry = Entry {
                mode,
                type_name: block_name,
                range: Some(range),
                block: ty.block as usize,
                size: ty.size as usize,
            };
            metas.push(meta(name, dtype, shape, bytes, big_endian, &entry));
            entries.push(entry);
        }
        Ok(GgufSource {
            path: path.to_string(),
            files,
            data,
            entries,
            metas,
        })
    }
}

/// A tensor's metadata, with the facts its entry gives: the GGML block type's name as the source
/// dtype, and whether it is dequantized on the host.
fn meta(
    name: String,
    dtype: DType,
    shape: Vec<u64>,
    bytes: u64,
    big_endian: bool,
    e: &Entry,
) -> TensorMeta {
    let mut meta = TensorMeta {
        name,
        dtype,
        shape,
        kind: Kind::Dense,
        stored_bytes: bytes,
        max_string_len: None,
        big_endian,
        ragged_rank: 0,
        facts: Default::default(),
    };
    meta.facts.source_dtype = e.type_name.clone();
    if let Mode::Dequant(_) = e.mode {
        meta.facts.host_decode = Some(format!(
            "GGUF {} is dequantized on the host (no device kernel)",
            e.type_name.as_deref().unwrap_or("block type")
        ));
    }
    meta
}

/// Dequantizes `range` block by block, in chunks of about `chunk` output bytes.
fn stream_dequant(
    range: &FileRange,
    f: BlockFn,
    block: usize,
    size: usize,
    chunk: usize,
    sink: &mut ChunkSink,
) -> Result<()> {
    let total = range.len() / size as u64;
    let per_chunk = (chunk / (block * 4)).max(1) as u64;
    let n = per_chunk.min(total) as usize;
    let mut input = vec![0u8; n * size];
    let mut floats = vec![0f32; n * block];
    #[cfg(target_endian = "big")]
    let mut bytes = vec![0u8; n * block * 4];
    let mut done = 0u64;
    while done < total {
        let k = per_chunk.min(total - done) as usize;
        let input = &mut input[..k * size];
        range.read_at(done * size as u64, input)?;
        let floats = &mut floats[..k * block];
        for (b, out) in input.chunks_exact(size).zip(floats.chunks_exact_mut(block)) {
            f(b, out);
        }
        // float32 in its little-endian bytes: the floats themselves on a little-endian machine
        #[cfg(target_endian = "little")]
        let bytes: &[u8] = bytemuck::cast_slice(floats);
        #[cfg(target_endian = "big")]
        let bytes = {
            let bytes = &mut bytes[..k * block * 4];
            for (o, x) in bytes.chunks_exact_mut(4).zip(floats.iter()) {
                o.copy_from_slice(&x.to_le_bytes());
            }
            bytes
        };
        // A block can be larger than a tiny chunk: hand it over in whole floats.
        for piece in bytes.chunks((chunk / 4).max(1) * 4) {
            sink(piece)?;
        }
        done += k as u64;
    }
    Ok(())
}

impl Source for GgufSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn metas(&self) -> &[TensorMeta] {
        &self.metas
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let e = &self.entries[index];
        let Some(range) = &e.range else {
            bail!(
                "{} cannot be read",
                e.type_name.as_deref().unwrap_or("this type")
            );
        };
        match e.mode {
            Mode::Plain => range.stream(
                self.metas[index].dtype.item_size().unwrap_or(1),
                chunk,
                sink,
            ),
            Mode::Raw => range.stream(1, chunk, sink),
            Mode::Dequant(f) => stream_dequant(range, f, e.block, e.size, chunk, sink),
            Mode::Unsupported => bail!(
                "gguf-py has no dequantizer for {}",
                e.type_name.as_deref().unwrap_or("this type")
            ),
        }
    }

    fn read_strings(&mut self, index: usize, _sink: &mut ChunkSink) -> Result<()> {
        bail!("tensor '{}' is not a string tensor", self.metas[index].name)
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        let e = &self.entries[index];
        match e.mode {
            Mode::Plain | Mode::Raw if !self.metas[index].big_endian => e.range.clone(),
            _ => None,
        }
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn write_metadata(&self, out: &mut dyn std::io::Write) -> Result<bool> {
        header::write_json(&self.data, out)?;
        Ok(true)
    }

    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        let h = header::parse(&self.data, true)?;
        let map: serde_json::Map<String, serde_json::Value> =
            h.metadata.unwrap_or_default().into_iter().collect();
        Ok(Some(serde_json::json!({
            "version": h.version,
            "byte_order": if h.swapped { "big" } else { "little" },
            "alignment": h.alignment,
            "data_offset": h.data_start,
            "metadata": map,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_table_matches_ggml_quant_sizes_and_has_unique_ids() {
        for (i, a) in TYPES.iter().enumerate() {
            assert!(TYPES[i + 1..].iter().all(|b| b.id != a.id), "{}", a.name);
            if let Plain(d) = a.form {
                assert_eq!(d.item_size(), Some(a.size as usize), "{}", a.name);
            }
        }
        // QK_K = 256 types: sizes from GGML_QUANT_SIZES.
        assert_eq!(ggml_type(12).map(|t| (t.block, t.size)), Some((256, 144)));
        assert_eq!(
            ggml_type(29).map(|t| t.size),
            Some(256 / 8 + 256 / 16 + 256 / 32)
        );
    }

    /// A cheap stand-in for the fuzz target that runs with every `cargo test`: mutated and
    /// truncated copies of a real file must give errors or data, never a panic.
    #[test]
    fn corrupted_files_never_panic() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/gguf/quant.gguf");
        let good = std::fs::read(path).unwrap();
        let header_len = header::parse(&FileRange::from_vec(good.clone()), false)
            .unwrap()
            .data_start as usize;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..1500 {
            let mut b = good.clone();
            match round % 3 {
                0 => b.truncate(next() as usize % b.len()),
                1 => {
                    for _ in 0..1 + next() % 4 {
                        let at = next() as usize % header_len;
                        b[at] = next() as u8;
                    }
                }
                _ => {
                    let at = next() as usize % (header_len - 8);
                    let v = [u64::MAX, 1 << 40, next(), next() % 4096];
                    b[at..at + 8].copy_from_slice(&v[round % 4].to_le_bytes());
                }
            }
            for raw in [false, true] {
                let Ok(mut src) =
                    GgufSource::open("t", vec![], FileRange::from_vec(b.clone()), raw)
                else {
                    continue;
                };
                let _ = src.metadata();
                for i in 0..src.len() {
                    let _ = src.read_dense(i, 1 << 12, &mut |_: &[u8]| Ok(()));
                }
            }
        }
    }

    #[test]
    fn q8_0_block_dequantizes_scale_times_value() {
        let mut b = vec![0u8; 34];
        b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
        b[2] = 4;
        b[3] = (-6i8) as u8;
        let mut out = [0f32; 32];
        dq::q8_0(&b, &mut out);
        assert_eq!(&out[..3], &[2.0, -3.0, 0.0]);
    }
}
