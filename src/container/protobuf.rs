//! The one protobuf field walker. Every reader of protobuf payloads (TensorProto, GraphDef,
//! ONNX, TensorBoard events, `tf.train.Example` records, checkpoint bundles) walks fields
//! here, under one rule for keys (field numbers 1 to 2^29 - 1, as protobuf itself allows;
//! wire types 0, 1, 2 and 5, groups refused) and one for lengths (a field never reaches past
//! the end of its message), so that no two readers disagree on what a malformed message is.
//!
//! Two walks share those rules:
//! - [`Fields`], over a byte slice (a record already in memory): the fast path of the Example
//!   reader, which walks every field of millions of records without allocating;
//! - [`RangeFields`] and [`for_each_field`], over a `FileRange`, through the buffered
//!   [`Cursor`] (a `cursor::Window`): a nested message (a multi-GiB `tensor_content`) is
//!   located as a sub-range without being loaded. An in-memory range is read in place.
//!
//! Knows nothing of any message type; the readers in `source/` give the field numbers their
//! meaning.

use anyhow::{bail, Result};

use super::cursor::Window;
use crate::input::FileRange;

/// The largest field number protobuf allows.
pub const MAX_FIELD: u64 = (1 << 29) - 1;

/// Decodes a varint at the start of `b`; returns the value and its length.
#[inline]
pub fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return None; // more than 64 bits
            }
            return Some((v, i + 1));
        }
    }
    None
}

/// The rule for a field key at offset `at`: its field number and wire type.
#[inline]
pub fn key(key: u64, at: u64) -> Result<(u32, u8)> {
    let (number, wire) = (key >> 3, (key & 7) as u8);
    // numbers 1 ..= MAX_FIELD in one comparison
    if number.wrapping_sub(1) >= MAX_FIELD || !matches!(wire, 0 | 1 | 2 | 5) {
        return Err(key_error(key, at));
    }
    Ok((number as u32, wire))
}

#[cold]
#[inline(never)]
fn key_error(key: u64, at: u64) -> anyhow::Error {
    let (number, wire) = (key >> 3, key & 7);
    if number == 0 || number > MAX_FIELD {
        anyhow::anyhow!("invalid field number {number} at offset {at}")
    } else {
        anyhow::anyhow!("unsupported wire type {wire} for field {number} at offset {at}")
    }
}

/// The rule for a value's length: it must fit in the `left` bytes of the message.
#[inline]
fn fits(number: u32, at: u64, len: u64, left: u64) -> Result<()> {
    if len > left {
        return Err(length_error(number, at, len, left));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn length_error(number: u32, at: u64, len: u64, left: u64) -> anyhow::Error {
    anyhow::anyhow!("field {number} at offset {at} claims {len} bytes, which reach past the end of the message ({left} remain)")
}

/// One field value of a message in memory.
#[derive(Clone, Copy, Debug)]
pub enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Len(&'a [u8]),
    Fixed32([u8; 4]),
}

/// Walks the top-level fields of a message held in a slice.
pub struct Fields<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Fields { b, pos: 0 }
    }

    /// Where the next field starts.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The next field's number and value; `None` at the end of the message. Written for
    /// speed (the Example reader walks every field of every record twice): the checks are
    /// those of [`key`] and of the length rule, their errors built out of line.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(u32, Field<'a>)>> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let at = self.pos;
        let Some((k, n)) = varint(&self.b[at..]) else {
            return Err(malformed("field key", None, at));
        };
        // `key`'s rule, spelled out for speed: numbers 1 ..= MAX_FIELD, wire types 0, 1, 2, 5
        if (k >> 3).wrapping_sub(1) >= MAX_FIELD {
            return Err(key_error(k, at as u64));
        }
        let number = (k >> 3) as u32;
        self.pos += n;
        let rest = &self.b[self.pos..];
        let field = match k & 7 {
            0 => {
                let Some((v, m)) = varint(rest) else {
                    return Err(malformed("varint", Some(number), at));
                };
                self.pos += m;
                Field::Varint(v)
            }
            1 => {
                let Some(b) = rest.first_chunk::<8>() else {
                    return Err(length_error(number, at as u64, 8, rest.len() as u64));
                };
                self.pos += 8;
                Field::Fixed64(*b)
            }
            2 => {
                let Some((len, m)) = varint(rest) else {
                    return Err(malformed("length", Some(number), at));
                };
                if len > (rest.len() - m) as u64 {
                    return Err(length_error(
                        number,
                        at as u64,
                        len,
                        (rest.len() - m) as u64,
                    ));
                }
                let start = self.pos + m;
                self.pos = start + len as usize;
                Field::Len(&self.b[start..self.pos])
            }
            5 => {
                let Some(b) = rest.first_chunk::<4>() else {
                    return Err(length_error(number, at as u64, 4, rest.len() as u64));
                };
                self.pos += 4;
                Field::Fixed32(*b)
            }
            _ => return Err(key_error(k, at as u64)),
        };
        Ok(Some((number, field)))
    }
}

