//! Hugging Face model folders: a directory (or its index file) with
//! `model.safetensors.index.json` / `pytorch_model.bin.index.json` (or a variant such as
//! `model.safetensors.index.fp16.json`), whose `weight_map` names the shard of every tensor, or
//! a directory with a single `model.safetensors` / `pytorch_model.bin` (diffusers'
//! `diffusion_pytorch_model.*` names too, and any of them with a variant such as
//! `diffusion_pytorch_model.fp16.safetensors`); the same for Flax (`flax_model.msgpack.index.json`,
//! `flax_model.msgpack`), and PEFT's adapter folders (`adapter_model.safetensors` /
//! `adapter_model.bin`). The folder may be local or a prefix in a bucket. A model kept in
//! subfolders, a diffusers pipeline (`model_index.json`) or a sentence-transformers model
//! (`modules.json`), is read part by part, each part's tensors named `<subfolder>/<name>` (a
//! module in the folder itself unprefixed); parts without weights are passed over.
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
    about: "a Hugging Face model folder (diffusers pipelines and sentence-transformers part by part) or its *.index.json (safetensors or .bin shards, merged)",
    extensions: &[".index.json"],
    sniff,
    open,
};

const INDEXES: [&str; 3] = [
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "flax_model.msgpack.index.json",
];
const SINGLES: [&str; 8] = [
    "model.safetensors",
    "pytorch_model.bin",
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "flax_model.msgpack",
    // `FlaxStableDiffusionPipeline.save_pretrained`'s unet and vae
    "diffusion_flax_model.msgpack",
    // PEFT's `save_pretrained` (LoRA and other adapters), read by `PeftModel.from_pretrained`
    "adapter_model.safetensors",
    "adapter_model.bin",
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
        ("diffusion_flax_model.", ".msgpack"),
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
        let found = names.iter().any(|n| {
            SINGLES.contains(&n.as_str())
                || is_variant_single(n)
                || is_index_name(n)
                || PART_LISTS.contains(&n.as_str())
        });
        return if found { Sniff::Yes } else { Sniff::No };
    }
    if folder::is_json_index(input, |n| n.ends_with(".index.json") || is_index_name(n)) {
        return Sniff::Yes;
    }
    Sniff::No
}

/// What a folder holds: an index file, or one weights file.
enum Layout {
    Index(PathBuf),
    Single(PathBuf),
}

fn locate(dir: &Path, names: &[String]) -> Result<Layout> {
    let has = |n: &str| names.iter().any(|m| m == n);
    // `from_pretrained`'s order: the single file before its index, safetensors before .bin; a
    // folder re-saved unsharded over a sharded save keeps the old index, whose shards are gone
    for (single, index) in [
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ] {
        if has(single) {
            return Ok(Layout::Single(dir.join(single)));
        }
        if has(index) {
            return Ok(Layout::Index(dir.join(index)));
        }
    }
    if let Some(n) = INDEXES.iter().find(|n| has(n)) {
        return Ok(Layout::Index(dir.join(n)));
    }
    // likewise for a variant: `model.safetensors.index.fp16.json` beside `model.fp16.safetensors`
    let shadowed = |index: &str| {
        [("model.", "safetensors"), ("pytorch_model.", "bin")]
            .iter()
            .any(|(p, e)| {
                index
                    .strip_prefix(p)
                    .and_then(|r| r.strip_prefix(e))
                    .and_then(|r| r.strip_prefix(".index."))
                    .and_then(|r| r.strip_suffix(".json"))
                    .is_some_and(|v| has(&format!("{p}{v}.{e}")))
            })
    };
    let variants = names
        .iter()
        .filter(|n| is_index_name(n) && !shadowed(n))
        .collect();
    if let Some(p) = folder::one_of(dir, variants, "index files")? {
        return Ok(Layout::Index(p));
    }
    if let Some(n) = SINGLES.iter().find(|n| has(n)) {
        return Ok(Layout::Single(dir.join(n)));
    }
    // `save_pretrained(variant="fp16")` of an unsharded model: `model.fp16.safetensors`,
    // `pytorch_model.fp16.bin`, `diffusion_pytorch_model.fp16.safetensors`.
    let singles = names.iter().filter(|n| is_variant_single(n)).collect();
    if let Some(p) = folder::one_of(dir, singles, "weights files")? {
        return Ok(Layout::Single(p));
    }
    bail!(
        "{} is not a Hugging Face model folder (no *.safetensors.index.json or *.bin.index.json, no model[.VARIANT].safetensors, pytorch_model[.VARIANT].bin, diffusion_pytorch_model[.VARIANT].safetensors or adapter_model.safetensors)",
        dir.display()
    )
}

