//! The msgpack values of a Flax file, decoded one at a time for `mod.rs`'s walk: a bounded
//! [`Cursor`] over the file (markers, big-endian lengths, small names read into memory, byte
//! strings kept as ranges), and [`value`], which reads one value whole as a [`Node`]: the
//! extension types Flax writes (1: an array `(shape, dtype, bytes)`, 2: a complex number,
//! 3: a NumPy scalar), nil and unknown extensions as having no NumPy form.

use anyhow::{anyhow, bail, Context, Result};
use rmp::Marker;

use crate::container::cursor::Window;
use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::checked_elements;

/// Deepest nesting accepted (Python's own msgpack stops far earlier than a stack would).
pub(super) const MAX_DEPTH: usize = 512;

/// A parsed value; arrays and strings keep byte ranges, not bytes.
#[derive(Debug)]
pub(super) enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    /// A dense array: dtype, shape, and its bytes (several ranges for a chunked array); boxed,
    /// so that the scalars of a tree of a million leaves stay small.
    Array(Box<(DType, Vec<u64>, Vec<FileRange>)>),
    /// A str or bin scalar.
    Bytes(FileRange),
    Int(i128),
    Float(f64),
    Bool(bool),
    Complex(f64, f64),
    /// Nil or an unknown extension: no NumPy form.
    Unsupported(&'static str),
}

/// A bounded cursor over a range, read through a `container::cursor::Window`.
pub(super) struct Cursor<'a> {
    data: &'a FileRange,
    pub(super) pos: u64,
    pub(super) end: u64,
    win: Window,
}

impl<'a> Cursor<'a> {
    /// A cursor over `data[pos..end]`; its window never reads past `end`.
    pub(super) fn new(data: &'a FileRange, pos: u64, end: u64) -> Result<Cursor<'a>> {
        Ok(Cursor {
            data,
            pos,
            end,
            win: Window::new(data.slice(0, end)?, 64 << 10),
        })
    }

    pub(super) fn take(&mut self, n: u64) -> Result<u64> {
        let at = self.pos;
        match at.checked_add(n) {
            Some(e) if e <= self.end => {
                self.pos = e;
                Ok(at)
            }
            _ => bail!(
                "truncated: {n} bytes at offset {at} reach past the end ({})",
                self.end
            ),
        }
    }

    pub(super) fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let at = self.take(N as u64)?;
        let mut out = [0u8; N];
        self.win.read(at, &mut out)?;
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes::<1>()?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u64> {
        Ok(u16::from_be_bytes(self.bytes()?).into())
    }
    pub(super) fn u32(&mut self) -> Result<u64> {
        Ok(u32::from_be_bytes(self.bytes()?).into())
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.bytes()?))
    }

    pub(super) fn marker(&mut self) -> Result<Marker> {
        Ok(Marker::from_u8(self.u8()?))
    }

    /// The range of a str/bin payload of `len` bytes at the cursor, skipped.
    pub(super) fn range(&mut self, len: u64) -> Result<FileRange> {
        let at = self.take(len)?;
        self.data.slice(at, len)
    }

    /// Reads a small str/bin payload (a key, a dtype name) into memory.
    pub(super) fn small(&mut self, len: u64) -> Result<Vec<u8>> {
        if len > 4096 {
            bail!("a {len}-byte string where a short name was expected");
        }
        let at = self.take(len)?;
        self.data.read_vec(at, len as usize)
    }
}

fn str_len(c: &mut Cursor, m: Marker) -> Result<Option<u64>> {
    Ok(Some(match m {
        Marker::FixStr(n) => n.into(),
        Marker::Str8 | Marker::Bin8 => c.u8()?.into(),
        Marker::Str16 | Marker::Bin16 => c.u16()?,
        Marker::Str32 | Marker::Bin32 => c.u32()?,
        _ => return Ok(None),
    }))
}

pub(super) fn value(c: &mut Cursor, depth: usize) -> Result<Node> {
    if depth > MAX_DEPTH {
        bail!("values nest deeper than {MAX_DEPTH} levels");
    }
    let m = c.marker()?;
    if let Some(len) = str_len(c, m)? {
        return Ok(Node::Bytes(c.range(len)?));
    }
    Ok(match m {
        Marker::FixPos(n) => Node::Int(n.into()),
        Marker::FixNeg(n) => Node::Int(n.into()),
        Marker::U8 => Node::Int(c.u8()?.into()),
        Marker::U16 => Node::Int(c.u16()?.into()),
        Marker::U32 => Node::Int(c.u32()?.into()),
        Marker::U64 => Node::Int(c.u64()?.into()),
        Marker::I8 => Node::Int((c.u8()? as i8).into()),
        Marker::I16 => Node::Int((c.u16()? as u16 as i16).into()),
        Marker::I32 => Node::Int((c.u32()? as u32 as i32).into()),
        Marker::I64 => Node::Int((c.u64()? as i64).into()),
        Marker::F32 => Node::Float(f32::from_bits(c.u32()? as u32).into()),
        Marker::F64 => Node::Float(f64::from_bits(c.u64()?)),
        Marker::True => Node::Bool(true),
        Marker::False => Node::Bool(false),
        Marker::Null => Node::Unsupported("nil (None)"),
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let n = match m {
                Marker::FixMap(n) => n.into(),
                Marker::Map16 => c.u16()?,
                _ => c.u32()?,
            };
            let mut entries = Vec::new();
            for _ in 0..n {
                let k = key(c)?;
                let v = value(c, depth + 1).with_context(|| format!("under key '{k}'"))?;
                entries.push((k, v));
            }
            Node::Map(entries)
        }
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let n = array_len(c, m)?;
            let mut items = Vec::new();
            for i in 0..n {
                items.push(value(c, depth + 1).with_context(|| format!("in item {i}"))?);
            }
            Node::List(items)
        }
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => {
            let len = match m {
                Marker::FixExt1 => 1,
                Marker::FixExt2 => 2,
                Marker::FixExt4 => 4,
                Marker::FixExt8 => 8,
                Marker::FixExt16 => 16,
                Marker::Ext8 => c.u8()?.into(),
                Marker::Ext16 => c.u16()?,
                _ => c.u32()?,
            };
            let code = c.u8()? as i8;
            let start = c.take(len)?;
            let mut inner = Cursor::new(c.data, start, start + len)?;
            let node = match code {
                1 | 3 => ndarray(&mut inner)?,
                2 => complex(&mut inner)?,
                _ => return Ok(Node::Unsupported("an unknown msgpack extension")),
            };
            if inner.pos != inner.end {
                bail!("extension {code} holds trailing bytes");
            }
            node
        }
        Marker::Reserved => bail!("the reserved marker 0xc1"),
        _ => bail!("unexpected marker {m:?}"),
    })
}

