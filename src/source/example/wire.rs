//! The protobuf walk of `tf.train.Example` / `SequenceExample` records for `example`: visits
//! map entries and list values in place, without allocating, validating every length against
//! the bytes present. Messages (field numbers from tensorflow/core/example/*.proto):
//!
//! ```text
//! Example         { Features features = 1; }
//! SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
//! Features        { map<string, Feature> feature = 1; }          // entry: key = 1, value = 2
//! FeatureLists    { map<string, FeatureList> feature_list = 1; } // entry: key = 1, value = 2
//! FeatureList     { repeated Feature feature = 1; }
//! Feature         { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
//!                                Int64List int64_list = 3; } }
//! BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
//! Int64List { repeated int64 value = 1 [packed]; }
//! ```
//!
//! An Example is read as a SequenceExample without feature lists (same field 1). Fields are
//! walked in place by `container::protobuf::Fields` (its rules for keys and lengths); protobuf
//! parsing rules are kept: unknown fields are skipped, repeated message fields merge, a later
//! `oneof` member replaces an earlier one, packed and unpacked numbers are both accepted.

use anyhow::{bail, Result};

use crate::container::protobuf::{varint, Field, Fields};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// `Example.features` / `SequenceExample.context`.
    Context,
    /// `SequenceExample.feature_lists`.
    Lists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FType {
    Bytes,
    Float,
    Int64,
}

impl FType {
    pub fn name(self) -> &'static str {
        match self {
            FType::Bytes => "bytes_list",
            FType::Float => "float_list",
            FType::Int64 => "int64_list",
        }
    }
}

/// One value of a feature.
pub enum Value<'a> {
    Bytes(&'a [u8]),
    Float(f32),
    Int64(i64),
}

fn message<'a>(f: Field<'a>, what: &str) -> Result<&'a [u8]> {
    match f {
        Field::Len(b) => Ok(b),
        _ => bail!("{what} is not a length-delimited message (not an Example?)"),
    }
}

/// Visits every map entry of a record: `(section, key, value)` where the value is a `Feature`
/// (context) or a `FeatureList` (lists), in the order stored; a repeated key appears again
/// (protobuf keeps the last).
pub fn walk_record<'a>(
    rec: &'a [u8],
    visit: &mut dyn FnMut(Section, &'a [u8], &'a [u8]) -> Result<()>,
) -> Result<()> {
    let mut top = Fields::new(rec);
    while let Some((number, f)) = top.next()? {
        let section = match number {
            1 => Section::Context,
            2 => Section::Lists,
            _ => continue,
        };
        let map = message(f, "field 1 / 2 of the record")?;
        let mut entries = Fields::new(map);
        while let Some((number, f)) = entries.next()? {
            if number != 1 {
                continue;
            }
            let entry = message(f, "a map entry")?;
            // Absent fields are empty; the slices stay inside `rec`, where callers locate them.
            let (mut key, mut value) = (&entry[..0], &entry[..0]);
            let mut fields = Fields::new(entry);
            while let Some((number, f)) = fields.next()? {
                match number {
                    1 => key = message(f, "a map key")?,
                    2 => value = message(f, "a map value")?,
                    _ => {}
                }
            }
            visit(section, key, value)?;
        }
    }
    Ok(())
}

/// The kind of a `Feature` and the byte where its last `oneof` member run starts.
fn kind(feature: &[u8]) -> Result<(Option<FType>, usize)> {
    let mut fields = Fields::new(feature);
    let mut current: Option<FType> = None;
    let mut start = 0;
    loop {
        let at = fields.pos();
        let Some((number, f)) = fields.next()? else {
            break;
        };
        let t = match number {
            1 => FType::Bytes,
            2 => FType::Float,
            3 => FType::Int64,
            _ => continue,
        };
        message(f, t.name())?;
        if current != Some(t) {
            current = Some(t);
            start = at;
        }
    }
    Ok((current, start))
}

/// Visits the values of one `Feature`, in order.
pub fn values<'a>(feature: &'a [u8], emit: &mut dyn FnMut(Value<'a>) -> Result<()>) -> Result<()> {
    let (Some(t), start) = kind(feature)? else {
        return Ok(());
    };
    let mut fields = Fields::new(&feature[start..]);
    let number = t as u32 + 1;
    while let Some((n, f)) = fields.next()? {
        if n != number {
            continue;
        }
        let mut list = Fields::new(message(f, t.name())?);
        while let Some((n, f)) = list.next()? {
            if n != 1 {
                continue;
            }
            match (t, f) {
                (FType::Bytes, Field::Len(b)) => emit(Value::Bytes(b))?,
                (FType::Float, Field::Len(b)) => {
                    if b.len() % 4 != 0 {
                        bail!(
                            "a packed float_list of {} bytes (not a multiple of 4)",
                            b.len()
                        );
                    }
                    for c in b.chunks_exact(4) {
                        emit(Value::Float(f32::from_le_bytes(c.try_into().unwrap())))?;
                    }
                }
                (FType::Float, Field::Fixed32(b)) => emit(Value::Float(f32::from_le_bytes(b)))?,
                (FType::Int64, Field::Len(mut b)) => {
                    while !b.is_empty() {
                        let Some((v, n)) = varint(b) else {
                            bail!("a bad varint in a packed int64_list");
                        };
                        emit(Value::Int64(v as i64))?;
                        b = &b[n..];
                    }
                }
                (FType::Int64, Field::Varint(v)) => emit(Value::Int64(v as i64))?,
                _ => bail!("a {} value with the wrong wire type", t.name()),
            }
        }
    }
    Ok(())
}

