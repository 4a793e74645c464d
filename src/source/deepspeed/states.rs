//! The fields of DeepSpeed's rank files that `zero_to_fp32.py` reads, taken out of a file's
//! pickled tree (`files.rs`): from a model-states file its buffers, the names and shapes of the
//! parameter groups, the frozen parameters and the shared (tied) aliases; from an
//! optimizer-states file the ZeRO stage, the world size (`partition_count`), the rank's flat
//! fp32 partitions and the alignment paddings. Tensors become [`Flat`] handles, never read here.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};

use super::files::{get, int, items, shape, str_entries, string, Flat, PtFile};
use crate::source::pickle::Value;

/// What a model-states file contributes.
pub struct ModelStates {
    /// Buffers in `module` order.
    pub buffers: Vec<(String, Flat)>,
    pub param_shapes: Vec<Vec<(String, Vec<u64>)>>,
    pub frozen_shapes: Vec<(String, Vec<u64>)>,
    pub frozen_fragments: HashMap<String, Flat>,
    pub shared: Vec<(String, String)>,
}

/// AutoEP's ZeRO-3 partition-native expert layers (`ds_autoep_layers`, or the legacy
/// `autoep_layers`, with an entry whose `checkpoint_format` is `zero3_partitioned`): the expert
/// parameters are partitioned over expert replica groups, so zero_to_fp32 refuses them.
fn refuse_autoep(f: &PtFile) -> Result<()> {
    let layers = match get(&f.root, "ds_autoep_layers")? {
        Some(v) => v,
        None => get(&f.root, "autoep_layers")?.unwrap_or_default(),
    };
    let Value::List(list) = &layers else {
        return Ok(());
    };
    for entry in list.borrow().iter() {
        if matches!(entry, Value::Dict(_))
            && matches!(&get(entry, "checkpoint_format")?, Some(Value::Str(s)) if &**s == "zero3_partitioned")
        {
            bail!("an AutoEP ZeRO-3 partition-native checkpoint (expert parameters partitioned over expert replica groups): not supported, as zero_to_fp32 does not support it (DeepSpeed's ds_to_universal.py converts it)");
        }
    }
    Ok(())
}

pub fn model_states(f: &PtFile) -> Result<ModelStates> {
    refuse_autoep(f)?;
    let Some(buffer_names) = get(&f.root, "buffer_names")? else {
        bail!("not a model state checkpoint: no 'buffer_names'");
    };
    let buffer_names: Vec<String> = items(&buffer_names, "buffer_names")?
        .iter()
        .map(|v| string(v, "buffer_names"))
        .collect::<Result<_>>()?;
    let mut buffers = Vec::new();
    for (name, v) in str_entries(&f.field("module")?, "module")? {
        if buffer_names.contains(&name) {
            let flat = f.flat(&v, &format!("buffer '{name}'"))?;
            buffers.retain(|(n, _): &(String, Flat)| n != &name);
            buffers.push((name, flat));
        }
    }
    let named_shapes = |v: &Value, what: &str| -> Result<Vec<(String, Vec<u64>)>> {
        str_entries(v, what)?
            .into_iter()
            .map(|(n, s)| Ok((n.clone(), shape(&s, &format!("{what}['{n}']"))?)))
            .collect()
    };
    let param_shapes = items(&f.field("param_shapes")?, "param_shapes")?
        .iter()
        .map(|g| named_shapes(g, "param_shapes"))
        .collect::<Result<_>>()?;
    let frozen_shapes = match get(&f.root, "frozen_param_shapes")? {
        Some(v) => named_shapes(&v, "frozen_param_shapes")?,
        None => Vec::new(),
    };
    let mut frozen_fragments = HashMap::new();
    if !frozen_shapes.is_empty() {
        let frags = get(&f.root, "frozen_param_fragments")?.unwrap_or_default();
        for (name, v) in str_entries(&frags, "frozen_param_fragments")? {
            let flat = f.flat(&v, &format!("frozen_param_fragments['{name}']"))?;
            frozen_fragments.insert(name, flat);
        }
    }
    let shared = str_entries(&f.field("shared_params")?, "shared_params")?
        .into_iter()
        .map(|(a, s)| Ok((a.clone(), string(&s, &format!("shared_params['{a}']"))?)))
        .collect::<Result<_>>()?;
    Ok(ModelStates {
        buffers,
        param_shapes,
        frozen_shapes,
        frozen_fragments,
        shared,
    })
}

/// What an optimizer-states file contributes.
pub struct OptimStates {
    pub stage: u64,
    pub world: u64,
    pub groups: Vec<Flat>,
    pub paddings: Option<Vec<Vec<u64>>>,
}

pub fn optim_states(f: &PtFile) -> Result<OptimStates> {
    let osd = f.field("optimizer_state_dict")?;
    let Some(stage) = get(&osd, "zero_stage")? else {
        bail!("not a ZeRO checkpoint: optimizer_state_dict has no 'zero_stage'");
    };
    let stage = int(&stage, "zero_stage")?;
    let count = get(&osd, "partition_count")?
        .ok_or_else(|| anyhow!("optimizer_state_dict has no 'partition_count'"))?;
    let world = match &count {
        Value::List(_) | Value::Tuple(_) => items(&count, "partition_count")?
            .iter()
            .map(|v| int(v, "partition_count"))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(0),
        v => int(v, "partition_count")?,
    };
    let key = match stage {
        1 | 2 => "single_partition_of_fp32_groups",
        3 => "fp32_flat_groups",
        s => bail!("unknown zero stage {s}"),
    };
    let groups = get(&osd, key)?.ok_or_else(|| anyhow!("optimizer_state_dict has no '{key}'"))?;
    let groups = items(&groups, key)?
        .iter()
        .enumerate()
        .map(|(i, v)| f.flat(v, &format!("{key}[{i}]")))
        .collect::<Result<_>>()?;
    let paddings = match get(&osd, "param_alignment_paddings")? {
        None | Some(Value::None) => None,
        Some(p) => Some(
            items(&p, "param_alignment_paddings")?
                .iter()
                .map(|g| {
                    items(g, "param_alignment_paddings")?
                        .iter()
                        .map(|v| int(v, "param_alignment_paddings"))
                        .collect::<Result<Vec<u64>>>()
                })
                .collect::<Result<_>>()?,
        ),
    };
    Ok(OptimStates {
        stage,
        world,
        groups,
        paddings,
    })
}
