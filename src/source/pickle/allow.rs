//! The allow-list of the restricted unpickler: the globals `torch.load(weights_only=True)`
//! accepts (`torch/_weights_only_unpickler.py`, `_get_allowed_globals`), each resolved to a
//! [`Global`], and what calling one builds: dicts for `OrderedDict`, bytes for
//! `_codecs.encode`, tensor references for `torch._utils._rebuild_tensor_v2` and its
//! relatives, storages for the `('storage', ...)` persistent ids, plus the NumPy globals of
//! `numpy.rs` and TorchScript's typed-list helpers (`torch.jit._pickle.build_intlist`, ...).
//! Nothing here runs code from the file; every other global is refused by name in strict mode,
//! refused by name when only an attack would name it (`records::is_attack`), and otherwise
//! becomes a [`Global::Class`] whose calls build inert records.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::numpy::{self, Blob, NpGlobal};
use super::records::{is_attack, is_op_namespace, Record};
use super::{set_items, tuple, Value};
use crate::dtype::DType;

/// A torch dtype: its name, the element type it maps to (`None` for the quantized and bit
/// types, which have no NumPy form), and its size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TorchDType {
    pub name: &'static str,
    pub dtype: Option<DType>,
    pub item_size: u64,
}

const fn td(name: &'static str, dtype: Option<DType>, item_size: u64) -> TorchDType {
    TorchDType {
        name,
        dtype,
        item_size,
    }
}

/// Every dtype `torch.<name>` that the weights-only unpickler accepts.
const DTYPES: &[TorchDType] = &[
    td("float32", Some(DType::F32), 4),
    td("float64", Some(DType::F64), 8),
    td("float16", Some(DType::F16), 2),
    td("bfloat16", Some(DType::BF16), 2),
    td("complex32", None, 4),
    td("complex64", Some(DType::C64), 8),
    td("complex128", Some(DType::C128), 16),
    td("uint8", Some(DType::U8), 1),
    td("int8", Some(DType::I8), 1),
    td("int16", Some(DType::I16), 2),
    td("int32", Some(DType::I32), 4),
    td("int64", Some(DType::I64), 8),
    td("bool", Some(DType::Bool), 1),
    td("uint16", Some(DType::U16), 2),
    td("uint32", Some(DType::U32), 4),
    td("uint64", Some(DType::U64), 8),
    td("float8_e4m3fn", Some(DType::F8E4M3FN), 1),
    td("float8_e5m2", Some(DType::F8E5M2), 1),
    td("float8_e4m3fnuz", Some(DType::F8E4M3FNUZ), 1),
    td("float8_e5m2fnuz", Some(DType::F8E5M2FNUZ), 1),
    td("float8_e8m0fnu", Some(DType::F8E8M0FNU), 1),
    td("float4_e2m1fn_x2", None, 1),
    td("qint8", None, 1),
    td("quint8", None, 1),
    td("qint32", None, 4),
    td("quint4x2", None, 1),
    td("quint2x4", None, 1),
    td("bits1x8", None, 1),
    td("bits2x4", None, 1),
    td("bits4x2", None, 1),
    td("bits8", None, 1),
    td("bits16", None, 2),
    td("uint1", None, 1),
    td("uint2", None, 1),
    td("uint3", None, 1),
    td("uint4", None, 1),
    td("uint5", None, 1),
    td("uint6", None, 1),
    td("uint7", None, 1),
    td("int1", None, 1),
    td("int2", None, 1),
    td("int3", None, 1),
    td("int4", None, 1),
    td("int5", None, 1),
    td("int6", None, 1),
    td("int7", None, 1),
];

