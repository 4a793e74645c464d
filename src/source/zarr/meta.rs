//! zarr array metadata: a v2 `.zarray` or a v3 `zarr.json` parsed and checked into one
//! [`ArrayMeta`] (shape, chunk grid, dtype and byte order, chunk layout, codecs, fill value,
//! chunk key encoding) before any chunk is touched. `chunks.rs` decodes with it; the zarr and
//! Orbax readers build it from the JSON they find.
//!
//! v2 (zarr spec v2): `dtype` is a NumPy typestr (`<f4`, `>i8`, `|b1`, `|S<n>` bytes) or TensorStore's
//! `bfloat16`, `float8_*` and `int4` names; `order` C or F; `compressor` one codec or null; `filters`
//! must be empty (none is decoded); `dimension_separator` `.` or `/`. v3: `data_type` by
//! name, `codecs` a chain of array→array (`transpose`), one array→bytes (`bytes` with its endianness, or
//! `sharding_indexed` with inner codecs and an index) and bytes→bytes codecs (`zstd`, `gzip`,
//! `zlib`, `blosc`, `crc32c`), `chunk_key_encoding` default (`c/0/1`) or v2 (`0.1`).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::dtype::DType;
use crate::tensor::checked_elements;

/// Most dimensions accepted (NumPy's own limit is 64).
const MAX_RANK: usize = 64;
/// Widest `|S<n>` element accepted.
const MAX_BYTES_LEN: usize = 1 << 20;

/// A bytes→bytes codec, in the order the writer applied them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    Gzip,
    Zlib,
    Blosc,
    Crc32c,
}

/// v3 `sharding_indexed`: each stored chunk (a shard) holds a grid of inner chunks.
#[derive(Clone, Debug)]
pub struct Sharding {
    /// Inner chunk shape; the shard shape is the array's chunk shape.
    pub inner: Vec<u64>,
    /// How an inner chunk is encoded (its own layout and codecs; no nested sharding).
    pub layout: Layout,
    /// The index holds a crc32c of itself.
    pub index_crc: bool,
    /// The index is at the start of the shard (else at its end).
    pub index_at_start: bool,
}

/// How one stored chunk's bytes become elements.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Decoded axis `j` of the stored chunk is array axis `perm[j]` (F order: reversed axes);
    /// `None` is C order.
    pub perm: Option<Vec<usize>>,
    pub big_endian: bool,
    pub codecs: Vec<Codec>,
}

/// A well-formed array whose element type has no NumPy form here (strings, structured): the
/// zarr reader lists it as such, so `--skip-unsupported` can leave it out of a group.
#[derive(Debug)]
pub struct UnsupportedDtype {
    /// The dtype as the metadata spells it.
    pub dtype: String,
    pub shape: Vec<u64>,
    pub why: String,
}

impl std::fmt::Display for UnsupportedDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for UnsupportedDtype {}

fn unsupported(dtype: String, shape: &[u64], why: anyhow::Error) -> anyhow::Error {
    UnsupportedDtype {
        dtype,
        shape: shape.to_vec(),
        why: format!("{why:#}"),
    }
    .into()
}

#[derive(Clone, Debug)]
pub struct ArrayMeta {
    pub shape: Vec<u64>,
    /// The chunk (for a sharded v3 array: the shard) shape.
    pub chunks: Vec<u64>,
    pub dtype: DType,
    /// The dtype as the metadata spells it, for messages.
    pub dtype_name: String,
    pub item: usize,
    pub layout: Layout,
    pub sharding: Option<Sharding>,
    /// Elements are stored big-endian (the innermost `bytes` codec says so).
    pub big_endian: bool,
    /// One element of the fill value, in the stored byte order.
    pub fill: Vec<u8>,
    /// v3 default key encoding (`c/1/2`) rather than v2's (`1.2`).
    pub key_prefix_c: bool,
    pub separator: char,
}

impl ArrayMeta {
    /// The key of chunk `idx` relative to the array (`0.1`, `c/0/1`; `0` or `c` for 0-d).
    pub fn chunk_key(&self, idx: &[u64]) -> String {
        let joined = idx
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(&self.separator.to_string());
        match (self.key_prefix_c, idx.is_empty()) {
            (true, true) => "c".into(),
            (true, false) => format!("c{}{joined}", self.separator),
            (false, true) => "0".into(),
            (false, false) => joined,
        }
    }