#[cold]
#[inline(never)]
fn malformed(what: &str, field: Option<u32>, at: usize) -> anyhow::Error {
    match field {
        Some(n) => anyhow::anyhow!("malformed {what} of field {n} at offset {at}"),
        None => anyhow::anyhow!("malformed {what} at offset {at}"),
    }
}

/// The buffered sequential reader over a `FileRange` that the range walk is built on: varints,
/// small byte runs, and sub-ranges skipped over.
pub struct Cursor {
    win: Window,
    pos: u64,
}

/// The cursor's read window.
const CURSOR_BUF: usize = 64 * 1024;

impl Cursor {
    pub fn new(range: FileRange) -> Cursor {
        Cursor {
            win: Window::new(range, CURSOR_BUF),
            pos: 0,
        }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.win.len()
    }

    pub fn remaining(&self) -> u64 {
        self.win.len() - self.pos
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64> {
        let pos = self.pos;
        let avail = self.win.ahead(pos, 10)?;
        match varint(avail) {
            Some((v, n)) => {
                self.pos += n as u64;
                Ok(v)
            }
            None if avail.len() < 10 && avail.last().is_none_or(|b| b & 0x80 != 0) => {
                bail!("truncated varint at offset {pos}")
            }
            None => bail!("malformed varint at offset {pos}"),
        }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&[u8]> {
        if (n as u64) > self.remaining() {
            bail!(
                "unexpected end of data at offset {}: {n} bytes wanted, {} left",
                self.pos,
                self.remaining()
            );
        }
        let pos = self.pos;
        self.pos += n as u64;
        self.win.get(pos, n)
    }

    /// A sub-range of `n` bytes starting here; advances past it.
    pub fn take_range(&mut self, n: u64) -> Result<FileRange> {
        let r = self.win.range().slice(self.pos, n)?;
        self.pos += n;
        Ok(r)
    }
}

/// One field value of a message in a `FileRange`, as [`RangeFields`] finds it.
#[derive(Clone, Debug)]
pub enum Raw {
    Varint(u64),
    /// A fixed-width value (wire types 1 and 5): its little-endian bytes and width.
    Fixed([u8; 8], usize),
    /// A length-delimited payload, located.
    Len(FileRange),
}

/// Walks the top-level fields of a message in a `FileRange`, one at a time.
pub struct RangeFields {
    c: Cursor,
}

impl RangeFields {
    pub fn new(range: &FileRange) -> RangeFields {
        RangeFields {
            c: Cursor::new(range.clone()),
        }
    }

    /// The next field: its number, its wire type, its value, and its offset.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(u32, u8, Raw, u64)>> {
        let c = &mut self.c;
        if c.at_end() {
            return Ok(None);
        }
        let at = c.pos();
        let (number, wire) = key(c.varint()?, at)?;
        let value = match wire {
            0 => Raw::Varint(c.varint()?),
            1 | 5 => {
                let w = if wire == 1 { 8 } else { 4 };
                fits(number, at, w as u64, c.remaining())?;
                let mut b = [0u8; 8];
                b[..w].copy_from_slice(c.bytes(w)?);
                Raw::Fixed(b, w)
            }
            _ => {
                let len = c.varint()?;
                fits(number, at, len, c.remaining())?;
                Raw::Len(c.take_range(len)?)
            }
        };
        Ok(Some((number, wire, value, at)))
    }
}

/// One field value as it appears on the wire, every payload a sub-range of the message.
#[derive(Clone, Debug)]
pub enum Value {
    Varint(u64),
    /// A fixed 32- or 64-bit value, or a length-delimited payload (wire type 2).
    Fixed32(FileRange),
    Fixed64(FileRange),
    Len(FileRange),
}

impl Value {
    /// The wire type number, for messages.
    pub fn wire(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Len(_) => 2,
            Value::Fixed32(_) => 5,
        }
    }
}

