//! Ragged tensors: `flat_values` plus nested `row_splits` (outermost first), decoded from
//! `RaggedTensorVariant`s (scalar and batched encodings) or taken from component groups,
//! validated, and padded into a dense array like `rt.to_tensor()`.
//!
//! Shapes are checked from metadata first; each row_splits vector is then walked once, chunk
//! by chunk (starts at 0, never decreases, ends at the next level's length), and a padded walk
//! reads every level and the values forward, side by side, in bounded memory. Batched variants
//! are combined with checked additions.

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;

use super::comp::{Bytes, Comp, CompData, Ints, Spool};
use super::{check_dense_size, fill_bytes, RaggedMode, StructureOptions, View};
use crate::dtype::{DType, NpyType};
use crate::error::check_interrupted;
use crate::source::tensorproto::ScannedTensor;
use crate::tensor::{ChunkSink, Gather, Kind, TensorMeta};

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
    splits: Vec<Comp>,
    /// `None` for `list`, which never reads the values.
    pub values: Option<Comp>,
    values_meta: TensorMeta,
    /// `rt.to_tensor()`'s shape: rows, the longest row at each ragged level, the inner shape.
    padded: Vec<u64>,
    /// The padded result's fill element, when padding.
    fill: Vec<u8>,
}

/// One step of a padded walk: a run of values rows, or fill elements.
enum Piece {
    Values(u64, u64),
    Fill(u64),
}

/// A forward reader of one row_splits vector that remembers the last value read.
struct Level {
    ints: Ints,
    next: u64,
    last: i64,
}

impl Level {
    /// The element at `i`, which never lies before the last one asked for.
    fn at(&mut self, i: u64) -> Result<i64> {
        while self.next <= i {
            self.last = self.ints.next()?;
            self.next += 1;
        }
        Ok(self.last)
    }
}

impl Ragged {
    /// Validates the components: their shapes, then every split, streamed.
    pub fn new(
        splits: Vec<Comp>,
        values: Option<Comp>,
        values_meta: TensorMeta,
        opts: &StructureOptions,
    ) -> Result<Ragged> {
        if values_meta.shape.is_empty() {
            bail!("flat_values must have at least one dimension");
        }
        for (k, s) in splits.iter().enumerate() {
            if s.shape.len() != 1 {
                bail!("row_splits_{k} must be a vector, not shape {:?}", s.shape);
            }
            if s.shape[0] == 0 {
                bail!("row_splits_{k} is empty; it needs at least the leading 0");
            }
        }
        let mut padded = vec![match splits.first() {
            Some(s) => s.shape[0] - 1,
            None => values_meta.shape[0],
        }];
        for (k, s) in splits.iter().enumerate() {
            let next = match splits.get(k + 1) {
                Some(n) => n.shape[0] - 1,
                None => values_meta.shape[0],
            };
            let what = if k + 1 < splits.len() {
                "rows at the next level"
            } else {
                "values"
            };
            let mut r = s.ints(&format!("row_splits_{k}"))?;
            let first = r.next()?;
            if first != 0 {
                bail!("row_splits_{k} must start at 0, not {first}");
            }
            let (mut prev, mut longest) = (first, 0u64);
            for p in 1..s.shape[0] {
                if p.is_multiple_of(1 << 16) {
                    check_interrupted()?;
                }
                let x = r.next()?;
                if x < prev {
                    bail!("row_splits_{k} decreases at position {p} ({prev} then {x})");
                }
                longest = longest.max((x - prev) as u64);
                prev = x;
            }
            if prev as u64 != next {
                bail!("row_splits_{k} ends at {prev}, but there are {next} {what}");
            }
            padded.push(longest);
        }
        if splits.is_empty() {
            padded.truncate(1);
        }
        padded.extend_from_slice(&values_meta.shape[1..]);
        let padding = opts.view == View::Convert && opts.ragged == RaggedMode::Pad;
        let fill = if padding {
            fill_bytes(values_meta.dtype, opts)?
        } else {
            Vec::new()
        };
        Ok(Ragged {
            splits,
            values,
            values_meta,
            padded,
            fill,
        })
    }

