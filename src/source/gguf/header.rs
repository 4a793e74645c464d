//! GGUF header parsing: magic, version (2 and 3, either byte order as `GGUFReader` detects it),
//! the metadata key/values (every value type, arrays nested to any sane depth), the tensor
//! infos and the data section's start (`general.alignment`, default 32, a power of two).
//!
//! Hand-written because no maintained Rust crate parses GGUF with bounded reads (the crates
//! that exist read the whole header into memory on trust, or tie parsing to an inference
//! engine). Every count and length is checked against the bytes left in the file before
//! anything is allocated or skipped: a tensor count or string length that cannot fit is an
//! error, never an allocation. Reads go through a `container::cursor::Window` over the `FileRange`.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::container::cursor::Window;
use crate::input::FileRange;

pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Nested arrays deeper than this are refused (GGUF writers produce depth 1 or 2).
const MAX_DEPTH: u32 = 16;
const WINDOW: usize = 64 << 10;

/// One tensor info as the header stores it (dimensions innermost first).
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    /// Relative to the start of the data section.
    pub offset: u64,
}

/// Everything the header says.
#[derive(Debug)]
pub struct Header {
    pub version: u32,
    /// The file is in the other byte order (big-endian), as `GGUFReader.byte_order == 'S'`.
    pub swapped: bool,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_start: u64,
    pub tensors: Vec<TensorInfo>,
    /// The metadata, when asked for, in file order.
    pub metadata: Option<Vec<(String, Value)>>,
}

/// A bounded cursor over the file, read through a `container::cursor::Window`.
struct Cursor {
    win: Window,
    pos: u64,
    swapped: bool,
}

impl Cursor {
    fn new(data: &FileRange, pos: u64, swapped: bool) -> Cursor {
        Cursor {
            win: Window::new(data.clone(), WINDOW),
            pos,
            swapped,
        }
    }

    fn left(&self) -> u64 {
        self.win.len() - self.pos
    }

    fn need(&self, n: u64, what: &str) -> Result<()> {
        if n > self.left() {
            bail!(
                "truncated header: {what} needs {n} bytes at offset {}, only {} left in the file",
                self.pos,
                self.left()
            );
        }
        Ok(())
    }

    fn read(&mut self, out: &mut [u8], what: &str) -> Result<()> {
        let n = out.len();
        self.need(n as u64, what)?;
        self.win.read(self.pos, out)?;
        self.pos += n as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        self.need(n, what)?;
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.read(&mut b, what)?;
        if self.swapped {
            b.reverse();
        }
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed string's bytes, the length checked against the file first.
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>> {
        let len = self.u64(what)?;
        self.need(len, what)?;
        let mut v = vec![0u8; len as usize];
        self.read(&mut v, what)?;
        Ok(v)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        String::from_utf8(self.bytes(what)?)
            .ok()
            .with_context(|| format!("{what} at offset {at} is not valid UTF-8"))
    }
}

/// GGUF metadata value types (`GGUFValueType`).
const STRING: u32 = 8;
const ARRAY: u32 = 9;

/// The encoded size of a scalar value type, `None` for strings, arrays and unknown types.
fn scalar_size(t: u32) -> Option<u64> {
    match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn type_name(t: u32) -> &'static str {
    match t {
        0 => "uint8",
        1 => "int8",
        2 => "uint16",
        3 => "int16",
        4 => "uint32",
        5 => "int32",
        6 => "float32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "uint64",
        11 => "int64",
        12 => "float64",
        _ => "unknown",
    }
}

/// The fewest bytes one element of type `t` can take, for bounding array lengths.
fn min_size(t: u32) -> u64 {
    match t {
        STRING => 8,
        ARRAY => 12,
        t => scalar_size(t).unwrap_or(1),
    }
}

fn scalar_json(t: u32, b: &[u8]) -> Value {
    let f = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    match t {
        0 => b[0].into(),
        1 => (b[0] as i8).into(),
        2 => u16::from_le_bytes([b[0], b[1]]).into(),
        3 => i16::from_le_bytes([b[0], b[1]]).into(),
        4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]).into(),
        5 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]).into(),
        6 => f(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        7 => (b[0] != 0).into(),
        10 => u64::from_le_bytes(b[..8].try_into().unwrap_or_default()).into(),
        11 => i64::from_le_bytes(b[..8].try_into().unwrap_or_default()).into(),
        _ => f(f64::from_le_bytes(b[..8].try_into().unwrap_or_default())),
    }
}

