//! Pickled NumPy arrays, with exactly the globals plain arrays need:
//! `numpy.core.multiarray._reconstruct` (and its `numpy._core` twin) with `numpy.ndarray` and the
//! `BUILD` state `(version, shape, dtype, is_fortran, rawdata)`, `numpy.dtype` with its `BUILD`
//! state `(3, byteorder, ...)`, `numpy.core.multiarray.scalar(dtype, bytes)` for NumPy scalars,
//! and `numpy.core.numeric._frombuffer(buf, dtype, shape, order)` (protocol 5, in-band buffers).
//! An array becomes a tensor reference (`TensorRef`) whose storage is the array's bytes in the
//! pickle: a [`Blob`] (bytes read, or for large ones the span of the input they lie in, never
//! read here). Object arrays are refused, as `np.load(allow_pickle=False)` refuses them; dtypes
//! NumPy has but this tool does not write (strings, datetimes, structured) become unsupported
//! entries.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::allow::dtype_named;
use super::{StorageRef, TensorRef, Value};

/// The NumPy globals that are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpGlobal {
    Reconstruct,
    NdArray,
    DType,
    Scalar,
    FromBuffer,
}

/// `module.name` as a NumPy global, when it is one of those plain arrays need.
pub fn resolve(module: &str, name: &str) -> Option<NpGlobal> {
    let core = |m: &str| {
        matches!(
            m,
            "numpy.core.multiarray" | "numpy._core.multiarray" | "numpy.core" | "numpy._core"
        )
    };
    Some(match (module, name) {
        (m, "_reconstruct") if core(m) => NpGlobal::Reconstruct,
        (m, "scalar") if core(m) => NpGlobal::Scalar,
        ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => NpGlobal::FromBuffer,
        ("numpy", "ndarray") => NpGlobal::NdArray,
        ("numpy", "dtype") => NpGlobal::DType,
        _ => return None,
    })
}

/// A NumPy dtype: its `descr` (`f4`, `i8`, `O8`) and its byte order, which `BUILD` sets.
#[derive(Debug)]
pub struct NpDType {
    pub descr: String,
    pub order: Cell<u8>,
    pub structured: Cell<bool>,
}

/// The bytes of an array: held (small ones, and protocol 2's latin-1 strings) or a span of the
/// pickle stream (offset from the pickle's first byte, length), read only when converted.
#[derive(Clone, Debug)]
pub enum Blob {
    Bytes(Rc<[u8]>),
    Span(u64, u64),
    /// Bytes decoded into a temporary file (a large protocol-2 string, `latin1.rs`).
    Range(crate::input::FileRange),
    /// A torch storage pickled by value that could not be read, and why (`nested.rs`): a
    /// tensor on it is refused by name.
    Broken(Rc<str>),
}

/// What calling (`REDUCE`) a NumPy global builds.
pub(super) fn call(
    g: NpGlobal,
    args: Vec<Value>,
    blobs: &mut Vec<(String, Blob)>,
) -> Result<Value> {
    match g {
        NpGlobal::Reconstruct => Ok(Value::NdArray(Rc::new(RefCell::new(Value::None)))),
        NpGlobal::DType => {
            let descr = match args.first() {
                Some(Value::Str(s)) => s.to_string(),
                Some(v) => bail!("numpy.dtype of a {}", v.type_name()),
                None => bail!("numpy.dtype without arguments"),
            };
            Ok(Value::NpDType(Rc::new(NpDType {
                descr,
                order: Cell::new(b'='),
                structured: Cell::new(false),
            })))
        }
        NpGlobal::Scalar => {
            let dt = dtype_of(args.first())?;
            if dt.descr.starts_with('O') {
                bail!("a NumPy object scalar: object arrays cannot be loaded without executing pickled objects (as np.load(allow_pickle=False) refuses them)");
            }
            let data = args.get(1).cloned().unwrap_or_default();
            array(&dt, Vec::new(), false, &data, blobs)
        }
        NpGlobal::FromBuffer => {
            let dt = dtype_of(args.get(1))?;
            let shape = shape_of(args.get(2))?;
            let fortran = matches!(args.get(3), Some(Value::Str(s)) if &**s == "F");
            let data = args.first().cloned().unwrap_or_default();
            array(&dt, shape, fortran, &data, blobs)
        }
        NpGlobal::NdArray => {
            bail!("calling numpy.ndarray directly is not how NumPy pickles arrays")
        }
    }
}

/// `BUILD` on a dtype: `(version, byteorder, subarray, names, fields, elsize, alignment,
/// flags)`.
pub(super) fn build_dtype(dt: &NpDType, state: &Value) -> Result<()> {
    let items = state.items("a numpy dtype state")?;
    if let Some(Value::Str(o)) = items.get(1) {
        dt.order.set(o.bytes().next().unwrap_or(b'='));
    }
    let set = |i: usize| !matches!(items.get(i), None | Some(Value::None));
    dt.structured.set(set(2) || set(3) || set(4));
    Ok(())
}

