//! The safetensors variant of Distributed Checkpoints: `HuggingFaceStorageWriter(path,
//! save_distributed=True)` writes, per rank, `shard-<rank>-model-<i>-of-<n>.safetensors` holding
//! that rank's chunks under their state-dict keys, and records each chunk's offsets in the
//! header's `__metadata__["DCP_SHARDING_INFO"]` (`{"key": {"saved_offsets": [..]}}`). As
//! `HuggingFaceStorageReader` does, every `.safetensors` file of the folder is read, a tensor's
//! size is the furthest extent of its chunks, and the chunks are placed at their offsets
//! (`assemble.rs`), checked to tile the tensor. Files are parsed by the safetensors reader.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::assemble::{check_tiling, Region};
use super::{tensor_meta, Bytes, Chunk, DcpSource, Entry};
use crate::dtype::DType;
use crate::input;
use crate::source::folder;
use crate::source::safetensors::SafetensorsSource;
use crate::source::zarr::join;
use crate::tensor::Source;

/// A folder with `shard-*-model-*-of-*.safetensors` files and no index: what the distributed
/// Hugging Face storage writer leaves when it does not consolidate.
pub fn is_sharded_folder(dir: &Path) -> bool {
    let Ok(names) = folder::files(dir) else {
        return false;
    };
    !names.iter().any(|n| n.ends_with(".index.json")) && names.iter().any(|n| is_shard_name(n))
}

fn is_shard_name(n: &str) -> bool {
    n.starts_with("shard-") && n.contains("-model-") && n.ends_with(".safetensors")
}

struct Found {
    dtype: DType,
    item: u64,
    chunks: Vec<Chunk>,
    stored: u64,
}

pub fn open(dir: &Path, display: &str) -> Result<DcpSource> {
    let names: Vec<String> = folder::files(dir)?
        .into_iter()
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut input_files = Vec::new();
    for n in &names {
        let p = join(dir, n);
        folder::check_inside(dir, &p)?;
        let data = input::open_range(&p)?;
        let what = p.display().to_string();
        let st = SafetensorsSource::open(&what, Vec::new(), data).with_context(|| what.clone())?;
        let info: serde_json::Value = match st.metadata()?.as_ref().and_then(|m| m.get("DCP_SHARDING_INFO")) {
            Some(serde_json::Value::String(s)) => serde_json::from_str(s)
                .with_context(|| format!("{what}: DCP_SHARDING_INFO is not JSON"))?,
            _ => bail!("{what}: no DCP_SHARDING_INFO in the header's __metadata__: not a shard of a distributed Hugging Face save"),
        };
        if input::url_of(dir).is_none() {
            input_files.push(p.clone());
        }
        for i in 0..st.len() {
            let m = st.meta(i)?;
            let at = || format!("{what}: the tensor '{}'", m.name);
            let offsets = info
                .get(&m.name)
                .and_then(|v| v.get("saved_offsets"))
                .and_then(|v| v.as_array())
                .ok_or_else(|| anyhow!("{}: no saved_offsets in DCP_SHARDING_INFO", at()))?
                .iter()
                .map(|o| {
                    o.as_u64()
                        .ok_or_else(|| anyhow!("{}: an offset is not an integer", at()))
                })
                .collect::<Result<Vec<u64>>>()?;
            if offsets.len() != m.shape.len() {
                bail!(
                    "{}: {} offsets for {} dimensions",
                    at(),
                    offsets.len(),
                    m.shape.len()
                );
            }
            let range = st
                .raw_range(i)
                .ok_or_else(|| anyhow!("{}: dtype {} cannot be read", at(), m.dtype.name()))?;
            let item = m.dtype.item_size().unwrap_or(1) as u64;
            let f = found.entry(m.name.clone()).or_insert(Found {
                dtype: m.dtype,
                item,
                chunks: Vec::new(),
                stored: 0,
            });
            if f.dtype != m.dtype {
                bail!(
                    "{}: dtype {} here, {} in another shard",
                    at(),
                    m.dtype.name(),
                    f.dtype.name()
                );
            }
            f.stored = f.stored.saturating_add(range.len());
            f.chunks.push(Chunk {
                region: Region {
                    offsets,
                    sizes: m.shape.clone(),
                },
                bytes: Bytes::Raw(range),
            });
        }
    }
    if names.is_empty() {
        bail!("{display}: no .safetensors file in the folder");
    }
    let mut entries = Vec::new();
    for (name, f) in found {
        let rank = f.chunks[0].region.sizes.len();
        let mut size = vec![0u64; rank];
        for c in &f.chunks {
            if c.region.sizes.len() != rank {
                bail!("{display}: the tensor '{name}': its chunks differ in rank");
            }
            for ((s, o), n) in size.iter_mut().zip(&c.region.offsets).zip(&c.region.sizes) {
                let end = o.checked_add(*n).ok_or_else(|| {
                    anyhow!("{display}: the tensor '{name}': an offset overflows")
                })?;
                *s = (*s).max(end);
            }
        }
        let regions: Vec<&Region> = f.chunks.iter().map(|c| &c.region).collect();
        check_tiling(&size, &regions).with_context(|| format!("{display}: the tensor '{name}'"))?;
        entries.push(Entry {
            meta: tensor_meta(&name, f.dtype, &size, f.stored),
            item: f.item,
            chunks: f.chunks,
        });
    }
    Ok(DcpSource {
        path: display.to_string(),
        file_names: names,
        entries,
        input_files,
        notes: Vec::new(),
        format: "dcp (Hugging Face safetensors shards)".to_string(),
    })
}
