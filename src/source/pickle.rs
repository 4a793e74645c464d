//! A restricted unpickler for PyTorch checkpoints: it turns a pickle stream into a tree of plain
//! values (dicts, lists, tuples, numbers, strings) and tensor references (a storage key, an
//! offset, a size and a stride), for `torch.rs` to name and read.
//!
//! Written by hand, not taken from a crate, because it must do less than a general unpickler,
//! not more: nothing in the stream is ever executed or imported. Every `GLOBAL` /
//! `STACK_GLOBAL` is looked up in the allow-list that `torch.load(weights_only=True)` uses
//! (`torch/_weights_only_unpickler.py`: `collections.OrderedDict`, `torch._utils._rebuild_*`,
//! the storage and dtype classes, `torch.Size`, `torch.device`, `_codecs.encode`, ...) and any
//! other global (`posix.system`, `builtins.eval`) is refused by name. The allowed callables are
//! interpreted here, one by one, as the values they would build; the pickle crates on crates.io
//! either resolve globals into arbitrary values without such a list or need serde types shaped
//! like the data, neither of which fits. Opcodes of protocols 2 to 5 are read (the out-of-band
//! buffers of protocol 5 and the extension registry are refused).
//!
//! Bounds: every length is checked against the bytes actually present (reads grow with the
//! data, never with a declared size), and values are dropped iteratively, so a deeply nested
//! stream cannot overflow the stack.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::rc::Rc;

use anyhow::{bail, Context, Result};

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

fn dtype_named(name: &str) -> Option<TorchDType> {
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
    DType(TorchDType),
    Storage(TorchDType),
    TensorClass,
    QScheme,
    Rebuild(Rebuild),
}

/// Resolves `module.name` against the allow-list; anything else is refused by name.
pub fn resolve_global(module: &str, name: &str) -> Result<Global> {
    let module = match module {
        "__builtin__" => "builtins",
        m => m,
    };
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("collections", "Counter") => Global::Counter,
        ("torch.nn.parameter", "Parameter") => Global::Parameter,
        ("torch.serialization", "_get_layout") => Global::GetLayout,
        ("torch", "Size") => Global::Size,
        ("torch", "device") => Global::Device,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("builtins", "bytearray") => Global::Bytearray,
        ("builtins", "set") => Global::Set,
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
}

/// A dense tensor: a view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub dtype: TorchDType,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

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
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// A tensor that cannot be converted, and why.
    Unsupported(&'static str),
    /// An allowed object that is not data (a device, a layout, a complex number...).
    Object(&'static str),
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
        }
    }

    fn as_str(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    fn as_u64(&self, what: &str) -> Result<u64> {
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
    fn items(&self, what: &str) -> Result<Vec<Value>> {
        match self {
            Value::Tuple(t) => Ok(t.to_vec()),
            Value::List(l) => Ok(l.borrow().clone()),
            v => bail!("{what} must be a tuple, not {}", v.type_name()),
        }
    }
}

/// Tuple of values.
fn tuple(items: Vec<Value>) -> Value {
    Value::Tuple(Rc::new(items))
}

// Opcodes (Python's pickle.py).
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
}

/// What one pickle holds.
pub struct Loaded {
    pub value: Value,
    /// The bytes the pickle took, up to and including its STOP.
    pub consumed: u64,
    /// Every storage its persistent ids named, in order.
    pub storages: Vec<Rc<StorageRef>>,
}

/// Reads one pickle from `input`.
pub fn load(input: &mut dyn BufRead) -> Result<Loaded> {
    let mut u = Unpickler {
        input,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: Vec::new(),
    };
    let value = u.run()?;
    Ok(Loaded {
        value,
        consumed: u.pos,
        storages: std::mem::take(&mut u.storages),
    })
}

/// Reads one pickle from a byte slice.
pub fn load_slice(mut bytes: &[u8]) -> Result<Value> {
    Ok(load(&mut bytes)?.value)
}

struct Unpickler<'a> {
    input: &'a mut dyn BufRead,
    pos: u64,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    storages: Vec<Rc<StorageRef>>,
}