/// The legacy storage classes (`torch.FloatStorage`, ...) and the dtype each holds.
const STORAGES: &[(&str, &str)] = &[
    ("FloatStorage", "float32"),
    ("DoubleStorage", "float64"),
    ("HalfStorage", "float16"),
    ("BFloat16Storage", "bfloat16"),
    ("LongStorage", "int64"),
    ("IntStorage", "int32"),
    ("ShortStorage", "int16"),
    ("CharStorage", "int8"),
    ("ByteStorage", "uint8"),
    ("BoolStorage", "bool"),
    ("ComplexFloatStorage", "complex64"),
    ("ComplexDoubleStorage", "complex128"),
    ("QUInt8Storage", "quint8"),
    ("QInt8Storage", "qint8"),
    ("QInt32Storage", "qint32"),
    ("QUInt4x2Storage", "quint4x2"),
    ("QUInt2x4Storage", "quint2x4"),
    ("UntypedStorage", "uint8"),
];

const TENSOR_CLASSES: &[&str] = &[
    "Tensor",
    "FloatTensor",
    "DoubleTensor",
    "HalfTensor",
    "BFloat16Tensor",
    "LongTensor",
    "IntTensor",
    "ShortTensor",
    "CharTensor",
    "ByteTensor",
    "BoolTensor",
    "ComplexFloatTensor",
    "ComplexDoubleTensor",
];

pub(super) fn dtype_named(name: &str) -> Option<TorchDType> {
    DTYPES.iter().copied().find(|d| d.name == name)
}

/// The tensor rebuild functions of `torch._utils` that are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rebuild {
    TensorV1,
    TensorV2,
    TensorV3,
    Parameter,
    ParameterWithState,
    FromCpuTensor,
    FromTypeV2,
    /// Allowed by torch, but not a dense tensor with a storage: quantized, sparse, meta,
    /// wrapper subclasses, numpy-backed device tensors.
    Unsupported(&'static str),
}

/// A global that the allow-list admits.
#[derive(Clone, Debug, PartialEq)]
pub enum Global {
    OrderedDict,
    Counter,
    Parameter,
    Size,
    Device,
    GetLayout,
    CodecsEncode,
    Bytearray,
    Set,
    Complex,
    /// `builtins.tuple` (not in strict mode): how `paddle.save` pickles a tensor.
    Tuple,
    DType(TorchDType),
    Storage(TorchDType),
    TensorClass,
    QScheme,
    Rebuild(Rebuild),
    /// A NumPy global plain arrays need (`numpy.rs`).
    Numpy(NpGlobal),
    /// `torch.jit._pickle.build_intlist` and its relatives, and `restore_type_tag`: TorchScript's
    /// typed containers, which are their first argument.
    JitIdentity,
    /// `torch.storage._load_from_bytes` (not in strict mode): a storage pickled by value, a
    /// whole legacy torch.save read as data by `nested.rs`, never by calling torch.load.
    LoadFromBytes,
    /// A global off the allow-list, by its qualified name: calling it builds a [`Record`].
    Class(Rc<str>),
    /// `builtins.getattr` (not in strict mode): only on a namespace of tensor ops
    /// (`records::is_op_namespace`), as Python pickles `torch.tanh`, or on a record (a bound
    /// method); a record of the op or method.
    GetAttr,
}

