//! Hugging Face model folders: a directory (or its index file) with
//! `model.safetensors.index.json` / `pytorch_model.bin.index.json` (or a variant such as
//! `model.safetensors.index.fp16.json`), whose `weight_map` names the shard of every tensor, or
//! a directory with a single `model.safetensors` / `pytorch_model.bin` (diffusers'
//! `diffusion_pytorch_model.*` names too); the same for Flax (`flax_model.msgpack.index.json`,
//! `flax_model.msgpack`). The shards are opened with the safetensors, PyTorch and Flax readers
//! and merged into one source; names are kept as the
//! shards store them (no stem prefix). Every shard the index names must exist and every
//! `weight_map` entry must be in its shard, so an interrupted download is an error naming the
//! missing file.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::flax::FlaxSource;
use super::safetensors::SafetensorsSource;
use super::torch::TorchSource;
use crate::input::{self, FileRange};
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{ChunkSink, Source, TensorMeta};

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

/// The index files in a folder, sorted.
fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| is_index_name(&e.file_name().to_string_lossy()) && e.path().is_file())
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// `model.<variant>.safetensors` / `pytorch_model.<variant>.bin`, not a shard (`-of-`).
fn is_variant_single(name: &str) -> bool {
    [("model.", ".safetensors"), ("pytorch_model.", ".bin")]
        .iter()
        .any(|(p, e)| {
            name.len() > p.len() + e.len()
                && name.starts_with(p)
                && name.ends_with(e)
                && !name.contains("-of-")
        })
}

