//! Torch tensors inside plain pickles (`pickle.dump` / `pickle.dumps` of a tensor, not
//! `torch.save`): torch reduces a tensor's storage to `torch.storage._load_from_bytes(b)`, where
//! `b` is a whole legacy `torch.save` of that storage (`TypedStorage.__reduce__`: the magic
//! number, the protocol version, sys_info, a pickle that is only the storage's persistent id,
//! the storage key list, then the storage as an 8-byte element count and its bytes).
//!
//! Read here as data, never by calling `torch.load`: the five small pickles go through the
//! strict unpickler (only the storage classes are allowed, so a nested file cannot nest again)
//! within a small budget; the storage's bytes are left where they lie and handed on as a
//! [`Blob`] like a NumPy array's: a span of the outer pickle (never copied) when `b` was too
//! large to be read, a range of the temporary file a large protocol-2 string was decoded into
//! (`latin1.rs`), else the bytes already held. Called by the unpickler (`mod.rs`) on `REDUCE`
//! of `torch.storage._load_from_bytes`; its storage goes to `_rebuild_tensor_v2`/`_v3`
//! (`allow.rs`) like a persistent id's. A nested file that cannot be read becomes a
//! [`Blob::Broken`] storage, so that the error is raised by `torch/tree.rs` naming the tensor
//! that uses it.

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::numpy::Blob;
use super::{load_with, Options, StorageRef, Value};
use crate::input::{FileRange, RangeReader};

/// The most the small pickles of one nested file may build.
const NESTED_BUDGET: u64 = 1 << 20;

/// The bytes `_load_from_bytes` is called with: held, or a range of the outer pickle.
enum Nested<'a> {
    Mem(&'a [u8]),
    File(FileRange),
}

impl Nested<'_> {
    fn len(&self) -> u64 {
        match self {
            Nested::Mem(b) => b.len() as u64,
            Nested::File(r) => r.len(),
        }
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Nested::Mem(b) => {
                let end = pos.checked_add(buf.len() as u64);
                match end {
                    Some(e) if e <= b.len() as u64 => {
                        buf.copy_from_slice(&b[pos as usize..e as usize]);
                        Ok(())
                    }
                    _ => bail!("the nested torch.save ends early (truncated)"),
                }
            }
            Nested::File(r) => r
                .read_at(pos, buf)
                .context("the nested torch.save ends early (truncated)"),
        }
    }

    fn reader(&self) -> Box<dyn BufRead + '_> {
        match self {
            Nested::Mem(b) => Box::new(*b),
            Nested::File(r) => {
                Box::new(BufReader::with_capacity(4096, RangeReader::new(r.clone())))
            }
        }
    }
}

/// What `torch.storage._load_from_bytes(b)` builds: a storage whose bytes are a new blob, or,
/// when `b` is not a readable legacy file, a storage whose blob is [`Blob::Broken`]. `source`
/// is the outer pickle, which large `b` are spans of.
pub(super) fn load_from_bytes(
    args: &[Value],
    source: Option<&FileRange>,
    blobs: &mut Vec<(String, Blob)>,
) -> Result<Value> {
    let key = format!("pickle:{}", blobs.len());
    let (nested, span_at) = match args.first() {
        Some(Value::Bytes(b)) => (Nested::Mem(&b[..]), None),
        Some(Value::Spooled(r)) => (Nested::File(r.clone()), None),
        Some(Value::Span(off, len)) => match source {
            Some(s) => (
                Nested::File(
                    s.slice(*off, *len)
                        .context("a storage pickled by value lies past the end of the pickle")?,
                ),
                Some(*off),
            ),
            None => {
                blobs.push((
                    key.clone(),
                    Blob::Broken(
                        "its bytes are too large to be held and the pickle is not read from a file"
                            .into(),
                    ),
                ));
                return Ok(placeholder(key));
            }
        },
        Some(v) => bail!(
            "torch.storage._load_from_bytes of a {}, not bytes",
            v.type_name()
        ),
        None => bail!("torch.storage._load_from_bytes without its bytes"),
    };
    match parse(&nested) {
        Ok((mut s, at, len)) => {
            let blob = match (&nested, span_at) {
                (Nested::Mem(b), _) => Blob::Bytes(b[at as usize..(at + len) as usize].into()),
                (Nested::File(_), Some(off)) => Blob::Span(off + at, len),
                (Nested::File(r), None) => Blob::Range(r.slice(at, len)?),
            };
            blobs.push((key.clone(), blob));
            s.key = key;
            Ok(Value::Storage(Arc::new(s)))
        }
        Err(e) => {
            blobs.push((key.clone(), Blob::Broken(format!("{e:#}").into())));
            Ok(placeholder(key))
        }
    }
}

/// A storage standing for one that could not be read (any tensor on it is refused by name).
fn placeholder(key: String) -> Value {
    Value::Storage(Arc::new(StorageRef {
        dtype: super::allow::dtype_named("uint8").expect("listed"),
        key,
        numel: 0,
        view: None,
        big_endian: false,
    }))
}

/// Reads a legacy `torch.save` of one storage: its storage reference (key and size from the
/// file), and where its bytes start and how many there are.
fn parse(b: &Nested) -> Result<(StorageRef, u64, u64)> {
    let opts = Options {
        strict: true,
        strict_numpy: true,
        budget: NESTED_BUDGET,
    };
    let mut r = b.reader();
    let mut pos = 0u64;
    let mut next = |what: &str| -> Result<Value> {
        let l =
            load_with(&mut r, &opts).with_context(|| format!("the nested torch.save's {what}"))?;
        pos += l.consumed;
        Ok(l.value)
    };
    if !matches!(next("magic number")?, Value::BigInt) {
        bail!("not a legacy torch.save: bad magic number");
    }
    if !matches!(next("protocol version")?, Value::Int(1001)) {
        bail!("the nested torch.save's protocol version is not 1001");
    }
    let mut big_endian = false;
    if let Value::Dict(d) = &next("sys_info")? {
        for (k, v) in d.borrow().iter() {
            if let (Value::Str(k), Value::Bool(little)) = (k, v) {
                if &**k == "little_endian" {
                    big_endian = !little;
                }
            }
        }
    }
    let s = match &next("storage")? {
        Value::Storage(s) => s.clone(),
        _ => bail!("the nested torch.save holds something other than one storage"),
    };
    let keys = next("storage key list")?;
    let one = match &keys {
        Value::List(l) => l.borrow().len() == 1,
        _ => false,
    };
    if !one {
        bail!("the nested torch.save does not list exactly one storage");
    }
    let mut count = [0u8; 8];
    b.read_at(pos, &mut count)?;
    let count = if big_endian {
        u64::from_be_bytes(count)
    } else {
        u64::from_le_bytes(count)
    };
    let item = s.dtype.item_size;
    let at = pos + 8;
    let have = b.len().saturating_sub(at);
    let len = count.checked_mul(item).filter(|&n| n <= have);
    let Some(len) = len else {
        bail!(
            "the nested torch.save declares a storage of {count} elements of {item} bytes, but only {have} bytes follow its header (truncated or corrupt)"
        );
    };
    if s.view.is_none() && count != s.numel {
        bail!(
            "the nested torch.save's storage is named with {} elements but holds {count}",
            s.numel
        );
    }
    let mut s = (*s).clone();
    s.numel = count;
    s.big_endian = big_endian && item > 1;
    Ok((s, at, len))
}
