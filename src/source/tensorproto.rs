//! Binary `TensorProto` reader (the output of `tf.io.serialize_tensor` and
//! `tf.make_tensor_proto(...).SerializeToString()`). The message is walked field by field on
//! disk, so `tensor_content` and the typed repeated fields are located but never loaded whole;
//! values are then streamed with TensorFlow's C++ `Tensor::FromProto` semantics: content wins
//! when non-empty; typed fields fill with the last value when short, zeros when absent, and
//! extra values are ignored; narrow integers in `int_val` wrap like a C++ cast.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;

use crate::container::protobuf::{count_packed_varints, varint, Cursor, RangeFields, Raw};
use crate::dtype::DType;
use crate::error::check_interrupted;
use crate::input::FileRange;
use crate::source::proto::TensorShapeProto;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{checked_elements, ChunkSink, InputFacts, Kind, Source, TensorMeta};

/// The most bytes a typed field may expand to by TensorFlow's fill rule (a single `float_val`
/// with a huge shape), so that a tiny hostile file cannot fill the disk.
pub const DEFAULT_MAX_FILL_BYTES: u64 = 1 << 30;

/// A located, validated TensorProto whose payload is still on disk. Nothing is kept per
/// value or per field occurrence: the typed field is found again by walking the message when
/// the values are read, so a million unpacked `int_val` fields cost no memory.
#[derive(Clone, Debug)]
pub struct ScannedTensor {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub elements: u64,
    /// The whole message, walked again to read the typed field.
    message: FileRange,
    /// Non-empty `tensor_content`.
    content: Option<FileRange>,
    /// How many times the typed field occurs (one per string for `string_val`).
    occurrences: u64,
    /// The last occurrence of a length-delimited typed field (the one `float8_val` uses, and
    /// the value strings repeat).
    last_range: Option<FileRange>,
    /// Values present in the typed field.
    values: u64,
    /// Longest string element (string tensors only).
    pub max_string_len: u64,
    pub stored_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Encoding {
    Fixed(usize),
    Varint,
    Bytes,
}

/// The typed field TensorFlow's `ProtoHelper<T>` uses for a dtype, with its wire encoding.
fn typed_field(d: DType) -> (u32, Encoding) {
    use DType::*;
    match d {
        F32 => (5, Encoding::Fixed(4)),
        F64 => (6, Encoding::Fixed(8)),
        I32 | U8 | I16 | I8 | QInt8 | QUInt8 | QInt16 | QUInt16 | QInt32 | U16 | I4 | U4 | I2
        | U2 => (7, Encoding::Varint),
        String => (8, Encoding::Bytes),
        C64 => (9, Encoding::Fixed(4)),
        I64 => (10, Encoding::Varint),
        Bool => (11, Encoding::Varint),
        C128 => (12, Encoding::Fixed(8)),
        F16 | BF16 => (13, Encoding::Varint),
        Resource => (14, Encoding::Bytes),
        Variant => (15, Encoding::Bytes),
        U32 => (16, Encoding::Varint),
        U64 => (17, Encoding::Varint),
        F8E4M3FN | F8E5M2 | F8E4M3FNUZ | F8E5M2FNUZ | F8E4M3B11FNUZ | F8E8M0FNU | F4E2M1FN => {
            (18, Encoding::Bytes)
        }
    }
}

impl ScannedTensor {
    /// Walks the top-level fields of a serialized TensorProto: once for the dtype, shape and
    /// content, once more to count the values of the typed field that dtype reads.
    pub fn scan(range: &FileRange, max_fill_bytes: u64) -> Result<ScannedTensor> {
        let mut dtype_code: i64 = 0;
        let mut shape_bytes: Vec<u8> = Vec::new();
        let mut content: Option<FileRange> = None;
        let mut fields = RangeFields::new(range);
        while let Some((field, _, value, _)) = fields.next()? {
            match (field, value) {
                (1, Raw::Varint(v)) => dtype_code = v as i64,
                (2, Raw::Len(r)) => {
                    if r.len() > 1 << 20 {
                        bail!(
                            "the tensor shape field is implausibly large ({} bytes)",
                            r.len()
                        );
                    }
                    if shape_bytes.len() as u64 + r.len() > 1 << 20 {
                        bail!("the tensor shape fields are implausibly large");
                    }
                    // Repeated occurrences of a message field merge.
                    shape_bytes.extend_from_slice(&r.read_vec(0, r.len() as usize)?);
                }
                (4, Raw::Len(r)) => content = if r.is_empty() { content } else { Some(r) },
                _ => {}
            }
        }
        let dtype = DType::from_tf(dtype_code as i32)
            .filter(|_| dtype_code > 0 && dtype_code <= i32::MAX as i64)
            .ok_or_else(|| {
                if dtype_code == 0 {
                    anyhow!("not a TensorProto: no dtype (DT_INVALID)")
                } else {
                    anyhow!("unknown TensorFlow dtype {dtype_code}")
                }
            })?;
        if dtype_code > 100 {
            bail!(
                "reference dtype {dtype_code} ({}_ref) cannot appear in a concrete tensor",
                dtype.name()
            );
        }
        let shape = TensorShapeProto::decode(&shape_bytes[..])
            .context("malformed tensor shape")?
            .concrete()?;
        let elements = checked_elements(&shape)?;
        let mut t = ScannedTensor {
            dtype,
            shape,
            elements,
            message: range.clone(),
            content,
            occurrences: 0,
            last_range: None,
            values: 0,
            max_string_len: 0,
            stored_bytes: range.len(),
        };
        t.validate(max_fill_bytes)?;
        Ok(t)
    }