/// Reads (or, with `keep` false, validates and skips) one value of type `t`.
fn value(c: &mut Cursor, t: u32, key: &str, keep: bool, depth: u32) -> Result<Option<Value>> {
    if let Some(size) = scalar_size(t) {
        if !keep {
            c.skip(size, key)?;
            return Ok(None);
        }
        let mut b = [0u8; 8];
        let b = &mut b[..size as usize];
        c.read(b, key)?;
        if c.swapped {
            b.reverse();
        }
        return Ok(Some(scalar_json(t, b)));
    }
    match t {
        STRING if keep => {
            let s = c.bytes(key)?;
            Ok(Some(String::from_utf8_lossy(&s).into_owned().into()))
        }
        STRING => {
            let len = c.u64(key)?;
            c.skip(len, key)?;
            Ok(None)
        }
        ARRAY => {
            if depth >= MAX_DEPTH {
                bail!("metadata '{key}': arrays nested deeper than {MAX_DEPTH} levels");
            }
            let item = c.u32(key)?;
            let len = c.u64(key)?;
            if scalar_size(item).is_none() && item != STRING && item != ARRAY {
                bail!("metadata '{key}': unknown array element type {item}");
            }
            let bytes = len.checked_mul(min_size(item));
            if bytes.is_none_or(|b| b > c.left()) {
                bail!(
                    "metadata '{key}': an array of {len} {} elements cannot fit in the {} bytes left in the file",
                    type_name(item),
                    c.left()
                );
            }
            if let (false, Some(size)) = (keep, scalar_size(item)) {
                c.skip(len * size, key)?;
                return Ok(None);
            }
            let mut out = Vec::new();
            for _ in 0..len {
                let v = value(c, item, key, keep, depth + 1)?;
                if let Some(v) = v {
                    out.push(v);
                }
            }
            Ok(keep.then_some(Value::Array(out)))
        }
        t => bail!("metadata '{key}': unknown value type {t}"),
    }
}

/// Writes the header's metadata as `list --json --metadata` prints it: the object
/// `{"alignment", "byte_order", "data_offset", "metadata": {key: value}, "version"}` with the keys
/// in serde_json's sorted order and the values as [`parse`] gives them, each value streamed from
/// the file as it is written. Memory holds the key names and one scalar or string at a time,
/// never a whole array, so a 1 MB array of bytes costs nothing per element.
pub fn write_json(data: &FileRange, out: &mut dyn std::io::Write) -> Result<()> {
    let h = parse(data, false)?; // validates every count and length first
    let mut c = Cursor::new(data, 16, h.swapped); // past the magic, version, tensor count
    let kv_count = c.u64("key/value count")?;
    let mut keys = Vec::new();
    for _ in 0..kv_count {
        let key = c.string("metadata key")?;
        let at = c.pos;
        let t = c.u32(&key)?;
        value(&mut c, t, &key, false, 0)?;
        keys.push((key, at));
    }
    keys.sort();
    let mut put = |b: &[u8]| out.write_all(b).map_err(anyhow::Error::new);
    let json = |v: &Value| serde_json::to_vec(v).map_err(anyhow::Error::new);
    put(format!(
        "{{\"alignment\":{},\"byte_order\":\"{}\",\"data_offset\":{},\"metadata\":{{",
        h.alignment,
        if h.swapped { "big" } else { "little" },
        h.data_start
    )
    .as_bytes())?;
    for (i, (key, at)) in keys.iter().enumerate() {
        put(if i == 0 { b"" } else { b"," })?;
        put(&json(&Value::from(key.as_str()))?)?;
        put(b":")?;
        c.pos = *at;
        let t = c.u32(key)?;
        write_value(&mut c, t, key, 0, &mut put)?;
    }
    put(format!("}},\"version\":{}}}", h.version).as_bytes())
}

/// Writes one value (validated by [`parse`] already) as JSON, arrays element by element.
fn write_value(
    c: &mut Cursor,
    t: u32,
    key: &str,
    depth: u32,
    put: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    if t != ARRAY {
        let v = value(c, t, key, true, depth)?.unwrap_or(Value::Null);
        return put(&serde_json::to_vec(&v)?);
    }
    if depth >= MAX_DEPTH {
        bail!("metadata '{key}': arrays nested deeper than {MAX_DEPTH} levels");
    }
    let item = c.u32(key)?;
    let len = c.u64(key)?;
    put(b"[")?;
    for i in 0..len {
        if i % (1 << 16) == 0 {
            crate::error::check_interrupted()?;
        }
        put(if i == 0 { b"" } else { b"," })?;
        write_value(c, item, key, depth + 1, put)?;
    }
    put(b"]")
}