/// Resolves `module.name` against the allow-list. Anything else is refused by name when
/// `strict`, or when only an attack would name it; otherwise it is a [`Global::Class`].
pub fn resolve_global(module: &str, name: &str, strict: bool) -> Result<Global> {
    let module = match module {
        "__builtin__" => "builtins",
        m => m,
    };
    if let Some(n) = numpy::resolve(module, name) {
        return Ok(Global::Numpy(n));
    }
    if module == "torch.jit._pickle"
        && (name == "restore_type_tag" || (name.starts_with("build_") && name.ends_with("list")))
    {
        return Ok(Global::JitIdentity);
    }
    let refuse = |module: &str, name: &str| -> Result<Global> {
        if strict {
            refuse(module, name)
        } else if is_attack(module, name) {
            bail!(
                "the pickle calls the global {module}.{name}, which only a hostile file would call (it runs code or reaches the system); the file is refused and nothing was executed"
            )
        } else {
            Ok(Global::Class(format!("{module}.{name}").into()))
        }
    };
    let g = match (module, name) {
        ("torch.storage", "_load_from_bytes") if !strict => Global::LoadFromBytes,
        ("builtins", "getattr") if !strict => Global::GetAttr,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("collections", "Counter") => Global::Counter,
        ("torch.nn.parameter", "Parameter") => Global::Parameter,
        ("torch.serialization", "_get_layout") => Global::GetLayout,
        ("torch", "Size") => Global::Size,
        ("torch", "device") => Global::Device,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("builtins", "bytearray") | ("builtins", "bytes") => Global::Bytearray,
        ("builtins", "set") => Global::Set,
        ("builtins", "tuple") if !strict => Global::Tuple,
        ("builtins", "complex") => Global::Complex,
        ("torch", "per_tensor_affine")
        | ("torch", "per_tensor_symmetric")
        | ("torch", "per_channel_affine")
        | ("torch", "per_channel_symmetric")
        | ("torch", "per_channel_affine_float_qparams") => Global::QScheme,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::Rebuild(Rebuild::FromTypeV2),
        ("torch._utils", f) => Global::Rebuild(match f {
            "_rebuild_tensor" => Rebuild::TensorV1,
            "_rebuild_tensor_v2" => Rebuild::TensorV2,
            "_rebuild_tensor_v3" => Rebuild::TensorV3,
            "_rebuild_parameter" => Rebuild::Parameter,
            "_rebuild_parameter_with_state" => Rebuild::ParameterWithState,
            "_rebuild_device_tensor_from_cpu_tensor" => Rebuild::FromCpuTensor,
            "_rebuild_qtensor" => Rebuild::Unsupported("a quantized tensor"),
            "_rebuild_sparse_tensor" => Rebuild::Unsupported("a sparse tensor"),
            "_rebuild_meta_tensor_no_storage" => Rebuild::Unsupported("a meta tensor"),
            "_rebuild_wrapper_subclass" => Rebuild::Unsupported("a tensor subclass"),
            "_rebuild_device_tensor_from_numpy" => Rebuild::Unsupported("a device tensor"),
            // (not on torch's weights-only list; read as data, its parts are no tensors)
            "_rebuild_nested_tensor" if !strict => Rebuild::Unsupported("a nested tensor"),
            _ => return refuse(module, name),
        }),
        ("torch" | "torch.cuda", n) if STORAGES.iter().any(|(s, _)| *s == n) => {
            let (_, d) = STORAGES.iter().find(|(s, _)| *s == n).expect("listed");
            Global::Storage(dtype_named(d).expect("listed dtype"))
        }
        ("torch.storage", "UntypedStorage") => {
            Global::Storage(dtype_named("uint8").expect("listed"))
        }
        ("torch" | "torch.cuda", n) if TENSOR_CLASSES.contains(&n) => Global::TensorClass,
        ("torch", n) => match dtype_named(n) {
            Some(d) => Global::DType(d),
            None => return refuse(module, name),
        },
        _ => return refuse(module, name),
    };
    Ok(g)
}

fn refuse<T>(module: &str, name: &str) -> Result<T> {
    bail!(
        "the pickle calls the global {module}.{name}, which torch.load(weights_only=True) does not allow; nothing was executed"
    )
}

/// A storage as the persistent id names it: `('storage', storage_type, key, location, numel)`,
/// plus `view_metadata` `(view_key, offset, size)` in the legacy format.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub dtype: TorchDType,
    pub key: String,
    pub numel: u64,
    /// Legacy storage views: element offset and length within the root storage.
    pub view: Option<(u64, u64)>,
    /// The bytes are big-endian whatever the file's byte order says (a NumPy array of dtype
    /// `>f4`).
    pub big_endian: bool,
}

/// A dense tensor: a view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: Arc<StorageRef>,
    pub dtype: TorchDType,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
    /// The conjugate and negative bits of the view (`{'conj': True}` / `{'neg': True}`, the
    /// `metadata` argument of `_rebuild_tensor_v2`/`_v3`): the values are read negated.
    pub conj: bool,
    pub neg: bool,
}

