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
//! Globals off the allow-list: in strict mode ([`Options::strict`], `--weights-only`) they are
//! refused as torch refuses them; otherwise a global that only an attack would name
//! (`records::is_attack`: `os.system`, `builtins.eval`, ...) is refused by name and any other
//! becomes an inert [`Record`] (`records.rs`), never imported, never called. Pickled NumPy
//! arrays are read by `numpy.rs`, and torch tensors pickled by value (`pickle.dump` of a
//! tensor: `torch.storage._load_from_bytes`) by `nested.rs`.
//!
//! Bounds: every length is checked against the bytes actually present (reads grow with the
//! data, never with a declared size); bytes objects over [`LAZY_BYTES`] are not read but kept
//! as the span of the stream they lie in (passed over with a seek when the pickle is read from
//! a file range), and so are such strings, which protocol 2 uses for bytes (`latin1.rs` decodes
//! one to a temporary file when `_codecs.encode` is called on it); every value, memo entry and byte held is charged to a
//! budget ([`Options::budget`]) that ends the read with an error before memory grows past it;
//! values are shared, never copied, through the memo, and dropped iteratively, so a deeply
//! nested stream cannot overflow the stack.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::input::{FileRange, RangeReader};

mod allow;
mod latin1;
mod nested;
pub mod numpy;
pub mod records;
mod value;

use allow::{call, new_object, persistent_load};
pub use allow::{resolve_global, Global, Rebuild, StorageRef, TensorRef, TorchDType};
pub use numpy::Blob;
pub use records::Record;

/// Byte strings longer than this are not read: the unpickler keeps their span.
pub const LAZY_BYTES: u64 = 64 << 10;

/// The default budget: about this many bytes of values, memo entries and strings held.
pub const DEFAULT_BUDGET: u64 = 64 << 20;

/// How the unpickler treats globals, and how much it may hold.
#[derive(Clone, Debug)]
pub struct Options {
    /// Refuse every global off torch's weights-only allow-list (`--weights-only`), instead of
    /// reading classes as records.
    pub strict: bool,
    /// With `strict`, refuse NumPy's globals too: a PyTorch archive, where
    /// `torch.load(weights_only=True)` refuses them (`numpy._core.multiarray._reconstruct`, ...);
    /// a plain pickle of NumPy arrays (`plain.rs`) needs them and leaves this off.
    pub strict_numpy: bool,
    /// The most bytes of values, memo entries and strings held at once (an estimate: 48 bytes
    /// per value, 64 per memo entry, plus string lengths).
    pub budget: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            strict: false,
            strict_numpy: false,
            budget: DEFAULT_BUDGET,
        }
    }
}

use value::{append, long, set_items, shallow, tuple};
pub use value::{Shared, Value};

mod op;

/// The longest string or bytes object accepted: state dicts hold names, not data (a legacy
/// file's storages follow the pickle).
const MAX_ITEM: u64 = 1 << 30;

/// What one pickle holds.
pub struct Loaded {
    pub value: Value,
    /// The bytes the pickle took, up to and including its STOP.
    pub consumed: u64,
    /// Every storage its persistent ids named, in order.
    pub storages: Vec<Arc<StorageRef>>,
    /// The bytes of NumPy arrays, by the storage key their tensors name.
    pub blobs: Vec<(String, Blob)>,
    /// How many values the stream built (a walk of the tree that visits many more has met
    /// shared subtrees).
    pub values: u64,
    /// The classes read as records, in order of first use.
    pub classes: Vec<String>,
}

/// Reads one pickle from `input` with the default options.
pub fn load(input: &mut dyn BufRead) -> Result<Loaded> {
    load_with(input, &Options::default())
}

/// Reads one pickle from `input`.
pub fn load_with(input: &mut dyn BufRead, opts: &Options) -> Result<Loaded> {
    load_from(&mut Plain(input), None, opts, &[])
}

/// [`load_with`], with the classes named in `inert` (`module.name`) read as records even where
/// their module is one an attack names: a reader that knows its format stores such objects as
/// plain data (DCP's `.metadata` holds a `pathlib.PosixPath`) lists them. They are never
/// imported or called, like every record.
pub fn load_inert(
    input: &mut dyn BufRead,
    opts: &Options,
    inert: &'static [&'static str],
) -> Result<Loaded> {
    load_from(&mut Plain(input), None, opts, inert)
}

/// What the unpickler reads from: a buffered stream that can pass over the bytes of a large
/// bytes object (kept as a span, never read) without reading them.
trait Stream: BufRead {
    /// Passes over `n` bytes (an `UnexpectedEof` error when fewer are left).
    fn pass(&mut self, n: u64) -> std::io::Result<()>;
}