    /// Calls `f` with each occurrence of the typed field, in order, after checking that its
    /// wire type fits the dtype (a value in another field is ignored, as TensorFlow does).
    fn each_value(&self, f: &mut dyn FnMut(Raw) -> Result<bool>) -> Result<()> {
        let (want, enc) = typed_field(self.dtype);
        let mut fields = RangeFields::new(&self.message);
        while let Some((field, wire, value, _)) = fields.next()? {
            if field != want {
                continue;
            }
            let ok = match enc {
                Encoding::Fixed(4) => wire == 2 || wire == 5,
                Encoding::Fixed(_) => wire == 2 || wire == 1,
                Encoding::Varint => wire == 2 || wire == 0,
                Encoding::Bytes => wire == 2,
            };
            if !ok {
                bail!(
                    "field {field} has wire type {wire}, which does not fit a {} tensor",
                    self.dtype
                );
            }
            if !f(value)? {
                break;
            }
        }
        Ok(())
    }

    fn validate(&mut self, max_fill_bytes: u64) -> Result<()> {
        let n = self.elements;
        if let Some(content) = &self.content {
            match self.dtype.item_size() {
                Some(size) => {
                    let want = n.checked_mul(size as u64);
                    if want != Some(content.len()) {
                        bail!(
                            "tensor_content holds {} bytes, but shape {:?} of {} needs {}",
                            content.len(),
                            self.shape,
                            self.dtype,
                            want.map_or("more than 2^64".to_string(), |w| w.to_string())
                        );
                    }
                }
                None => {
                    // String-list layout: n varint32 lengths, then the payloads.
                    if n > content.len() {
                        bail!(
                            "tensor_content of {} bytes cannot hold {n} string lengths",
                            content.len()
                        );
                    }
                    let mut c = Cursor::new(content.clone());
                    let mut total: u64 = 0;
                    for _ in 0..n {
                        let len = c.varint().context("string lengths in tensor_content")?;
                        if len > u32::MAX as u64 {
                            bail!("a string length in tensor_content exceeds 32 bits");
                        }
                        self.max_string_len = self.max_string_len.max(len);
                        total += len;
                    }
                    if total != c.remaining() {
                        bail!(
                            "tensor_content string lengths add up to {total} bytes, but {} bytes follow them",
                            c.remaining()
                        );
                    }
                }
            }
            return Ok(());
        }
        let (_, enc) = typed_field(self.dtype);
        let (mut values, mut occurrences, mut max_len) = (0u64, 0u64, 0u64);
        let mut last_range = None;
        self.each_value(&mut |v| {
            match (enc, v) {
                (Encoding::Fixed(size), Raw::Fixed(_, w)) => values += (w / size) as u64,
                (Encoding::Fixed(size), Raw::Len(r)) => {
                    if !r.len().is_multiple_of(size as u64) {
                        bail!(
                            "a packed field of {} bytes is not a whole number of {size}-byte values",
                            r.len()
                        );
                    }
                    values += r.len() / size as u64;
                }
                (Encoding::Varint, Raw::Varint(_)) => values += 1,
                (Encoding::Varint, Raw::Len(r)) => {
                    values += count_packed_varints(&r)?;
                }
                (_, Raw::Len(r)) => {
                    if occurrences < n {
                        max_len = max_len.max(r.len());
                    }
                    last_range = Some(r);
                }
                _ => {}
            }
            occurrences += 1;
            Ok(true)
        })?;
        self.occurrences = occurrences;
        self.last_range = last_range;
        self.values = match enc {
            Encoding::Fixed(_) if self.dtype.is_complex() => values / 2,
            Encoding::Fixed(_) | Encoding::Varint => values,
            // float8_val is a singular bytes field: the last one wins.
            Encoding::Bytes if self.dtype.item_size().is_some() => {
                self.last_range.as_ref().map_or(0, |r| r.len())
            }
            Encoding::Bytes => {
                self.max_string_len = max_len;
                occurrences
            }
        };
        let missing = n.saturating_sub(self.values);
        if let Some(size) = self.dtype.item_size() {
            let fill = missing.saturating_mul(size as u64);
            if fill > max_fill_bytes {
                bail!(
                    "shape {:?} asks for {n} elements but only {} values are stored; filling the rest would write {fill} bytes (over the {max_fill_bytes}-byte limit of --max-fill-bytes)",
                    self.shape,
                    self.values
                );
            }
        } else if missing > 0 {
            // Strings repeat the last value; missing variants are empty messages. Either way
            // each element costs at least a byte downstream.
            let each = if self.dtype == DType::String && self.values > 0 {
                self.max_string_len.max(1)
            } else {
                1
            };
            let fill = missing.saturating_mul(each);
            if fill > max_fill_bytes {
                bail!(
                    "filling {n} {} elements from {} values would write {fill} bytes (over the {max_fill_bytes}-byte limit of --max-fill-bytes)",
                    self.dtype,
                    self.values
                );
            }
        }
        Ok(())
    }