pub(super) fn global_of(v: &Value) -> Result<&Global> {
    match v {
        Value::Global(g) => Ok(g),
        v => bail!("cannot call a {} (only allowed globals)", v.type_name()),
    }
}

/// What calling an allowed global (REDUCE) builds.
pub(super) fn call(
    func: &Value,
    args: Vec<Value>,
    blobs: &mut Vec<(String, Blob)>,
) -> Result<Value> {
    let g = global_of(func)?;
    Ok(match g {
        Global::Numpy(n) => numpy::call(*n, args, blobs)?,
        Global::JitIdentity => args.into_iter().next().unwrap_or_default(),
        Global::Class(c) if &**c == "copyreg._reconstructor" => match args.first() {
            // _reconstructor(cls, base, state): an instance of cls, its state set by BUILD.
            Some(Value::Global(g)) => match &**g {
                Global::Class(cls) => Value::Record(Rc::new(Record::new(cls.clone(), Vec::new()))),
                _ => bail!("copyreg._reconstructor of an allowed global"),
            },
            _ => bail!("copyreg._reconstructor of something that is not a class"),
        },
        Global::Class(c) => Value::Record(Rc::new(Record::new(c.clone(), args))),
        Global::GetAttr => {
            let op = match args.as_slice() {
                [Value::Global(g), Value::Str(n)] if !n.contains("__") && !n.contains('.') => {
                    match &**g {
                        Global::Class(c)
                            if c.rsplit_once('.')
                                .is_some_and(|(m, c)| is_op_namespace(m, c)) =>
                        {
                            Some(format!("{c}.{n}"))
                        }
                        _ => None,
                    }
                }
                // A bound method of an object read as a record (a module's state-dict hook,
                // `self.load_hook`): a record of the method, as inert as its object.
                [Value::Record(r), Value::Str(n)] if !n.contains("__") && !n.contains('.') => {
                    Some(format!("{}.{n}", r.class))
                }
                _ => None,
            };
            match op {
                Some(op) => Value::Record(Rc::new(Record::new(op.into(), Vec::new()))),
                None => bail!(
                    "the pickle calls builtins.getattr on something other than a namespace of tensor ops or an object read as data, or for a dunder name, which only a hostile file would do; the file is refused and nothing was executed"
                ),
            }
        }
        Global::OrderedDict | Global::Counter => {
            let d = Value::Dict(Default::default());
            // `Counter` pickles as `Counter(dict)`, `OrderedDict` as `OrderedDict(pairs)`.
            if let Some(Value::Dict(m)) = args.first() {
                let flat = m
                    .borrow()
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect();
                set_items(&d, flat)?;
            } else if let Some(init) = args.first() {
                let mut flat = Vec::new();
                for pair in init.items("the OrderedDict argument")? {
                    let kv = pair.items("an OrderedDict item")?;
                    if kv.len() != 2 {
                        bail!("an OrderedDict item is not a pair");
                    }
                    flat.extend(kv);
                }
                set_items(&d, flat)?;
            }
            d
        }
        Global::Set => match args.first() {
            Some(v) => Value::List(Rc::new(RefCell::new(v.items("the set argument")?))),
            None => Value::List(Default::default()),
        },
        // `paddle.save` pickles a tensor as `(tuple, ((name, array),))`, and `paddle.load`
        // returns such a (name, array) pair as the array (`_parse_load_result`).
        Global::Tuple => {
            let items = match args.first() {
                Some(v) => v.items("the tuple argument")?,
                None => Vec::new(),
            };
            match items.as_slice() {
                [Value::Str(_), a @ Value::NdArray(_)] => a.clone(),
                _ => tuple(items),
            }
        }
        Global::Size => match args.first() {
            Some(v) => tuple(v.items("the torch.Size argument")?),
            None => tuple(Vec::new()),
        },
        Global::CodecsEncode | Global::Bytearray => match args.first() {
            None => Value::Bytes(Rc::from(&[][..])),
            Some(Value::Bytes(b)) => Value::Bytes(b.clone()),
            Some(Value::Str(s)) => {
                let enc = args.get(1).and_then(Value::as_str).unwrap_or_default();
                match enc.as_str() {
                    "latin1" | "latin-1" | "iso-8859-1" => {
                        let mut out = Vec::with_capacity(s.len());
                        for c in s.chars() {
                            let c = u32::from(c);
                            if c > 255 {
                                bail!("a latin1 string holds a character above 255");
                            }
                            out.push(c as u8);
                        }
                        Value::Bytes(out.into())
                    }
                    _ => Value::Bytes(s.as_bytes().into()),
                }
            }
            Some(v) => bail!("cannot make bytes from a {}", v.type_name()),
        },
        Global::Complex => Value::Object("complex"),
        Global::Device => Value::Object("torch.device"),
        Global::GetLayout => Value::Object("torch.layout"),
        Global::Parameter => new_object(func, args)?,
        Global::Rebuild(r) => rebuild(*r, args)?,
        Global::DType(_) | Global::Storage(_) | Global::TensorClass | Global::QScheme => {
            bail!("calling a torch type or dtype is not allowed in a weights-only pickle")
        }
        Global::LoadFromBytes => {
            bail!("internal: torch.storage._load_from_bytes is read by the unpickler itself")
        }
    })
}