/// Parses the header of `data`. With `keep_metadata`, the key/values are returned as JSON
/// values (strings decoded lossily); otherwise they are only validated and skipped.
pub fn parse(data: &FileRange, keep_metadata: bool) -> Result<Header> {
    let mut c = Cursor::new(data, 0, false);
    let mut magic = [0u8; 4];
    if data.len() < 4 {
        bail!("not a GGUF file: {} bytes is too short", data.len());
    }
    c.read(&mut magic, "magic")?;
    if &magic != b"GGUF" {
        bail!("not a GGUF file: the magic is {magic:02x?}, not \"GGUF\"");
    }
    let raw = c.array::<4>("version")?;
    let mut version = u32::from_le_bytes(raw);
    if version & 0xFFFF == 0 {
        // The other byte order, as GGUFReader decides it.
        c.swapped = true;
        version = version.swap_bytes();
    }
    if version != 2 && version != 3 {
        bail!("GGUF version {version} is not supported (versions 2 and 3 are)");
    }
    let tensor_count = c.u64("tensor count")?;
    let kv_count = c.u64("key/value count")?;
    // A tensor info takes at least 24 bytes, a key/value at least 13.
    let least = (tensor_count as u128) * 24 + (kv_count as u128) * 13;
    if least > c.left() as u128 {
        bail!(
            "the tensor count ({tensor_count}) and key/value count ({kv_count}) cannot fit in the {} bytes left in the file",
            c.left()
        );
    }

    let mut alignment = DEFAULT_ALIGNMENT;
    let mut metadata = keep_metadata.then(Vec::new);
    let mut keys = std::collections::HashSet::new();
    for _ in 0..kv_count {
        let key = c.string("metadata key")?;
        if !keys.insert(key.clone()) {
            bail!("metadata key '{key}' appears twice");
        }
        let t = c.u32(&key)?;
        if key == "general.alignment" {
            if t != 4 {
                bail!("general.alignment has type {}, not uint32", type_name(t));
            }
            alignment = u64::from(c.u32(&key)?);
            if alignment == 0 || !alignment.is_power_of_two() {
                bail!("general.alignment is {alignment}, not a non-zero power of two");
            }
            if let Some(m) = metadata.as_mut() {
                m.push((key, alignment.into()));
            }
            continue;
        }
        let v = value(&mut c, t, &key, keep_metadata, 0)?;
        if let (Some(m), Some(v)) = (metadata.as_mut(), v) {
            m.push((key, v));
        }
    }

    if (tensor_count as u128) * 24 > c.left() as u128 {
        bail!(
            "the tensor count ({tensor_count}) cannot fit in the {} bytes left in the file",
            c.left()
        );
    }
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut names = std::collections::HashSet::new();
    for i in 0..tensor_count {
        let name = c.string(&format!("the name of tensor {i}"))?;
        let what = format!("tensor '{name}'");
        let n_dims = c.u32(&what)?;
        c.need(u64::from(n_dims) * 8, &what)?;
        let dims = (0..n_dims)
            .map(|_| c.u64(&what))
            .collect::<Result<Vec<_>>>()?;
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        if !names.insert(name.clone()) {
            bail!("tensor name '{name}' appears twice");
        }
        tensors.push(TensorInfo {
            name,
            dims,
            type_id,
            offset,
        });
    }
    let data_start = c.pos.div_ceil(alignment) * alignment;
    Ok(Header {
        version,
        swapped: c.swapped,
        alignment,
        data_start,
        tensors,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed JSON is the JSON of the values `parse` materialises, for every fixture.
    #[test]
    fn streamed_metadata_is_the_parsed_metadata_as_json() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/gguf");
        let mut checked = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "gguf") {
                continue;
            }
            let data = FileRange::from_vec(std::fs::read(&path).unwrap());
            let Ok(h) = parse(&data, true) else { continue };
            let map: serde_json::Map<String, Value> = h.metadata.unwrap().into_iter().collect();
            let want = serde_json::json!({
                "version": h.version,
                "byte_order": if h.swapped { "big" } else { "little" },
                "alignment": h.alignment,
                "data_offset": h.data_start,
                "metadata": map,
            });
            let mut got = Vec::new();
            write_json(&data, &mut got).unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                want.to_string(),
                "{path:?}"
            );
            checked += 1;
        }
        assert!(checked >= 3, "{checked} fixtures");
    }

    fn gguf(version: u32, kvs: &[u8], n_kv: u64, tensors: &[u8], n_t: u64) -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend(version.to_le_bytes());
        v.extend(n_t.to_le_bytes());
        v.extend(n_kv.to_le_bytes());
        v.extend(kvs);
        v.extend(tensors);
        v
    }

    fn kv(key: &str, t: u32, val: &[u8]) -> Vec<u8> {
        let mut v = (key.len() as u64).to_le_bytes().to_vec();
        v.extend(key.as_bytes());
        v.extend(t.to_le_bytes());
        v.extend(val);
        v
    }

    fn parse_bytes(b: Vec<u8>) -> Result<Header> {
        parse(&FileRange::from_vec(b), true)
    }

    #[test]
    fn reads_metadata_of_every_kind_and_the_default_alignment() {
        let mut kvs = kv("a", 8, &[2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']);
        let mut arr = 5u32.to_le_bytes().to_vec();
        arr.extend(2u64.to_le_bytes());
        arr.extend((-1i32).to_le_bytes());
        arr.extend(7i32.to_le_bytes());
        kvs.extend(kv("b", 9, &arr));
        kvs.extend(kv("c", 7, &[1]));
        let h = parse_bytes(gguf(3, &kvs, 3, &[], 0)).unwrap();
        let m = h.metadata.unwrap();
        assert_eq!(m[0], ("a".into(), "hi".into()));
        assert_eq!(m[1], ("b".into(), serde_json::json!([-1, 7])));
        assert_eq!(m[2], ("c".into(), true.into()));
        assert_eq!(h.alignment, 32);
        assert_eq!(h.data_start, 96); // 24 + 23 + 33 + 14 header bytes, rounded up to 32
    }

    #[test]
    fn refuses_counts_and_lengths_that_cannot_fit() {
        let e = parse_bytes(gguf(3, &[], 0, &[], u64::MAX)).unwrap_err();
        assert!(format!("{e:#}").contains("cannot fit"), "{e:#}");
        let e = parse_bytes(gguf(3, &kv("k", 8, &u64::MAX.to_le_bytes()), 1, &[], 0)).unwrap_err();
        assert!(format!("{e:#}").contains("truncated"), "{e:#}");
        let mut arr = 4u32.to_le_bytes().to_vec();
        arr.extend((1u64 << 62).to_le_bytes());
        let e = parse_bytes(gguf(3, &kv("k", 9, &arr), 1, &[], 0)).unwrap_err();
        assert!(format!("{e:#}").contains("cannot fit"), "{e:#}");
    }

    #[test]
    fn refuses_bad_alignment_versions_and_duplicates() {
        let e = parse_bytes(gguf(
            3,
            &kv("general.alignment", 4, &48u32.to_le_bytes()),
            1,
            &[],
            0,
        ));
        assert!(format!("{:#}", e.unwrap_err()).contains("power of two"));
        let e = parse_bytes(gguf(
            3,
            &kv("general.alignment", 5, &64u32.to_le_bytes()),
            1,
            &[],
            0,
        ));
        assert!(format!("{:#}", e.unwrap_err()).contains("not uint32"));
        let e = parse_bytes(gguf(1, &[], 0, &[], 0));
        assert!(format!("{:#}", e.unwrap_err()).contains("version 1"));
        let mut kvs = kv("x", 0, &[1]);
        kvs.extend(kv("x", 0, &[2]));
        let e = parse_bytes(gguf(3, &kvs, 2, &[], 0));
        assert!(format!("{:#}", e.unwrap_err()).contains("twice"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut arr = Vec::new();
        for _ in 0..100 {
            arr.extend(9u32.to_le_bytes());
            arr.extend(1u64.to_le_bytes());
        }
        arr.extend(0u32.to_le_bytes());
        arr.extend(0u64.to_le_bytes());
        let e = parse_bytes(gguf(3, &kv("k", 9, &arr), 1, &[], 0));
        assert!(format!("{:#}", e.unwrap_err()).contains("nested"));
    }
}