/// Any buffered reader: passing over bytes reads them.
struct Plain<'a>(&'a mut dyn BufRead);

impl Read for Plain<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl BufRead for Plain<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.0.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.0.consume(n)
    }
}

impl Stream for Plain<'_> {
    fn pass(&mut self, mut left: u64) -> std::io::Result<()> {
        while left > 0 {
            let buf = self.0.fill_buf()?;
            if buf.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let k = (buf.len() as u64).min(left) as usize;
            self.0.consume(k);
            left -= k as u64;
        }
        Ok(())
    }
}

/// A range of a file: passing over bytes is a seek (the unpickler checks them against the
/// range's length first), so the bytes of large arrays are not read twice.
impl Stream for std::io::BufReader<RangeReader> {
    fn pass(&mut self, n: u64) -> std::io::Result<()> {
        self.seek_relative(i64::try_from(n).map_err(std::io::Error::other)?)
    }
}

/// Reads the pickle that `range` holds (from its first byte). Large bytes objects are spans of
/// `range`, which a torch tensor pickled by value (`nested.rs`) is read from.
pub fn load_range(range: &FileRange, opts: &Options) -> Result<Loaded> {
    let mut r = std::io::BufReader::new(RangeReader::new(range.clone()));
    load_from(&mut r, Some(range.clone()), opts, &[])
}

fn load_from(
    input: &mut dyn Stream,
    source: Option<FileRange>,
    opts: &Options,
    inert: &'static [&'static str],
) -> Result<Loaded> {
    let mut u = Unpickler {
        input,
        source,
        inert,
        opts: opts.clone(),
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: Vec::new(),
        blobs: Vec::new(),
        charged: 0,
        values: 0,
        classes: Vec::new(),
    };
    let value = u.run()?;
    Ok(Loaded {
        value,
        consumed: u.pos,
        storages: std::mem::take(&mut u.storages),
        blobs: std::mem::take(&mut u.blobs),
        values: u.values,
        classes: std::mem::take(&mut u.classes),
    })
}

/// Reads one pickle from a byte slice.
pub fn load_slice(mut bytes: &[u8]) -> Result<Value> {
    Ok(load(&mut bytes)?.value)
}

struct Unpickler<'a> {
    input: &'a mut dyn Stream,
    /// The pickle as a range, when read from one (what `Value::Span`s are offsets into).
    source: Option<FileRange>,
    /// Classes read as records whatever their module (see [`load_inert`]).
    inert: &'static [&'static str],
    opts: Options,
    pos: u64,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    storages: Vec<Arc<StorageRef>>,
    blobs: Vec<(String, Blob)>,
    /// Bytes charged to the budget so far (never given back: a bound, not a measure).
    charged: u64,
    values: u64,
    classes: Vec<String>,
}

