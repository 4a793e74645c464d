//! One DeepSpeed rank file (`*_model_states.pt`, `*_optim_states.pt`): a `torch.save` zip
//! archive, opened through the PyTorch reader's archive (`torch/container.rs`: member headers,
//! sizes and CRC-32) and unpickled by the restricted unpickler of `pickle/`, DeepSpeed's own
//! classes (`LossScaler`, `ZeroStageEnum`, `fragment_address`) read as inert records, never
//! imported. Only the fields `zero_to_fp32.py` uses are taken out of the pickled tree, and the
//! tree is dropped at once: what is kept of a file is a [`Flat`] per tensor used, a handle on the
//! storage member with the tensor's byte offset and length, read by range when its elements go
//! out. `mod.rs` opens the files; `plan.rs` never sees them.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use crate::container::zip::MemberData;
use crate::dtype::DType;
use crate::input::{self, RangeReader};
use crate::source::pickle::{self, TensorRef, Value};
use crate::source::torch::container::{self, TorchArchive};

/// The most a rank file's `data.pkl` may hold: the pickles are metadata (names, shapes, a
/// DeepSpeed config), the tensors lie in the storage members.
const MAX_PICKLE: u64 = 256 << 20;

/// A contiguous tensor of a rank file, not read: its storage member and where it lies in it.
#[derive(Clone, Debug)]
pub struct Flat {
    pub data: Arc<MemberData>,
    /// Byte offset of the first element in the storage member.
    pub offset: u64,
    pub numel: u64,
    pub shape: Vec<u64>,
    pub dtype: DType,
    /// The file, for messages.
    pub file: Arc<str>,
}

/// A rank file opened: its pickled tree (plain values and records) and its storage members.
pub struct PtFile {
    pub display: Arc<str>,
    pub root: Value,
    storages: HashMap<String, Arc<MemberData>>,
}

impl PtFile {
    pub fn open(path: &Path, max_bytes: u64) -> Result<PtFile> {
        let display: Arc<str> = path.display().to_string().into();
        Self::read(path, max_bytes).with_context(|| display.to_string())
    }

    fn read(path: &Path, max_bytes: u64) -> Result<PtFile> {
        let data = input::open_range(path)?;
        let mut arch = TorchArchive::open(&data, max_bytes)?;
        if arch.big_endian()? {
            bail!("a big-endian torch.save archive (byteorder 'big') is not supported here");
        }
        let Some(pkl) = arch.member("data.pkl")? else {
            bail!("not a torch.save archive: no {}/data.pkl", arch.root);
        };
        if pkl.size > MAX_PICKLE {
            bail!(
                "{} is {} bytes, more than the {MAX_PICKLE} a rank file's pickle may hold",
                pkl.name,
                pkl.size
            );
        }
        let range = MemberData::new(pkl).range()?;
        let mut r = BufReader::new(RangeReader::new(range));
        let loaded = pickle::load_with(&mut r, &pickle::Options::default())
            .with_context(|| format!("{}/data.pkl", arch.root))?;
        let storages = container::storage_members(&mut arch, &loaded)?;
        Ok(PtFile {
            display: path.display().to_string().into(),
            root: loaded.value,
            storages,
        })
    }

    /// The top-level field `key`, which must be present.
    pub fn field(&self, key: &str) -> Result<Value> {
        get(&self.root, key)?
            .ok_or_else(|| anyhow!("no '{key}' entry: not a DeepSpeed file of this kind"))
    }

    /// A tensor of this file as a [`Flat`], its view checked against its storage member: a
    /// contiguous view of a known dtype that lies inside the member.
    pub fn flat(&self, v: &Value, what: &str) -> Result<Flat> {
        let t = match v {
            Value::Tensor(t) => t,
            Value::Unsupported(why) => bail!("{what} cannot be read: {why}"),
            v => bail!("{what} is a {}, not a tensor", v.type_name()),
        };
        self.flat_of(t).with_context(|| what.to_string())
    }

