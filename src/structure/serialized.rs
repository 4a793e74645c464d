//! Serialized sparse tensors: `tf.io.serialize_sparse` output (three strings, each a
//! serialized TensorProto) and `serialize_many_sparse` batches ([N, 3]). Every nested
//! TensorProto is scanned first (metadata only), held to `--max-fill-bytes`, and checked against
//! the others — shapes, counts, the indices themselves, streamed straight from the nested
//! message — before any component is decoded; batches are combined with checked arithmetic.

use anyhow::{bail, Context, Result};

use super::comp::{Comp, CompData, Spool};
use super::sparse::{check_entries, check_heads, dense_dims, list_meta, Sparse};
use super::{StructureOptions, View};
use crate::dtype::DType;
use crate::error::check_interrupted;
use crate::source::tensorproto::ScannedTensor;
use crate::tensor::{Kind, TensorMeta};

/// Scans the three serialized components of one sparse tensor (metadata only); `None` when
/// they are not a sparse tensor's.
fn scan_triple(triple: &[Vec<u8>]) -> Option<[ScannedTensor; 3]> {
    let scanned: Vec<ScannedTensor> = triple
        .iter()
        .map(|b| Comp::scan(b.clone(), u64::MAX).ok())
        .collect::<Option<_>>()?;
    let [i, v, s] = <[ScannedTensor; 3]>::try_from(scanned).ok()?;
    let ok = i.dtype == DType::I64
        && i.shape.len() == 2
        && s.dtype == DType::I64
        && s.shape.len() == 1
        && v.shape.len() == 1;
    ok.then_some([i, v, s])
}

/// What a serialized sparse tensor becomes: validated components, or a `list` row.
pub enum Serialized {
    Sparse(Box<Sparse>),
    Listed(TensorMeta),
}