/// A file name that a part of a pipeline would keep weights in (in any format).
fn looks_like_weights(name: &str) -> bool {
    reads_weights(name)
        || [".onnx", ".pt", ".pth", ".ckpt", ".h5", ".gguf"]
            .iter()
            .any(|e| name.ends_with(e))
}

/// A weights file name of a format this reader chooses among (safetensors, .bin, msgpack).
fn reads_weights(name: &str) -> bool {
    [".safetensors", ".bin", ".msgpack"]
        .iter()
        .any(|e| name.ends_with(e))
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
    if !input.is_dir {
        let dir = input.path.parent().unwrap_or(Path::new("")).to_path_buf();
        let layout = Layout::Index(input.path.clone());
        return Ok(Box::new(open_layout(
            &input.display,
            &dir,
            layout,
            None,
            opts,
        )?));
    }
    let names = folder::files(&input.path)?;
    if let Some(parts) = part_dirs(&input.path, &names)? {
        if let Some(chain) = open_parts(input, &names, &parts, opts)? {
            return Ok(Box::new(chain));
        }
    }
    let layout = locate(&input.path, &names)?;
    Ok(Box::new(open_layout(
        &input.display,
        &input.path,
        layout,
        Some(names),
        opts,
    )?))
}

/// The files naming the parts of a model kept in subfolders: a diffusers pipeline
/// (`model_index.json`: a component per subfolder) and a sentence-transformers model
/// (`modules.json`: each module's `path`, `""` for the folder itself).
const PART_LISTS: [&str; 2] = ["model_index.json", "modules.json"];

/// The largest `model_index.json` / `modules.json` read.
const MAX_PART_LIST: u64 = 1 << 20;

