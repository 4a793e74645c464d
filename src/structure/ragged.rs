//! Ragged tensors: `flat_values` plus nested `row_splits` (outermost first), decoded from
//! `RaggedTensorVariant`s (scalar and batched encodings) or taken from component groups,
//! validated, and padded into a dense array like `rt.to_tensor()`.

use anyhow::{anyhow, bail, Result};
use prost::Message;

use super::{check_dense_size, fill_bytes, Component, Data, RaggedMode, StructureOptions, View};
use crate::dtype::{DType, NpyType};
use crate::tensor::{ChunkSink, Kind, TensorMeta};

/// `VariantTensorDataProto` (defined in tensor.proto); component tensors are kept serialized.
#[derive(Clone, PartialEq, prost::Message)]
struct VariantTensorDataProto {
    #[prost(string, tag = "1")]
    type_name: String,
    #[prost(bytes = "vec", tag = "2")]
    metadata: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "3")]
    tensors: Vec<Vec<u8>>,
}

const RAGGED_TYPE: &str = "RaggedTensorVariant";

pub struct Ragged {
    splits: Vec<Vec<i64>>,
    splits_dtype: DType,
    pub values: Component,
    /// The padded result's fill element, when padding.
    fill: Vec<u8>,
}

/// One step of a padded walk: a run of values rows, or fill elements.
enum Piece {
    Values(u64, u64),
    Fill(u64),
}

