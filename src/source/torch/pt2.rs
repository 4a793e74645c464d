//! torch.export `.pt2` archives (`torch.export.save`): a zip with `<root>/archive_format`
//! ("pt2"), the program description `models/<model>.json`, and per model a weights config
//! `data/weights/<model>_weights_config.json` (`{"config": {fqn: {"path_name", "is_param",
//! "use_pickle", "tensor_meta": {dtype, sizes, strides, storage_offset, ...}}}}`) naming, for
//! every state-dict key, the member `data/weights/<path_name>` that holds the whole untyped
//! storage it views. Names and values are `torch.export.load(f).state_dict`: the weights config
//! keys (parameters and persistent buffers); the constants (`data/constants/`: lifted tensor
//! constants, non-persistent buffers) are not in the state dict and are left out. Each view
//! goes through the same checks and strided reads as a `torch.save` tensor (`mod.rs`). Nothing
//! in the program (the graph) is interpreted. AOTInductor packages (`data/aotinductor/`, weights
//! in a compiled library or its own layout) are refused with that said.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::Value as Json;

use super::container::TorchArchive;
use super::pickle::{self, StorageRef, TensorRef, Value};
use super::{build, Naming, Opening, StorageData, TorchSource};
use crate::container::zip::MemberData;
use crate::input::FileRange;

/// The largest JSON config read.
const MAX_CONFIG: u64 = 64 << 20;

/// `torch/_export/serde/schema.py` ScalarType codes, as torch dtype names.
fn scalar_type(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "uint8",
        2 => "int8",
        3 => "int16",
        4 => "int32",
        5 => "int64",
        6 => "float16",
        7 => "float32",
        8 => "float64",
        9 => "complex32",
        10 => "complex64",
        11 => "complex128",
        12 => "bool",
        13 => "bfloat16",
        28 => "uint16",
        29 => "float8_e4m3fn",
        30 => "float8_e5m2",
        31 => "float8_e4m3fnuz",
        32 => "float8_e5m2fnuz",
        33 => "float8_e8m0fnu",
        34 => "uint32",
        35 => "uint64",
        _ => return None,
    })
}

/// `{"as_int": n}` (symbolic sizes are refused: a saved weight has concrete ones).
fn as_int(v: &Json, what: &str) -> Result<u64> {
    v.get("as_int")
        .and_then(Json::as_u64)
        .with_context(|| format!("{what} is not a non-negative integer ({v})"))
}

fn ints(v: Option<&Json>, what: &str) -> Result<Vec<u64>> {
    v.and_then(Json::as_array)
        .with_context(|| format!("{what} is missing"))?
        .iter()
        .map(|x| as_int(x, what))
        .collect()
}

/// Reads a `.pt2` archive's weights, its members read through `arch` (headers, sizes and
/// CRC-32s checked by `container/zip.rs`; deflated storages inflated when first read).
pub(super) fn open(at: Opening, arch: &mut TorchArchive) -> Result<TorchSource> {
    let root = arch.root.clone();
    let root = root.as_str();
    let format = arch.read("archive_format", 64)?.unwrap_or_default();
    if format.trim_ascii() != b"pt2" {
        bail!(
            "{root}/archive_format says '{}', not pt2",
            String::from_utf8_lossy(&format)
        );
    }
    if let Some(b) = arch.read("byteorder", 16)? {
        if b.trim_ascii() != b"little" {
            bail!(
                "a .pt2 archive in byte order '{}' is not supported",
                String::from_utf8_lossy(&b)
            );
        }
    }
    let mut configs: Vec<(String, String)> = arch
        .members
        .keys()
        .filter_map(|k| {
            let model = k
                .strip_prefix("data/weights/")?
                .strip_suffix("_weights_config.json")?;
            Some((model.to_string(), k.clone()))
        })
        .collect();
    configs.sort();
    if configs.is_empty() {
        if arch
            .members
            .keys()
            .any(|k| k.starts_with("data/aotinductor/"))
        {
            bail!("an AOTInductor package (torch._inductor.aoti_compile_and_package): its weights are compiled into the model's shared library or kept in AOTInductor's own layout, which is not supported; convert the ExportedProgram saved with torch.export.save, or its state_dict saved with torch.save, instead");
        }
        if arch
            .members
            .keys()
            .any(|k| k.starts_with("data/weights/") && k.ends_with(".pt"))
        {
            bail!("a legacy .pt2 archive (weights in one torch.save file under data/weights/) is not supported");
        }
        bail!("the .pt2 archive has no data/weights/<model>_weights_config.json");
    }
    let several = configs.len() > 1;
    let mut tree: Vec<(Value, Value)> = Vec::new();
    let mut storages: HashMap<String, Arc<StorageData>> = HashMap::new();
    for (model, key) in configs {
        let text = arch.read(&key, MAX_CONFIG)?.unwrap_or_default();
        let json: Json = serde_json::from_slice(&text)
            .with_context(|| format!("{root}/{key} is not valid JSON"))?;
        let config = json
            .get("config")
            .and_then(Json::as_object)
            .with_context(|| format!("{root}/{key} has no \"config\" object"))?;
        for (fqn, meta) in config {
            let what = format!("{root}/{key}: weight '{fqn}'");
            let name = if several {
                format!("{model}/{fqn}")
            } else {
                fqn.clone()
            };
            let v = tensor(fqn, meta, arch, &mut storages).with_context(|| what.clone())?;
            tree.push((Value::Str(name.into()), v));
        }
    }
    // Every other member (the program, constants, sample inputs, version records): its CRC-32
    // is checked now, so that no corrupt byte of the archive goes unnoticed.
    let used: HashSet<String> = storages
        .keys()
        .map(|k| format!("data/weights/{k}"))
        .collect();
    arch.check_rest(&|name| used.contains(name))?;
    let root_value = Value::Dict(std::rc::Rc::new(std::cell::RefCell::new(tree)));
    let naming = Naming {
        max_bytes: at.opts.max_bytes,
        ..Default::default()
    };
    build(at.path, at.files, root_value, root, storages, false, naming)
}