    /// The non-empty `tensor_content` of a fixed-size tensor: its elements as stored, which a
    /// reader may hand out as `Source::raw_range`.
    pub fn content_range(&self) -> Option<FileRange> {
        self.content
            .clone()
            .filter(|_| self.dtype.item_size().is_some())
    }

    pub fn kind(&self) -> Kind {
        if self.dtype == DType::String {
            Kind::String
        } else {
            Kind::Dense
        }
    }

    /// Streams the elements in the dtype's little-endian layout.
    pub fn read_dense(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let Some(size) = self.dtype.item_size() else {
            bail!("{} is not a fixed-size dtype", self.dtype);
        };
        if let Some(content) = &self.content {
            return content.stream(size, chunk, sink);
        }
        let n = self.elements;
        if n == 0 {
            return Ok(());
        }
        let cap = (chunk / size).max(1) * size;
        let mut out: Vec<u8> = Vec::with_capacity(cap.min((n as usize).saturating_mul(size)));
        let mut emitted: u64 = 0;
        let mut last: Vec<u8> = vec![0u8; size]; // zeros when no value is given
        let (_, enc) = typed_field(self.dtype);
        let per_element = if self.dtype.is_complex() { 2 } else { 1 };
        let mut pending: Vec<u8> = Vec::with_capacity(size);
        let dtype = self.dtype;
        // Appends one complete element (when `pending` holds one) to the output.
        let mut push = |pending: &mut Vec<u8>, out: &mut Vec<u8>, emitted: &mut u64| {
            out.extend_from_slice(pending);
            last.clear();
            last.extend_from_slice(pending);
            pending.clear();
            *emitted += 1;
        };
        let mut flush = |out: &mut Vec<u8>| -> Result<()> {
            if out.len() >= cap {
                sink(out)?;
                out.clear();
            }
            Ok(())
        };
        match (enc, &self.last_range) {
            // float8_val: one bytes field, the last occurrence, one byte per element.
            (Encoding::Bytes, Some(r)) => {
                let mut c = Cursor::new(r.clone());
                while !c.at_end() && emitted < n {
                    pending.push(c.bytes(1)?[0]);
                    push(&mut pending, &mut out, &mut emitted);
                    flush(&mut out)?;
                }
            }
            (Encoding::Bytes, None) => {}
            _ => self.each_value(&mut |v| {
                match v {
                    Raw::Varint(x) => {
                        encode_varint_value(dtype, x, &mut pending);
                        push(&mut pending, &mut out, &mut emitted);
                    }
                    Raw::Fixed(b, w) => {
                        pending.extend_from_slice(&b[..w]);
                        if pending.len() >= w * per_element {
                            push(&mut pending, &mut out, &mut emitted);
                        }
                    }
                    Raw::Len(r) => {
                        let mut c = Cursor::new(r);
                        while !c.at_end() && emitted < n {
                            match enc {
                                Encoding::Fixed(w) => {
                                    pending.extend_from_slice(c.bytes(w)?);
                                    if pending.len() < w * per_element {
                                        continue;
                                    }
                                }
                                _ => encode_varint_value(dtype, c.varint()?, &mut pending),
                            }
                            push(&mut pending, &mut out, &mut emitted);
                            flush(&mut out)?;
                        }
                    }
                }
                flush(&mut out)?;
                Ok(emitted < n)
            })?,
        }
        // Fill the rest with the last value (or zeros): TensorFlow's splat rule.
        while emitted < n {
            out.extend_from_slice(&last);
            emitted += 1;
            if out.len() >= cap {
                check_interrupted()?;
                sink(&out)?;
                out.clear();
            }
        }
        if !out.is_empty() {
            sink(&out)?;
        }
        Ok(())
    }

