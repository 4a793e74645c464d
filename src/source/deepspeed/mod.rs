//! DeepSpeed ZeRO checkpoints (stages 1, 2 and 3, fp16 and bf16 training): a checkpoint folder
//! (`latest` names the tag; `--step N` picks `global_stepN`) or a tag folder (`global_stepN/`)
//! becomes the consolidated fp32 master weights, exactly what DeepSpeed's
//! `zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint` returns: named by state-dict keys,
//! in its order (buffers, frozen parameters, trainable parameters, shared aliases), buffers
//! cast to float32 when floating point, frozen parameters in the dtype they were saved in.
//!
//! The per-rank `*_optim_states.pt` hold the fp32 masters as flat partitions; the
//! `*_model_states.pt` hold names, shapes, buffers and frozen parameters. Each file is opened by
//! `files.rs` (through the PyTorch reader's archive and the inert pickle records), the fields
//! needed are taken out (`states.rs`) and its pickled tree dropped; `plan.rs` computes where each tensor's
//! elements lie (padding left out), and `read_dense` streams them by ranged reads of the rank
//! files, so memory holds one chunk, never a partition or the model. A rank's file that is
//! missing is an error naming it. The optimizer moments (`exp_avg`...) are not part of the
//! output (zero_to_fp32 leaves them out too); each rank file is readable on its own as a
//! PyTorch file. Model (tensor) parallelism other than `mp_rank_00` and expert-parallel layouts
//! are refused, as the upstream script refuses them.

mod files;
pub mod plan;
mod states;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use self::files::{Flat, PtFile};
use self::plan::{Out, Piece, Span};
use self::states::{model_states, optim_states};
use super::{folder, Input, OpenOptions, Reader, Sniff};
use crate::dtype::DType;
use crate::input;
use crate::tensor::{ChunkSink, InputFacts, Kind, Source, TensorMeta};

pub static READER: Reader = Reader {
    name: "deepspeed",
    about: "DeepSpeed ZeRO 1/2/3 checkpoint folders (latest tag or global_stepN): consolidated fp32 weights",
    extensions: &[],
    sniff,
    open,
};

const OPTIM: &str = "_optim_states.pt";
const MODEL: &str = "_model_states.pt";
/// The model-states file of a save without ZeRO partitions.
const STAGE0_MODEL: &str = "mp_rank_00_model_states.pt";

fn sniff(input: &Input) -> Sniff {
    if !input.is_dir {
        return Sniff::No;
    }
    let p = &input.path;
    // ZeRO rank files, or the one model-states file of a save without ZeRO (stage 0), which is
    // claimed to be refused by name
    let rank_files = |dir: &Path| {
        folder::files(dir).is_ok_and(|f| f.iter().any(|n| n.ends_with(OPTIM) || n == STAGE0_MODEL))
    };
    if rank_files(p) {
        return Sniff::Yes;
    }
    let latest = join(p, "latest");
    if !input::is_file(&latest) {
        // no `latest` (`save_checkpoint(save_latest=False)`): claimed where a tag folder holds
        // rank files, to be refused naming the tags
        return match input::list_dirs(p) {
            Ok(dirs) if dirs.iter().take(8).any(|d| rank_files(&join(p, d))) => Sniff::Yes,
            _ => Sniff::No,
        };
    }
    // `latest` and a tag folder of rank files (the one it names, or another global_step*)
    let named = input::read_small(&latest, 4096)
        .ok()
        .map(|t| String::from_utf8_lossy(&t).trim().to_string())
        .filter(|t| valid_tag(t).is_ok());
    if named.is_some_and(|t| rank_files(&join(p, &t))) {
        return Sniff::Yes;
    }
    match input::list_dirs(p) {
        Ok(dirs)
            if dirs
                .iter()
                .filter(|d| d.starts_with("global_step"))
                .take(4)
                .any(|d| rank_files(&join(p, d))) =>
        {
            Sniff::Yes
        }
        _ => Sniff::No,
    }
}

/// What the command line sets for DeepSpeed checkpoint folders.
#[derive(Clone, Debug, Default)]
pub struct DeepSpeedOptions {
    /// `--step`: read tag `global_stepN` instead of the one `latest` names.
    pub step: Option<u64>,
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let max = if opts.max_decompressed == 0 {
        64 << 30
    } else {
        opts.max_decompressed
    };
    Ok(Box::new(DeepSpeedSource::open(
        &input.path,
        &input.display,
        opts.deepspeed.step,
        max,
    )?))
}

