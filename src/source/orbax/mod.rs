//! Orbax (`orbax.checkpoint`) reader: an item directory (`_METADATA`), a step directory
//! (`_CHECKPOINT_METADATA` with one or more items: `default`, `params`, ...) or a
//! `CheckpointManager` root (step directories `<step>` or `<prefix>_<step>`; the latest, or
//! `--step N`), named by the PyTree path joined with `/` as `restore()` returns it
//! (`params/enc/kernel`, `opt_state/0/mu/enc/bias`, `step`); a step with several items prefixes each item's name.
//!
//! `_METADATA` lists the leaves with their key paths; each array leaf is a zarr array (v2 or
//! v3) whose keys start with the dotted path (`params.enc.kernel/.zarray`), stored either in
//! the item's OCDBT database (`manifest.ocdbt`, the default; `ocdbt.rs`) or, in the older
//! layout, as a folder of that name. The zarr reader's `meta.rs`/`chunks.rs` decode the
//! arrays; a sharded array is one zarr array whose chunks are the shards, so it comes out
//! whole. Leaves without data (`None`, empty optax states) have no tensor; a Python `str` leaf
//! (kept in the item's `_strings.json`) is a `|S<n>` scalar of its UTF-8 bytes.

pub mod ocdbt;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;

use super::zarr::chunks::{ArrayReader, Store};
use super::zarr::meta::ArrayMeta;
use super::zarr::{array_at, join, Array, DirStore};
use super::{Input, OpenOptions, Reader, Sniff};
use crate::dtype::{DType, NpyType, Plan};
use crate::input::{self, FileRange};
use crate::tensor::{ChunkSink, InputFacts, Source, TensorMeta};
use crate::transform::Converter;

pub static READER: Reader = Reader {
    name: "orbax",
    about: "Orbax checkpoints: item, step or CheckpointManager directories (OCDBT or zarr)",
    extensions: &[],
    sniff,
    open,
};

const MAX_METADATA: u64 = 256 << 20;

fn sniff(input: &Input) -> Sniff {
    if !input.is_dir {
        return Sniff::No;
    }
    let p = &input.path;
    let has = |n: &str| input::is_file(&join(p, n));
    if has("_METADATA") || has("_CHECKPOINT_METADATA") {
        return Sniff::Yes;
    }
    match steps(p) {
        Ok(s) if !s.is_empty() => Sniff::Yes,
        _ => Sniff::No,
    }
}

/// What the command line sets for Orbax checkpoints.
#[derive(Clone, Debug, Default)]
pub struct OrbaxOptions {
    /// `--step`: the step of a CheckpointManager root to read (default: the latest).
    pub step: Option<u64>,
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(OrbaxSource::open(
        &input.path,
        &input.display,
        opts.orbax.step,
    )?))
}