impl Ragged {
    pub fn new(
        splits: Vec<Component>,
        values: Component,
        opts: &StructureOptions,
    ) -> Result<Ragged> {
        let splits_dtype = splits.first().map_or(DType::I64, |s| s.dtype);
        let splits = splits
            .iter()
            .enumerate()
            .map(|(k, s)| {
                if s.shape.len() != 1 {
                    bail!("row_splits_{k} must be a vector, not shape {:?}", s.shape);
                }
                s.integers(&format!("row_splits_{k}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ragged::build(splits, splits_dtype, values, opts)
    }

    fn build(
        splits: Vec<Vec<i64>>,
        splits_dtype: DType,
        values: Component,
        opts: &StructureOptions,
    ) -> Result<Ragged> {
        if values.shape.is_empty() {
            bail!("flat_values must have at least one dimension");
        }
        values.check_consistent("flat_values")?;
        for (k, s) in splits.iter().enumerate() {
            let next = match splits.get(k + 1) {
                Some(n) => n.len() as i64 - 1,
                None => values.shape[0] as i64,
            };
            let what = if k + 1 < splits.len() {
                "rows at the next level"
            } else {
                "values"
            };
            match s.first() {
                None => bail!("row_splits_{k} is empty; it needs at least the leading 0"),
                Some(&first) if first != 0 => bail!("row_splits_{k} must start at 0, not {first}"),
                _ => {}
            }
            if let Some(p) = s.windows(2).position(|w| w[1] < w[0]) {
                bail!(
                    "row_splits_{k} decreases at position {} ({} then {})",
                    p + 1,
                    s[p],
                    s[p + 1]
                );
            }
            let last = *s.last().unwrap();
            if last != next {
                bail!("row_splits_{k} ends at {last}, but there are {next} {what}");
            }
        }
        let padding = opts.view == View::Convert && opts.ragged == RaggedMode::Pad;
        let fill = if padding {
            fill_bytes(values.dtype, opts)?
        } else {
            Vec::new()
        };
        Ok(Ragged {
            splits,
            splits_dtype,
            values,
            fill,
        })
    }

    /// Decodes `RaggedTensorVariant` elements: one (a scalar variant) holding the whole tensor,
    /// or one per row (`batched_input=True`). `None` when the variants are something else.
    pub fn from_variant(
        elements: &[Vec<u8>],
        outer: &[u64],
        opts: &StructureOptions,
    ) -> Result<Option<Ragged>> {
        let mut decoded = Vec::new();
        for e in elements {
            match VariantTensorDataProto::decode(&e[..]) {
                Ok(v) if v.type_name == RAGGED_TYPE => decoded.push(v),
                _ => return Ok(None),
            }
        }
        let parts = |v: &VariantTensorDataProto| -> Result<(Vec<Component>, Component)> {
            let mut comps = v
                .tensors
                .iter()
                .map(|t| Component::from_proto(t.clone()))
                .collect::<Result<Vec<_>>>()?;
            let values = comps
                .pop()
                .ok_or_else(|| anyhow!("a RaggedTensorVariant without values"))?;
            if values.shape.is_empty() {
                bail!("a RaggedTensorVariant's flat_values must have at least one dimension");
            }
            Ok((comps, values))
        };
        match outer {
            [] => {
                let Some(v) = decoded.first() else { return Ok(None) };
                let (splits, values) = parts(v)?;
                Ragged::new(splits, values, opts).map(Some)
            }
            [_] => {
                if decoded.is_empty() {
                    bail!("an empty batched ragged variant carries no dtype to decode it with");
                }
                let rows = decoded.iter().map(parts).collect::<Result<Vec<_>>>()?;
                let inner_rank = rows[0].0.len();
                // TensorFlow's default row_splits dtype where the rows do not carry one.
                let splits_dtype = rows[0].0.first().map_or(DType::I64, |s| s.dtype);
                let mut splits: Vec<Vec<i64>> = vec![vec![0]; inner_rank + 1];
                let mut values: Option<Component> = None;
                for (i, (row_splits, row_values)) in rows.into_iter().enumerate() {
                    if row_splits.len() != inner_rank {
                        bail!("row {i} of the batched ragged variant has a different ragged rank");
                    }
                    let row_len = match row_splits.first() {
                        Some(s) => s.elements() as i64 - 1,
                        None => row_values.shape.first().copied().unwrap_or(0) as i64,
                    };
                    let last = *splits[0].last().unwrap();
                    splits[0].push(last + row_len);
                    for (k, s) in row_splits.iter().enumerate() {
                        let offset = *splits[k + 1].last().unwrap();
                        let s = s.integers(&format!("row {i} splits"))?;
                        if s.first() != Some(&0) {
                            bail!("row {i}: row_splits_{} must start at 0", k + 1);
                        }
                        splits[k + 1].extend(s[1..].iter().map(|x| x + offset));
                    }
                    values = Some(match values {
                        None => row_values,
                        Some(mut acc) => {
                            if acc.dtype != row_values.dtype || acc.shape[1..] != row_values.shape[1..] {
                                bail!("row {i} of the batched ragged variant has different values");
                            }
                            acc.shape[0] += row_values.shape[0];
                            match (&mut acc.data, row_values.data) {
                                (Data::Fixed(a), Data::Fixed(b)) => a.extend(b),
                                (Data::Strings(a), Data::Strings(b)) => a.extend(b),
                                _ => bail!("row {i} of the batched ragged variant mixes value kinds"),
                            }
                            acc
                        }
                    });
                }
                Ragged::build(splits, splits_dtype, values.unwrap(), opts).map(Some)
            }
            _ => bail!("ragged variants of shape {outer:?} are not supported (only scalar or batched vectors)"),
        }
    }

    pub fn components(&self) -> Vec<(String, Component)> {
        let mut out = vec![("flat_values".to_string(), self.values.clone())];
        for (k, s) in self.splits.iter().enumerate() {
            out.push((
                format!("row_splits_{k}"),
                Component::from_integers(self.splits_dtype, s),
            ));
        }
        out
    }

    /// `rt.to_tensor()`'s shape: rows, the longest row at each ragged level, the inner shape.
    fn padded_shape(&self) -> Vec<u64> {
        let nrows = match self.splits.first() {
            Some(s) => s.len() as u64 - 1,
            None => self.values.shape[0],
        };
        let mut shape = vec![nrows];
        for s in &self.splits {
            shape.push(
                s.windows(2)
                    .map(|w| (w[1] - w[0]) as u64)
                    .max()
                    .unwrap_or(0),
            );
        }
        if self.splits.is_empty() {
            shape.clear();
            shape.push(self.values.shape[0]);
        }
        shape.extend_from_slice(&self.values.shape[1..]);
        shape
    }

    pub fn list_meta(&self, name: &str) -> TensorMeta {
        let mut m = self.values.meta(name.to_string());
        m.shape = self.padded_shape();
        m.kind = Kind::Ragged;
        m.ragged_rank = self.splits.len();
        m.stored_bytes += self.splits.iter().map(|s| s.len() as u64 * 8).sum::<u64>();
        m
    }

    pub fn padded_meta(&self, name: &str, opts: &StructureOptions) -> Result<TensorMeta> {
        let mut m = self.values.meta(name.to_string());
        m.shape = self.padded_shape();
        m.max_string_len = m.max_string_len.map(|l| l.max(self.fill.len() as u64));
        let item = match NpyType::natural(m.dtype) {
            Some(t) => t.size() as u64,
            None => m.max_string_len.unwrap_or(1),
        };
        check_dense_size(name, &m.shape, item, opts)?;
        Ok(m)
    }

    /// Walks the padded tensor in row-major order: runs of value rows, and counts of fill
    /// elements.
    fn walk(&self, f: &mut dyn FnMut(Piece) -> Result<()>) -> Result<()> {
        let shape = self.padded_shape();
        if self.splits.is_empty() {
            return f(Piece::Values(0, self.values.shape[0]));
        }
        self.walk_rows(0, 0, shape[0] as i64, &shape, f)
    }

    /// Rows `start..end` of ragged level `level`, each padded to that level's longest row.
    fn walk_rows(
        &self,
        level: usize,
        start: i64,
        end: i64,
        shape: &[u64],
        f: &mut dyn FnMut(Piece) -> Result<()>,
    ) -> Result<()> {
        let splits = &self.splits[level];
        // Elements in one padded slot of this level: the product of every dimension below it.
        let slot: u64 = shape[level + 2..].iter().product();
        for row in start..end {
            let (a, b) = (splits[row as usize], splits[row as usize + 1]);
            if level + 1 < self.splits.len() {
                self.walk_rows(level + 1, a, b, shape, f)?;
            } else if b > a {
                f(Piece::Values(a as u64, b as u64))?;
            }
            let missing = shape[level + 1] - (b - a) as u64;
            if missing > 0 {
                f(Piece::Fill(missing * slot))?;
            }
        }
        Ok(())
    }

    pub fn stream_padded(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let Data::Fixed(values) = &self.values.data else {
            bail!("string values stream as strings")
        };
        let size = self.values.dtype.item_size().unwrap_or(1);
        let row_bytes = size * self.values.shape[1..].iter().product::<u64>() as usize;
        let cap = (chunk / size).max(1) * size;
        let mut buf: Vec<u8> = Vec::with_capacity(cap);
        let fill = &self.fill;
        self.walk(&mut |piece| {
            match piece {
                Piece::Values(a, b) => {
                    buf.extend_from_slice(&values[a as usize * row_bytes..b as usize * row_bytes])
                }
                Piece::Fill(n) => {
                    for _ in 0..n {
                        buf.extend_from_slice(fill);
                        if buf.len() >= cap {
                            sink(&buf)?;
                            buf.clear();
                        }
                    }
                }
            }
            if buf.len() >= cap {
                sink(&buf)?;
                buf.clear();
            }
            Ok(())
        })?;
        if !buf.is_empty() {
            sink(&buf)?;
        }
        Ok(())
    }

    pub fn stream_padded_strings(&self, sink: &mut ChunkSink) -> Result<()> {
        let Data::Strings(values) = &self.values.data else {
            bail!("numeric values stream as chunks")
        };
        let per_row = self.values.shape[1..].iter().product::<u64>() as usize;
        self.walk(&mut |piece| match piece {
            Piece::Values(a, b) => values[a as usize * per_row..b as usize * per_row]
                .iter()
                .try_for_each(|s| sink(s)),
            Piece::Fill(n) => (0..n).try_for_each(|_| sink(&self.fill)),
        })
    }
}