impl Unpickler<'_> {
    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let code = self.byte()?;
            self.step(code)
                .with_context(|| format!("pickle opcode 0x{code:02x} at byte {at}"))?;
            if code == op::STOP {
                return self.pop();
            }
        }
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        (&mut self.input)
            .take(n)
            .read_to_end(&mut v)
            .context("read error in the pickle")?;
        self.pos += v.len() as u64;
        if (v.len() as u64) < n {
            bail!("the pickle ends early (truncated input)");
        }
        Ok(v)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let v = self.bytes(N as u64)?;
        Ok(v.try_into().expect("length checked"))
    }

    fn line(&mut self) -> Result<String> {
        let mut v = Vec::new();
        (&mut self.input)
            .take(1 << 16)
            .read_until(b'\n', &mut v)
            .context("read error in the pickle")?;
        self.pos += v.len() as u64;
        if v.pop() != Some(b'\n') {
            bail!("the pickle ends early (truncated input) or has an overlong line");
        }
        String::from_utf8(v).context("a GLOBAL name is not UTF-8")
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            bail!("stack underflow (corrupt pickle)");
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn top(&mut self) -> Result<&mut Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            bail!("stack underflow (corrupt pickle)");
        }
        Ok(self.stack.last_mut().expect("checked"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            bail!("no MARK on the stack (corrupt pickle)");
        };
        Ok(self.stack.split_off(m))
    }

    fn u32_len(&mut self) -> Result<u64> {
        Ok(u32::from_le_bytes(self.fixed()?) as u64)
    }

    fn u64_len(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.fixed()?))
    }

    fn string(&mut self, n: u64) -> Result<Value> {
        let b = self.bytes(n)?;
        let s = String::from_utf8(b).context("a string is not valid UTF-8")?;
        Ok(Value::Str(s.into()))
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        match self.memo.get(&key) {
            Some(v) => {
                let v = v.clone();
                self.push(v);
                Ok(())
            }
            None => bail!("memo entry {key} is read before it is written (corrupt pickle)"),
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn step(&mut self, code: u8) -> Result<()> {
        match code {
            op::PROTO => {
                let p = self.byte()?;
                if p > 5 {
                    bail!("pickle protocol {p} is newer than 5");
                }
            }
            op::FRAME => {
                self.fixed::<8>()?;
            }
            op::STOP => {}
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.pop_mark()?;
                } else {
                    self.pop()?;
                }
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let v = self.top()?.clone();
                self.push(v);
            }
            op::NONE => self.push(Value::None),
            op::NEWTRUE => self.push(Value::Bool(true)),
            op::NEWFALSE => self.push(Value::Bool(false)),
            op::BININT => {
                let v = i32::from_le_bytes(self.fixed()?);
                self.push(Value::Int(v as i64));
            }
            op::BININT1 => {
                let v = self.byte()?;
                self.push(Value::Int(v as i64));
            }
            op::BININT2 => {
                let v = u16::from_le_bytes(self.fixed()?);
                self.push(Value::Int(v as i64));
            }
            op::LONG1 => {
                let n = self.byte()? as u64;
                let b = self.bytes(n)?;
                self.push(long(&b));
            }
            op::LONG4 => {
                let n = i32::from_le_bytes(self.fixed()?);
                if n < 0 {
                    bail!("negative LONG4 length");
                }
                let b = self.bytes(n as u64)?;
                self.push(long(&b));
            }
            op::BINFLOAT => {
                let v = f64::from_be_bytes(self.fixed()?);
                self.push(Value::Float(v));
            }
            op::BINUNICODE => {
                let n = self.u32_len()?;
                let s = self.string(n)?;
                self.push(s);
            }
            op::SHORT_BINUNICODE => {
                let n = self.byte()? as u64;
                let s = self.string(n)?;
                self.push(s);
            }
            op::BINUNICODE8 => {
                let n = self.u64_len()?;
                let s = self.string(n)?;
                self.push(s);
            }
            op::SHORT_BINSTRING => {
                let n = self.byte()? as u64;
                let b = self.bytes(n)?;
                self.push(Value::Bytes(b.into()));
            }
            op::BINSTRING => {
                let n = i32::from_le_bytes(self.fixed()?);
                if n < 0 {
                    bail!("negative BINSTRING length");
                }
                let b = self.bytes(n as u64)?;
                self.push(Value::Bytes(b.into()));
            }
            op::SHORT_BINBYTES => {
                let n = self.byte()? as u64;
                let b = self.bytes(n)?;
                self.push(Value::Bytes(b.into()));
            }
            op::BINBYTES => {
                let n = self.u32_len()?;
                let b = self.bytes(n)?;
                self.push(Value::Bytes(b.into()));
            }
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = self.u64_len()?;
                let b = self.bytes(n)?;
                self.push(Value::Bytes(b.into()));
            }
            op::EMPTY_LIST => self.push(Value::List(Default::default())),
            op::EMPTY_DICT => self.push(Value::Dict(Default::default())),
            op::EMPTY_SET => self.push(Value::List(Default::default())),
            op::EMPTY_TUPLE => self.push(tuple(Vec::new())),
            op::LIST => {
                let items = self.pop_mark()?;
                self.push(Value::List(Rc::new(RefCell::new(items))));
            }
            op::TUPLE | op::FROZENSET => {
                let items = self.pop_mark()?;
                self.push(tuple(items));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (code - op::TUPLE1 + 1) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(tuple(items));
            }
            op::DICT => {
                let items = self.pop_mark()?;
                let d = Value::Dict(Default::default());
                set_items(&d, items)?;
                self.push(d);
            }
            op::APPEND => {
                let v = self.pop()?;
                append(self.top()?, vec![v])?;
            }
            op::APPENDS | op::ADDITEMS => {
                let items = self.pop_mark()?;
                append(self.top()?, items)?;
            }
            op::SETITEM => {
                let v = self.pop()?;
                let k = self.pop()?;
                set_items(self.top()?, vec![k, v])?;
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                set_items(self.top()?, items)?;
            }
            op::GET => {
                let l = self.line()?;
                let k = l.trim().parse().context("bad GET index")?;
                self.memo_get(k)?;
            }
            op::BINGET => {
                let k = self.byte()? as u64;
                self.memo_get(k)?;
            }
            op::LONG_BINGET => {
                let k = self.u32_len()?;
                self.memo_get(k)?;
            }
            op::PUT => {
                let l = self.line()?;
                let k = l.trim().parse().context("bad PUT index")?;
                self.memo_put(k)?;
            }
            op::BINPUT => {
                let k = self.byte()? as u64;
                self.memo_put(k)?;
            }
            op::LONG_BINPUT => {
                let k = self.u32_len()?;
                self.memo_put(k)?;
            }
            op::MEMOIZE => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?;
            }
            op::GLOBAL => {
                let module = self.line()?;
                let name = self.line()?;
                let g = resolve_global(&module, &name)?;
                self.push(Value::Global(Rc::new(g)));
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    bail!("STACK_GLOBAL needs two strings");
                };
                let g = resolve_global(module, name)?;
                self.push(Value::Global(Rc::new(g)));
            }
            op::REDUCE => {
                let args = self.pop()?;
                let func = self.pop()?;
                let args = args.items("REDUCE arguments")?;
                let v = call(&func, args)?;
                self.push(v);
            }
            op::NEWOBJ => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = new_object(&cls, args.items("NEWOBJ arguments")?)?;
                self.push(v);
            }
            op::NEWOBJ_EX => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = new_object(&cls, args.items("NEWOBJ_EX arguments")?)?;
                self.push(v);
            }
            op::BUILD => {
                let _state = self.pop()?;
                match self.top()? {
                    // OrderedDict attributes (`_metadata`) and the state of opaque objects
                    // carry no tensor data.
                    Value::Dict(_) | Value::Object(_) | Value::Unsupported(_) => {}
                    Value::Tensor(_) => bail!("BUILD on a tensor (the legacy set_ form) is not supported"),
                    v => bail!("BUILD on a {} is not allowed", v.type_name()),
                }
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                let v = persistent_load(&pid)?;
                if let Value::Storage(s) = &v {
                    self.storages.push(s.clone());
                }
                self.push(v);
            }
            other => bail!(
                "opcode 0x{other:02x} is not allowed in a weights-only pickle (or is not a pickle opcode)"
            ),
        }
        Ok(())
    }
}

