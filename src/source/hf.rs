//! Hugging Face model folders: a directory (or its index file) with
//! `model.safetensors.index.json` / `pytorch_model.bin.index.json` (or a variant such as
//! `model.safetensors.index.fp16.json`), whose `weight_map` names the shard of every tensor, or
//! a directory with a single `model.safetensors` / `pytorch_model.bin` (diffusers'
//! `diffusion_pytorch_model.*` names too, and any of them with a variant such as
//! `diffusion_pytorch_model.fp16.safetensors`); the same for Flax (`flax_model.msgpack.index.json`,
//! `flax_model.msgpack`). The folder may be local or a prefix in a bucket.
//!
//! The shards are parts of one [`Chain`] (`chain.rs`), opened through the registry with the
//! safetensors, PyTorch and Flax readers and the open options of the command line; names are
//! kept as the shards store them (no stem prefix). Every shard the index names must exist and
//! every `weight_map` entry must be in its shard, so an interrupted download is an error naming
//! the missing file. Other weights files in the folder that the layout does not read (an
//! `a.safetensors` beside `model.safetensors`, as `from_pretrained` reads `model.safetensors`
//! alone) are named in a note. Symbolic links follow the rule of `folder.rs`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::chain::Chain;
use super::folder;
use crate::input;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::Source;

pub static READER: Reader = Reader {
    name: "huggingface",
    about: "a Hugging Face model folder or its *.index.json (safetensors or .bin shards, merged)",
    extensions: &[".index.json"],
    sniff,
    open,
};

const INDEXES: [&str; 3] = [
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "flax_model.msgpack.index.json",
];
const SINGLES: [&str; 5] = [
    "model.safetensors",
    "pytorch_model.bin",
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "flax_model.msgpack",
];

/// The largest index file read.
const MAX_INDEX: u64 = 256 << 20;

/// `<name>.safetensors.index.json` or `<name>.bin.index.json`, with an optional variant before
/// `.json` (`model.safetensors.index.fp16.json`).
fn is_index_name(name: &str) -> bool {
    let Some(base) = name.strip_suffix(".json") else {
        return false;
    };
    [".safetensors.index", ".bin.index", ".msgpack.index"]
        .iter()
        .any(|m| {
            base.find(m).is_some_and(|at| {
                let rest = &base[at + m.len()..];
                at > 0 && (rest.is_empty() || (rest.starts_with('.') && !rest[1..].contains('/')))
            })
        })
}

/// A single weights file saved with a variant (`model.fp16.safetensors`,
/// `pytorch_model.fp16.bin`, `diffusion_pytorch_model.fp16.safetensors`), not a shard (`-of-`).
fn is_variant_single(name: &str) -> bool {
    [
        ("model.", ".safetensors"),
        ("pytorch_model.", ".bin"),
        ("diffusion_pytorch_model.", ".safetensors"),
        ("diffusion_pytorch_model.", ".bin"),
        ("flax_model.", ".msgpack"),
    ]
    .iter()
    .any(|(p, e)| {
        name.len() > p.len() + e.len()
            && name.starts_with(p)
            && name.ends_with(e)
            && !name.contains("-of-")
    })
}

/// A file that holds weights in a format a Hugging Face folder may carry.
fn is_weights_name(name: &str) -> bool {
    [".safetensors", ".bin", ".msgpack", ".pt", ".pth", ".h5"]
        .iter()
        .any(|e| name.len() > e.len() && name.ends_with(e))
}

fn sniff(input: &Input) -> Sniff {
    if input.is_dir {
        let Ok(names) = folder::files(&input.path) else {
            return Sniff::No;
        };
        let found = names
            .iter()
            .any(|n| SINGLES.contains(&n.as_str()) || is_variant_single(n) || is_index_name(n));
        return if found { Sniff::Yes } else { Sniff::No };
    }
    let name = input
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let json_start = input.head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if (name.ends_with(".index.json") || is_index_name(&name)) && json_start {
        return Sniff::Yes;
    }
    Sniff::No
}

/// What a folder holds: an index file, or one weights file.
enum Layout {
    Index(PathBuf),
    Single(PathBuf),
}