    fn flat_of(&self, t: &TensorRef) -> Result<Flat> {
        let Some(dtype) = t.dtype.dtype else {
            bail!("dtype torch.{} is not supported", t.dtype.name);
        };
        if t.conj || t.neg || t.storage.big_endian || t.storage.view.is_some() {
            bail!("a conjugate, negative, big-endian or legacy view is not supported here");
        }
        if t.size.len() != t.stride.len() {
            bail!("size and stride differ in length");
        }
        let mut expect = 1u64;
        for (&n, &st) in t.size.iter().zip(&t.stride).rev() {
            if n != 1 && st != expect {
                bail!(
                    "a strided view (size {:?}, stride {:?}) is not supported here",
                    t.size,
                    t.stride
                );
            }
            expect = expect.checked_mul(n).context("the shape overflows")?;
        }
        let numel = expect;
        let item = t.dtype.item_size;
        if dtype.item_size() != Some(item as usize) || item == 0 {
            bail!("dtype torch.{} has an unexpected item size", t.dtype.name);
        }
        let data = self
            .storages
            .get(&t.storage.key)
            .ok_or_else(|| anyhow!("storage '{}' is missing", t.storage.key))?;
        let offset = t.offset.checked_mul(item).context("the offset overflows")?;
        let end = numel
            .checked_mul(item)
            .and_then(|n| n.checked_add(offset))
            .context("the view overflows")?;
        if end > data.len() {
            bail!(
                "the view ends at byte {end}, past the end of its storage {} ({} bytes)",
                data.name(),
                data.len()
            );
        }
        Ok(Flat {
            data: data.clone(),
            offset,
            numel,
            shape: t.size.clone(),
            dtype,
            file: self.display.clone(),
        })
    }
}

/// `d[key]` of a dict (or a record's attribute); `None` when absent or `d` holds no such key.
pub fn get(d: &Value, key: &str) -> Result<Option<Value>> {
    Ok(entries(d, key)?
        .into_iter()
        .rev()
        .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
        .map(|(_, v)| v))
}

/// The key/value pairs of a dict or of a record's state (a dict subclass's entries included).
pub fn entries(d: &Value, what: &str) -> Result<Vec<(Value, Value)>> {
    match d {
        Value::Dict(d) => Ok(d.borrow().clone()),
        Value::Record(r) => {
            let mut out = r.entries.borrow().clone();
            out.extend(r.attributes());
            Ok(out)
        }
        v => bail!("'{what}' is a {}, not a dict", v.type_name()),
    }
}

/// A dict's entries whose keys are strings, in order (`None` is an empty dict).
pub fn str_entries(d: &Value, what: &str) -> Result<Vec<(String, Value)>> {
    if matches!(d, Value::None) {
        return Ok(Vec::new());
    }
    entries(d, what)?
        .into_iter()
        .map(|(k, v)| match &k {
            Value::Str(s) => Ok((s.to_string(), v)),
            k => bail!("'{what}' has a {} key, not a string", k.type_name()),
        })
        .collect()
}

/// The items of a list or tuple.
pub fn items(v: &Value, what: &str) -> Result<Vec<Value>> {
    match v {
        Value::List(l) => Ok(l.borrow().clone()),
        Value::Tuple(t) => Ok(t.to_vec()),
        v => bail!("'{what}' is a {}, not a list", v.type_name()),
    }
}

pub fn int(v: &Value, what: &str) -> Result<u64> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        // an enum member (ZeroStageEnum): REDUCE(cls, (value,)), read as a record
        Value::Record(r) if r.args.len() == 1 => int(&r.args[0], what),
        v => bail!(
            "'{what}' is a {}, not a non-negative integer",
            v.type_name()
        ),
    }
}

pub fn string(v: &Value, what: &str) -> Result<String> {
    match v {
        Value::Str(s) => Ok(s.to_string()),
        v => bail!("'{what}' is a {}, not a string", v.type_name()),
    }
}

/// A `torch.Size` (a tuple of integers).
pub fn shape(v: &Value, what: &str) -> Result<Vec<u64>> {
    items(v, what)?.iter().map(|d| int(d, what)).collect()
}
