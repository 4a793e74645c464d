//! One ONNX `TensorProto` (onnx.proto, not TensorFlow's message of the same name): located on
//! disk by `container::protobuf`, validated, and streamed exactly as `onnx.numpy_helper.to_array` reads it.
//! `raw_data` (or the external data range `onnx.rs` resolves) is little-endian element bytes;
//! 4-bit types pack two elements per byte and 2-bit types four, low bits first, and are
//! unpacked to one byte each (the form `dtype.rs` widens). Without `raw_data`, the typed field
//! of the dtype is read: `float_data` (float32, complex64), `double_data` (float64,
//! complex128), `int64_data`, `uint64_data` (uint32 truncated, uint64), `string_data`, and
//! `int32_data` for every narrower type, truncated to the element's width as NumPy's
//! `astype` does (float16/bfloat16/float8/bool bit patterns, packed 4- and 2-bit pairs).
//! The value count must match the shape exactly, as NumPy's `reshape` requires.

use anyhow::{bail, Context, Result};

use crate::container::protobuf::Cursor;
use crate::container::protobuf::{self as pbwalk, for_each_field, Value};
use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::{checked_elements, ChunkSink, Kind, TensorMeta};

/// Where the bytes of an external tensor live, as its `external_data` entries say.
#[derive(Clone, Debug, Default)]
pub struct ExternalRef {
    pub location: String,
    pub offset: Option<u64>,
    pub length: Option<u64>,
}

/// How a tensor's elements are stored.
#[derive(Clone, Debug)]
pub enum Data {
    /// Little-endian element bytes (`raw_data` or external data).
    Raw(FileRange),
    /// The occurrences of typed field `field` in the `TensorProto` at `msg`, found by walking
    /// it again whenever they are read: nothing is kept per field, so a million unpacked
    /// `int32_data` fields cost nothing.
    Typed { msg: FileRange, field: u32 },
    /// The `count` `string_data` entries of the `TensorProto` at `msg`, walked the same way.
    Strings { msg: FileRange, count: u64 },
    /// Bytes computed by the reader (a sparse initializer's dense shape).
    Memory(Vec<u8>),
    /// A sparse initializer's coordinates, streamed from its stored indices.
    Indices(Box<super::sparse::Indices>),
    /// External data not resolved yet.
    External(ExternalRef),
}

/// A located ONNX tensor.
#[derive(Clone, Debug)]
pub struct OnnxTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub elements: u64,
    pub data: Data,
    pub max_string_len: u64,
    pub stored_bytes: u64,
}

/// ONNX `TensorProto.DataType` codes with a NumPy form; `Err` holds the name of one without.
pub fn dtype_from_onnx(code: u64) -> std::result::Result<DType, String> {
    use DType::*;
    Ok(match code {
        1 => F32,
        2 => U8,
        3 => I8,
        4 => U16,
        5 => I16,
        6 => I32,
        7 => I64,
        8 => String,
        9 => Bool,
        10 => F16,
        11 => F64,
        12 => U32,
        13 => U64,
        14 => C64,
        15 => C128,
        16 => BF16,
        17 => F8E4M3FN,
        18 => F8E4M3FNUZ,
        19 => F8E5M2,
        20 => F8E5M2FNUZ,
        21 => U4,
        22 => I4,
        23 => F4E2M1FN,
        24 => F8E8M0FNU,
        25 => U2,
        26 => I2,
        0 => return Err("UNDEFINED".into()),
        27 => return Err("float6_e2m3fn".into()),
        28 => return Err("float6_e3m2fn".into()),
        c => return Err(format!("unknown ONNX data type {c}")),
    })
}

/// The error of a tensor whose data type exists but has no NumPy form (float6): the reader
/// skips it with a note.
#[derive(Debug)]
pub struct NoNumpyForm(pub String);

impl std::fmt::Display for NoNumpyForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoNumpyForm {}

/// Elements per stored byte: 2 for the 4-bit types, 4 for the 2-bit ones.
fn per_byte(d: DType) -> u64 {
    match d {
        DType::I4 | DType::U4 | DType::F4E2M1FN => 2,
        DType::I2 | DType::U2 => 4,
        _ => 1,
    }
}