/// What NEWOBJ of an allowed class builds.
pub(super) fn new_object(cls: &Value, args: Vec<Value>) -> Result<Value> {
    match global_of(cls)? {
        // Parameter(data, requires_grad) is its data.
        Global::Parameter => match args.into_iter().next() {
            Some(t @ (Value::Tensor(_) | Value::Unsupported(_))) => Ok(t),
            Some(v) => bail!("a Parameter of a {}", v.type_name()),
            None => Ok(Value::Object("empty Parameter")),
        },
        Global::OrderedDict | Global::Counter => Ok(Value::Dict(Default::default())),
        Global::Set => Ok(Value::List(Default::default())),
        Global::Class(c) => Ok(Value::Record(Rc::new(Record::new(c.clone(), args)))),
        _ => Ok(Value::Object("object")),
    }
}

fn arg<'a>(args: &'a [Value], i: usize, what: &str) -> Result<&'a Value> {
    args.get(i)
        .with_context(|| format!("{what}: argument {i} is missing"))
}

fn rebuild(r: Rebuild, args: Vec<Value>) -> Result<Value> {
    let what = "a tensor rebuild call";
    match r {
        Rebuild::TensorV1 | Rebuild::TensorV2 | Rebuild::TensorV3 => {
            let storage = match arg(&args, 0, what)? {
                Value::Storage(s) => s.clone(),
                // A storage rebuilt by another class's call (read as a record).
                Value::Record(_) => {
                    return Ok(Value::Unsupported(
                        "a tensor whose storage is an object of a class read as a record",
                    ))
                }
                v => bail!("{what}: the storage is a {}", v.type_name()),
            };
            let dtype = if r == Rebuild::TensorV3 {
                match arg(&args, 6, what)? {
                    Value::Global(g) => match &**g {
                        Global::DType(d) => *d,
                        _ => bail!("{what}: argument 6 is not a dtype"),
                    },
                    v => bail!("{what}: the dtype is a {}", v.type_name()),
                }
            } else {
                storage.dtype
            };
            let offset = arg(&args, 1, what)?.as_u64("the storage offset")?;
            let size = arg(&args, 2, what)?
                .items("the size")?
                .iter()
                .map(|v| v.as_u64("a size"))
                .collect::<Result<Vec<_>>>()?;
            let stride = arg(&args, 3, what)?
                .items("the stride")?
                .iter()
                .map(|v| v.as_u64("a stride"))
                .collect::<Result<Vec<_>>>()?;
            if size.len() != stride.len() {
                bail!(
                    "{what}: the size has {} dimensions but the stride {}",
                    size.len(),
                    stride.len()
                );
            }
            // `_rebuild_tensor_v2(..., metadata)` / `_v3(..., dtype, metadata)`: torch sets the
            // conjugate and negative bits from it (`_set_tensor_metadata`).
            let (mut conj, mut neg) = (false, false);
            let meta_at = match r {
                Rebuild::TensorV2 => Some(6),
                Rebuild::TensorV3 => Some(7),
                _ => None,
            };
            if let Some(Value::Dict(d)) = meta_at.and_then(|i| args.get(i)) {
                for (k, v) in d.borrow().iter() {
                    let on = matches!(v, Value::Bool(true));
                    match k.as_str().as_deref() {
                        Some("conj") => conj = on,
                        Some("neg") => neg = on,
                        _ => {}
                    }
                }
            }
            Ok(Value::Tensor(Arc::new(TensorRef {
                storage,
                dtype,
                offset,
                size,
                stride,
                conj,
                neg,
            })))
        }
        Rebuild::Parameter | Rebuild::ParameterWithState | Rebuild::FromCpuTensor => {
            match arg(&args, 0, what)? {
                t @ (Value::Tensor(_) | Value::Unsupported(_)) => Ok(t.clone()),
                v => bail!("{what}: the data is a {}", v.type_name()),
            }
        }
        Rebuild::FromTypeV2 => {
            // _rebuild_from_type_v2(func, new_type, args, state) = func(*args), retyped.
            let func = arg(&args, 0, what)?;
            let inner = arg(&args, 2, what)?.items("the arguments")?;
            match global_of(func)? {
                Global::Rebuild(r) if *r != Rebuild::FromTypeV2 => rebuild(*r, inner),
                _ => bail!("{what}: _rebuild_from_type_v2 of something that is not a tensor rebuild function"),
            }
        }
        Rebuild::Unsupported(kind) => Ok(Value::Unsupported(kind)),
    }
}