/// A little-endian two's-complement integer (LONG1 / LONG4).
fn long(b: &[u8]) -> Value {
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

fn append(target: &mut Value, items: Vec<Value>) -> Result<()> {
    match target {
        Value::List(l) => {
            l.borrow_mut().extend(items);
            Ok(())
        }
        v => bail!("can only append to lists, not to a {}", v.type_name()),
    }
}

fn set_items(target: &Value, items: Vec<Value>) -> Result<()> {
    let Value::Dict(d) = target else {
        bail!(
            "can only set items of a dict, not of a {}",
            target.type_name()
        );
    };
    if items.len() % 2 != 0 {
        bail!("an odd number of items for a dict");
    }
    let mut d = d.borrow_mut();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        // A repeated key replaces the earlier value, as in Python.
        if let Some(slot) = d.iter_mut().find(|(old, _)| same_key(old, &k)) {
            slot.1 = v;
        } else {
            d.push((k, v));
        }
    }
    Ok(())
}

fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(a), Value::Str(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Bytes(a), Value::Bytes(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::None, Value::None) => true,
        _ => false,
    }
}

fn global_of(v: &Value) -> Result<&Global> {
    match v {
        Value::Global(g) => Ok(g),
        v => bail!("cannot call a {} (only allowed globals)", v.type_name()),
    }
}