/// What one `Feature` holds: its kind, number of values, longest and total bytes values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub ftype: Option<FType>,
    pub values: u64,
    pub longest: u64,
    pub bytes: u64,
}

pub fn count(feature: &[u8]) -> Result<Count> {
    let (ftype, _) = kind(feature)?;
    let mut c = Count {
        ftype,
        ..Count::default()
    };
    values(feature, &mut |v| {
        c.values += 1;
        if let Value::Bytes(b) = v {
            c.longest = c.longest.max(b.len() as u64);
            c.bytes += b.len() as u64;
        }
        Ok(())
    })?;
    Ok(c)
}

/// Visits each step (`Feature`) of a `FeatureList`.
pub fn each_step<'a>(list: &'a [u8], visit: &mut dyn FnMut(&'a [u8]) -> Result<()>) -> Result<()> {
    let mut fields = Fields::new(list);
    while let Some((n, f)) = fields.next()? {
        if n == 1 {
            visit(message(f, "a feature list step")?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(number: u64, body: &[u8]) -> Vec<u8> {
        let mut v = vec![(number << 3 | 2) as u8, body.len() as u8];
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn a_later_oneof_member_replaces_an_earlier_one_and_repeats_merge() {
        // int64_list [7], then float_list [1.5], then float_list (unpacked) [2.5]
        let mut f = len_field(3, &len_field(1, &[7]));
        f.extend(len_field(2, &len_field(1, &1.5f32.to_le_bytes())));
        let mut unpacked = vec![(1 << 3 | 5) as u8];
        unpacked.extend_from_slice(&2.5f32.to_le_bytes());
        f.extend(len_field(2, &unpacked));
        let mut got = Vec::new();
        values(&f, &mut |v| {
            match v {
                Value::Float(x) => got.push(x),
                _ => panic!("not a float"),
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![1.5, 2.5]);
        let c = count(&f).unwrap();
        assert_eq!((c.ftype, c.values, c.longest), (Some(FType::Float), 2, 0));
    }

    #[test]
    fn negative_int64_values_are_ten_byte_varints() {
        let mut body = vec![0xffu8; 9];
        body.push(0x01);
        let f = len_field(3, &len_field(1, &body));
        let mut got = Vec::new();
        values(&f, &mut |v| {
            if let Value::Int64(x) = v {
                got.push(x);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![-1]);
    }

    #[test]
    fn overrunning_lengths_and_tensorprotos_are_refused() {
        assert!(walk_record(&[0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01], &mut |_, _, _| Ok(())).is_err());
        // a TensorProto starts with its dtype varint (field 1, wire type 0)
        let e = walk_record(&[0x08, 0x01], &mut |_, _, _| Ok(())).unwrap_err();
        assert!(e.to_string().contains("not an Example"), "{e}");
        // a packed float list of 3 bytes
        assert!(count(&len_field(2, &len_field(1, &[0, 0, 0]))).is_err());
    }

    #[test]
    fn field_numbers_past_protobufs_limit_are_refused_not_skipped() {
        // field 2^29 (one past the limit), varint 1, before a valid empty Features
        let mut rec = vec![0x80, 0x80, 0x80, 0x80, 0x10, 0x01];
        rec.extend(len_field(1, &[]));
        let e = walk_record(&rec, &mut |_, _, _| Ok(())).unwrap_err();
        assert!(
            e.to_string().contains("invalid field number 536870912"),
            "{e}"
        );
        // field 2^29 - 1 is an unknown field, skipped
        let mut rec = vec![0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01];
        rec.extend(len_field(1, &[]));
        walk_record(&rec, &mut |_, _, _| Ok(())).unwrap();
    }

    #[test]
    fn map_entries_are_visited_with_their_section() {
        let entry = [
            len_field(1, b"k"),
            len_field(2, &len_field(3, &len_field(1, &[1]))),
        ]
        .concat();
        let rec = [
            len_field(1, &len_field(1, &entry)),
            len_field(2, &len_field(1, &len_field(1, b"s"))),
        ]
        .concat();
        let mut seen = Vec::new();
        walk_record(&rec, &mut |s, k, v| {
            seen.push((s, k.to_vec(), v.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (Section::Context, b"k".to_vec(), 5),
                (Section::Lists, b"s".to_vec(), 0)
            ]
        );
    }
}