/// `persistent_load`: only `('storage', storage_type, key, location, numel)` (and the legacy
/// form with a sixth `view_metadata` item) is accepted.
pub(super) fn persistent_load(pid: &Value, strict: bool) -> Result<Value> {
    let Value::Tuple(items) = pid else {
        bail!(
            "a persistent id must be a storage tuple, not a {}",
            pid.type_name()
        );
    };
    // The legacy torch.save of a whole module names each module class with its source:
    // `('module', cls, source_file, source)`; the class is what it stands for (the source is
    // never looked at).
    if !strict && items.first().and_then(Value::as_str).as_deref() == Some("module") {
        return match items.get(1) {
            Some(g @ Value::Global(_)) => Ok(g.clone()),
            _ => bail!("a module persistent id without a class"),
        };
    }
    if items.first().and_then(Value::as_str).as_deref() != Some("storage") {
        bail!("only persistent ids of storages are allowed");
    }
    if items.len() != 5 && items.len() != 6 {
        bail!(
            "a storage persistent id has {} items, not 5 or 6",
            items.len()
        );
    }
    let dtype = match &items[1] {
        Value::Global(g) => match &**g {
            Global::Storage(d) => *d,
            _ => bail!("the storage type is not a storage class"),
        },
        v => bail!("the storage type is a {}", v.type_name()),
    };
    let key = match &items[2] {
        Value::Int(i) => i.to_string(),
        v => v.as_str().context("the storage key is not a string")?,
    };
    let numel = items[4].as_u64("the storage size")?;
    let view = match items.get(5) {
        None | Some(Value::None) => None,
        Some(v) => {
            let t = v.items("the storage view")?;
            if t.len() != 3 {
                bail!("a storage view has {} items, not 3", t.len());
            }
            Some((t[1].as_u64("a view offset")?, t[2].as_u64("a view size")?))
        }
    };
    Ok(Value::Storage(Arc::new(StorageRef {
        dtype,
        key,
        numel,
        view,
        big_endian: false,
    })))
}