/// The typed field (number) `to_array` reads for a dtype.
fn typed_field(d: DType) -> u32 {
    use DType::*;
    match d {
        F32 | C64 => 4,
        String => 6,
        I64 => 7,
        F64 | C128 => 10,
        U32 | U64 => 11,
        _ => 5,
    }
}

/// Most dimensions a tensor may have (NumPy's limit).
const MAX_RANK: usize = 64;

impl OnnxTensor {
    /// Walks a serialized `TensorProto`; external data stays unresolved (`Data::External`).
    pub fn scan(range: &FileRange) -> Result<OnnxTensor> {
        let mut dims: Vec<u64> = Vec::new();
        let mut code: Option<u64> = None;
        let mut name = String::new();
        let mut raw: Option<FileRange> = None;
        let mut external = ExternalRef::default();
        let mut location = 0u64;
        for_each_field(range, |field, v| {
            match field {
                1 => pbwalk::each_varint(v, |d| {
                    if dims.len() >= MAX_RANK {
                        bail!("more than {MAX_RANK} dimensions");
                    }
                    if d > i64::MAX as u64 {
                        bail!("negative dimension {}", d as i64);
                    }
                    dims.push(d);
                    Ok(())
                })?,
                2 => match v {
                    Value::Varint(c) => code = Some(c),
                    _ => bail!("data_type is not a varint"),
                },
                3 => bail!("segmented tensors are not supported (onnx cannot load them either)"),
                8 => name = pbwalk::string(&pbwalk::len(8, "name", v)?)?,
                9 => raw = Some(pbwalk::len(9, "raw_data", v)?),
                13 => {
                    let (mut key, mut value) = (String::new(), String::new());
                    for_each_field(&pbwalk::len(13, "external_data", v)?, |f, v| {
                        match f {
                            1 => key = pbwalk::string(&pbwalk::len(1, "key", v)?)?,
                            2 => value = pbwalk::string(&pbwalk::len(2, "value", v)?)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    let number = |what: &str| -> Result<u64> {
                        value.trim().parse::<u64>().with_context(|| {
                            format!("external data {what} {value:?} is not a non-negative integer")
                        })
                    };
                    match key.as_str() {
                        "location" => external.location = value.clone(),
                        "offset" => external.offset = Some(number("offset")?),
                        "length" => external.length = Some(number("length")?),
                        _ => {}
                    }
                }
                14 => match v {
                    Value::Varint(c) => location = c,
                    _ => bail!("data_location is not a varint"),
                },
                _ => {}
            }
            Ok(())
        })
        .with_context(|| format!("malformed ONNX tensor {name:?}"))?;
        let code = code.unwrap_or(0);
        let dtype = match dtype_from_onnx(code) {
            Ok(d) => d,
            Err(what) if code == 27 || code == 28 => {
                return Err(anyhow::Error::new(NoNumpyForm(format!(
                    "tensor {name}: {what} has no NumPy form"
                ))))
            }
            Err(what) => bail!("tensor {name}: data type {what} has no NumPy form"),
        };
        let elements = checked_elements(&dims).with_context(|| format!("tensor {name}"))?;
        let want = typed_field(dtype);
        let data = if location == 1 && dtype != DType::String {
            if external.location.is_empty() {
                bail!("tensor {name}: external data without a location");
            }
            Data::External(external)
        } else if dtype == DType::String {
            Data::Strings {
                msg: range.clone(),
                count: 0,
            }
        } else if let Some(raw) = raw {
            Data::Raw(raw)
        } else {
            Data::Typed {
                msg: range.clone(),
                field: want,
            }
        };
        let mut t = OnnxTensor {
            name,
            dtype,
            shape: dims,
            elements,
            data,
            max_string_len: 0,
            stored_bytes: range.len(),
        };
        t.validate()?;
        Ok(t)
    }

    /// Checks the stored values against the shape (external data: once resolved).
    pub fn validate(&mut self) -> Result<()> {
        let n = self.elements;
        let name = &self.name;
        let size = self.dtype.item_size().unwrap_or(1) as u64;
        let pack = per_byte(self.dtype);
        match &self.data {
            Data::External(_) => Ok(()),
            Data::Memory(_) | Data::Indices(_) => Ok(()),
            Data::Raw(r) => {
                let len = r.len();
                if pack > 1 {
                    if len.checked_mul(pack).is_none_or(|cap| cap < n) {
                        bail!("tensor {name}: {len} bytes of packed {} data cannot hold the {n} elements of shape {:?}", self.dtype, self.shape);
                    }
                } else if n.checked_mul(size) != Some(len) {
                    bail!(
                        "tensor {name}: {len} bytes of data, but shape {:?} of {} needs {}",
                        self.shape,
                        self.dtype,
                        n.checked_mul(size)
                            .map_or("more than 2^64".into(), |w| w.to_string())
                    );
                }
                self.stored_bytes = len;
                Ok(())
            }
            Data::Strings { msg, .. } => {
                let (mut count, mut longest) = (0u64, 0u64);
                for_each_field(msg, |f, v| {
                    if f == 6 {
                        longest = longest.max(pbwalk::len(6, "string_data", v)?.len());
                        count += 1;
                    }
                    Ok(())
                })?;
                if count != n {
                    bail!("tensor {name}: {count} strings for shape {:?}", self.shape);
                }
                self.max_string_len = longest;
                let msg = msg.clone();
                self.data = Data::Strings { msg, count };
                Ok(())
            }
            Data::Typed { msg, field } => {
                let mut count = 0u64;
                let mut bad = None;
                for_each_field(msg, |f, v| {
                    if f != *field {
                        return Ok(());
                    }
                    count += match (f, &v) {
                        (4, Value::Fixed32(_)) | (10, Value::Fixed64(_)) => 1,
                        (4, Value::Len(r)) if r.len() % 4 == 0 => r.len() / 4,
                        (10, Value::Len(r)) if r.len() % 8 == 0 => r.len() / 8,
                        (5 | 7 | 11, Value::Varint(_)) => 1,
                        (5 | 7 | 11, Value::Len(r)) => pbwalk::count_packed_varints(r)?,
                        (f, v) => {
                            bad.get_or_insert((f, v.wire()));
                            0
                        }
                    };
                    Ok(())
                })?;
                if let Some((f, wire)) = bad {
                    bail!("tensor {name}: field {f} has wire type {wire} or a partial value");
                }
                let per_element = if self.dtype.is_complex() { 2 } else { 1 };
                let ok = if pack > 1 {
                    count.checked_mul(pack).is_some_and(|cap| cap >= n)
                } else {
                    n.checked_mul(per_element) == Some(count)
                };
                if !ok {
                    bail!(
                        "tensor {name}: {count} values in its typed field for shape {:?} of {}",
                        self.shape,
                        self.dtype
                    );
                }
                Ok(())
            }
        }
    }

    pub fn meta(&self) -> TensorMeta {
        let string = self.dtype == DType::String;
        TensorMeta {
            name: self.name.clone(),
            dtype: self.dtype,
            shape: self.shape.clone(),
            kind: if string { Kind::String } else { Kind::Dense },
            stored_bytes: self.stored_bytes,
            max_string_len: string.then_some(self.max_string_len),
            big_endian: false,
            ragged_rank: 0,
            facts: Default::default(),
        }
    }

    /// The element bytes as stored, when they need no unpacking or checking.
    pub fn raw_range(&self) -> Option<FileRange> {
        match &self.data {
            Data::Raw(r) if per_byte(self.dtype) == 1 && self.dtype != DType::Bool => {
                Some(r.clone())
            }
            _ => None,
        }
    }

    /// Streams the elements, one byte per element for the packed types.
    pub fn read_dense(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let Some(size) = self.dtype.item_size() else {
            bail!("{} is not a fixed-size dtype", self.dtype);
        };
        let n = self.elements;
        let pack = per_byte(self.dtype);
        match &self.data {
            Data::External(_) => bail!("tensor {}: external data not resolved", self.name),
            Data::Strings { .. } => bail!("a string tensor has no fixed-size elements"),
            Data::Memory(m) => {
                for c in m.chunks((chunk / size).max(1) * size) {
                    sink(c)?;
                }
                Ok(())
            }
            Data::Indices(ix) => ix.stream(chunk, sink),
            Data::Raw(r) if pack == 1 => r.stream(size, chunk, sink),
            Data::Raw(r) => {
                let bytes = n.div_ceil(pack);
                let mut out = Out::new(n, 1, chunk);
                r.slice(0, bytes)?.stream(
                    1,
                    (chunk / pack as usize).max(1),
                    &mut |c: &[u8]| {
                        for &b in c {
                            out.unpack(b, pack, sink)?;
                        }
                        Ok(())
                    },
                )?;
                out.finish(sink)
            }
            Data::Typed { msg, field } => {
                let mut out = Out::new(n.saturating_mul(size as u64), size, chunk);
                for_each_field(msg, |f, v| {
                    if f != *field {
                        return Ok(());
                    }
                    match (f, &v) {
                        (4 | 10, Value::Fixed32(r) | Value::Fixed64(r) | Value::Len(r)) => {
                            r.stream(1, chunk.max(8), &mut |c: &[u8]| out.push(c, sink))
                        }
                        (_, Value::Varint(x)) => self.put_varint(*x, pack, &mut out, sink),
                        (_, Value::Len(r)) => {
                            let mut c = Cursor::new(r.clone());
                            while !c.at_end() && !out.full() {
                                let x = c.varint()?;
                                self.put_varint(x, pack, &mut out, sink)?;
                            }
                            Ok(())
                        }
                        _ => bail!("tensor {}: unexpected wire type", self.name),
                    }
                })?;
                out.finish(sink)
            }
        }
    }

    fn put_varint(&self, x: u64, pack: u64, out: &mut Out, sink: &mut ChunkSink) -> Result<()> {
        use DType::*;
        match self.dtype {
            _ if pack > 1 => out.unpack(x as u8, pack, sink),
            I64 | U64 => out.push(&x.to_le_bytes(), sink),
            I32 | U32 => out.push(&(x as u32).to_le_bytes(), sink),
            I16 | U16 | F16 | BF16 => out.push(&(x as u16).to_le_bytes(), sink),
            _ => out.push(&[x as u8], sink),
        }
    }

    /// Streams the elements of a string tensor, one call each.
    pub fn read_strings(&self, sink: &mut ChunkSink) -> Result<()> {
        let Data::Strings { msg, .. } = &self.data else {
            bail!("tensor {} holds no strings", self.name);
        };
        for_each_field(msg, |f, v| match f {
            6 => {
                let r = pbwalk::len(6, "string_data", v)?;
                sink(&r.read_vec(0, r.len() as usize)?)
            }
            _ => Ok(()),
        })
    }
}

/// An output buffer that emits chunks of whole elements and stops at the tensor's size (extra
/// values are dropped, as NumPy's `resize` drops the padding of packed types).
struct Out {
    buf: Vec<u8>,
    left: u64,
    cap: usize,
}

impl Out {
    fn new(total: u64, unit: usize, chunk: usize) -> Out {
        let cap = (chunk / unit).clamp(1, 1 << 20) * unit;
        Out {
            buf: Vec::with_capacity(cap.min(total as usize) + 8),
            left: total,
            cap,
        }
    }

    fn full(&self) -> bool {
        self.left == 0
    }

    fn push(&mut self, bytes: &[u8], sink: &mut ChunkSink) -> Result<()> {
        let take = (bytes.len() as u64).min(self.left) as usize;
        self.buf.extend_from_slice(&bytes[..take]);
        self.left -= take as u64;
        while self.buf.len() >= self.cap {
            sink(&self.buf[..self.cap])?;
            self.buf.drain(..self.cap);
        }
        Ok(())
    }

    fn unpack(&mut self, b: u8, pack: u64, sink: &mut ChunkSink) -> Result<()> {
        if pack == 2 {
            self.push(&[b & 0x0f, b >> 4], sink)
        } else {
            self.push(&[b & 3, (b >> 2) & 3, (b >> 4) & 3, b >> 6], sink)
        }
    }

    fn finish(self, sink: &mut ChunkSink) -> Result<()> {
        if !self.buf.is_empty() {
            sink(&self.buf)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
        varint(out, u64::from(field) << 3 | u64::from(wire));
    }

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        key(out, field, 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    /// A TensorProto with dims, data_type and name.
    fn tensor(dims: &[u64], code: u64) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in dims {
            key(&mut t, 1, 0);
            varint(&mut t, d);
        }
        key(&mut t, 2, 0);
        varint(&mut t, code);
        bytes(&mut t, 8, b"t");
        t
    }

    fn read(t: &OnnxTensor, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        t.read_dense(chunk, &mut |c: &[u8]| {
            assert!(c.len() <= chunk.max(1), "a chunk of {} > {chunk}", c.len());
            out.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn int32_data_carries_float16_bits_and_packed_int4_pairs() {
        // float16 [1.0, -2.0] as bit patterns in int32_data (packed)
        let mut t = tensor(&[2], 10);
        let mut packed = Vec::new();
        varint(&mut packed, 0x3c00);
        varint(&mut packed, 0xc000);
        bytes(&mut t, 5, &packed);
        let s = OnnxTensor::scan(&FileRange::from_vec(t)).unwrap();
        assert_eq!(s.dtype, DType::F16);
        assert_eq!(read(&s, 2), [0x00, 0x3c, 0x00, 0xc0]);

        // int4 [-1, 2, 7]: bytes 0x2f, 0x07 in two unpacked int32_data values; unpacked to
        // one nibble per byte, the padding nibble dropped
        let mut t = tensor(&[3], 22);
        for v in [0x2f, 0x07] {
            key(&mut t, 5, 0);
            varint(&mut t, v);
        }
        let s = OnnxTensor::scan(&FileRange::from_vec(t)).unwrap();
        assert_eq!(read(&s, 1), [0x0f, 0x02, 0x07]);
    }

    #[test]
    fn negative_int32_values_and_uint32_from_uint64_data_truncate_like_astype() {
        let mut t = tensor(&[1], 3); // int8 from int32_data -1 (a ten-byte varint)
        key(&mut t, 5, 0);
        varint(&mut t, u64::MAX);
        let s = OnnxTensor::scan(&FileRange::from_vec(t)).unwrap();
        assert_eq!(read(&s, 8), [0xff]);
        let mut t = tensor(&[1], 12); // uint32 from uint64_data 2^32 + 5
        key(&mut t, 11, 0);
        varint(&mut t, (1 << 32) + 5);
        let s = OnnxTensor::scan(&FileRange::from_vec(t)).unwrap();
        assert_eq!(read(&s, 8), 5u32.to_le_bytes());
    }

    #[test]
    fn float_data_is_regrouped_into_whole_elements_for_any_chunk_size() {
        let mut t = tensor(&[3], 14); // complex64, 3 elements = 6 floats
        let vals: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        bytes(&mut t, 4, &vals);
        let s = OnnxTensor::scan(&FileRange::from_vec(t)).unwrap();
        for chunk in [1, 8, 9, 20, 1 << 16] {
            let out = read(&s, chunk.max(8));
            assert_eq!(out, vals, "chunk {chunk}");
        }
    }

    #[test]
    fn counts_that_do_not_fit_the_shape_are_errors_naming_the_tensor() {
        let mut t = tensor(&[2, 2], 1);
        bytes(&mut t, 9, &[0u8; 12]); // raw_data of 3 floats for 4 elements
        let e = OnnxTensor::scan(&FileRange::from_vec(t)).unwrap_err();
        assert!(format!("{e:#}").contains("tensor t: 12 bytes"), "{e:#}");

        let mut t = tensor(&[3], 7); // int64 with two values
        bytes(&mut t, 7, &[1, 2]);
        let e = OnnxTensor::scan(&FileRange::from_vec(t)).unwrap_err();
        assert!(format!("{e:#}").contains("2 values"), "{e:#}");

        let mut t = tensor(&[1 << 40, 1 << 40], 1); // overflowing element count
        bytes(&mut t, 9, &[0u8; 4]);
        assert!(OnnxTensor::scan(&FileRange::from_vec(t)).is_err());

        let mut t = tensor(&[2], 1);
        key(&mut t, 3, 2); // a segment
        varint(&mut t, 0);
        let e = OnnxTensor::scan(&FileRange::from_vec(t)).unwrap_err();
        assert!(format!("{e:#}").contains("segment"), "{e:#}");
    }

    #[test]
    fn float6_is_told_apart_from_unknown_types() {
        let e = OnnxTensor::scan(&FileRange::from_vec(tensor(&[1], 27))).unwrap_err();
        assert!(e.downcast_ref::<NoNumpyForm>().is_some());
        let e = OnnxTensor::scan(&FileRange::from_vec(tensor(&[1], 99))).unwrap_err();
        assert!(e.downcast_ref::<NoNumpyForm>().is_none());
        assert!(format!("{e:#}").contains("unknown ONNX data type 99"));
    }
}
