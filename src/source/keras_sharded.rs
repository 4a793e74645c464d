//! Keras 3 weights outside a `.keras` archive:
//!
//! - sharded weights, `model.save_weights("model.weights.json", max_shard_size=...)`: an index
//!   file whose `weight_map` maps each layer's variable group (`/layers/dense/vars`) to the
//!   shard files holding it (`model_00000.weights.h5`, ...), given as the index file or its
//!   folder;
//! - an unzipped model, `model.save(dir, zipped=False)`: a folder with `config.json`,
//!   `metadata.json` and `model.weights.h5`.
//!
//! The HDF5 files are parts of one [`Chain`] (`chain.rs`) opened with the HDF5 reader
//! (`hdf5/`), so their datasets are merged under their HDF5 paths with no stem prefix, exactly as
//! h5py lists each shard; a dataset path in two shards is an error naming both. Every shard the
//! index names must exist (an interrupted copy is an error naming it), and a dataset of a group
//! the index lists must come from a shard the index gives for that group. Local folders and
//! prefixes in a bucket read alike; symbolic links follow the rule of `folder.rs`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::chain::Chain;
use super::{folder, hf, Input, OpenOptions, Reader, Sniff};
use crate::input;
use crate::tensor::Source;

pub static READER: Reader = Reader {
    name: "keras-folder",
    about: "Keras 3 sharded weights (*.weights.json and its .weights.h5 shards) or an unzipped .keras folder",
    extensions: &[".weights.json"],
    sniff,
    open,
};

/// The weights file of an unzipped model.
const WEIGHTS: &str = super::keras::WEIGHTS;

/// The largest index file read.
const MAX_INDEX: u64 = 64 << 20;

fn is_index_name(name: &str) -> bool {
    name.len() > ".weights.json".len() && name.ends_with(".weights.json")
}

/// What a folder holds.
enum Layout {
    Index(std::path::PathBuf),
    Unzipped(std::path::PathBuf),
}

fn locate(dir: &Path, names: &[String]) -> Result<Option<Layout>> {
    let indexes = names.iter().filter(|n| is_index_name(n)).collect();
    if let Some(p) = folder::one_of(dir, indexes, "Keras weights indexes")? {
        return Ok(Some(Layout::Index(p)));
    }
    let has = |n: &str| names.iter().any(|m| m == n);
    if has(WEIGHTS) && has("config.json") {
        return Ok(Some(Layout::Unzipped(dir.join(WEIGHTS))));
    }
    Ok(None)
}

fn sniff(input: &Input) -> Sniff {
    if input.is_dir {
        return match folder::files(&input.path).map(|names| locate(&input.path, &names)) {
            Ok(Ok(None)) | Err(_) => Sniff::No,
            // Several indexes: claimed, so that the error says which.
            Ok(_) => Sniff::Yes,
        };
    }
    if folder::is_json_index(input, is_index_name) {
        Sniff::Yes
    } else {
        Sniff::No
    }
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let layout = if input.is_dir {
        let names = folder::files(&input.path)?;
        locate(&input.path, &names)?.with_context(|| {
            format!(
                "{} is not a Keras weights folder (no *.weights.json, no config.json with {WEIGHTS})",
                input.display
            )
        })?
    } else {
        Layout::Index(input.path.clone())
    };
    let mut chain = Chain::new(&input.display);
    match layout {
        Layout::Index(p) => add_shards(&mut chain, &p, opts)?,
        Layout::Unzipped(p) => {
            folder::check_inside(&input.path, &p)?;
            chain.push_path(&p, &super::hdf5::READER, opts)?;
        }
    }
    Ok(Box::new(chain.finish()))
}

/// Adds every shard the index names, then checks the index against what they hold.
fn add_shards(chain: &mut Chain, index_path: &Path, opts: &OpenOptions) -> Result<()> {
    let text = input::read_small(index_path, MAX_INDEX)
        .with_context(|| format!("cannot read {}", index_path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not valid JSON", index_path.display()))?;
    let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
        bail!("{} has no \"weight_map\" object", index_path.display());
    };
    // Group path (without the leading '/') -> the shards the index gives for it.
    let mut groups: HashMap<String, Vec<&str>> = HashMap::new();
    let mut shards = BTreeSet::new();
    for (group, value) in map {
        let list: Vec<&serde_json::Value> = match value {
            serde_json::Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut names = Vec::with_capacity(list.len());
        for v in list {
            let Some(shard) = v.as_str().filter(|s| hf::is_file_name(s)) else {
                bail!(
                    "{}: the shard {v} of '{group}' is not a file name inside the folder",
                    index_path.display()
                );
            };
            names.push(shard);
            shards.insert(shard);
        }
        groups.insert(group.trim_start_matches('/').to_string(), names);
    }
    if shards.is_empty() {
        bail!("{} names no shard", index_path.display());
    }
    if input::url_of(index_path).is_none() {
        chain.add_file(index_path.to_path_buf());
    }
    let dir = index_path.parent().unwrap_or(Path::new(""));
    for shard in &shards {
        let p = folder::shard(dir, shard, index_path)?;
        let first = chain.metas().len();
        chain.push_path(&p, &super::hdf5::READER, opts)?;
        for m in &chain.metas()[first..] {
            let group = m.name.rsplit_once('/').map_or("", |(g, _)| g);
            if let Some(listed) = groups.get(group) {
                if !listed.contains(shard) {
                    bail!(
                        "{}: dataset '{}' is in {}, but the index gives '/{group}' to {}",
                        index_path.display(),
                        m.name,
                        p.display(),
                        listed.join(", ")
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_told_apart_by_what_they_hold() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let d = Path::new("d");
        assert!(matches!(
            locate(d, &names(&["model.weights.json", "model_00000.weights.h5"])),
            Ok(Some(Layout::Index(_)))
        ));
        assert!(matches!(
            locate(d, &names(&["config.json", "metadata.json", WEIGHTS])),
            Ok(Some(Layout::Unzipped(_)))
        ));
        assert!(matches!(locate(d, &names(&[WEIGHTS])), Ok(None)));
        assert!(matches!(locate(d, &names(&[".weights.json"])), Ok(None)));
        let e = locate(d, &names(&["a.weights.json", "b.weights.json"]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("a.weights.json, b.weights.json"), "{e}");
    }
}