fn sniff(input: &Input) -> Sniff {
    if input.is_dir {
        let has_single = SINGLES.iter().any(|n| input.path.join(n).is_file())
            || std::fs::read_dir(&input.path)
                .into_iter()
                .flatten()
                .any(|e| e.is_ok_and(|e| is_variant_single(&e.file_name().to_string_lossy())));
        return if has_single || !index_files(&input.path).is_empty() {
            Sniff::Yes
        } else {
            Sniff::No
        };
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

fn locate(dir: &Path) -> Result<Layout> {
    for name in INDEXES {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(Layout::Index(p));
        }
    }
    let mut variants = index_files(dir);
    match variants.len() {
        0 => {}
        1 => return Ok(Layout::Index(variants.remove(0))),
        _ => bail!(
            "{} holds several index files ({}): pass the one to read",
            dir.display(),
            variants
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    for name in SINGLES {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(Layout::Single(p));
        }
    }
    // `save_pretrained(variant="fp16")` of an unsharded model: `model.fp16.safetensors` or
    // `pytorch_model.fp16.bin`.
    let mut singles: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| is_variant_single(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    singles.sort();
    match singles.len() {
        0 => {}
        1 => return Ok(Layout::Single(singles.remove(0))),
        _ => bail!(
            "{} holds several weights files ({}): pass the one to read",
            dir.display(),
            singles
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    bail!(
        "{} is not a Hugging Face model folder (no *.safetensors.index.json or *.bin.index.json, no model[.VARIANT].safetensors or pytorch_model[.VARIANT].bin)",
        dir.display()
    )
}

fn open(input: &Input, _opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let layout = if input.is_dir {
        locate(&input.path)?
    } else {
        Layout::Index(input.path.clone())
    };
    Ok(Box::new(match layout {
        Layout::Index(p) => HfSource::from_index(&input.display, &p)?,
        Layout::Single(p) => {
            let mut src = HfSource::new(&input.display);
            src.add_shard(&p)?;
            src
        }
    }))
}

pub struct HfSource {
    path: String,
    parts: Vec<Box<dyn Source>>,
    /// Tensor `i` is tensor `.1` of part `.0`.
    index: Vec<(usize, usize)>,
    metas: Vec<TensorMeta>,
    names: HashSet<String>,
    notes: Vec<String>,
    /// The index file, besides the shards.
    files: Vec<PathBuf>,
}

impl HfSource {
    fn new(display: &str) -> HfSource {
        HfSource {
            path: display.to_string(),
            parts: Vec::new(),
            index: Vec::new(),
            metas: Vec::new(),
            names: HashSet::new(),
            notes: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Opens every shard an index file names and checks its `weight_map`.
    pub fn from_index(display: &str, index_path: &Path) -> Result<HfSource> {
        let index = FileRange::whole(input::open_file(index_path)?)?;
        if index.len() > 256 << 20 {
            bail!("{} is larger than 256 MiB", index_path.display());
        }
        let text = index
            .read_vec(0, index.len() as usize)
            .with_context(|| format!("cannot read {}", index_path.display()))?;
        let json: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not valid JSON", index_path.display()))?;
        let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
            bail!("{} has no \"weight_map\" object", index_path.display());
        };
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut wanted: HashMap<&str, &str> = HashMap::new();
        let mut shards = BTreeSet::new();
        for (tensor, shard) in map {
            let Some(shard) = shard.as_str() else {
                bail!(
                    "{}: the shard of '{tensor}' is not a string",
                    index_path.display()
                );
            };
            let rel = Path::new(shard);
            if shard.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                bail!(
                    "{}: the shard '{shard}' of '{tensor}' is not a file name inside the folder",
                    index_path.display()
                );
            }
            wanted.insert(tensor, shard);
            shards.insert(shard);
        }
        let mut src = HfSource::new(display);
        src.files.push(index_path.to_path_buf());
        let mut shard_of_tensor: HashMap<String, String> = HashMap::new();
        for shard in &shards {
            let p = dir.join(shard);
            if !p.is_file() {
                bail!(
                    "shard {} is missing (the index {} names it; an interrupted download?)",
                    p.display(),
                    index_path.display()
                );
            }
            let first = src.metas.len();
            src.add_shard(&p)?;
            for m in &src.metas[first..] {
                shard_of_tensor.insert(m.name.clone(), shard.to_string());
            }
        }
        for (tensor, shard) in &wanted {
            if shard_of_tensor.get(*tensor).map(String::as_str) != Some(shard) {
                bail!(
                    "tensor '{tensor}' is not in {} although {} says so",
                    dir.join(shard).display(),
                    index_path.display()
                );
            }
        }
        Ok(src)
    }

    /// Adds every tensor of one weights file.
    fn add_shard(&mut self, p: &Path) -> Result<()> {
        let display = p.display().to_string();
        let data = FileRange::whole(input::open_file(p)?)?;
        let files = vec![p.to_path_buf()];
        let part: Box<dyn Source> = if p.extension().is_some_and(|e| e == "safetensors") {
            Box::new(SafetensorsSource::open(&display, files, data).context(display.clone())?)
        } else if p.extension().is_some_and(|e| e == "msgpack") {
            let stem = super::stem(p);
            Box::new(FlaxSource::open(&display, files, data, &stem).context(display.clone())?)
        } else {
            let stem = super::stem(p);
            Box::new(TorchSource::open(&display, files, data, &stem).context(display.clone())?)
        };
        let k = self.parts.len();
        for note in part.notes() {
            self.notes.push(format!("{display}: {note}"));
        }
        for i in 0..part.len() {
            let meta = part.meta(i).with_context(|| display.clone())?;
            if !self.names.insert(meta.name.clone()) {
                bail!(
                    "tensor '{}' appears in more than one shard ({display})",
                    meta.name
                );
            }
            self.metas.push(meta);
            self.index.push((k, i));
        }
        self.parts.push(part);
        Ok(())
    }
}

impl Source for HfSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.metas.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.metas[index].clone())
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let (p, i) = self.index[index];
        let part = &mut self.parts[p];
        let display = part.display_path().to_string();
        part.read_dense(i, chunk, sink).context(display)
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let (p, i) = self.index[index];
        self.parts[p].read_strings(i, sink)
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        let (p, i) = self.index[index];
        self.parts[p].raw_range(i)
    }

    fn source_dtype(&self, index: usize) -> Option<String> {
        let (p, i) = self.index[index];
        self.parts[p].source_dtype(i)
    }

    fn input_files(&self) -> Vec<PathBuf> {
        let mut files = self.files.clone();
        files.extend(self.parts.iter().flat_map(|p| p.input_files()));
        files
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }
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
