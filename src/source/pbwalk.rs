//! Walking the fields of a protobuf message that lives in a `FileRange`, for the readers of
//! protobuf containers of tensors (GraphDefs, ONNX models): each field's value is a varint or a
//! sub-range of the file, so that a nested message (a tensor) is located without being loaded.
//! Built on the cursor of `wire.rs`; used by `graphdef.rs` and `onnx.rs`.

use anyhow::{bail, Context, Result};

use crate::input::FileRange;
use crate::source::wire::Cursor;

/// One field value as it appears on the wire.
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
/// Groups (wire types 3 and 4) and field number 0 are errors, as is a field reaching past the
/// end of the range.
pub fn for_each_field(
    range: &FileRange,
    mut f: impl FnMut(u32, Value) -> Result<()>,
) -> Result<()> {
    let mut c = Cursor::new(range.clone());
    while !c.at_end() {
        let at = c.pos();
        let key = c.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            bail!("invalid field number {field} at offset {at}");
        }
        let field = field as u32;
        let value = match key & 7 {
            0 => Value::Varint(c.varint()?),
            1 => Value::Fixed64(c.take_range(8).with_context(|| at_offset(field, at))?),
            2 => {
                let len = c.varint()?;
                Value::Len(c.take_range(len).with_context(|| at_offset(field, at))?)
            }
            5 => Value::Fixed32(c.take_range(4).with_context(|| at_offset(field, at))?),
            w => bail!("unsupported wire type {w} for field {field} at offset {at}"),
        };
        f(field, value)?;
    }
    Ok(())
}

fn at_offset(field: u32, at: u64) -> String {
    format!("field {field} at offset {at}")
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

    #[test]
    fn walks_every_wire_type_and_refuses_groups_and_overruns() {
        // field 1 varint 150, field 2 "ab", field 3 fixed32, field 4 fixed64
        let mut m = vec![
            0x08, 0x96, 0x01, 0x12, 2, b'a', b'b', 0x1d, 1, 2, 3, 4, 0x21,
        ];
        m.extend_from_slice(&[9; 8]);
        let mut got = Vec::new();
        for_each_field(&FileRange::from_vec(m), |f, v| {
            got.push((f, v.wire()));
            if let Value::Varint(x) = v {
                assert_eq!(x, 150);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(1, 0), (2, 2), (3, 5), (4, 1)]);
        assert!(for_each_field(&FileRange::from_vec(vec![0x0b]), |_, _| Ok(())).is_err());
        assert!(for_each_field(&FileRange::from_vec(vec![0x12, 5, 1]), |_, _| Ok(())).is_err());
        assert!(for_each_field(&FileRange::from_vec(vec![0x00, 1]), |_, _| Ok(())).is_err());
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
    }
}