/// `BUILD` on an array made by `_reconstruct`: `(version, shape, dtype, is_fortran, rawdata)`
/// (version 1) or the same without the version (version 0).
pub(super) fn build_array(
    cell: &RefCell<Value>,
    state: &Value,
    blobs: &mut Vec<(String, Blob)>,
) -> Result<()> {
    let mut items = state.items("a numpy array state")?;
    if items.len() == 5 {
        items.remove(0);
    }
    if items.len() != 4 {
        bail!("a numpy array state has {} items, not 4 or 5", items.len());
    }
    let shape = shape_of(items.first())?;
    let dt = dtype_of(items.get(1))?;
    let fortran = matches!(items[2], Value::Bool(true) | Value::Int(1));
    let v = array(&dt, shape, fortran, &items[3], blobs)?;
    *cell.borrow_mut() = v;
    Ok(())
}

fn dtype_of(v: Option<&Value>) -> Result<Rc<NpDType>> {
    match v {
        Some(Value::NpDType(d)) => Ok(d.clone()),
        Some(v) => bail!("a numpy dtype is a {}", v.type_name()),
        None => bail!("a numpy dtype is missing"),
    }
}

fn shape_of(v: Option<&Value>) -> Result<Vec<u64>> {
    match v {
        Some(v) => v
            .items("a numpy shape")?
            .iter()
            .map(|d| d.as_u64("a numpy dimension"))
            .collect(),
        None => bail!("a numpy shape is missing"),
    }
}

/// The torch dtype name for a NumPy `descr` of a numeric kind.
fn torch_name(descr: &str) -> Option<&'static str> {
    Some(match descr {
        "b1" | "?" => "bool",
        "i1" => "int8",
        "u1" => "uint8",
        "i2" => "int16",
        "u2" => "uint16",
        "i4" => "int32",
        "u4" => "uint32",
        "i8" => "int64",
        "u8" => "uint64",
        "f2" => "float16",
        "f4" => "float32",
        "f8" => "float64",
        "c8" => "complex64",
        "c16" => "complex128",
        _ => return None,
    })
}

/// An array of `shape` whose bytes are `data`, checked against its size.
fn array(
    dt: &NpDType,
    shape: Vec<u64>,
    fortran: bool,
    data: &Value,
    blobs: &mut Vec<(String, Blob)>,
) -> Result<Value> {
    if dt.descr.starts_with('O') {
        bail!("a NumPy object array: object arrays cannot be loaded without executing pickled objects (as np.load(allow_pickle=False) refuses them)");
    }
    let td =
        match torch_name(&dt.descr).and_then(dtype_named) {
            Some(td) if !dt.structured.get() => td,
            _ => return Ok(Value::Unsupported(
                "a NumPy array of a dtype this tool does not write (string, datetime, structured)",
            )),
        };
    let numel = crate::tensor::checked_elements(&shape)?;
    let want = numel
        .checked_mul(td.item_size)
        .ok_or_else(|| anyhow::anyhow!("a numpy array's size overflows"))?;
    let blob = match data {
        Value::Bytes(b) => Blob::Bytes(b.clone()),
        Value::Span(off, len) => Blob::Span(*off, *len),
        Value::Spooled(r) => Blob::Range(r.clone()),
        Value::Str(s) => Blob::Bytes(s.as_bytes().into()),
        v => bail!("a numpy array's data is a {}, not bytes", v.type_name()),
    };
    let got = match &blob {
        Blob::Bytes(b) => b.len() as u64,
        Blob::Span(_, l) => *l,
        Blob::Range(r) => r.len(),
        Blob::Broken(_) => 0,
    };
    if got != want {
        bail!("a numpy array of shape {shape:?} and dtype {} needs {want} bytes, but its data has {got}", dt.descr);
    }
    let key = format!("pickle:{}", blobs.len());
    blobs.push((key.clone(), blob));
    let mut stride = vec![0u64; shape.len()];
    let mut step = 1u64;
    let dims: Vec<usize> = if fortran {
        (0..shape.len()).collect()
    } else {
        (0..shape.len()).rev().collect()
    };
    for d in dims {
        stride[d] = step;
        step = step.saturating_mul(shape[d].max(1));
    }
    let storage = Arc::new(StorageRef {
        dtype: td,
        key,
        numel,
        view: None,
        big_endian: dt.order.get() == b'>' && td.item_size > 1,
    });
    Ok(Value::Tensor(Arc::new(TensorRef {
        storage,
        dtype: td,
        offset: 0,
        size: shape,
        stride,
        conj: false,
        neg: false,
    })))
}