    /// Streams the elements of a variable-length tensor (strings; serialized variant and
    /// resource messages) one at a time.
    pub fn read_strings(&self, sink: &mut ChunkSink) -> Result<()> {
        if self.dtype.item_size().is_some() {
            bail!("{} is not a variable-length dtype", self.dtype);
        }
        let n = self.elements;
        if let Some(content) = &self.content {
            // All lengths come first; a second cursor walks the payloads behind them.
            let mut lengths = Cursor::new(content.clone());
            let mut payload = Cursor::new(content.clone());
            for _ in 0..n {
                payload.varint()?;
            }
            for _ in 0..n {
                let len = lengths.varint()?;
                sink(payload.bytes(len as usize)?)?;
            }
            return Ok(());
        }
        // Typed fields: strings repeat the last value; variants and resources missing values
        // are default (empty) messages, as TensorFlow's C++ decoder makes them.
        let mut emitted = 0u64;
        self.each_value(&mut |v| {
            if let Raw::Len(r) = v {
                sink(&r.read_vec(0, r.len() as usize)?)?;
                emitted += 1;
            }
            Ok(emitted < n)
        })?;
        let repeat = match &self.last_range {
            Some(r) if self.dtype == DType::String => r.read_vec(0, r.len() as usize)?,
            _ => Vec::new(),
        };
        while emitted < n {
            if emitted.is_multiple_of(1 << 16) {
                check_interrupted()?;
            }
            sink(&repeat)?;
            emitted += 1;
        }
        Ok(())
    }