/// The folders (relative to `dir`, `""` for `dir` itself) that the folder's
/// `model_index.json` or `modules.json` names, in the file's order (a pipeline's components
/// sorted by name); `None` when it has neither.
fn part_dirs(dir: &Path, names: &[String]) -> Result<Option<Vec<String>>> {
    let Some(list) = PART_LISTS.iter().find(|n| names.iter().any(|m| m == *n)) else {
        return Ok(None);
    };
    let path = dir.join(list);
    let range =
        input::open_range(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if range.len() > MAX_PART_LIST {
        bail!(
            "{}: {} bytes is larger than a {list} may be ({MAX_PART_LIST})",
            path.display(),
            range.len()
        );
    }
    let bytes = range.read_vec(0, range.len() as usize)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let mut dirs = Vec::new();
    if *list == "model_index.json" {
        // `"unet": ["diffusers", "UNet2DConditionModel"]`; `_class_name` and the like are not
        // components, and `[null, null]` is a component the pipeline was saved without
        let obj = v
            .as_object()
            .with_context(|| format!("{} is not a JSON object", path.display()))?;
        for (k, c) in obj {
            let named = c
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_string()));
            if !k.starts_with('_') && named {
                dirs.push(k.clone());
            }
        }
    } else {
        let modules = v
            .as_array()
            .with_context(|| format!("{} is not a JSON array", path.display()))?;
        for m in modules {
            let p = m.get("path").and_then(|p| p.as_str()).with_context(|| {
                format!("{}: a module without a \"path\" string", path.display())
            })?;
            dirs.push(p.trim_end_matches('/').to_string());
        }
    }
    for d in &dirs {
        if !d.is_empty() && !is_file_name(d) {
            bail!(
                "{}: the part folder '{d}' is not a folder inside {}",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(Some(dirs))
}

/// Every part folder that holds weights in a layout of this reader, its tensors named
/// `<folder>/<tensor>` (the folder itself's unprefixed); parts without weights (a scheduler, a
/// tokenizer, a pooling module) are passed over. `None` when no part holds weights.
fn open_parts(
    input: &Input,
    names: &[String],
    parts: &[String],
    opts: &OpenOptions,
) -> Result<Option<Chain>> {
    let mut chain = Chain::new(&input.display);
    let mut found = false;
    for d in parts {
        let (sub, sub_names) = if d.is_empty() {
            (input.path.clone(), names.to_vec())
        } else {
            let sub = input.path.join(d);
            folder::check_inside(&input.path, &sub)?;
            let n = folder::files(&sub).with_context(|| {
                format!("{}: a part folder of the model is missing", input.display)
            })?;
            (sub, n)
        };
        let layout = match locate(&sub, &sub_names) {
            Ok(layout) => layout,
            // a component without weights (scheduler, tokenizer, pooling)
            Err(_) if !sub_names.iter().any(|n| looks_like_weights(n)) => continue,
            // weights this reader reads, but no one file to choose (two variants, no base)
            Err(e) if sub_names.iter().any(|n| reads_weights(n)) => return Err(e),
            Err(_) => {
                let held: Vec<&str> = sub_names
                    .iter()
                    .filter(|n| looks_like_weights(n))
                    .map(String::as_str)
                    .collect();
                chain.add_note(format!(
                    "{}: not read: a part holding {} (pass such files by themselves)",
                    sub.display(),
                    held.join(", ")
                ));
                continue;
            }
        };
        let display = sub.display().to_string();
        let part = open_layout(&display, &sub, layout, Some(sub_names), opts)?;
        for note in part.input_facts().notes {
            chain.add_note(format!("{display}: {note}"));
        }
        let prefix = if d.is_empty() {
            String::new()
        } else {
            format!("{d}/")
        };
        chain.push_held_under(Box::new(part), &prefix)?;
        found = true;
    }
    Ok(found.then(|| chain.finish()))
}

/// The folder `dir` read in `layout`; `names`, the folder's files, for the note on weights
/// files the layout leaves out (`None` when an index file was the input).
fn open_layout(
    display: &str,
    dir: &Path,
    layout: Layout,
    names: Option<Vec<String>>,
    opts: &OpenOptions,
) -> Result<Chain> {
    let (mut chain, read) = match layout {
        Layout::Index(p) => from_index(display, &p, opts)?,
        Layout::Single(p) => {
            let mut chain = Chain::new(display);
            folder::check_inside(dir, &p)?;
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
    Ok(chain.finish())
}

/// Opens every shard an index file names and checks its `weight_map`; also returns the shards.
///
/// The index is read streaming, twice, and never held whole (a 120 MB index took 822 MiB as a
/// `serde_json::Value`): the first pass keeps only the distinct shard names, the second checks
/// every entry against the names the opened shards hold. Memory is the shards' own tables plus
/// the shard names, whatever the index's size.
fn from_index(
    display: &str,
    index_path: &Path,
    opts: &OpenOptions,
) -> Result<(Chain, Vec<PathBuf>)> {
    let range = input::open_range(index_path)
        .with_context(|| format!("cannot read {}", index_path.display()))?;
    if range.len() > MAX_INDEX {
        bail!(
            "{}: {} bytes is larger than an index file may be ({MAX_INDEX})",
            index_path.display(),
            range.len()
        );
    }
    let mut shards = BTreeSet::new();
    walk_weight_map(&range, index_path, |tensor, shard| {
        if !is_file_name(shard) {
            bail!(
                "{}: the shard '{shard}' of '{tensor}' is not a file name inside the folder",
                index_path.display()
            );
        }
        if !shards.contains(shard) {
            shards.insert(shard.to_string());
        }
        Ok(())
    })?;
    let dir = index_path.parent().unwrap_or(Path::new(""));
    let mut chain = Chain::new(display);
    if input::url_of(index_path).is_none() {
        chain.add_file(index_path.to_path_buf());
    }
    let mut spans = Vec::with_capacity(shards.len());
    let mut paths = Vec::with_capacity(shards.len());
    for shard in &shards {
        let p = folder::shard(dir, shard, index_path)?;
        let first = chain.metas().len();
        chain.push_path(&p, reader_for(&p), opts)?;
        spans.push((first, chain.metas().len()));
        paths.push(p);
    }
    // Every tensor the shards hold, with the index of its shard in `shards` (interned).
    let names: Vec<&str> = shards.iter().map(|s| s.as_str()).collect();
    let metas = chain.metas();
    let mut shard_of_tensor: HashMap<&str, u32> = HashMap::with_capacity(metas.len());
    for (i, (from, to)) in spans.iter().enumerate() {
        for m in &metas[*from..*to] {
            shard_of_tensor.insert(m.name.as_str(), i as u32);
        }
    }
    walk_weight_map(&range, index_path, |tensor, shard| {
        let held = shard_of_tensor.get(tensor).map(|&i| names[i as usize]);
        if held != Some(shard) {
            bail!(
                "tensor '{tensor}' is not in {} although {} says so",
                dir.join(shard).display(),
                index_path.display()
            );
        }
        Ok(())
    })?;
    paths.push(index_path.to_path_buf());
    Ok((chain, paths))
}

/// Streams the `weight_map` object of an index file, calling `each(tensor, shard)` per entry
/// in file order; other members of the index are skipped without being kept.
fn walk_weight_map(
    range: &input::FileRange,
    index_path: &Path,
    each: impl FnMut(&str, &str) -> Result<()>,
) -> Result<()> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    /// The error `each` returned, kept typed while serde unwinds with a plain message.
    struct Walk<F> {
        each: F,
        failed: Option<anyhow::Error>,
        found: bool,
    }
    struct Top<'a, F>(&'a mut Walk<F>);
    struct Map<'a, F>(&'a mut Walk<F>);

    impl<'de, F: FnMut(&str, &str) -> Result<()>> Visitor<'de> for Top<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object with a \"weight_map\" object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            while let Some(key) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "weight_map" && !self.0.found {
                    self.0.found = true;
                    a.next_value_seed(Map(&mut *self.0))?;
                } else {
                    a.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    impl<'de, F: FnMut(&str, &str) -> Result<()>> DeserializeSeed<'de> for Map<'_, F> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, F: FnMut(&str, &str) -> Result<()>> Visitor<'de> for Map<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of tensor names to shard file names")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            use serde::de::Error;
            while let Some(tensor) = a.next_key::<String>()? {
                let shard = match a.next_value::<String>() {
                    Ok(s) => s,
                    Err(e) => {
                        return Err(A::Error::custom(format_args!(
                            "the shard of '{tensor}' is not a string ({e})"
                        )))
                    }
                };
                if let Err(e) = (self.0.each)(&tensor, &shard) {
                    self.0.failed = Some(e);
                    return Err(A::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }

    let mut walk = Walk {
        each,
        failed: None,
        found: false,
    };
    let reader = std::io::BufReader::with_capacity(1 << 16, input::RangeReader::new(range.clone()));
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = de.deserialize_map(Top(&mut walk)).and_then(|()| de.end());
    if let Some(e) = walk.failed {
        return Err(e);
    }
    parsed.with_context(|| format!("{} is not a valid index file", index_path.display()))?;
    if !walk.found {
        bail!("{} has no \"weight_map\" object", index_path.display());
    }
    Ok(())
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