    /// Chunks along each axis.
    pub fn grid(&self) -> Vec<u64> {
        self.shape
            .iter()
            .zip(&self.chunks)
            .map(|(s, c)| s.div_ceil(*c))
            .collect()
    }

    /// Bytes of one decoded chunk (checked when the metadata is parsed).
    pub fn chunk_bytes(&self) -> u64 {
        self.chunks.iter().product::<u64>() * self.item as u64
    }
}

/// Parses a `.zarray` (v2) document.
pub fn parse_v2(text: &[u8]) -> Result<ArrayMeta> {
    let v: Value = serde_json::from_slice(text).context("not valid JSON")?;
    if v.get("zarr_format").and_then(Value::as_u64) != Some(2) {
        bail!("zarr_format is not 2");
    }
    let shape = dims(&v["shape"], "shape")?;
    let chunks = dims(&v["chunks"], "chunks")?;
    let typestr = v["dtype"].as_str().ok_or_else(|| {
        unsupported(
            v["dtype"].to_string(),
            &shape,
            anyhow!("dtype is not a string (structured dtypes are not read)"),
        )
    })?;
    // `|S<n>`: fixed-width bytes, read as NumPy's `|S<n>` (trailing NULs dropped).
    let bytes_len = match typestr.strip_prefix("|S") {
        Some(n) => Some(
            n.parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_BYTES_LEN).contains(n))
                .ok_or_else(|| anyhow!("dtype '{typestr}': a width from 1 to {MAX_BYTES_LEN}"))?,
        ),
        None => None,
    };
    let (dtype, big_endian) = match bytes_len {
        Some(_) => (DType::String, false),
        None => parse_typestr(typestr).map_err(|e| unsupported(typestr.to_string(), &shape, e))?,
    };
    let perm = match v["order"].as_str() {
        Some("C") | None => None,
        Some("F") => Some((0..shape.len()).rev().collect()),
        Some(o) => bail!("order '{o}' is neither C nor F"),
    };
    match &v["filters"] {
        Value::Null => {}
        Value::Array(a) if a.is_empty() => {}
        Value::Array(a) => bail!(
            "filters {} are not decoded (unknown codec)",
            a.iter()
                .map(|f| f["id"].as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => bail!("filters is neither null nor a list"),
    }
    let mut codecs = Vec::new();
    match &v["compressor"] {
        Value::Null => {}
        c => codecs.push(codec_v2(c)?),
    }
    let separator = match v.get("dimension_separator").and_then(Value::as_str) {
        None | Some(".") => '.',
        Some("/") => '/',
        Some(s) => bail!("dimension_separator '{s}' is neither '.' nor '/'"),
    };
    let fill = match bytes_len {
        // zarr-python writes "" (and base64 for others); only the all-zero fill is taken
        Some(n) => match &v["fill_value"] {
            Value::Null | Value::Number(_) if v["fill_value"].as_u64().unwrap_or(0) == 0 => {
                vec![0; n]
            }
            Value::String(f) if f.is_empty() || f.bytes().all(|b| b == b'A' || b == b'=') => {
                vec![0; n]
            }
            f => bail!("fill_value {f} for {typestr}: only an empty (all-zero) fill is read"),
        },
        None => fill_bytes(&v["fill_value"], dtype, big_endian)?,
    };
    finish(ArrayMeta {
        shape,
        chunks,
        dtype,
        dtype_name: typestr.to_string(),
        item: bytes_len.unwrap_or(0),
        layout: Layout {
            perm,
            big_endian,
            codecs,
        },
        sharding: None,
        big_endian,
        fill,
        key_prefix_c: false,
        separator,
    })
}

/// The kind of a v3 `zarr.json` node.
pub fn v3_node_type(text: &[u8]) -> Result<String> {
    let v: Value = serde_json::from_slice(text).context("not valid JSON")?;
    if v.get("zarr_format").and_then(Value::as_u64) != Some(3) {
        bail!("zarr_format is not 3");
    }
    Ok(v["node_type"].as_str().unwrap_or("").to_string())
}

/// Parses a v3 `zarr.json` array document.
pub fn parse_v3(text: &[u8]) -> Result<ArrayMeta> {
    let v: Value = serde_json::from_slice(text).context("not valid JSON")?;
    if v.get("zarr_format").and_then(Value::as_u64) != Some(3) {
        bail!("zarr_format is not 3");
    }
    if v["node_type"].as_str() != Some("array") {
        bail!("node_type is not 'array'");
    }
    let shape = dims(&v["shape"], "shape")?;
    let grid = &v["chunk_grid"];
    if grid["name"].as_str() != Some("regular") {
        bail!("chunk_grid {} is not a regular grid", grid["name"]);
    }
    let chunks = dims(&grid["configuration"]["chunk_shape"], "chunk_shape")?;
    if let Some(t) = v["storage_transformers"]
        .as_array()
        .filter(|t| !t.is_empty())
    {
        bail!("storage_transformers {t:?} are not supported");
    }
    let data_type = &v["data_type"];
    let name = data_type.as_str().ok_or_else(|| {
        unsupported(
            data_type["name"]
                .as_str()
                .map_or_else(|| data_type.to_string(), str::to_string),
            &shape,
            anyhow!("data_type {data_type} is not supported (numbers and booleans are)"),
        )
    })?;
    let dtype = dtype_v3(name).map_err(|e| unsupported(name.to_string(), &shape, e))?;
    let codecs = v["codecs"]
        .as_array()
        .ok_or_else(|| anyhow!("codecs is not a list"))?;
    let (layout, sharding) = codec_chain(codecs, shape.len(), &chunks, true)?;
    let (key_prefix_c, separator) = match v["chunk_key_encoding"]["name"].as_str() {
        Some("default") | None => (true, '/'),
        Some("v2") => (false, '.'),
        Some(n) => bail!("chunk_key_encoding '{n}' is unknown"),
    };
    let separator = match v["chunk_key_encoding"]["configuration"]["separator"].as_str() {
        None => separator,
        Some("/") => '/',
        Some(".") => '.',
        Some(s) => bail!("chunk key separator '{s}' is neither '.' nor '/'"),
    };
    let big_endian = sharding
        .as_ref()
        .map_or(layout.big_endian, |s| s.layout.big_endian);
    let fill = fill_bytes(&v["fill_value"], dtype, big_endian)?;
    finish(ArrayMeta {
        shape,
        chunks,
        dtype,
        dtype_name: name.to_string(),
        item: 0,
        layout,
        sharding,
        big_endian,
        fill,
        key_prefix_c,
        separator,
    })
}

/// Checks the shapes against each other and sizes the element.
fn finish(mut m: ArrayMeta) -> Result<ArrayMeta> {
    if m.item == 0 {
        m.item = m
            .dtype
            .item_size()
            .ok_or_else(|| anyhow!("dtype {} has no fixed size", m.dtype_name))?;
    }
    if m.shape.len() != m.chunks.len() {
        bail!(
            "shape {:?} and chunk shape {:?} differ in rank",
            m.shape,
            m.chunks
        );
    }
    if m.chunks.contains(&0) {
        bail!("chunk shape {:?} has a zero extent", m.chunks);
    }
    checked_elements(&m.shape)?
        .checked_mul(m.item as u64)
        .ok_or_else(|| anyhow!("shape {:?} has more bytes than fit in 64 bits", m.shape))?;
    let n = checked_elements(&m.chunks)?;
    n.checked_mul(m.item as u64)
        .filter(|b| *b < 1 << 40)
        .ok_or_else(|| anyhow!("chunk shape {:?} is too large", m.chunks))?;
    if let Some(s) = &m.sharding {
        if s.inner.len() != m.chunks.len()
            || s.inner
                .iter()
                .zip(&m.chunks)
                .any(|(i, c)| *i == 0 || c % i != 0)
        {
            bail!(
                "inner chunk shape {:?} does not divide the shard shape {:?}",
                s.inner,
                m.chunks
            );
        }
    }
    Ok(m)
}

fn dims(v: &Value, what: &str) -> Result<Vec<u64>> {
    let a = v
        .as_array()
        .ok_or_else(|| anyhow!("{what} is not a list"))?;
    if a.len() > MAX_RANK {
        bail!("{what} has {} dimensions, more than {MAX_RANK}", a.len());
    }
    a.iter()
        .map(|d| {
            d.as_u64()
                .ok_or_else(|| anyhow!("{what} holds {d}, not a non-negative integer"))
        })
        .collect()
}

/// A NumPy typestr (`<f4`) or TensorStore's `bfloat16`: the dtype and whether it is big-endian.
pub fn parse_typestr(s: &str) -> Result<(DType, bool)> {
    if let Some(d) = tensorstore_float(s) {
        return Ok((d, false));
    }
    let mut chars = s.chars();
    let order = chars.next().unwrap_or(' ');
    let rest = chars.as_str();
    let big = match order {
        '<' | '|' => false,
        '>' => true,
        _ => bail!("dtype '{s}' is not a NumPy typestr"),
    };
    let d = match rest {
        "b1" => DType::Bool,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "i2" => DType::I16,
        "u2" => DType::U16,
        "i4" => DType::I32,
        "u4" => DType::U32,
        "i8" => DType::I64,
        "u8" => DType::U64,
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "c8" => DType::C64,
        "c16" => DType::C128,
        _ => bail!("dtype '{s}' is not supported (numbers and booleans are)"),
    };
    Ok((d, big && d.item_size().unwrap_or(1) > 1))
}

/// TensorStore's names for the types NumPy has only through ml_dtypes (Orbax writes them;
/// int4/uint4, int2/uint2 and float4_e2m1fn one element a byte).
fn tensorstore_float(name: &str) -> Option<DType> {
    Some(match name {
        "bfloat16" => DType::BF16,
        "float8_e4m3fn" => DType::F8E4M3FN,
        "float8_e5m2" => DType::F8E5M2,
        "float8_e4m3fnuz" => DType::F8E4M3FNUZ,
        "float8_e5m2fnuz" => DType::F8E5M2FNUZ,
        "float8_e4m3b11fnuz" => DType::F8E4M3B11FNUZ,
        "float8_e8m0fnu" => DType::F8E8M0FNU,
        "float4_e2m1fn" => DType::F4E2M1FN,
        "int4" => DType::I4,
        "uint4" => DType::U4,
        "int2" => DType::I2,
        "uint2" => DType::U2,
        _ => return None,
    })
}

fn dtype_v3(name: &str) -> Result<DType> {
    if let Some(d) = tensorstore_float(name) {
        return Ok(d);
    }
    Ok(match name {
        "bool" => DType::Bool,
        "int8" => DType::I8,
        "uint8" => DType::U8,
        "int16" => DType::I16,
        "uint16" => DType::U16,
        "int32" => DType::I32,
        "uint32" => DType::U32,
        "int64" => DType::I64,
        "uint64" => DType::U64,
        "float16" => DType::F16,
        "float32" => DType::F32,
        "float64" => DType::F64,
        "complex64" => DType::C64,
        "complex128" => DType::C128,
        _ => bail!("data_type '{name}' is not supported (numbers and booleans are)"),
    })
}

fn codec_v2(c: &Value) -> Result<Codec> {
    let id = c["id"]
        .as_str()
        .ok_or_else(|| anyhow!("compressor {c} has no id"))?;
    Ok(match id {
        "zstd" => Codec::Zstd,
        "gzip" => Codec::Gzip,
        "zlib" => Codec::Zlib,
        "blosc" => Codec::Blosc,
        _ => bail!(
            "unknown codec: compressor '{id}' is not decoded (raw, zstd, gzip, zlib and blosc are)"
        ),
    })
}

/// A v3 codec chain: array→array, one array→bytes, then bytes→bytes codecs.
fn codec_chain(
    codecs: &[Value],
    rank: usize,
    chunks: &[u64],
    outer: bool,
) -> Result<(Layout, Option<Sharding>)> {
    let mut perm: Option<Vec<usize>> = None;
    let mut serializer_seen = false;
    let mut big_endian = false;
    let mut sharding = None;
    let mut bytes_codecs = Vec::new();
    for c in codecs {
        let name = c["name"]
            .as_str()
            .ok_or_else(|| anyhow!("codec {c} has no name"))?;
        let conf = &c["configuration"];
        match (name, serializer_seen) {
            ("transpose", false) => {
                let order = match &conf["order"] {
                    Value::String(s) if s == "C" => (0..rank).collect(),
                    Value::String(s) if s == "F" => (0..rank).rev().collect(),
                    o => dims(o, "transpose order")?
                        .into_iter()
                        .map(|d| d as usize)
                        .collect::<Vec<_>>(),
                };
                let mut seen = order.clone();
                seen.sort_unstable();
                if seen != (0..rank).collect::<Vec<_>>() {
                    bail!("transpose order {order:?} is not a permutation of {rank} axes");
                }
                // Two transposes compose: stored axis j is the previous stage's axis order[j].
                perm = Some(match perm {
                    None => order,
                    Some(p) => order.iter().map(|&j| p[j]).collect(),
                });
            }
            ("bytes", false) => {
                serializer_seen = true;
                big_endian = match conf["endian"].as_str() {
                    Some("little") | None => false,
                    Some("big") => true,
                    Some(e) => bail!("bytes codec endian '{e}' is neither little nor big"),
                };
            }
            ("sharding_indexed", false) if outer => {
                serializer_seen = true;
                let inner = dims(&conf["chunk_shape"], "inner chunk_shape")?;
                let inner_codecs = conf["codecs"]
                    .as_array()
                    .ok_or_else(|| anyhow!("sharding codecs is not a list"))?;
                let (layout, _) = codec_chain(inner_codecs, rank, &inner, false)?;
                let index = conf["index_codecs"]
                    .as_array()
                    .ok_or_else(|| anyhow!("sharding index_codecs is not a list"))?;
                let (index_layout, _) = codec_chain(index, 2, &[0, 2], false)?;
                let index_crc = match index_layout.codecs.as_slice() {
                    [] => false,
                    [Codec::Crc32c] => true,
                    other => bail!("shard index codecs {other:?} are not supported"),
                };
                if index_layout.big_endian || index_layout.perm.is_some() {
                    bail!("a big-endian or transposed shard index is not supported");
                }
                let index_at_start = match conf["index_location"].as_str() {
                    Some("end") | None => false,
                    Some("start") => true,
                    Some(l) => bail!("index_location '{l}' is neither start nor end"),
                };
                sharding = Some(Sharding {
                    inner,
                    layout,
                    index_crc,
                    index_at_start,
                });
            }
            ("zstd", true) => bytes_codecs.push(Codec::Zstd),
            ("gzip", true) => bytes_codecs.push(Codec::Gzip),
            ("zlib" | "numcodecs.zlib", true) => bytes_codecs.push(Codec::Zlib),
            ("blosc", true) => bytes_codecs.push(Codec::Blosc),
            ("crc32c", true) => bytes_codecs.push(Codec::Crc32c),
            _ => bail!("unknown codec: '{name}' is not decoded here (transpose, bytes, sharding_indexed, zstd, gzip, zlib, blosc and crc32c are)"),
        }
    }
    if !serializer_seen {
        bail!("the codec chain has no array-to-bytes codec");
    }
    let _ = chunks;
    Ok((
        Layout {
            perm,
            big_endian,
            codecs: bytes_codecs,
        },
        sharding,
    ))
}

/// One element of the fill value in the stored byte order; `null` is zero.
fn fill_bytes(v: &Value, dtype: DType, big_endian: bool) -> Result<Vec<u8>> {
    let ctx = || format!("fill_value {v} for {}", dtype.name());
    let mut out = match dtype {
        DType::C64 | DType::C128 => {
            let (re, im) = match v {
                Value::Null => (0.0, 0.0),
                Value::Array(p) if p.len() == 2 => (float(&p[0])?, float(&p[1])?),
                _ => bail!("{}: not a [real, imag] pair", ctx()),
            };
            let half = if dtype == DType::C64 {
                DType::F32
            } else {
                DType::F64
            };
            let mut b = scalar(&Value::from(re), half, re).with_context(ctx)?;
            b.extend(scalar(&Value::from(im), half, im).with_context(ctx)?);
            b
        }
        _ => {
            let f = match v {
                Value::Null | Value::Bool(_) => 0.0,
                _ => float(v).unwrap_or(0.0),
            };
            scalar(v, dtype, f).with_context(ctx)?
        }
    };
    if big_endian {
        for unit in out.chunks_mut(dtype.swap_unit()) {
            unit.reverse();
        }
    }
    Ok(out)
}

/// A JSON number, `"NaN"`, `"Infinity"`, `"-Infinity"` or a hex bit pattern as a float.
fn float(v: &Value) -> Result<f64> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| anyhow!("not a number")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => bail!("'{s}' is not a number"),
        },
        Value::Null => Ok(0.0),
        _ => bail!("{v} is not a number"),
    }
}