    pub fn meta(&self, name: String) -> TensorMeta {
        TensorMeta {
            name,
            dtype: self.dtype,
            shape: self.shape.clone(),
            kind: self.kind(),
            stored_bytes: self.stored_bytes,
            max_string_len: (self.dtype == DType::String).then_some(self.max_string_len),
            big_endian: false,
            ragged_rank: 0,
            facts: Default::default(),
        }
    }
}

/// One `int_val`/`int64_val`/`half_val`/... value as the dtype's element bytes, truncated like
/// the C++ cast TensorFlow applies.
fn encode_varint_value(d: DType, v: u64, out: &mut Vec<u8>) {
    use DType::*;
    match d {
        I8 | U8 | QInt8 | QUInt8 | I4 | U4 | I2 | U2 => out.push(v as u8),
        I16 | U16 | QInt16 | QUInt16 | F16 | BF16 => {
            out.extend_from_slice(&(v as u16).to_le_bytes())
        }
        I32 | QInt32 | U32 => out.extend_from_slice(&(v as u32).to_le_bytes()),
        I64 | U64 => out.extend_from_slice(&v.to_le_bytes()),
        Bool => out.push((v != 0) as u8),
        _ => {}
    }
}

/// A file holding one serialized TensorProto, named by its stem.
pub struct TensorProtoSource {
    path: String,
    files: Vec<PathBuf>,
    tensor: ScannedTensor,
    meta: TensorMeta,
}

impl TensorProtoSource {
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        name: String,
        max_fill: u64,
    ) -> Result<Self> {
        if data.is_empty() {
            bail!("the file is empty: not a TensorProto");
        }
        let tensor =
            ScannedTensor::scan(&data, max_fill).context("cannot read it as a TensorProto")?;
        let meta = tensor.meta(name);
        Ok(TensorProtoSource {
            path: path.to_string(),
            files,
            tensor,
            meta,
        })
    }
}

impl Source for TensorProtoSource {
    fn display_path(&self) -> &str {
        &self.path
    }
    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts {
            format: Some("tensorproto"),
            notes: &[],
        }
    }

    fn len(&self) -> usize {
        1
    }
    fn meta(&self, _index: usize) -> Result<TensorMeta> {
        Ok(self.meta.clone())
    }
    fn read_dense(&mut self, _index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        self.tensor.read_dense(chunk, sink)
    }
    fn read_strings(&mut self, _index: usize, sink: &mut ChunkSink) -> Result<()> {
        self.tensor.read_strings(sink)
    }
    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}

pub static READER: Reader = Reader {
    name: "tensorproto",
    about: "a serialized TensorProto (tf.io.serialize_tensor, tf.make_tensor_proto)",
    extensions: &[".pb", ".proto", ".tensorproto"],
    sniff,
    open,
};

/// A strict parse of the whole message says `Yes`; a start that could be a TensorProto's first
/// field says `Maybe` (so that a damaged TensorProto gets the TensorProto reader's error); text
/// is never a TensorProto.
fn sniff(input: &Input) -> Sniff {
    let Some(data) = input.protobuf_candidate() else {
        return Sniff::No;
    };
    if ScannedTensor::scan(data, DEFAULT_MAX_FILL_BYTES).is_ok() {
        Sniff::Yes
    } else if plausible(&input.head) {
        Sniff::Maybe
    } else {
        Sniff::No
    }
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(TensorProtoSource::open(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
        input.stem.clone(),
        opts.max_fill_bytes,
    )?))
}

/// True when `head` could start a TensorProto: a dtype or shape field first.
pub fn plausible(head: &[u8]) -> bool {
    matches!(varint(head), Some((key, _)) if key >> 3 >= 1 && key >> 3 <= 18 && key & 7 != 3 && key & 7 != 4)
}