impl Unpickler<'_> {
    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let code = self.byte()?;
            self.step(code)
                .with_context(|| format!("pickle opcode 0x{code:02x} at byte {at}"))?;
            if self.charged > self.opts.budget {
                bail!(
                    "the pickle builds more than {} MiB of values (at byte {at}): refused as a memory bomb; nothing was executed",
                    self.opts.budget >> 20
                );
            }
            if code == op::STOP {
                return self.pop();
            }
        }
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > MAX_ITEM {
            bail!("a pickled string or bytes object of {n} bytes is larger than the {MAX_ITEM} allowed");
        }
        self.charged += n;
        if self.charged > self.opts.budget {
            bail!(
                "the pickle holds more than {} MiB of strings and values: refused as a memory bomb",
                self.opts.budget >> 20
            );
        }
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
        self.charged += 48;
        self.values += 1;
        self.stack.push(v);
    }

    /// A bytes object of `n` bytes: read when small, else skipped and kept as its span.
    fn bytes_value(&mut self, n: u64) -> Result<Value> {
        if n <= LAZY_BYTES {
            return Ok(Value::Bytes(self.bytes(n)?.into()));
        }
        let (start, n) = self.span(n)?;
        Ok(Value::Span(start, n))
    }

    /// Passes over `n` bytes of the input, returning where they start.
    fn span(&mut self, n: u64) -> Result<(u64, u64)> {
        let start = self.pos;
        let end = start.checked_add(n);
        if let Some(src) = &self.source {
            if end.is_none_or(|e| e > src.len()) {
                bail!("the pickle ends early (truncated input)");
            }
        }
        match self.input.pass(n) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bail!("the pickle ends early (truncated input)")
            }
            Err(e) => return Err(e).context("read error in the pickle"),
        }
        self.pos = end.context("the pickle ends early (truncated input)")?;
        Ok((start, n))
    }

    fn global(&mut self, module: &str, name: &str) -> Result<Value> {
        let inert = || {
            self.inert.iter().any(|q| {
                q.strip_prefix(module)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|n| n == name)
            })
        };
        let g = if !self.opts.strict && inert() {
            Global::Class(format!("{module}.{name}").into())
        } else if self.opts.strict
            && self.opts.strict_numpy
            && numpy::resolve(module, name).is_some()
        {
            bail!(
                "the pickle calls the global {module}.{name} (a NumPy value in a PyTorch file), which torch.load(weights_only=True) does not allow; nothing was executed"
            )
        } else {
            resolve_global(module, name, self.opts.strict)?
        };
        if let Global::Class(c) = &g {
            if !self.classes.iter().any(|k| **k == **c) && self.classes.len() < 1000 {
                self.classes.push(c.to_string());
            }
        }
        Ok(Value::Global(Rc::new(g)))
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
        // A long string read from a file is left there: protocol 2 pickles bytes as latin1
        // strings (`latin1.rs`).
        if n > LAZY_BYTES && self.source.is_some() {
            let (start, n) = self.span(n)?;
            return Ok(Value::StrSpan(start, n));
        }
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
        self.charged += 64;
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
            op::MARK => {
                self.charged += 16;
                self.marks.push(self.stack.len());
            }
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
                let b = self.bytes_value(n as u64)?;
                self.push(b);
            }
            op::SHORT_BINBYTES => {
                let n = self.byte()? as u64;
                let b = self.bytes_value(n)?;
                self.push(b);
            }
            op::BINBYTES => {
                let n = self.u32_len()?;
                let b = self.bytes_value(n)?;
                self.push(b);
            }
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = self.u64_len()?;
                let b = self.bytes_value(n)?;
                self.push(b);
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
                let g = self.global(&module, &name)?;
                self.push(g);
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    bail!("STACK_GLOBAL needs two strings");
                };
                let (module, name) = (module.clone(), name.clone());
                let g = self.global(&module, &name)?;
                self.push(g);
            }
            op::REDUCE => {
                let args = self.pop()?;
                let func = self.pop()?;
                let args = args.items("REDUCE arguments")?;
                // A call may copy its arguments' items (OrderedDict, set, torch.Size).
                self.charged += 48 * shallow(&args);
                let v = match (&func, args.first()) {
                    (Value::Global(g), _) if **g == Global::LoadFromBytes => {
                        nested::load_from_bytes(&args, self.source.as_ref(), &mut self.blobs)?
                    }
                    (Value::Global(g), Some(Value::StrSpan(..)))
                        if **g == Global::CodecsEncode =>
                    {
                        latin1::encode(&args, self.source.as_ref())?
                    }
                    _ => call(&func, args, &mut self.blobs)?,
                };
                self.push(v);
            }
            op::NEWOBJ => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = args.items("NEWOBJ arguments")?;
                self.charged += 48 * shallow(&args);
                let v = new_object(&cls, args)?;
                self.push(v);
            }
            op::NEWOBJ_EX => {
                // The keyword arguments of a record's `__new__` are dropped.
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = new_object(&cls, args.items("NEWOBJ_EX arguments")?)?;
                self.push(v);
            }
            op::BUILD => {
                let state = self.pop()?;
                let blobs = &mut self.blobs;
                match self.stack.last() {
                    None => bail!("stack underflow (corrupt pickle)"),
                    Some(Value::Record(r)) => *r.state.borrow_mut() = state,
                    Some(Value::NdArray(a)) => numpy::build_array(a, &state, blobs)?,
                    Some(Value::NpDType(d)) => numpy::build_dtype(d, &state)?,
                    // OrderedDict attributes (`_metadata`) and the state of opaque objects
                    // carry no tensor data.
                    Some(Value::Dict(_) | Value::Object(_) | Value::Unsupported(_)) => {}
                    Some(Value::Tensor(_)) => bail!("BUILD on a tensor (the legacy set_ form) is not supported"),
                    Some(v) => bail!("BUILD on a {} is not allowed", v.type_name()),
                }
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                let v = persistent_load(&pid, self.opts.strict)?;
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

#[cfg(test)]
mod tests;

/// The torch dtype named `name` (`float32`), as the allow-list knows it.
pub fn resolve_dtype(name: &str) -> Option<TorchDType> {
    allow::dtype_named(name)
}