/// One little-endian element of a non-complex dtype.
fn scalar(v: &Value, dtype: DType, f: f64) -> Result<Vec<u8>> {
    // A hex string is the element's bit pattern (v3).
    if let Some(hex) = v.as_str().and_then(|s| s.strip_prefix("0x")) {
        let bits = u64::from_str_radix(hex, 16).context("a hex fill value that is not hex")?;
        let n = dtype.item_size().unwrap_or(0);
        return Ok(bits.to_le_bytes()[..n.min(8)].to_vec());
    }
    let int = || -> Result<i128> {
        match v {
            Value::Null => Ok(0),
            Value::Bool(b) => Ok(i128::from(*b)),
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i128))
                .ok_or_else(|| anyhow!("not an integer")),
            _ => bail!("not an integer"),
        }
    };
    macro_rules! int_le {
        ($t:ty) => {{
            let i = int()?;
            <$t>::try_from(i)
                .map_err(|_| anyhow!("{i} is out of range"))?
                .to_le_bytes()
                .to_vec()
        }};
    }
    Ok(match dtype {
        DType::Bool => vec![u8::from(int()? != 0)],
        DType::I8 => int_le!(i8),
        DType::U8 => int_le!(u8),
        DType::I16 => int_le!(i16),
        DType::U16 => int_le!(u16),
        DType::I32 => int_le!(i32),
        DType::U32 => int_le!(u32),
        DType::I64 => int_le!(i64),
        DType::U64 => int_le!(u64),
        DType::F16 => half::f16::from_f64(f).to_le_bytes().to_vec(),
        DType::BF16 => half::bf16::from_f64(f).to_le_bytes().to_vec(),
        DType::F32 => (f as f32).to_le_bytes().to_vec(),
        DType::F64 => f.to_le_bytes().to_vec(),
        // float8, float4, int4, int2: +0.0 / 0 is the zero byte in each of these formats
        // (TensorStore writes 0).
        DType::F8E4M3FN
        | DType::F8E5M2
        | DType::F8E4M3FNUZ
        | DType::F8E5M2FNUZ
        | DType::F8E4M3B11FNUZ
        | DType::I4
        | DType::U4
        | DType::F4E2M1FN
        | DType::I2
        | DType::U2
            if f == 0.0 && f.is_sign_positive() =>
        {
            vec![0]
        }
        // float8_e8m0fnu has no zero: a null fill is the zero byte (2^-127), 0.0 rounds to NaN
        // (0xff) as ml_dtypes rounds it
        DType::F8E8M0FNU if v.is_null() => vec![0],
        DType::F8E8M0FNU if f == 0.0 => vec![0xff],
        d => bail!("no fill value for {}", d.name()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_metadata_parses_and_checks() {
        let m = parse_v2(br#"{"chunks":[8,3],"compressor":{"id":"zstd","level":1},"dimension_separator":".","dtype":"bfloat16","fill_value":null,"filters":null,"order":"C","shape":[8,5],"zarr_format":2}"#).unwrap();
        assert_eq!(m.dtype, DType::BF16);
        assert_eq!(m.grid(), vec![1, 2]);
        assert_eq!(m.chunk_key(&[0, 1]), "0.1");
        assert_eq!(m.fill, vec![0, 0]);
        let bad = br#"{"chunks":[0],"compressor":null,"dtype":"<f4","fill_value":0,"filters":null,"order":"C","shape":[3],"zarr_format":2}"#;
        assert!(parse_v2(bad).is_err());
        let f = br#"{"chunks":[2],"compressor":null,"dtype":">i2","fill_value":-2,"filters":null,"order":"F","shape":[3],"zarr_format":2}"#;
        let m = parse_v2(f).unwrap();
        assert_eq!(m.fill, (-2i16).to_be_bytes().to_vec());
        assert!(m.layout.big_endian);
        let unknown = br#"{"chunks":[2],"compressor":{"id":"lzma"},"dtype":"<f4","fill_value":0,"filters":null,"order":"C","shape":[3],"zarr_format":2}"#;
        assert!(format!("{:#}", parse_v2(unknown).unwrap_err()).contains("lzma"));
    }

    #[test]
    fn v2_bytes_arrays_are_sized_by_their_width_and_unicode_is_refused_as_unsupported() {
        let doc = |dtype: &str, fill: &str| {
            format!(
                r#"{{"chunks":[2],"compressor":null,"dtype":"{dtype}","fill_value":{fill},"filters":null,"order":"C","shape":[3],"zarr_format":2}}"#
            )
        };
        let m = parse_v2(doc("|S3", r#""""#).as_bytes()).unwrap();
        assert_eq!(
            (m.dtype, m.item, m.fill.clone()),
            (DType::String, 3, vec![0; 3])
        );
        for bad in ["|S0", "|Sx", "|S99999999"] {
            assert!(parse_v2(doc(bad, "null").as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_v2(doc("|S2", r#""YWI=""#).as_bytes()).is_err());
        let e = parse_v2(doc("<U2", r#""""#).as_bytes()).unwrap_err();
        let u = e
            .downcast_ref::<UnsupportedDtype>()
            .expect("an UnsupportedDtype");
        assert_eq!((u.dtype.as_str(), u.shape.as_slice()), ("<U2", &[3u64][..]));
    }
}
