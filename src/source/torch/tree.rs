//! Turns an unpickled tree (or a `.pt2` weights config) into a `TorchSource`: names its tensors
//! (`names.rs`), gives NumPy arrays their bytes (held, or spans of the pickle), checks every view
//! against its storage and the total against `--max-decompressed`, and writes the notes (classes
//! read as records, values left out, dtypes with no NumPy form).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::names::Walk;
use super::pickle::{self, StorageRef, TensorRef, Value};
use super::{Entry, Naming, StorageData, TorchSource};
use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::{Kind, TensorMeta};

/// Names the tensors of the unpickled tree and checks each against its storage.
pub(super) fn build(
    path: &str,
    files: Vec<PathBuf>,
    root: Value,
    stem: &str,
    mut storages: HashMap<String, Arc<StorageData>>,
    big_endian: bool,
    naming: Naming,
) -> Result<TorchSource> {
    // Torch storages pickled by value that could not be read: refused with the tensor's name.
    let mut broken: HashMap<String, std::rc::Rc<str>> = HashMap::new();
    for (key, blob) in naming.blobs {
        let range = match (blob, &naming.pickle) {
            (pickle::Blob::Broken(why), _) => {
                broken.insert(key, why);
                continue;
            }
            (pickle::Blob::Bytes(b), _) => FileRange::from_vec(b.to_vec()),
            (pickle::Blob::Range(r), _) => r,
            (pickle::Blob::Span(off, len), Some(p)) => p
                .slice(off, len)
                .context("a NumPy array's bytes lie past the end of the pickle")?,
            (pickle::Blob::Span(..), None) => {
                bail!("internal: an array's bytes without their pickle")
            }
        };
        storages.insert(
            key.clone(),
            Arc::new(StorageData::checked(
                format!("the NumPy array at {key}"),
                range,
            )),
        );
    }
    let mut notes_first = Vec::new();
    let mut walk = Walk {
        script: naming.script.as_ref(),
        ..Default::default()
    };
    match &root {
        Value::Tensor(_) | Value::Unsupported(_) | Value::NdArray(_) => {
            walk.leaf(stem.to_string(), &root)?
        }
        _ => walk.visit(String::new(), &root, 0)?,
    }
    if !walk.opaque.is_empty() {
        let what = format!(
            "{} module(s) keep tensors in a torch.ScriptObject or in a state of their own (__getstate__: the packed parameters of quantized modules), whose state_dict() entries only the modules' own code computes: {}",
            walk.opaque.len(),
            list(&walk.opaque.iter().collect::<Vec<_>>())
        );
        if walk.found.is_empty() {
            bail!("{what}; nothing else holds a tensor. Quantized weights have no NumPy form either: to convert them, save {{k: v.dequantize() if v.is_quantized else v for k, v in model.state_dict().items()}} with torch.save");
        }
        notes_first.push(format!("{what}: those are left out"));
    }
    let mut src = TorchSource {
        path: path.to_string(),
        files,
        metas: Vec::new(),
        entries: Vec::new(),
        storage_of: Vec::new(),
        notes: notes_first,
        check_while_streaming: false,
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    for (name, v) in walk.found {
        if !seen.insert(name.clone()) {
            bail!("two tensors are named '{name}'");
        }
        if let Value::Tensor(t) = &v {
            if let Some(why) = broken.remove(&t.storage.key) {
                bail!("tensor '{name}': its storage, pickled by value (torch.storage._load_from_bytes of a nested torch.save), cannot be read: {why}");
            }
        }
        let (entry, dtype, shape, storage) = match &v {
            Value::Tensor(t) => match t.dtype.dtype {
                Some(d) => {
                    let s = check_view(&name, t, &storages)?;
                    (Entry::Tensor(t.clone()), d, t.size.clone(), Some(s))
                }
                None => {
                    src.notes.push(format!(
                        "tensor '{name}' has dtype torch.{}, which has no NumPy form (listed as dtype resource; --skip-unsupported leaves it out)",
                        t.dtype.name
                    ));
                    (Entry::Unsupported, DType::Resource, t.size.clone(), None)
                }
            },
            Value::Unsupported(kind) => {
                src.notes
                    .push(format!("tensor '{name}' is {kind}, which has no NumPy form (listed as dtype resource; --skip-unsupported leaves it out)"));
                (Entry::Unsupported, DType::Resource, Vec::new(), None)
            }
            other => bail!(
                "internal: a {} was collected as a tensor",
                other.type_name()
            ),
        };
        let item = dtype.item_size().unwrap_or(1) as u64;
        let elements =
            crate::tensor::checked_elements(&shape).with_context(|| format!("tensor '{name}'"))?;
        let bytes = elements.saturating_mul(item);
        total = total.saturating_add(bytes);
        if naming.max_bytes > 0 && total > naming.max_bytes {
            bail!(
                "the tensors add up to more than {} bytes (--max-decompressed) by tensor '{name}': refused before writing anything",
                naming.max_bytes
            );
        }
        let own_order = matches!(&v, Value::Tensor(t) if t.storage.big_endian);
        src.metas.push(TensorMeta {
            name,
            dtype,
            stored_bytes: bytes,
            shape,
            kind: Kind::Dense,
            max_string_len: None,
            big_endian: (big_endian || own_order) && item > 1,
            ragged_rank: 0,
            facts: Default::default(),
        });
        src.entries.push(entry);
        src.storage_of.push(storage);
    }
    if let Some(why) = broken.values().next() {
        bail!("a storage pickled by value (torch.storage._load_from_bytes of a nested torch.save) cannot be read: {why}");
    }
    // Storages no named tensor reads (a TorchScript module's plain tensor attributes, buffers
    // left out of the state dict): their CRC-32 is checked now, as every member's is.
    let named: std::collections::HashSet<*const StorageData> = src
        .storage_of
        .iter()
        .flatten()
        .map(|(s, _)| Arc::as_ptr(s))
        .collect();
    for s in storages.values() {
        if !named.contains(&Arc::as_ptr(s)) {
            super::verify(s)?;
        }
    }
    if !naming.classes.is_empty() {
        let modules: Vec<&String> = naming
            .classes
            .iter()
            .filter(|c| walk.modules.contains(*c))
            .collect();
        let others: Vec<&String> = naming
            .classes
            .iter()
            .filter(|c| !walk.modules.contains(*c))
            .collect();
        let mut note = String::from("read as data, never imported or called:");
        if !modules.is_empty() {
            note += &format!(" modules {} (named as their state_dict)", list(&modules));
        }
        if !others.is_empty() {
            note += &format!(
                "{} other classes {}",
                if modules.is_empty() { "" } else { ";" },
                list(&others)
            );
        }
        note += " (--weights-only refuses them)";
        src.notes.push(note);
    }
    if walk.skipped > 0 {
        src.notes.push(format!(
            "left out {} value(s) that are not tensors (numbers, strings, ...), e.g. '{}'",
            walk.skipped,
            walk.first_skipped.unwrap_or_default()
        ));
    }
    Ok(src)
}

/// Names for a note: the first ten, and how many more.
fn list(names: &[&String]) -> String {
    let mut s = names
        .iter()
        .take(10)
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 10 {
        s += &format!(" and {} more", names.len() - 10);
    }
    s
}

/// Checks that every element of a view lies inside its storage; returns the storage and the
/// byte offset where the tensor's storage window starts.
pub(super) fn check_view(
    name: &str,
    t: &TensorRef,
    storages: &HashMap<String, Arc<StorageData>>,
) -> Result<(Arc<StorageData>, u64)> {
    let s: &StorageRef = &t.storage;
    let data = storages
        .get(&s.key)
        .with_context(|| format!("tensor '{name}': storage '{}' is missing", s.key))?;
    let (base, window) = match s.view {
        Some((off, len)) => (off, len),
        None => (0, s.numel),
    };
    let bytes = |n: u64| n.checked_mul(s.dtype.item_size);
    let (Some(base_b), Some(window_b)) = (bytes(base), bytes(window)) else {
        bail!("tensor '{name}': its storage size overflows");
    };
    if base_b.checked_add(window_b).is_none_or(|e| e > data.len()) {
        bail!(
            "tensor '{name}': storage '{}' should hold {} bytes from byte {base_b}, but {} has only {}",
            s.key,
            window_b,
            data.name(),
            data.len()
        );
    }
    if t.size.contains(&0) {
        return Ok((data.clone(), base_b));
    }
    let mut last = t.offset;
    for (&n, &st) in t.size.iter().zip(&t.stride) {
        last = (n - 1)
            .checked_mul(st)
            .and_then(|x| x.checked_add(last))
            .with_context(|| format!("tensor '{name}': its strides overflow"))?;
    }
    let end = last
        .checked_add(1)
        .and_then(|e| e.checked_mul(t.dtype.item_size));
    if end.is_none_or(|e| e > window_b) {
        bail!(
            "tensor '{name}': offset {} with size {:?} and stride {:?} reaches past the end of its storage '{}' ({} bytes)",
            t.offset,
            t.size,
            t.stride,
            s.key,
            window_b
        );
    }
    Ok((data.clone(), base_b))
}