/// Calls `f(field, value)` for every top-level field of the message in `range`, in order.
pub fn for_each_field(
    range: &FileRange,
    mut f: impl FnMut(u32, Value) -> Result<()>,
) -> Result<()> {
    let mut fields = RangeFields::new(range);
    while let Some((number, _, raw, _)) = fields.next()? {
        let value = match raw {
            Raw::Varint(v) => Value::Varint(v),
            Raw::Len(r) => Value::Len(r),
            Raw::Fixed(_, w) => {
                let r = range.slice(fields.c.pos() - w as u64, w as u64)?;
                match w {
                    8 => Value::Fixed64(r),
                    _ => Value::Fixed32(r),
                }
            }
        };
        f(number, value)?;
    }
    Ok(())
}

/// The longest name or small string field read into memory.
pub const MAX_STRING: u64 = 1 << 20;

/// A small length-delimited field (a name, a key) as text; invalid UTF-8 is replaced.
pub fn string(r: &FileRange) -> Result<String> {
    if r.len() > MAX_STRING {
        bail!("a name field of {} bytes is implausibly long", r.len());
    }
    Ok(String::from_utf8_lossy(&r.read_vec(0, r.len() as usize)?).into_owned())
}

/// Expects a length-delimited value.
pub fn len(field: u32, what: &str, v: Value) -> Result<FileRange> {
    match v {
        Value::Len(r) => Ok(r),
        v => bail!(
            "field {field} ({what}) has wire type {}, not a length-delimited value",
            v.wire()
        ),
    }
}

/// Calls `f` for each varint of a repeated integer field, packed or not.
pub fn each_varint(v: Value, mut f: impl FnMut(u64) -> Result<()>) -> Result<()> {
    match v {
        Value::Varint(x) => f(x),
        Value::Len(r) => {
            let mut c = Cursor::new(r);
            while !c.at_end() {
                f(c.varint()?)?;
            }
            Ok(())
        }
        v => bail!("wire type {} where integers were expected", v.wire()),
    }
}

/// The number of values in a packed repeated varint field (one per byte without the
/// continuation bit), read in 64 KiB pieces; a field whose last value is cut off is an error.
pub fn count_packed_varints(r: &FileRange) -> Result<u64> {
    let mut count = 0u64;
    r.stream(1, 1 << 16, &mut |c: &[u8]| {
        count += c.iter().filter(|&&b| b < 0x80).count() as u64;
        Ok(())
    })?;
    let mut last = [0u8];
    if !r.is_empty() {
        r.read_at(r.len() - 1, &mut last)?;
        if last[0] >= 0x80 {
            bail!("a packed varint field ends in the middle of a value");
        }
    }
    Ok(count)
}

/// True when every top-level field of `range` parses and fits `wire_of(field)` (`None`: any
/// wire type); at most `max_fields` fields are looked at, so that sniffing stays cheap.
pub fn fields_fit(
    range: &FileRange,
    max_fields: usize,
    mut wire_of: impl FnMut(u32) -> Option<u8>,
    mut seen: impl FnMut(u32, &Value),
) -> bool {
    let mut n = 0usize;
    let walk = for_each_field(range, |field, v| {
        if wire_of(field).is_some_and(|w| w != v.wire()) {
            bail!("wrong wire type");
        }
        seen(field, &v);
        n += 1;
        if n >= max_fields {
            bail!(Stop);
        }
        Ok(())
    });
    match walk {
        Ok(()) => true,
        Err(e) => e.downcast_ref::<Stop>().is_some(),
    }
}

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop")
    }
}