/// What calling an allowed global (REDUCE) builds.
fn call(func: &Value, args: Vec<Value>) -> Result<Value> {
    let g = global_of(func)?;
    Ok(match g {
        Global::OrderedDict | Global::Counter => {
            let d = Value::Dict(Default::default());
            if let Some(init) = args.first() {
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
    })
}

/// What NEWOBJ of an allowed class builds.
fn new_object(cls: &Value, args: Vec<Value>) -> Result<Value> {
    match global_of(cls)? {
        // Parameter(data, requires_grad) is its data.
        Global::Parameter => match args.into_iter().next() {
            Some(t @ (Value::Tensor(_) | Value::Unsupported(_))) => Ok(t),
            Some(v) => bail!("a Parameter of a {}", v.type_name()),
            None => Ok(Value::Object("empty Parameter")),
        },
        Global::OrderedDict | Global::Counter => Ok(Value::Dict(Default::default())),
        Global::Set => Ok(Value::List(Default::default())),
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
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage,
                dtype,
                offset,
                size,
                stride,
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
fn persistent_load(pid: &Value) -> Result<Value> {
    let Value::Tuple(items) = pid else {
        bail!(
            "a persistent id must be a storage tuple, not a {}",
            pid.type_name()
        );
    };
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
    Ok(Value::Storage(Rc::new(StorageRef {
        dtype,
        key,
        numel,
        view,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_os_system_by_name() {
        // protocol 2: GLOBAL posix system, a string, TUPLE1, REDUCE, STOP
        let p = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echoq\x00\x85R.";
        let e = format!("{:#}", load_slice(p).unwrap_err());
        assert!(e.contains("posix.system"), "{e}");
        let p = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        let e = format!("{:#}", load_slice(p).unwrap_err());
        assert!(e.contains("builtins.eval"), "{e}");
    }

    #[test]
    fn builds_dicts_lists_and_numbers() {
        // {'a': [1, -2, 300, 2**40], 'b': 1.5} at protocol 2
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01\x8a\x06\x00\x00\x00\x00\x00\x01eX\x01\x00\x00\x00bq\x03G?\xf8\x00\x00\x00\x00\x00\x00u.";
        let v = load_slice(p).unwrap();
        let Value::Dict(d) = &v else { panic!() };
        let d = d.borrow();
        assert_eq!(d.len(), 2);
        let Value::List(l) = &d[0].1 else { panic!() };
        let got: Vec<i64> = l
            .borrow()
            .iter()
            .map(|v| match v {
                Value::Int(i) => *i,
                _ => panic!(),
            })
            .collect();
        assert_eq!(got, vec![1, -2, 300, 1 << 40]);
        assert!(matches!(d[1].1, Value::Float(f) if f == 1.5));
    }

    #[test]
    fn truncation_and_bad_memo_are_errors() {
        assert!(load_slice(b"\x80\x02X\xff\xff\xff\x7fab").is_err());
        assert!(load_slice(b"\x80\x02h\x05.").is_err());
        assert!(load_slice(b"\x80\x02.").is_err());
        assert!(load_slice(b"\x80\x09N.").is_err());
    }

    #[test]
    fn deep_nesting_drops_without_recursion() {
        let mut p = b"\x80\x02".to_vec();
        for _ in 0..200_000 {
            p.push(b']');
        }
        for _ in 0..199_999 {
            p.push(b'a');
        }
        p.push(b'.');
        assert!(load_slice(&p).is_ok());
    }

    #[test]
    fn rebuilds_a_tensor_from_a_storage() {
        // _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 6), 1, (2, 2), (3, 1), False, OrderedDict())
        let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
        p.extend(b"K\x01K\x02K\x02\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)RtR.");
        let Value::Tensor(ref t) = load_slice(&p).unwrap() else {
            panic!()
        };
        assert_eq!(t.storage.key, "0");
        assert_eq!(t.storage.numel, 6);
        assert_eq!(t.dtype.dtype, Some(DType::F32));
        assert_eq!(
            (t.offset, &t.size[..], &t.stride[..]),
            (1, &[2, 2][..], &[3, 1][..])
        );
    }
}