/// One weight: its view of the storage member it names.
fn tensor(
    fqn: &str,
    meta: &Json,
    arch: &mut TorchArchive,
    storages: &mut HashMap<String, Arc<StorageData>>,
) -> Result<Value> {
    let file = meta
        .get("path_name")
        .and_then(Json::as_str)
        .context("no path_name")?;
    if meta.get("use_pickle").and_then(Json::as_bool) == Some(true) {
        return Ok(Value::Unsupported(
            "a tensor subclass pickled inside the .pt2 archive",
        ));
    }
    let tm = meta.get("tensor_meta").context("no tensor_meta")?;
    let code = tm.get("dtype").and_then(Json::as_i64).context("no dtype")?;
    let dtype = scalar_type(code)
        .and_then(pickle::resolve_dtype)
        .with_context(|| format!("dtype code {code} is not known"))?;
    if tm
        .get("layout")
        .and_then(Json::as_i64)
        .is_some_and(|l| l != 7)
    {
        return Ok(Value::Unsupported(
            "a tensor that is not strided (sparse or mkldnn layout)",
        ));
    }
    let size = ints(tm.get("sizes"), "sizes")?;
    let stride = ints(tm.get("strides"), "strides")?;
    if size.len() != stride.len() {
        bail!("{} sizes but {} strides", size.len(), stride.len());
    }
    let offset = as_int(
        tm.get("storage_offset").context("no storage_offset")?,
        "storage_offset",
    )?;
    let member_name = format!("data/weights/{file}");
    if !storages.contains_key(file) {
        let m = arch
            .member(&member_name)?
            .with_context(|| format!("its storage data/weights/{file} is missing"))?;
        storages.insert(file.to_string(), Arc::new(MemberData::new(m)));
    }
    let s = &storages[file];
    let mut numel = s.len() / dtype.item_size;
    if s.is_empty() {
        // torch writes a zero-filled tensor as an empty file.
        let elements = crate::tensor::checked_elements(&size)?;
        let bytes = elements
            .checked_mul(dtype.item_size)
            .filter(|&b| b <= 64 << 20)
            .with_context(|| {
                format!("'{fqn}' is an empty file standing for more than 64 MiB of zeros")
            })?;
        if bytes > 0 && !is_contiguous_from_zero(&size, &stride, offset) {
            bail!("'{fqn}': an empty storage for a strided view");
        }
        storages.insert(
            file.to_string(),
            Arc::new(StorageData::checked(
                format!("zeros for {member_name}"),
                FileRange::from_vec(vec![0; bytes as usize]),
            )),
        );
        numel = elements;
    }
    Ok(Value::Tensor(Arc::new(TensorRef {
        storage: Arc::new(StorageRef {
            dtype,
            key: file.to_string(),
            numel,
            view: None,
            big_endian: false,
        }),
        dtype,
        offset,
        size,
        stride,
        conj: false,
        neg: false,
    })))
}

fn is_contiguous_from_zero(size: &[u64], stride: &[u64], offset: u64) -> bool {
    let mut expect = 1u64;
    for (&n, &st) in size.iter().zip(stride).rev() {
        if n != 1 && st != expect {
            return false;
        }
        expect = expect.saturating_mul(n);
    }
    offset == 0
}
