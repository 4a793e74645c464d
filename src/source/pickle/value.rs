//! The values the unpickler builds (`Value`): Python's plain data (numbers, strings, bytes,
//! lists, tuples, dicts), the allowed globals and what they build (storages, tensor
//! references), inert [`Record`]s of other classes, NumPy arrays and dtypes, and spans of bytes
//! left in the input; and the few operations the unpickler applies to them (appending, setting
//! items, decoding LONG1/LONG4, counting a call's arguments). Containers are shared (`Rc`), as the pickle memo shares them, and dropped
//! iteratively, so a deeply nested value never overflows the stack.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::numpy::NpDType;
use super::records::{self, Record};
use super::{Global, StorageRef, TensorRef};

pub type Shared<T> = Rc<RefCell<T>>;

/// A value built by the unpickler.
#[derive(Clone, Debug, Default)]
pub enum Value {
    #[default]
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond 64 bits (kept only as a non-tensor leaf).
    BigInt,
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Shared<Vec<Value>>),
    Tuple(Rc<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    Global(Rc<Global>),
    Storage(Arc<StorageRef>),
    Tensor(Arc<TensorRef>),
    /// A tensor that cannot be converted, and why.
    Unsupported(&'static str),
    /// An allowed object that is not data (a device, a layout, a complex number...).
    Object(&'static str),
    /// An object of a class off the allow-list, read as data.
    Record(Rc<Record>),
    /// A NumPy array: `None` until `BUILD` sets it, then a `Tensor` or `Unsupported`.
    NdArray(Shared<Value>),
    /// A NumPy dtype.
    NpDType(Rc<NpDType>),
    /// A bytes object not read: its offset from the pickle's first byte and its length.
    Span(u64, u64),
    /// A string not read (longer than `LAZY_BYTES`): its UTF-8 bytes' offset from the pickle's
    /// first byte and their length.
    StrSpan(u64, u64),
    /// Bytes decoded into a temporary file (`_codecs.encode` of a `StrSpan`, `latin1.rs`).
    Spooled(crate::input::FileRange),
}

impl Drop for Value {
    fn drop(&mut self) {
        // Move the children of uniquely held containers onto a work list, so that dropping a
        // deeply nested value never recurses.
        let mut work: Vec<Value> = Vec::new();
        take_children(self, &mut work);
        while let Some(mut v) = work.pop() {
            take_children(&mut v, &mut work);
        }
    }
}

fn take_children(v: &mut Value, work: &mut Vec<Value>) {
    match v {
        Value::List(l) => {
            if let Some(cell) = Rc::get_mut(l) {
                work.append(cell.get_mut());
            }
        }
        Value::Tuple(t) => {
            if let Some(items) = Rc::get_mut(t) {
                work.append(items);
            }
        }
        Value::Dict(d) => {
            if let Some(cell) = Rc::get_mut(d) {
                for (k, v) in cell.get_mut().drain(..) {
                    work.push(k);
                    work.push(v);
                }
            }
        }
        Value::Record(r) => records::take_children(r, work),
        Value::NdArray(a) => {
            if let Some(cell) = Rc::get_mut(a) {
                work.push(std::mem::take(cell.get_mut()));
            }
        }
        _ => {}
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) | Value::Unsupported(_) => "tensor",
            Value::Object(o) => o,
            Value::Record(_) => "object",
            Value::NdArray(_) => "numpy array",
            Value::NpDType(_) => "numpy dtype",
            Value::Span(..) | Value::Spooled(_) => "bytes",
            Value::StrSpan(..) => "str",
        }
    }

    pub(super) fn as_str(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub(super) fn as_u64(&self, what: &str) -> Result<u64> {
        match self {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            Value::Bool(b) => Ok(*b as u64),
            v => bail!(
                "{what} must be a non-negative integer, not {}",
                v.type_name()
            ),
        }
    }

    /// The items of a tuple or list (a clone of the handles, not of the data).
    pub(super) fn items(&self, what: &str) -> Result<Vec<Value>> {
        match self {
            Value::Tuple(t) => Ok(t.to_vec()),
            Value::List(l) => Ok(l.borrow().clone()),
            v => bail!("{what} must be a tuple, not {}", v.type_name()),
        }
    }
}

/// Tuple of values.
pub(super) fn tuple(items: Vec<Value>) -> Value {
    Value::Tuple(Rc::new(items))
}

/// How many values a call's arguments hold, one level down (what a call may copy).
pub(super) fn shallow(args: &[Value]) -> u64 {
    let mut n = args.len() as u64;
    for a in args {
        n += match a {
            Value::List(l) => l.borrow().len() as u64,
            Value::Tuple(t) => t.len() as u64,
            Value::Dict(d) => 2 * d.borrow().len() as u64,
            _ => 0,
        };
    }
    n
}

/// A little-endian two's-complement integer (LONG1 / LONG4).
pub(super) fn long(b: &[u8]) -> Value {
    if b.len() > 8 {
        let sign = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
        if b[8..].iter().all(|&x| x == sign) && (b[7] & 0x80 == sign & 0x80) {
            return long(&b[..8]);
        }
        return Value::BigInt;
    }
    if b.is_empty() {
        return Value::Int(0);
    }
    let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 8];
    buf[..b.len()].copy_from_slice(b);
    Value::Int(i64::from_le_bytes(buf))
}

pub(super) fn append(target: &mut Value, items: Vec<Value>) -> Result<()> {
    match target {
        Value::List(l) => {
            l.borrow_mut().extend(items);
            Ok(())
        }
        Value::Record(r) => {
            r.items.borrow_mut().extend(items);
            Ok(())
        }
        v => bail!("can only append to lists, not to a {}", v.type_name()),
    }
}

pub(super) fn set_items(target: &Value, items: Vec<Value>) -> Result<()> {
    if let Value::Record(r) = target {
        if !items.len().is_multiple_of(2) {
            bail!("an odd number of items for a dict");
        }
        let mut e = r.entries.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            e.push((k, v));
        }
        return Ok(());
    }
    let Value::Dict(d) = target else {
        bail!(
            "can only set items of a dict, not of a {}",
            target.type_name()
        );
    };
    if !items.len().is_multiple_of(2) {
        bail!("an odd number of items for a dict");
    }
    // Repeated keys are resolved when the tree is named (the last value wins, as in Python);
    // looking each key up here would cost quadratic time on large state dicts.
    let mut d = d.borrow_mut();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        d.push((k, v));
    }
    Ok(())
}