impl std::error::Error for Stop {}

#[cfg(test)]
mod tests {
    use super::*;

    /// field 1 varint 150, field 2 "ab", field 3 fixed32, field 4 fixed64
    fn message() -> Vec<u8> {
        let mut m = vec![
            0x08, 0x96, 0x01, 0x12, 2, b'a', b'b', 0x1d, 1, 2, 3, 4, 0x21,
        ];
        m.extend_from_slice(&[9; 8]);
        m
    }

    fn walk_range(m: Vec<u8>) -> Result<Vec<(u32, u8)>> {
        let mut got = Vec::new();
        for_each_field(&FileRange::from_vec(m), |f, v| {
            got.push((f, v.wire()));
            Ok(())
        })?;
        Ok(got)
    }

    fn walk_slice(m: &[u8]) -> Result<Vec<(u32, u8)>> {
        let mut got = Vec::new();
        let mut fields = Fields::new(m);
        while let Some((f, v)) = fields.next()? {
            let wire = match v {
                Field::Varint(x) => {
                    assert_eq!(x, 150);
                    0
                }
                Field::Fixed64(b) => {
                    assert_eq!(b, [9; 8]);
                    1
                }
                Field::Len(b) => {
                    assert_eq!(b, b"ab");
                    2
                }
                Field::Fixed32(b) => {
                    assert_eq!(b, [1, 2, 3, 4]);
                    5
                }
            };
            got.push((f, wire));
        }
        Ok(got)
    }

    #[test]
    fn both_walks_read_every_wire_type_alike() {
        let want = vec![(1, 0), (2, 2), (3, 5), (4, 1)];
        assert_eq!(walk_range(message()).unwrap(), want);
        assert_eq!(walk_slice(&message()).unwrap(), want);
    }

    #[test]
    fn both_walks_refuse_the_same_malformed_messages() {
        let max = MAX_FIELD << 3; // field 2^29 - 1, varint
        let mut key = Vec::new();
        prost::encoding::encode_varint(max, &mut key);
        let mut over = Vec::new();
        prost::encoding::encode_varint((MAX_FIELD + 1) << 3, &mut over);
        let cases: [(Vec<u8>, bool); 8] = [
            ([key.clone(), vec![1]].concat(), true),
            ([over.clone(), vec![1]].concat(), false), // field number 2^29
            (vec![0x00, 1], false),                    // field number 0
            (vec![0x0b], false),                       // a group
            (vec![0x12, 5, 1], false),                 // length past the end
            (vec![0x1d, 1, 2], false),                 // fixed32 cut off
            (vec![0x21, 1], false),                    // fixed64 cut off
            (vec![0x08, 0x80], false),                 // varint cut off
        ];
        for (m, ok) in cases {
            let slice = walk_slice_any(&m);
            let range = walk_range(m.clone());
            assert_eq!(slice.is_ok(), ok, "{m:?}: {slice:?}");
            assert_eq!(range.is_ok(), ok, "{m:?}: {range:?}");
        }
        let e = walk_range([over, vec![1]].concat()).unwrap_err();
        assert!(
            e.to_string().contains("invalid field number 536870912"),
            "{e}"
        );
    }

    fn walk_slice_any(m: &[u8]) -> Result<usize> {
        let mut fields = Fields::new(m);
        let mut n = 0;
        while fields.next()?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    #[test]
    fn packed_and_unpacked_integers_read_alike() {
        let mut a = Vec::new();
        each_varint(Value::Len(FileRange::from_vec(vec![1, 0x96, 0x01])), |x| {
            a.push(x);
            Ok(())
        })
        .unwrap();
        each_varint(Value::Varint(7), |x| {
            a.push(x);
            Ok(())
        })
        .unwrap();
        assert_eq!(a, vec![1, 150, 7]);
        assert_eq!(
            count_packed_varints(&FileRange::from_vec(vec![1, 0x96, 0x01])).unwrap(),
            2
        );
        assert!(count_packed_varints(&FileRange::from_vec(vec![1, 0x96])).is_err());
    }
}