pub(super) fn array_len(c: &mut Cursor, m: Marker) -> Result<u64> {
    Ok(match m {
        Marker::FixArray(n) => n.into(),
        Marker::Array16 => c.u16()?,
        Marker::Array32 => c.u32()?,
        _ => bail!("expected an array, found {m:?}"),
    })
}

/// A map key as a Python string: msgpack_restore keeps str keys, and ints (strict_map_key is
/// off) read as their decimal form once joined into a name.
pub(super) fn key(c: &mut Cursor) -> Result<String> {
    let m = c.marker()?;
    if let Some(len) = str_len(c, m)? {
        return Ok(String::from_utf8_lossy(&c.small(len)?).into_owned());
    }
    let n: i128 = match m {
        Marker::FixPos(n) => n.into(),
        Marker::FixNeg(n) => n.into(),
        Marker::U8 => c.u8()?.into(),
        Marker::U16 => c.u16()?.into(),
        Marker::U32 => c.u32()?.into(),
        Marker::U64 => c.u64()?.into(),
        Marker::I8 => (c.u8()? as i8).into(),
        Marker::I16 => (c.u16()? as u16 as i16).into(),
        Marker::I32 => (c.u32()? as u32 as i32).into(),
        Marker::I64 => (c.u64()? as i64).into(),
        _ => bail!("a map key of type {m:?}; only strings and integers are supported"),
    };
    Ok(n.to_string())
}

fn int(c: &mut Cursor) -> Result<u64> {
    match value(c, MAX_DEPTH)? {
        Node::Int(n) => u64::try_from(n).map_err(|_| anyhow!("a negative dimension {n}")),
        _ => bail!("a dimension that is not an integer"),
    }
}

/// Extension types 1 and 3: msgpack `(shape, dtype name, bytes)`.
fn ndarray(c: &mut Cursor) -> Result<Node> {
    let m = c.marker()?;
    if array_len(c, m)? != 3 {
        bail!("an ndarray extension that is not (shape, dtype, bytes)");
    }
    let m = c.marker()?;
    let rank = array_len(c, m).context("the ndarray shape")?;
    if rank > 64 {
        bail!("an ndarray of rank {rank}");
    }
    let mut shape = Vec::new();
    for _ in 0..rank {
        shape.push(int(c)?);
    }
    let m = c.marker()?;
    let name_len = str_len(c, m)?.ok_or_else(|| anyhow!("the ndarray dtype is not a string"))?;
    let name = String::from_utf8_lossy(&c.small(name_len)?).into_owned();
    let m = c.marker()?;
    let len = str_len(c, m)?.ok_or_else(|| anyhow!("the ndarray data is not a byte string"))?;
    let data = c.range(len)?;
    let dtype = numpy_dtype(&name);
    let Some(dtype) = dtype else {
        return Ok(Node::Unsupported(
            "an ndarray of a dtype with no NumPy form here",
        ));
    };
    let want = checked_elements(&shape)?
        .checked_mul(dtype.item_size().unwrap_or(1) as u64)
        .ok_or_else(|| anyhow!("the ndarray shape {shape:?} overflows"))?;
    if want != len {
        bail!("an ndarray of shape {shape:?} and dtype {name} needs {want} bytes, but holds {len}");
    }
    Ok(Node::Array(Box::new((dtype, shape, vec![data]))))
}

/// NumPy's `dtype.name` of the fixed-size types (with ml_dtypes' bfloat16, float8 and int4).
fn numpy_dtype(name: &str) -> Option<DType> {
    DType::ALL.iter().copied().find(|d| {
        d.name() == name
            && d.item_size().is_some()
            && !matches!(
                d,
                DType::QInt8 | DType::QUInt8 | DType::QInt16 | DType::QUInt16 | DType::QInt32
            )
    })
}

/// Extension type 2: msgpack `(real, imag)`.
fn complex(c: &mut Cursor) -> Result<Node> {
    let m = c.marker()?;
    if array_len(c, m)? != 2 {
        bail!("a complex extension that is not (real, imag)");
    }
    let mut part = || -> Result<f64> {
        Ok(match value(c, MAX_DEPTH)? {
            Node::Float(f) => f,
            Node::Int(i) => i as f64,
            _ => bail!("a complex part that is not a number"),
        })
    };
    let (re, im) = (part()?, part()?);
    Ok(Node::Complex(re, im))
}