    pub fn components(&self) -> Result<Vec<(String, Comp)>> {
        let values = self.values.clone().context("the values were not read")?;
        let mut out = vec![("flat_values".to_string(), values)];
        for (k, s) in self.splits.iter().enumerate() {
            out.push((format!("row_splits_{k}"), s.clone()));
        }
        Ok(out)
    }

    pub fn list_meta(&self, name: &str) -> TensorMeta {
        let mut m = self.values_meta.clone();
        m.name = name.to_string();
        m.shape = self.padded.clone();
        m.kind = Kind::Ragged;
        m.ragged_rank = self.splits.len();
        m.stored_bytes = m
            .stored_bytes
            .saturating_add(self.splits.iter().map(|s| s.shape[0] * 8).sum::<u64>());
        m
    }

    pub fn flat_meta(&self, name: &str) -> TensorMeta {
        let mut m = self.values_meta.clone();
        m.name = name.to_string();
        m.kind = if m.dtype == DType::String {
            Kind::String
        } else {
            Kind::Dense
        };
        m
    }

    pub fn padded_meta(&self, name: &str, opts: &StructureOptions) -> Result<TensorMeta> {
        let mut m = self.flat_meta(name);
        m.shape = self.padded.clone();
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
        if self.splits.is_empty() {
            return f(Piece::Values(0, self.padded[0]));
        }
        let mut levels = self
            .splits
            .iter()
            .enumerate()
            .map(|(k, s)| {
                Ok(Level {
                    ints: s.ints(&format!("row_splits_{k}"))?,
                    next: 0,
                    last: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.walk_rows(&mut levels, 0, 0, self.padded[0], f)
    }

    /// Rows `start..end` of ragged level `level`, each padded to that level's longest row.
    fn walk_rows(
        &self,
        levels: &mut [Level],
        level: usize,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(Piece) -> Result<()>,
    ) -> Result<()> {
        let shape = &self.padded;
        // Elements in one padded slot of this level: the product of every dimension below it.
        let slot: u64 = shape[level + 2..].iter().product();
        for row in start..end {
            if row.is_multiple_of(1 << 16) {
                check_interrupted()?;
            }
            let a = levels[level].at(row)? as u64;
            let b = levels[level].at(row + 1)? as u64;
            if level + 1 < self.splits.len() {
                self.walk_rows(levels, level + 1, a, b, f)?;
            } else if b > a {
                f(Piece::Values(a, b))?;
            }
            let missing = shape[level + 1] - (b - a);
            if missing > 0 {
                f(Piece::Fill(missing * slot))?;
            }
        }
        Ok(())
    }

    pub fn stream_padded(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let values = self.values.as_ref().context("the values were not read")?;
        let CompData::Fixed(range) = &values.data else {
            bail!("string values stream as strings")
        };
        let size = values.dtype.item_size().unwrap_or(1);
        let row_bytes = size as u64 * values.shape[1..].iter().product::<u64>();
        let cap = (chunk / size).max(1) * size;
        let mut out = Gather::new(cap, sink);
        let mut reader = Bytes::new(range.clone());
        let mut at = 0u64; // next values row the reader stands at
        let fill = &self.fill;
        self.walk(&mut |piece| {
            match piece {
                Piece::Values(a, b) => {
                    reader.skip((a - at) * row_bytes);
                    let mut left = (b - a) * row_bytes;
                    while left > 0 {
                        let n = left.min((cap - out.buf.len().min(cap)).max(size) as u64) as usize;
                        out.push(reader.take(n)?)?;
                        left -= n as u64;
                    }
                    at = b;
                }
                Piece::Fill(n) => {
                    for _ in 0..n {
                        out.push(fill)?;
                    }
                }
            }
            Ok(())
        })?;
        out.finish()
    }

    pub fn stream_padded_strings(&self, sink: &mut ChunkSink) -> Result<()> {
        let values = self.values.as_ref().context("the values were not read")?;
        let CompData::Strings(strings) = &values.data else {
            bail!("numeric values stream as chunks")
        };
        let per_row = values.shape[1..].iter().product::<u64>() as usize;
        self.walk(&mut |piece| match piece {
            Piece::Values(a, b) => strings[a as usize * per_row..b as usize * per_row]
                .iter()
                .try_for_each(|s| sink(s)),
            Piece::Fill(n) => (0..n).try_for_each(|_| sink(&self.fill)),
        })
    }
}

/// The nested tensors of one variant element, scanned: (splits, values).
fn scan_parts(
    v: &VariantTensorDataProto,
    opts: &StructureOptions,
) -> Result<(Vec<ScannedTensor>, ScannedTensor)> {
    let mut comps = v
        .tensors
        .iter()
        .map(|t| Comp::scan(t.clone(), opts.max_fill_bytes))
        .collect::<Result<Vec<_>>>()?;
    let values = comps
        .pop()
        .ok_or_else(|| anyhow!("a RaggedTensorVariant without values"))?;
    if values.shape.is_empty() {
        bail!("a RaggedTensorVariant's flat_values must have at least one dimension");
    }
    for (k, s) in comps.iter().enumerate() {
        if s.shape.len() != 1 || s.shape[0] == 0 || !matches!(s.dtype, DType::I32 | DType::I64) {
            bail!(
                "row_splits_{k} must be a non-empty int32 or int64 vector, not {} {:?}",
                s.dtype,
                s.shape
            );
        }
    }
    Ok((comps, values))
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
    let budget = opts.memory_budget;
    let list = opts.view == View::List;
    match outer {
        [] => {
            let Some(v) = decoded.first() else {
                return Ok(None);
            };
            let (splits, values) = scan_parts(v, opts)?;
            let splits = splits
                .iter()
                .map(|s| Comp::from_scanned(s, budget))
                .collect::<Result<Vec<_>>>()?;
            let decoded_values = if list {
                None
            } else {
                Some(Comp::from_scanned(&values, budget)?)
            };
            Ragged::new(splits, decoded_values, values.meta(String::new()), opts).map(Some)
        }
        [_] => {
            if decoded.is_empty() {
                bail!("an empty batched ragged variant carries no dtype to decode it with");
            }
            let rows = decoded
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    scan_parts(v, opts)
                        .with_context(|| format!("row {i} of the batched ragged variant"))
                })
                .collect::<Result<Vec<_>>>()?;
            batch(rows, opts).map(Some)
        }
        _ => bail!(
            "ragged variants of shape {outer:?} are not supported (only scalar or batched vectors)"
        ),
    }
}

/// Combines the rows of a batched ragged variant, checking every row against row 0 and every
/// sum for overflow before anything is combined.
fn batch(
    rows: Vec<(Vec<ScannedTensor>, ScannedTensor)>,
    opts: &StructureOptions,
) -> Result<Ragged> {
    let inner_rank = rows[0].0.len();
    let (dtype, inner_shape) = (rows[0].1.dtype, rows[0].1.shape[1..].to_vec());
    // TensorFlow's default row_splits dtype where the rows do not carry one.
    let splits_dtype = rows[0].0.first().map_or(DType::I64, |s| s.dtype);
    let mut total_rows = 0u64;
    let mut stored = 0u64;
    let mut max_len = 0u64;
    for (i, (splits, values)) in rows.iter().enumerate() {
        if splits.len() != inner_rank {
            bail!("row {i} of the batched ragged variant has a different ragged rank");
        }
        if values.dtype != dtype || values.shape[1..] != inner_shape[..] {
            bail!("row {i} of the batched ragged variant has different values");
        }
        total_rows = total_rows
            .checked_add(values.shape[0])
            .context("the batch holds more than 2^64 values")?;
        stored = stored.saturating_add(values.stored_bytes);
        max_len = max_len.max(values.max_string_len);
    }
    let budget = opts.memory_budget;
    let width = if splits_dtype == DType::I32 { 4 } else { 8 };
    let put = |out: &mut Spool, v: i64, i: usize, k: usize| -> Result<()> {
        if width == 4 {
            let v = i32::try_from(v).map_err(|_| {
                anyhow!(
                    "row {i}: row_splits_{k} reaches {v}, past int32, when the rows are batched"
                )
            })?;
            out.write(&v.to_le_bytes())
        } else {
            out.write(&v.to_le_bytes())
        }
    };
    let mut out: Vec<Spool> = (0..=inner_rank).map(|_| Spool::new()).collect();
    let mut counts = vec![1u64; inner_rank + 1];
    let mut last = vec![0i64; inner_rank + 1];
    for s in out.iter_mut() {
        s.write(&vec![0u8; width])?;
    }
    for (i, (splits, values)) in rows.iter().enumerate() {
        check_interrupted()?;
        // The row's own length at each level: its outer rows, then each split's last value.
        let row_len = match splits.first() {
            Some(s) => s.shape[0] - 1,
            None => values.shape[0],
        };
        let overflow =
            |k: usize| anyhow!("row {i}: row_splits_{k} overflows when the rows are batched");
        last[0] = last[0]
            .checked_add(i64::try_from(row_len).map_err(|_| overflow(0))?)
            .ok_or_else(|| overflow(0))?;
        put(&mut out[0], last[0], i, 0)?;
        counts[0] += 1;
        for (k, s) in splits.iter().enumerate() {
            let next = match splits.get(k + 1) {
                Some(n) => n.shape[0] - 1,
                None => values.shape[0],
            };
            let comp = Comp::from_scanned(s, budget)?;
            let mut r = comp.ints("row_splits")?;
            let first = r.next()?;
            if first != 0 {
                bail!("row {i}: row_splits_{} must start at 0", k + 1);
            }
            let offset = last[k + 1];
            let mut x = 0;
            for _ in 1..s.shape[0] {
                x = r.next()?;
                let v = offset.checked_add(x).ok_or_else(|| overflow(k + 1))?;
                put(&mut out[k + 1], v, i, k + 1)?;
            }
            if x < 0 || x as u64 != next {
                bail!("row {i}: row_splits_{} ends at {x}, but the row has {next} rows or values below it", k + 1);
            }
            last[k + 1] = offset.checked_add(x).ok_or_else(|| overflow(k + 1))?;
            counts[k + 1] += s.shape[0] - 1;
        }
    }
    let splits = out
        .into_iter()
        .zip(&counts)
        .map(|(s, &n)| {
            Ok(Comp {
                dtype: splits_dtype,
                shape: vec![n],
                data: CompData::Fixed(s.finish()?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut values_meta = rows[0].1.meta(String::new());
    values_meta.shape[0] = total_rows;
    values_meta.stored_bytes = stored;
    values_meta.max_string_len = values_meta.max_string_len.map(|_| max_len);
    let values = if opts.view == View::List {
        None
    } else {
        let mut fixed = Spool::new();
        let mut strings: Vec<Vec<u8>> = Vec::new();
        let mut held = 0u64;
        for (_, v) in &rows {
            match Comp::from_scanned(v, budget)?.data {
                CompData::Fixed(r) => r.stream(1, 1 << 20, &mut |c| fixed.write(c))?,
                CompData::Strings(s) => {
                    held += s.iter().map(|x| x.len() as u64 + 24).sum::<u64>();
                    if held > budget {
                        bail!("the batch's string values take more than the {budget}-byte memory budget");
                    }
                    strings.extend(s);
                }
            }
        }
        Some(Comp {
            dtype,
            shape: values_meta.shape.clone(),
            data: if dtype.item_size().is_some() {
                CompData::Fixed(fixed.finish()?)
            } else {
                CompData::Strings(strings)
            },
        })
    };
    Ragged::new(splits, values, values_meta, opts)
}