/// The finished steps of a CheckpointManager root, sorted, each with its directory name:
/// directories holding `_CHECKPOINT_METADATA` named as Orbax's `standard_name_format` names
/// them, `<step>` (zero-padded with `step_format_fixed_length`) or `<step_prefix>_<step>`
/// (unfinished saves are named `*.orbax-checkpoint-tmp*`).
pub fn steps(root: &Path) -> Result<Vec<(u64, String)>> {
    let mut out: Vec<(u64, String)> = input::list_dirs(root)?
        .into_iter()
        .filter_map(|n| step_number(&n).map(|s| (s, n)))
        .filter(|(_, n)| input::is_file(&join(&join(root, n), "_CHECKPOINT_METADATA")))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The step a step directory's name gives: all digits, or digits after the last `_`.
fn step_number(name: &str) -> Option<u64> {
    let digits = name.rsplit_once('_').map_or(name, |(_, d)| d);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One item of a step: its folder and the prefix its tensor names get.
struct Item {
    dir: PathBuf,
    prefix: String,
}

/// The items an input path stands for, and what was chosen (for `list`).
fn resolve(path: &Path, step: Option<u64>) -> Result<(Vec<Item>, Option<String>)> {
    let is = |p: &Path, n: &str| input::is_file(&join(p, n));
    if is(path, "_METADATA") {
        if step.is_some() {
            bail!(
                "--step needs a CheckpointManager root, {} is an item directory",
                path.display()
            );
        }
        return Ok((
            vec![Item {
                dir: path.to_path_buf(),
                prefix: String::new(),
            }],
            None,
        ));
    }
    let (step_dir, chosen) = if is(path, "_CHECKPOINT_METADATA") {
        if step.is_some() {
            bail!(
                "--step needs a CheckpointManager root, {} is a step directory",
                path.display()
            );
        }
        (path.to_path_buf(), None)
    } else {
        let found = steps(path)?;
        let all: Vec<u64> = found.iter().map(|(s, _)| *s).collect();
        let Some(&latest) = all.last() else {
            bail!(
                "{}: no Orbax step directory (`<step>` or `<prefix>_<step>` with _CHECKPOINT_METADATA) here",
                path.display()
            );
        };
        let s = step.unwrap_or(latest);
        let Some((_, dir)) = found.iter().rev().find(|(n, _)| *n == s) else {
            bail!("{}: no step {s} (steps: {})", path.display(), list(&all));
        };
        let note = format!("Orbax CheckpointManager, step {s} (steps: {})", list(&all));
        (join(path, dir), Some(note))
    };
    if is(&step_dir, "_METADATA") {
        // a step folder that is its own item (flax.training.checkpoints.save_checkpoint's
        // `checkpoint_<step>`, saved by a Checkpointer straight into the step folder)
        let item = Item {
            dir: step_dir,
            prefix: String::new(),
        };
        return Ok((vec![item], chosen));
    }
    let mut names: Vec<String> = input::list_dirs(&step_dir)?
        .into_iter()
        .filter(|n| is(&join(&step_dir, n), "_METADATA"))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!(
            "{}: an Orbax step with no item (no <item>/_METADATA)",
            step_dir.display()
        );
    }
    // restore() keys its result by every item the step holds, JSON items (metadata,
    // dataset iterators) too, though only PyTree items hold arrays
    let single = names.len() == 1 && item_count(&step_dir) <= 1;
    let items = names
        .into_iter()
        .map(|n| Item {
            dir: join(&step_dir, &n),
            prefix: if single {
                String::new()
            } else {
                format!("{n}/")
            },
        })
        .collect();
    Ok((items, chosen))
}

/// How many items `_CHECKPOINT_METADATA` names (its `item_handlers` object; 0 when absent),
/// leaving out `metrics`, the item a CheckpointManager keeps a save's metrics in, which its
/// `restore()` does not return.
fn item_count(step_dir: &Path) -> usize {
    input::read_small(&join(step_dir, "_CHECKPOINT_METADATA"), MAX_METADATA)
        .ok()
        .and_then(|t| serde_json::from_slice::<Json>(&t).ok())
        .and_then(|v| {
            let items = v["item_handlers"].as_object()?;
            Some(items.keys().filter(|k| *k != "metrics").count())
        })
        .unwrap_or(0)
}

fn list(s: &[u64]) -> String {
    s.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// Where an item's arrays are: its OCDBT database, or one folder per array.
enum ItemStore {
    Ocdbt(ocdbt::Database),
    Dir(DirStore),
}

impl Store for ItemStore {
    fn get(&self, key: &str) -> Result<Option<FileRange>> {
        match self {
            ItemStore::Ocdbt(db) => db.get(key),
            ItemStore::Dir(d) => d.get(key),
        }
    }

    fn describe(&self, key: &str) -> String {
        match self {
            ItemStore::Ocdbt(db) => db.describe(key),
            ItemStore::Dir(d) => d.describe(key),
        }
    }
}

/// One leaf of `_METADATA` that holds an array: its name and its storage key.
struct Leaf {
    name: String,
    key: String,
    /// `value_type` "scalar": `restore()` returns a Python `int`/`float`/`bool`.
    scalar: bool,
    /// `value_type` "string": a Python `str` kept in the item's `_strings.json`.
    string: bool,
}

/// The array leaves of an item's `_METADATA`, and the leaves skipped with why.
fn leaves(text: &[u8]) -> Result<(Vec<Leaf>, Vec<String>)> {
    let v: Json = serde_json::from_slice(text).context("not valid JSON")?;
    let tree = v["tree_metadata"]
        .as_object()
        .ok_or_else(|| anyhow!("no tree_metadata object"))?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (k, leaf) in tree {
        let keys = leaf["key_metadata"]
            .as_array()
            .ok_or_else(|| anyhow!("leaf {k} has no key_metadata"))?;
        let parts = keys
            .iter()
            .map(|p| match &p["key"] {
                Json::String(s) => Ok(s.clone()),
                Json::Number(n) => Ok(n.to_string()),
                other => Err(anyhow!("leaf {k}: key {other} is not a string")),
            })
            .collect::<Result<Vec<String>>>()?;
        let name = parts.join("/");
        let vm = &leaf["value_metadata"];
        let ty = vm["value_type"].as_str().unwrap_or("");
        if vm["skip_deserialize"].as_bool() == Some(true) || ty == "None" {
            continue; // an empty node: no data, no tensor
        }
        match ty {
            "jax.Array" | "np.ndarray" | "scalar" | "string" => out.push(Leaf {
                name,
                key: parts.join("."),
                scalar: ty == "scalar",
                string: ty == "string",
            }),
            other => skipped.push(format!("{name}: a {other} value, not an array")),
        }
    }
    Ok((out, skipped))
}

struct Entry {
    array: Array,
    store: usize,
    /// A scalar leaf restored as a Python number: the type `np.asarray` gives it.
    widen: Option<DType>,
}

/// What `np.asarray` makes of the Python number Orbax restores a "scalar" leaf as (it calls
/// `.item()`): `float` is float64, `int` is int64, `complex` is complex128; `None` for the
/// types that stay as stored (bool, float64, int64, uint64, complex128).
fn python_scalar(d: DType) -> Option<DType> {
    use DType::*;
    match d {
        F16 | BF16 | F32 => Some(F64),
        I8 | I16 | I32 | U8 | U16 | U32 => Some(I64),
        C64 => Some(C128),
        _ => None,
    }
}

/// One stored element of `from` (in its stored byte order) as the little-endian `to` (its
/// [`python_scalar`]), converted as the `--cast`s are (`transform::Converter`: NumPy's
/// `astype`, which is exact for these widenings).
fn widen_scalar(b: &[u8], from: DType, to: DType, big_endian: bool) -> Result<Vec<u8>> {
    let need = from.item_size().unwrap_or(0);
    if b.len() != need {
        bail!("a scalar of {} bytes, not {need}", b.len());
    }
    let target =
        NpyType::cast_target(to).with_context(|| format!("no Python scalar for {from}"))?;
    let mut out = Vec::new();
    Converter::new(from, Plan::Numeric(target), big_endian)?.convert(b, &mut out)?;
    Ok(out)
}

pub struct OrbaxSource {
    path: String,
    stores: Vec<ItemStore>,
    entries: Vec<Entry>,
    /// String leaves (after the arrays): their names and UTF-8 bytes, written as `|S<n>`.
    strings: Vec<(String, Vec<u8>)>,
    format: Option<String>,
    notes: Vec<String>,
}

/// The string leaves of an item, from its `_strings.json` (`{"<dotted key>": "text"}`).
fn strings_of(dir: &Path, leaves: &[Leaf], prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    if !leaves.iter().any(|l| l.string) {
        return Ok(Vec::new());
    }
    let path = join(dir, "_strings.json");
    let text = input::read_small(&path, MAX_METADATA)?;
    let v: Json = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let mut out = Vec::new();
    for leaf in leaves.iter().filter(|l| l.string) {
        let Some(s) = v[&leaf.key].as_str() else {
            bail!("{}: no string '{}'", path.display(), leaf.key);
        };
        out.push((format!("{prefix}{}", leaf.name), s.as_bytes().to_vec()));
    }
    Ok(out)
}

impl OrbaxSource {
    pub fn open(path: &Path, display: &str, step: Option<u64>) -> Result<OrbaxSource> {
        let (items, format) = resolve(path, step)?;
        let mut stores = Vec::new();
        let mut entries = Vec::new();
        let mut notes = Vec::new();
        let mut strings = Vec::new();
        for item in items {
            let meta_path = join(&item.dir, "_METADATA");
            let text = input::read_small(&meta_path, MAX_METADATA)?;
            let (found, skipped) =
                leaves(&text).with_context(|| meta_path.display().to_string())?;
            notes.extend(
                skipped
                    .into_iter()
                    .map(|s| format!("{}: skipped {s}", item.dir.display())),
            );
            let store = if input::is_file(&join(&item.dir, "manifest.ocdbt")) {
                ItemStore::Ocdbt(ocdbt::Database::open(&item.dir)?)
            } else {
                ItemStore::Dir(DirStore {
                    root: item.dir.clone(),
                })
            };
            strings.extend(strings_of(&item.dir, &found, &item.prefix)?);
            for leaf in found.into_iter().filter(|l| !l.string) {
                let prefix = format!("{}/", leaf.key);
                let name = format!("{}{}", item.prefix, leaf.name);
                let meta: ArrayMeta = array_at(&store, &prefix)
                    .with_context(|| format!("the array '{name}'"))?
                    .ok_or_else(|| {
                        anyhow!(
                            "the array '{name}': no zarr metadata ({})",
                            store.describe(&format!("{prefix}.zarray"))
                        )
                    })?;
                let one = meta.shape.iter().product::<u64>() == 1;
                let widen = (leaf.scalar && one)
                    .then(|| python_scalar(meta.dtype))
                    .flatten();
                entries.push(Entry {
                    array: Array { name, prefix, meta },
                    store: stores.len(),
                    widen,
                });
            }
            stores.push(store);
        }
        Ok(OrbaxSource {
            path: display.to_string(),
            stores,
            entries,
            strings,
            format,
            notes,
        })
    }
}

impl Source for OrbaxSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.entries.len() + self.strings.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        if let Some((name, text)) = index
            .checked_sub(self.entries.len())
            .and_then(|i| self.strings.get(i))
        {
            let n = text.len() as u64;
            return Ok(TensorMeta {
                name: name.clone(),
                dtype: DType::String,
                shape: Vec::new(),
                kind: crate::tensor::Kind::String,
                stored_bytes: n,
                max_string_len: Some(n),
                big_endian: false,
                ragged_rank: 0,
                facts: Default::default(),
            });
        }
        let e = &self.entries[index];
        let mut m = e.array.tensor_meta();
        if let Some(to) = e.widen {
            m.dtype = to;
            m.big_endian = false;
        }
        Ok(m)
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let Some(e) = self.entries.get(index) else {
            bail!("a string value, not an array");
        };
        let reader = ArrayReader {
            store: &self.stores[e.store],
            prefix: &e.array.prefix,
            meta: &e.array.meta,
        };
        let Some(to) = e.widen else {
            return reader.stream(chunk, sink);
        };
        let mut stored = Vec::new();
        reader.stream(chunk, &mut |b: &[u8]| {
            stored.extend_from_slice(b);
            Ok(())
        })?;
        let m = &e.array.meta;
        let wide = widen_scalar(&stored, m.dtype, to, m.big_endian)
            .with_context(|| format!("the scalar '{}'", e.array.name))?;
        sink(&wide)
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        match index
            .checked_sub(self.entries.len())
            .and_then(|i| self.strings.get(i))
        {
            Some((_, text)) => sink(text),
            None => bail!("Orbax arrays hold no strings"),
        }
    }

    fn input_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts {
            format: self.format.as_deref(),
            notes: &self.notes,
        }
    }
}