/// The one of `found` to read, or an error when there are several.
fn one_of(dir: &Path, mut found: Vec<&String>, what: &str) -> Result<Option<PathBuf>> {
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(dir.join(found.remove(0)))),
        _ => bail!(
            "{} holds several {what} ({}): pass the one to read",
            dir.display(),
            found
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn locate(dir: &Path, names: &[String]) -> Result<Layout> {
    let has = |n: &str| names.iter().any(|m| m == n);
    if let Some(n) = INDEXES.iter().find(|n| has(n)) {
        return Ok(Layout::Index(dir.join(n)));
    }
    let variants = names.iter().filter(|n| is_index_name(n)).collect();
    if let Some(p) = one_of(dir, variants, "index files")? {
        return Ok(Layout::Index(p));
    }
    if let Some(n) = SINGLES.iter().find(|n| has(n)) {
        return Ok(Layout::Single(dir.join(n)));
    }
    // `save_pretrained(variant="fp16")` of an unsharded model: `model.fp16.safetensors`,
    // `pytorch_model.fp16.bin`, `diffusion_pytorch_model.fp16.safetensors`.
    let singles = names.iter().filter(|n| is_variant_single(n)).collect();
    if let Some(p) = one_of(dir, singles, "weights files")? {
        return Ok(Layout::Single(p));
    }
    bail!(
        "{} is not a Hugging Face model folder (no *.safetensors.index.json or *.bin.index.json, no model[.VARIANT].safetensors, pytorch_model[.VARIANT].bin or diffusion_pytorch_model[.VARIANT].safetensors)",
        dir.display()
    )
}

/// The reader of one weights file, by its extension.
fn reader_for(p: &Path) -> &'static Reader {
    match p.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => &super::safetensors::READER,
        Some("msgpack") => &super::flax::READER,
        _ => &super::torch::READER,
    }
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let (dir, layout, names) = if input.is_dir {
        let names = folder::files(&input.path)?;
        let layout = locate(&input.path, &names)?;
        (input.path.clone(), layout, Some(names))
    } else {
        let dir = input.path.parent().unwrap_or(Path::new("")).to_path_buf();
        (dir, Layout::Index(input.path.clone()), None)
    };
    let (mut chain, read) = match layout {
        Layout::Index(p) => from_index(&input.display, &p, opts)?,
        Layout::Single(p) => {
            let mut chain = Chain::new(&input.display);
            folder::check_inside(&dir, &p)?;
            chain.push_path(&p, reader_for(&p), opts)?;
            (chain, vec![p])
        }
    };
    if let Some(names) = names {
        let read: Vec<&std::ffi::OsStr> = read.iter().filter_map(|p| p.file_name()).collect();
        let left: Vec<&String> = names
            .iter()
            .filter(|n| {
                is_weights_name(n) && !read.iter().any(|r| *r == std::ffi::OsStr::new(n.as_str()))
            })
            .collect();
        if !left.is_empty() {
            let shown: Vec<&str> = left.iter().take(5).map(|s| s.as_str()).collect();
            let more = match left.len() {
                n if n > 5 => format!(" and {} more", n - 5),
                _ => String::new(),
            };
            chain.add_note(format!(
                "left out {} other weights file{} of the folder ({}{more}), as from_pretrained leaves {} out: pass {} as inputs to convert {}",
                left.len(),
                if left.len() == 1 { "" } else { "s" },
                shown.join(", "),
                if left.len() == 1 { "it" } else { "them" },
                if left.len() == 1 { "it" } else { "them" },
                if left.len() == 1 { "it" } else { "them" },
            ));
        }
    }
    Ok(Box::new(chain.finish()))
}

/// Opens every shard an index file names and checks its `weight_map`; also returns the shards.
fn from_index(
    display: &str,
    index_path: &Path,
    opts: &OpenOptions,
) -> Result<(Chain, Vec<PathBuf>)> {
    let text = input::read_small(index_path, MAX_INDEX)
        .with_context(|| format!("cannot read {}", index_path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not valid JSON", index_path.display()))?;
    let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
        bail!("{} has no \"weight_map\" object", index_path.display());
    };
    let dir = index_path.parent().unwrap_or(Path::new(""));
    let mut wanted: HashMap<&str, &str> = HashMap::new();
    let mut shards = BTreeSet::new();
    for (tensor, shard) in map {
        let Some(shard) = shard.as_str() else {
            bail!(
                "{}: the shard of '{tensor}' is not a string",
                index_path.display()
            );
        };
        if !is_file_name(shard) {
            bail!(
                "{}: the shard '{shard}' of '{tensor}' is not a file name inside the folder",
                index_path.display()
            );
        }
        wanted.insert(tensor, shard);
        shards.insert(shard);
    }
    let mut chain = Chain::new(display);
    if input::url_of(index_path).is_none() {
        chain.add_file(index_path.to_path_buf());
    }
    let mut shard_of_tensor: HashMap<String, &str> = HashMap::new();
    let mut paths = Vec::with_capacity(shards.len());
    for shard in &shards {
        let p = folder::shard(dir, shard, index_path)?;
        let first = chain.metas().len();
        chain.push_path(&p, reader_for(&p), opts)?;
        for m in &chain.metas()[first..] {
            shard_of_tensor.insert(m.name.clone(), shard);
        }
        paths.push(p);
    }
    for (tensor, shard) in &wanted {
        if shard_of_tensor.get(*tensor) != Some(shard) {
            bail!(
                "tensor '{tensor}' is not in {} although {} says so",
                dir.join(shard).display(),
                index_path.display()
            );
        }
    }
    paths.push(index_path.to_path_buf());
    Ok((chain, paths))
}

/// A relative path inside the folder: not empty, no root, no `..`.
pub(crate) fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\0')
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::is_index_name;

    #[test]
    fn index_names_with_and_without_variants() {
        for yes in [
            "model.safetensors.index.json",
            "pytorch_model.bin.index.json",
            "model.safetensors.index.fp16.json",
            "diffusion_pytorch_model.safetensors.index.json",
            "pytorch_model.bin.index.fp16.json",
        ] {
            assert!(is_index_name(yes), "{yes}");
        }
        for no in [
            "config.json",
            ".safetensors.index.json",
            "model.safetensors",
            "model.safetensors.index",
            "tokenizer.json",
            "model.index.json",
        ] {
            assert!(!is_index_name(no), "{no}");
        }
    }
}