fn join(dir: &Path, name: &str) -> PathBuf {
    super::zarr::join(dir, name)
}

/// A tag is one folder name: never a path that leaves the checkpoint folder.
fn valid_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag == "." || tag == ".." || tag.contains(['/', '\\', '\0']) {
        bail!("'{tag}' is not a tag folder name");
    }
    Ok(())
}

/// Natural order (`rank_10` after `rank_9`), as zero_to_fp32 sorts the rank files.
fn natural_key(s: &str) -> Vec<(u8, u128, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits > 0 {
            let n = rest[..digits].parse::<u128>().unwrap_or(u128::MAX);
            out.push((0, n, String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            out.push((1, 0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    out
}

/// The tag folder an input stands for, the `latest` file read (if any) and a line for `list`.
fn resolve(path: &Path, step: Option<u64>) -> Result<(PathBuf, Option<PathBuf>, String)> {
    let here = folder::files(path)?;
    if here
        .iter()
        .any(|n| n.ends_with(OPTIM) || n.ends_with(MODEL))
    {
        if step.is_some() {
            bail!(
                "--step needs a DeepSpeed checkpoint folder (the one with `latest`), {} is a tag folder",
                path.display()
            );
        }
        return Ok((path.to_path_buf(), None, String::new()));
    }
    let mut tags: Vec<String> = input::list_dirs(path)?;
    tags.sort_by_key(|t| natural_key(t));
    let shown = || tags.join(", ");
    let (tag, latest) = match step {
        Some(n) => (format!("global_step{n}"), None),
        None => {
            let latest = join(path, "latest");
            let text = input::read_small(&latest, 4096).with_context(|| {
                format!(
                    "{}: a DeepSpeed checkpoint folder needs its `latest` file (or --step N); pass one of its tag folders instead: {}",
                    path.display(),
                    shown()
                )
            })?;
            let tag = String::from_utf8_lossy(&text).trim().to_string();
            valid_tag(&tag).with_context(|| latest.display().to_string())?;
            (tag, Some(latest))
        }
    };
    let dir = join(path, &tag);
    if !input::is_dir(&dir) {
        match &latest {
            Some(l) => bail!(
                "{} names tag '{tag}', but there is no folder {} (tags: {})",
                l.display(),
                dir.display(),
                shown()
            ),
            None => bail!("{}: no tag '{tag}' (tags: {})", path.display(), shown()),
        }
    }
    Ok((dir, latest, format!("tag {tag} (tags: {})", shown())))
}

/// A rank file name's data-parallel rank, its prefix (`bf16_` or none) and its model-parallel
/// rank: `[bf16_]zero_pp_rank_<r>_mp_rank_<m>_optim_states.pt`.
fn rank_of(name: &str, suffix: &str) -> Option<(u64, String, u64)> {
    let stem = name.strip_suffix(suffix)?;
    let at = stem.find("zero_pp_rank_")?;
    let (dp, mp) = stem[at + "zero_pp_rank_".len()..].split_once("_mp_rank_")?;
    Some((dp.parse().ok()?, stem[..at].to_string(), mp.parse().ok()?))
}

/// The files of ranks `0..world` among `names` (ending in `suffix`), in rank order; a missing
/// one is an error naming it.
fn by_rank(
    dir: &Path,
    names: &[String],
    suffix: &str,
    world: u64,
    what: &str,
) -> Result<Vec<PathBuf>> {
    let parsed: Option<Vec<(u64, String, u64)>> =
        names.iter().map(|n| rank_of(n, suffix)).collect();
    let Some(parsed) = parsed else {
        // names that do not follow DeepSpeed's pattern: zero_to_fp32's natural order and count
        if names.len() as u64 != world {
            bail!(
                "expected {world} '*{suffix}' files in {} (one per rank), found {}",
                dir.display(),
                names.len()
            );
        }
        return Ok(names.iter().map(|n| join(dir, n)).collect());
    };
    if let Some((_, _, mp)) = parsed.iter().find(|p| p.2 != 0) {
        bail!(
            "{}: model-parallel rank {mp} files: tensor-parallel ZeRO checkpoints are not supported (zero_to_fp32 reads mp_rank_00 only)",
            dir.display()
        );
    }
    let prefix = parsed.first().map(|p| p.1.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for r in 0..world {
        let name = format!("{prefix}zero_pp_rank_{r}_mp_rank_00{suffix}");
        if !names.contains(&name) {
            bail!(
                "rank {r}'s {what} file {} is missing (the checkpoint has {world} data-parallel ranks)",
                join(dir, &name).display()
            );
        }
        out.push(join(dir, &name));
    }
    if names.len() as u64 != world {
        bail!(
            "expected {world} '*{suffix}' files in {} (one per rank), found {}: files of another run?",
            dir.display(),
            names.len()
        );
    }
    Ok(out)
}

/// One output tensor: its name, shape, dtype and spans of the flat table.
struct Tensor {
    name: String,
    shape: Vec<u64>,
    /// The dtype the spans hold; `cast` says it goes out as float32 (a buffer's `.float()`).
    dtype: DType,
    cast: bool,
    spans: Vec<Span>,
}

/// The consolidated state dict in the making: insertion order kept, a repeated name replaced
/// in place (as a Python dict assignment does).
#[derive(Default)]
struct StateDict {
    tensors: Vec<Tensor>,
    index: HashMap<String, usize>,
}

impl StateDict {
    fn insert(&mut self, t: Tensor) {
        match self.index.get(&t.name) {
            Some(&i) => self.tensors[i] = t,
            None => {
                self.index.insert(t.name.clone(), self.tensors.len());
                self.tensors.push(t);
            }
        }
    }
}

pub struct DeepSpeedSource {
    path: String,
    flats: Vec<Flat>,
    tensors: Vec<Tensor>,
    files: Vec<PathBuf>,
    format: String,
}

/// Adds `f` to the table, returning its index and element count.
fn add(flats: &mut Vec<Flat>, f: Flat) -> Piece {
    let n = f.numel;
    flats.push(f);
    (flats.len() - 1, n)
}

/// One dtype for all `pieces` (the partitions of one tensor), which must agree.
fn one_dtype(flats: &[Flat], spans: &[Span], name: &str) -> Result<Option<DType>> {
    let mut d = None;
    for s in spans {
        let f = &flats[s.flat];
        match d {
            None => d = Some(f.dtype),
            Some(x) if x != f.dtype => bail!(
                "'{name}': its parts have different dtypes ({x:?} in one rank's file, {:?} in {})",
                f.dtype,
                f.file
            ),
            _ => {}
        }
    }
    Ok(d)
}

impl DeepSpeedSource {
    pub fn open(path: &Path, display: &str, step: Option<u64>, max: u64) -> Result<Self> {
        let (dir, latest, chosen) = resolve(path, step)?;
        let mut names = folder::files(&dir)?;
        names.sort_by_key(|n| natural_key(n));
        let optim: Vec<String> = names
            .iter()
            .filter(|n| n.ends_with(OPTIM))
            .cloned()
            .collect();
        let model: Vec<String> = names
            .iter()
            .filter(|n| n.ends_with(MODEL))
            .cloned()
            .collect();
        let Some(first) = optim.first() else {
            if model.iter().any(|m| m == STAGE0_MODEL) {
                bail!(
                    "{}: no ZeRO optimizer partitions ('*{OPTIM}'): a DeepSpeed checkpoint saved without ZeRO (stage 0), which zero_to_fp32 cannot consolidate either; its weights are the 'module' entry of {}, a PyTorch file tensor2npy reads (--select 'module/*')",
                    dir.display(),
                    join(&dir, STAGE0_MODEL).display()
                );
            }
            bail!(
                "{}: no '*{OPTIM}' file: not a ZeRO checkpoint tag folder",
                dir.display()
            );
        };
        let mut files: Vec<PathBuf> = latest.into_iter().collect();
        // The first optimizer file says the stage and the world size.
        let first_path = join(&dir, first);
        let head = optim_states(&PtFile::open(&first_path, max)?)
            .with_context(|| first_path.display().to_string())?;
        let (stage, world) = (head.stage, head.world);
        if world == 0 {
            bail!("{}: partition_count is 0", first_path.display());
        }
        let optim_paths = by_rank(&dir, &optim, OPTIM, world, "optimizer-states")?;
        let model_paths = if stage == 3 {
            by_rank(&dir, &model, MODEL, world, "model-states")?
        } else {
            let Some(m) = model.first() else {
                bail!("{}: no '*{MODEL}' file (mp_rank_00{MODEL})", dir.display());
            };
            vec![join(&dir, m)]
        };
        let mut flats = Vec::new();
        // Model states: rank 0's names, shapes and buffers; stage 3's frozen fragments of all.
        let mut models = Vec::new();
        for p in &model_paths {
            let f = PtFile::open(p, max)?;
            models.push(model_states(&f).with_context(|| p.display().to_string())?);
            files.push(p.clone());
        }
        let mut parts: Vec<Vec<Piece>> = Vec::new();
        let mut paddings = None;
        for (r, p) in optim_paths.iter().enumerate() {
            let o =
                optim_states(&PtFile::open(p, max)?).with_context(|| p.display().to_string())?;
            if o.stage != stage {
                bail!(
                    "{}: zero_stage {} where rank 0's file says {stage}",
                    p.display(),
                    o.stage
                );
            }
            if r == 0 {
                paddings = o.paddings;
            }
            parts.push(o.groups.into_iter().map(|g| add(&mut flats, g)).collect());
            files.push(p.clone());
        }
        let m0 = &models[0];
        let mut sd = StateDict::default();
        for (name, f) in &m0.buffers {
            let floating = matches!(f.dtype, DType::F16 | DType::BF16 | DType::F32 | DType::F64);
            if f.dtype.is_float8() {
                bail!("buffer '{name}': a float8 buffer is not supported");
            }
            let shape = f.shape.clone();
            let dtype = f.dtype;
            let piece = add(&mut flats, f.clone());
            sd.insert(Tensor {
                name: name.clone(),
                shape,
                dtype,
                cast: floating && dtype != DType::F32,
                spans: plan::take(&[piece], 0, piece.1).unwrap_or_default(),
            });
        }
        let mut outs: Vec<Out> = Vec::new();
        for (name, shape) in &m0.frozen_shapes {
            if stage <= 2 {
                let f = m0.frozen_fragments.get(name).ok_or_else(|| {
                    anyhow!(
                        "{}: frozen parameter '{name}' has no frozen_param_fragments entry",
                        model_paths[0].display()
                    )
                })?;
                let piece = add(&mut flats, f.clone());
                outs.push(Out {
                    name: name.clone(),
                    shape: f.shape.clone(),
                    spans: plan::take(&[piece], 0, piece.1).unwrap_or_default(),
                });
            } else {
                let mut frags = Vec::new();
                for (m, p) in models.iter().zip(&model_paths) {
                    let f = m.frozen_fragments.get(name).ok_or_else(|| {
                        anyhow!(
                            "{}: frozen parameter '{name}' has no frozen_param_fragments entry",
                            p.display()
                        )
                    })?;
                    frags.push(add(&mut flats, f.clone()));
                }
                outs.push(
                    plan::zero3_frozen(name, shape, &frags).with_context(|| display.to_string())?,
                );
            }
        }
        let trainable = if stage <= 2 {
            plan::zero2(&m0.param_shapes, &parts, paddings.as_deref())
        } else {
            let merged: Vec<(String, Vec<u64>)> =
                m0.param_shapes.iter().flatten().cloned().collect();
            plan::zero3(&merged, &parts)
        };
        outs.extend(trainable.with_context(|| {
            let held: Vec<String> = optim_paths
                .iter()
                .zip(&parts)
                .map(|(p, g)| {
                    let n: Vec<u64> = g.iter().map(|x| x.1).collect();
                    format!("{} holds {n:?}", p.display())
                })
                .collect();
            format!("ZeRO-{stage} fp32 partitions ({})", held.join("; "))
        })?);
        for o in outs {
            let dtype = one_dtype(&flats, &o.spans, &o.name)?.unwrap_or(DType::F32);
            sd.insert(Tensor {
                name: o.name,
                shape: o.shape,
                dtype,
                cast: false,
                spans: o.spans,
            });
        }
        for (alias, source) in &m0.shared {
            if let Some(&i) = sd.index.get(source) {
                let t = &sd.tensors[i];
                let copy = Tensor {
                    name: alias.clone(),
                    shape: t.shape.clone(),
                    dtype: t.dtype,
                    cast: t.cast,
                    spans: t.spans.clone(),
                };
                sd.insert(copy);
            }
        }
        let format = format!(
            "DeepSpeed ZeRO-{stage} checkpoint, {world} ranks{}{chosen}",
            if chosen.is_empty() { "" } else { ", " }
        );
        Ok(DeepSpeedSource {
            path: display.to_string(),
            flats,
            tensors: sd.tensors,
            files,
            format,
        })
    }
}

/// Little-endian elements of a floating dtype as float32 (`tensor.float()`: exact for f16 and
/// bf16, rounded to nearest for f64).
fn to_f32(dtype: DType, c: &[u8]) -> Vec<u8> {
    match dtype {
        DType::F16 => c
            .chunks_exact(2)
            .flat_map(|b| {
                half::f16::from_le_bytes([b[0], b[1]])
                    .to_f32()
                    .to_le_bytes()
            })
            .collect(),
        DType::BF16 => c
            .chunks_exact(2)
            .flat_map(|b| {
                half::bf16::from_le_bytes([b[0], b[1]])
                    .to_f32()
                    .to_le_bytes()
            })
            .collect(),
        DType::F64 => c
            .chunks_exact(8)
            .flat_map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (f64::from_le_bytes(a) as f32).to_le_bytes()
            })
            .collect(),
        _ => c.to_vec(),
    }
}

impl Source for DeepSpeedSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.tensors.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        let t = &self.tensors[index];
        let numel: u64 = t.spans.iter().map(|s| s.len).sum();
        let item = t.dtype.item_size().unwrap_or(1) as u64;
        Ok(TensorMeta {
            name: t.name.clone(),
            dtype: if t.cast { DType::F32 } else { t.dtype },
            shape: t.shape.clone(),
            kind: Kind::Dense,
            stored_bytes: numel.saturating_mul(item),
            max_string_len: None,
            big_endian: false,
            ragged_rank: 0,
            facts: Default::default(),
        })
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let t = &self.tensors[index];
        let item = t.dtype.item_size().unwrap_or(1);
        // a cast output is up to twice its input: read half the chunk
        let step = if t.cast { (chunk / 2).max(item) } else { chunk };
        for s in &t.spans {
            let f = &self.flats[s.flat];
            let range = f
                .data
                .range()
                .with_context(|| format!("{}: the storage of '{}'", f.file, t.name))?;
            let bytes = s
                .start
                .checked_mul(item as u64)
                .and_then(|b| b.checked_add(f.offset))
                .zip(s.len.checked_mul(item as u64))
                .context("a span overflows")?;
            let r = range
                .slice(bytes.0, bytes.1)
                .with_context(|| format!("{}: '{}'", f.file, t.name))?;
            if t.cast {
                let dtype = t.dtype;
                r.stream(item, step, &mut |c: &[u8]| sink(&to_f32(dtype, c)))?;
            } else {
                r.stream(item, step, sink)?;
            }
        }
        Ok(())
    }

    fn read_strings(&mut self, index: usize, _sink: &mut ChunkSink) -> Result<()> {
        bail!(
            "tensor '{}' is not a string tensor",
            self.tensors[index].name
        )
    }

    fn input_files(&self) -> Vec<PathBuf> {
        // local files only: an output is never written over an object in a bucket this way
        self.files
            .iter()
            .filter(|p| input::url_of(p).is_none())
            .cloned()
            .collect()
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts {
            format: Some(&self.format),
            notes: &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_files_are_named_and_sorted_naturally() {
        assert_eq!(
            rank_of("bf16_zero_pp_rank_10_mp_rank_00_optim_states.pt", OPTIM),
            Some((10, "bf16_".to_string(), 0))
        );
        assert_eq!(rank_of("mp_rank_00_model_states.pt", MODEL), None);
        let mut v = vec!["r_10_x", "r_9_x", "r_1_x"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["r_1_x", "r_9_x", "r_10_x"]);
    }

    #[test]
    fn a_tag_never_leaves_the_folder() {
        for bad in ["", ".", "..", "../x", "a/b", "a\\b"] {
            assert!(valid_tag(bad).is_err(), "{bad}");
        }
        assert!(valid_tag("global_step3").is_ok());
    }
}