/// `tf.io.serialize_sparse` output ([3] strings) or `serialize_many_sparse` output ([N, 3]);
/// `None` when the strings are not serialized sparse components. Every nested TensorProto is
/// scanned and its shape checked against the others before any of them is decoded, and each
/// is held to `--max-fill-bytes`.
pub fn from_serialized(
    name: &str,
    elements: &[Vec<u8>],
    shape: &[u64],
    opts: &StructureOptions,
) -> Result<Option<Serialized>> {
    let rows: Vec<[ScannedTensor; 3]> = match elements
        .chunks(3)
        .map(scan_triple)
        .collect::<Option<Vec<_>>>()
    {
        Some(rows) if !rows.is_empty() && elements.len().is_multiple_of(3) => rows,
        _ => return Ok(None),
    };
    // Now that they are known to be sparse components, hold them to the fill limit.
    for (b, triple) in elements.chunks(3).enumerate() {
        for (k, bytes) in triple.iter().enumerate() {
            Comp::scan(bytes.clone(), opts.max_fill_bytes).with_context(|| {
                format!(
                    "{} of {}",
                    ["indices", "values", "dense_shape"][k],
                    if shape == [3] {
                        "the serialized sparse tensor".to_string()
                    } else {
                        format!("row {b}")
                    }
                )
            })?;
        }
    }
    let decode = |t: &ScannedTensor| Comp::from_scanned(t, opts.memory_budget);
    if shape == [3] {
        let [i, v, s] = &rows[0];
        let values_meta = v.meta(String::new());
        check_heads(&i.meta(String::new()), &values_meta, &s.meta(String::new()))?;
        if opts.view == View::List {
            return list_meta(name, &i.meta(String::new()), &values_meta, decode(s)?)
                .map(|m| Some(Serialized::Listed(m)));
        }
        // The indices are checked straight from the nested TensorProto, before a TensorFlow
        // fill rule could make them (and the values) take gigabytes of temporary space.
        let dims = dense_dims(&decode(s)?, i.shape[1] as usize)?;
        check_entries(&dims, i.shape[0], opts.duplicates, &mut |sink| {
            i.read_dense(1 << 20, sink)
        })?;
        let sp = Sparse::new(decode(i)?, Some(decode(v)?), values_meta, decode(s)?, opts)?;
        return Ok(Some(Serialized::Sparse(Box::new(sp))));
    }
    // A batch: row b holds entry b with its leading index dropped. Every row is checked
    // against row 0 before anything is combined.
    let rank = rows[0][2].shape[0];
    let dtype = rows[0][1].dtype;
    let mut nnz = 0u64;
    let mut dense = vec![0i64; rank as usize];
    let mut stored = 0u64;
    let mut max_len = 0u64;
    for (b, [i, v, s]) in rows.iter().enumerate() {
        if v.dtype != dtype || s.shape[0] != rank || i.shape[1] != rank {
            bail!("row {b} of the serialized sparse batch does not match row 0 in dtype or rank");
        }
        check_heads(
            &i.meta(String::new()),
            &v.meta(String::new()),
            &s.meta(String::new()),
        )
        .with_context(|| format!("row {b} of the serialized sparse batch"))?;
        let row_dense = decode(s)?;
        for (d, x) in row_dense
            .small_ints("dense_shape", rank)?
            .into_iter()
            .enumerate()
        {
            dense[d] = dense[d].max(x);
        }
        if opts.view == View::Convert {
            let dims = dense_dims(&row_dense, rank as usize)?;
            check_entries(&dims, i.shape[0], opts.duplicates, &mut |sink| {
                i.read_dense(1 << 20, sink)
            })
            .with_context(|| format!("row {b} of the serialized sparse batch"))?;
        }
        nnz = nnz
            .checked_add(i.shape[0])
            .context("the batch holds more than 2^64 entries")?;
        stored = stored.saturating_add(v.stored_bytes);
        max_len = max_len.max(v.max_string_len);
    }
    let width = rank + 1;
    let mut full_shape = vec![rows.len() as i64];
    full_shape.extend(dense);
    let dense_shape = Comp {
        dtype: DType::I64,
        shape: vec![width],
        data: CompData::Fixed(crate::input::FileRange::from_vec(
            full_shape.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )),
    };
    let indices_meta = TensorMeta {
        name: String::new(),
        dtype: DType::I64,
        shape: vec![nnz, width],
        kind: Kind::Dense,
        stored_bytes: 0,
        max_string_len: None,
        big_endian: false,
        ragged_rank: 0,
        facts: Default::default(),
    };
    let mut values_meta = rows[0][1].meta(String::new());
    values_meta.shape = vec![nnz];
    values_meta.stored_bytes = stored;
    values_meta.max_string_len = values_meta.max_string_len.map(|_| max_len);
    if opts.view == View::List {
        return list_meta(name, &indices_meta, &values_meta, dense_shape)
            .map(|m| Some(Serialized::Listed(m)));
    }
    let mut indices = Spool::new();
    let mut fixed = Spool::new();
    let mut strings: Vec<Vec<u8>> = Vec::new();
    let mut held = 0u64;
    for (b, [i, v, _]) in rows.iter().enumerate() {
        check_interrupted()?;
        let ind = decode(i)?;
        let mut r = ind.ints("indices")?;
        let mut entry = vec![0i64; rank as usize];
        for _ in 0..i.shape[0] {
            r.next_into(&mut entry)?;
            indices.write(&(b as i64).to_le_bytes())?;
            for x in &entry {
                indices.write(&x.to_le_bytes())?;
            }
        }
        match decode(v)?.data {
            CompData::Fixed(range) => range.stream(1, 1 << 20, &mut |c| fixed.write(c))?,
            CompData::Strings(s) => {
                held += s.iter().map(|x| x.len() as u64 + 24).sum::<u64>();
                if held > opts.memory_budget {
                    bail!(
                        "the batch's string values take more than the {}-byte memory budget",
                        opts.memory_budget
                    );
                }
                strings.extend(s);
            }
        }
    }
    let values = Comp {
        dtype,
        shape: vec![nnz],
        data: if dtype.item_size().is_some() {
            CompData::Fixed(fixed.finish()?)
        } else {
            CompData::Strings(strings)
        },
    };
    let indices = Comp {
        dtype: DType::I64,
        shape: vec![nnz, width],
        data: CompData::Fixed(indices.finish()?),
    };
    Sparse::new(indices, Some(values), values_meta, dense_shape, opts)
        .map(|s| Some(Serialized::Sparse(Box::new(s))))
}
