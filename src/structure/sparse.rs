//! Sparse tensors: COO components (`indices` int64 [N, rank], `values` [N], `dense_shape` int64
//! [rank]) validated like `tf.sparse.to_dense` validates them, and densified in row-major order
//! with `--fill` between the given values.
//!
//! Shapes are checked from the components' metadata before any data is read; the indices are
//! then walked once, chunk by chunk (bounds, order, duplicates). Densifying walks the indices
//! and values side by side when the indices are in row-major order (what TensorFlow writes);
//! unsorted indices are sorted in memory when their positions fit the memory budget, and
//! refused with a clear message otherwise.

use anyhow::{bail, Context, Result};

use super::comp::{Bytes, Comp, CompData};
use super::{check_dense_size, fill_bytes, Duplicates, SparseMode, StructureOptions, View};
use crate::dtype::{DType, NpyType};
use crate::error::check_interrupted;
use crate::tensor::{checked_elements, ChunkSink, Kind, TensorMeta};

/// TensorFlow's largest rank (`TensorShape::MaxDimensions`).
const MAX_RANK: u64 = 254;

pub struct Sparse {
    indices: Comp,
    /// `None` when the values pass through from the source unread (COO output of a group).
    values: Option<Comp>,
    dense_shape: Comp,
    values_meta: TensorMeta,
    shape: Vec<u64>,
    nnz: u64,
    rank: usize,
    /// The indices are in row-major order.
    sorted: bool,
    fill: Vec<u8>,
    dup: Duplicates,
    budget: u64,
}

fn describe(index: &[i64]) -> String {
    let parts: Vec<String> = index.iter().map(|i| i.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Checks the components' dtypes and shapes against each other; returns (nnz, rank).
pub(super) fn check_heads(
    indices: &TensorMeta,
    values: &TensorMeta,
    dense_shape: &TensorMeta,
) -> Result<(u64, usize)> {
    if indices.dtype != DType::I64 || dense_shape.dtype != DType::I64 {
        bail!("indices and dense_shape must be int64");
    }
    if indices.shape.len() != 2 {
        bail!("indices must have shape [N, rank], not {:?}", indices.shape);
    }
    let (nnz, rank) = (indices.shape[0], indices.shape[1]);
    if rank > MAX_RANK {
        bail!("indices give rank {rank}, more than TensorFlow's {MAX_RANK}");
    }
    if dense_shape.shape != [rank] {
        bail!(
            "dense_shape has shape {:?}, but indices give rank {rank}",
            dense_shape.shape
        );
    }
    if values.shape != [nnz] {
        bail!(
            "values have shape {:?}, but there are {nnz} indices",
            values.shape
        );
    }
    Ok((nnz, rank as usize))
}

/// The dense shape, checked for negative dimensions.
pub(super) fn dense_dims(dense_shape: &Comp, rank: usize) -> Result<Vec<u64>> {
    let vals = dense_shape.small_ints("dense_shape", rank as u64)?;
    if let Some(d) = vals.iter().position(|&d| d < 0) {
        bail!(
            "dense_shape {} has a negative dimension {d}",
            describe(&vals)
        );
    }
    Ok(vals.iter().map(|&d| d as u64).collect())
}

/// One pass over the indices, fed chunk by chunk (whole int64s): every index inside `shape`,
/// and, next to each other, duplicates (an error unless `--sparse-duplicates` says otherwise).
/// Returns whether the indices are in row-major order.
pub(super) fn check_entries(
    shape: &[u64],
    nnz: u64,
    duplicates: Duplicates,
    feed: &mut dyn FnMut(&mut ChunkSink) -> Result<()>,
) -> Result<bool> {
    let rank = shape.len();
    let duplicate = |index: &[i64], e: u64| {
        anyhow::anyhow!(
            "duplicate index {} (entries {} and {e}); --sparse-duplicates sum|last resolves them",
            describe(index),
            e - 1
        )
    };
    if rank == 0 {
        // Every entry of a scalar is the same empty index.
        if nnz > 1 && duplicates == Duplicates::Error {
            return Err(duplicate(&[], 1));
        }
        return Ok(true);
    }
    let mut sorted = true;
    let mut e = 0u64;
    let mut prev = vec![0i64; rank];
    let mut cur: Vec<i64> = Vec::with_capacity(rank);
    feed(&mut |chunk: &[u8]| {
        check_interrupted()?;
        for c in chunk.chunks_exact(8) {
            cur.push(i64::from_le_bytes(c.try_into().unwrap()));
            if cur.len() < rank {
                continue;
            }
            if cur.iter().zip(shape).any(|(&i, &d)| i < 0 || i as u64 >= d) {
                let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                bail!(
                    "index {} (entry {e}) is outside dense_shape {}",
                    describe(&cur),
                    describe(&shape)
                );
            }
            if e > 0 && sorted {
                match cur.cmp(&prev) {
                    std::cmp::Ordering::Less => sorted = false,
                    std::cmp::Ordering::Equal if duplicates == Duplicates::Error => {
                        return Err(duplicate(&cur, e))
                    }
                    _ => {}
                }
            }
            std::mem::swap(&mut prev, &mut cur);
            cur.clear();
            e += 1;
        }
        Ok(())
    })?;
    if e != nnz {
        bail!("indices hold {e} entries, not {nnz}");
    }
    Ok(sorted)
}

/// A sparse tensor for `list`: its dense shape and values dtype, nothing decoded.
pub fn list_meta(
    name: &str,
    indices: &TensorMeta,
    values: &TensorMeta,
    dense_shape: Comp,
) -> Result<TensorMeta> {
    let (_, rank) = check_heads(indices, values, &head(&dense_shape))?;
    let mut m = values.clone();
    m.name = name.to_string();
    m.shape = dense_dims(&dense_shape, rank)?;
    m.kind = Kind::Sparse;
    m.stored_bytes = m
        .stored_bytes
        .saturating_add(checked_elements(&indices.shape)?.saturating_add(rank as u64) * 8);
    Ok(m)
}

/// The metadata of a decoded component.
pub(super) fn head(c: &Comp) -> TensorMeta {
    TensorMeta {
        name: String::new(),
        dtype: c.dtype,
        shape: c.shape.clone(),
        kind: Kind::Dense,
        stored_bytes: match &c.data {
            CompData::Fixed(r) => r.len(),
            CompData::Strings(v) => v.iter().map(|s| s.len() as u64).sum(),
        },
        max_string_len: match &c.data {
            CompData::Strings(v) => Some(v.iter().map(|s| s.len() as u64).max().unwrap_or(0)),
            CompData::Fixed(_) => None,
        },
        big_endian: false,
        ragged_rank: 0,
        facts: Default::default(),
    }
}

impl Sparse {
    /// Validates the components: shapes first, then every index, streamed. `values_meta`
    /// describes the values (which may stay in the source, `values` = `None`).
    pub fn new(
        indices: Comp,
        values: Option<Comp>,
        values_meta: TensorMeta,
        dense_shape: Comp,
        opts: &StructureOptions,
    ) -> Result<Sparse> {
        let (nnz, rank) = check_heads(&head(&indices), &values_meta, &head(&dense_shape))?;
        let shape = dense_dims(&dense_shape, rank)?;
        let densify = opts.view == View::Convert && opts.sparse == SparseMode::Dense;
        let fill = match &values {
            Some(v) if densify => fill_bytes(v.dtype, opts)?,
            _ => Vec::new(),
        };
        let mut sp = Sparse {
            indices,
            values,
            dense_shape,
            values_meta,
            shape,
            nnz,
            rank,
            sorted: true,
            fill,
            dup: opts.duplicates,
            budget: opts.memory_budget,
        };
        let indices = sp.indices.range("indices")?.clone();
        sp.sorted = check_entries(&sp.shape, nnz, opts.duplicates, &mut |sink| {
            indices.stream(8, 1 << 20, sink)
        })?;
        if !sp.sorted && (opts.duplicates == Duplicates::Error || densify) {
            let order = sp.sort()?;
            if opts.duplicates == Duplicates::Error {
                if let Some(w) = order.windows(2).find(|w| w[0].0 == w[1].0) {
                    let at = w[0].1.min(w[1].1);
                    let index = sp.index_at(at)?;
                    bail!(
                        "duplicate index {} (entries {} and {}); --sparse-duplicates sum|last resolves them",
                        describe(&index),
                        at,
                        w[0].1.max(w[1].1)
                    );
                }
            }
        }
        if densify && sp.dup == Duplicates::Sum && sp.values_meta.dtype.item_size().is_none() {
            let mut last = None;
            let mut repeated = false;
            sp.walk(&mut |p, _| {
                repeated |= last == Some(p);
                last = Some(p);
                Ok(())
            })?;
            if repeated {
                bail!("string values at a repeated index cannot be summed");
            }
        }
        Ok(sp)
    }

    fn index_at(&self, e: u64) -> Result<Vec<i64>> {
        let r = self.indices.range("indices")?;
        let mut b = vec![0u8; self.rank * 8];
        r.read_at(e * self.rank as u64 * 8, &mut b)?;
        Ok(b.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    /// Row-major order of unsorted indices: (key, entry) pairs sorted by key, then by entry
    /// (so "last" means last as stored). The key is the linear position where the dense shape
    /// fits 64 bits, else the rank of the index among the distinct ones.
    fn sort(&self) -> Result<Vec<(u64, u64)>> {
        let rank = self.rank as u64;
        let need = self
            .nnz
            .checked_mul(16 + 8 * rank)
            .filter(|&b| b <= self.budget);
        let Some(_) = need else {
            bail!(
                "the {} indices are not in row-major order, and sorting them would take more than the {}-byte memory budget; sort them first (tf.sparse.reorder)",
                self.nnz,
                self.budget
            );
        };
        let mut all = vec![0i64; (self.nnz * rank) as usize];
        self.indices.ints("indices")?.next_into(&mut all)?;
        let key = |e: u64| &all[(e * rank) as usize..((e + 1) * rank) as usize];
        let mut order: Vec<u64> = (0..self.nnz).collect();
        order.sort_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
        let linear = self.strides();
        let mut out = Vec::with_capacity(order.len());
        let mut distinct = 0u64;
        for (k, &e) in order.iter().enumerate() {
            if k > 0 && key(order[k - 1]) != key(e) {
                distinct += 1;
            }
            let pos = match &linear {
                Some(strides) => key(e)
                    .iter()
                    .zip(strides)
                    .map(|(&i, &s)| i as u64 * s)
                    .sum(),
                None => distinct,
            };
            out.push((pos, e));
        }
        Ok(out)
    }

    /// Row-major strides, when the dense shape's element count fits 64 bits.
    fn strides(&self) -> Option<Vec<u64>> {
        checked_elements(&self.shape).ok()?;
        let mut strides = vec![1u64; self.rank];
        for d in (0..self.rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * self.shape[d + 1];
        }
        Some(strides)
    }

    /// Calls `f(position, entry)` for every entry in row-major order.
    fn walk(&self, f: &mut dyn FnMut(u64, u64) -> Result<()>) -> Result<()> {
        if !self.sorted {
            for (pos, e) in self.sort()? {
                f(pos, e)?;
            }
            return Ok(());
        }
        let strides = self
            .strides()
            .context("the dense shape has more than 2^64 elements")?;
        let mut reader = self.indices.ints("indices")?;
        let mut cur = vec![0i64; self.rank];
        for e in 0..self.nnz {
            reader.next_into(&mut cur)?;
            let pos = cur.iter().zip(&strides).map(|(&i, &s)| i as u64 * s).sum();
            f(pos, e)?;
        }
        Ok(())
    }

    /// The COO components, for a serialized sparse tensor.
    pub fn components(&self) -> Result<Vec<(&'static str, Comp)>> {
        let values = self.values.clone().context("the values were not read")?;
        Ok(vec![
            ("indices", self.indices.clone()),
            ("values", values),
            ("dense_shape", self.dense_shape.clone()),
        ])
    }

    pub fn list_meta(&self, name: &str) -> Result<TensorMeta> {
        list_meta(
            name,
            &head(&self.indices),
            &self.values_meta,
            self.dense_shape.clone(),
        )
    }

    pub fn dense_meta(&self, name: &str, opts: &StructureOptions) -> Result<TensorMeta> {
        let mut m = self.values_meta.clone();
        m.name = name.to_string();
        m.kind = Kind::Dense;
        m.shape = self.shape.clone();
        m.max_string_len = m.max_string_len.map(|l| l.max(self.fill.len() as u64));
        let item = match NpyType::natural(m.dtype) {
            Some(t) => t.size() as u64,
            None => m.max_string_len.unwrap_or(1),
        };
        check_dense_size(name, &self.shape, item, opts)?;
        Ok(m)
    }

    /// Streams the dense array in row-major order: fill, then each position's value (repeated
    /// positions merged by `--sparse-duplicates`).
    pub fn stream_dense(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let values = self.values.as_ref().context("the values were not read")?;
        let CompData::Fixed(range) = &values.data else {
            bail!("string values stream as strings")
        };
        let size = self.fill.len();
        let total = checked_elements(&self.shape)?;
        let cap = (chunk / size.max(1)).max(1) * size;
        let mut buf: Vec<u8> = Vec::with_capacity(cap.min((total as usize).saturating_mul(size)));
        let zero_fill = self.fill.iter().all(|&b| b == 0);
        let fill = &self.fill;
        // Appends `n` fill elements, handing full chunks to the sink.
        let push_fill = |buf: &mut Vec<u8>, n: u64, sink: &mut ChunkSink| -> Result<()> {
            let mut left = n * size as u64;
            while left > 0 {
                let take = left.min((cap - buf.len()) as u64) as usize;
                if zero_fill {
                    buf.resize(buf.len() + take, 0);
                } else {
                    for _ in 0..take / size {
                        buf.extend_from_slice(fill);
                    }
                }
                left -= take as u64;
                if buf.len() >= cap {
                    check_interrupted()?;
                    sink(buf)?;
                    buf.clear();
                }
            }
            Ok(())
        };
        let mut seq = Bytes::new(range.clone());
        let mut next_seq = 0u64;
        let mut value = vec![0u8; size];
        let mut read_value = |e: u64, out: &mut Vec<u8>| -> Result<()> {
            if e == next_seq {
                out.copy_from_slice(seq.take(size)?);
                next_seq += 1;
            } else {
                range.read_at(e * size as u64, out)?;
            }
            Ok(())
        };
        // The element at `pending` waits until the next position differs (duplicates merge).
        let mut pending: Option<(u64, Vec<u8>)> = None;
        let mut pos = 0u64;
        let dtype = values.dtype;
        let duplicates = self.dup;
        let mut emit = |buf: &mut Vec<u8>, p: u64, v: &[u8], sink: &mut ChunkSink| -> Result<()> {
            push_fill(buf, p - pos, sink)?;
            buf.extend_from_slice(v);
            if buf.len() >= cap {
                sink(buf)?;
                buf.clear();
            }
            pos = p + 1;
            Ok(())
        };
        self.walk(&mut |p, e| {
            read_value(e, &mut value)?;
            match &mut pending {
                Some((q, v)) if *q == p => {
                    *v = match duplicates {
                        Duplicates::Sum => crate::transform::add_elements(dtype, v, &value)?,
                        _ => value.clone(),
                    };
                }
                _ => {
                    if let Some((q, v)) = pending.take() {
                        emit(&mut buf, q, &v, sink)?;
                    }
                    pending = Some((p, value.clone()));
                }
            }
            Ok(())
        })?;
        if let Some((q, v)) = pending.take() {
            emit(&mut buf, q, &v, sink)?;
        }
        push_fill(&mut buf, total - pos, sink)?;
        if !buf.is_empty() {
            sink(&buf)?;
        }
        Ok(())
    }

    pub fn stream_dense_strings(&self, sink: &mut ChunkSink) -> Result<()> {
        let values = self.values.as_ref().context("the values were not read")?;
        let CompData::Strings(values) = &values.data else {
            bail!("numeric values stream as chunks")
        };
        let total = checked_elements(&self.shape)?;
        let mut pos = 0u64;
        let mut pending: Option<(u64, u64)> = None;
        let fill = &self.fill;
        let mut emit = |p: u64, e: u64, sink: &mut ChunkSink| -> Result<()> {
            while pos < p {
                if pos.is_multiple_of(1 << 16) {
                    check_interrupted()?;
                }
                sink(fill)?;
                pos += 1;
            }
            sink(&values[e as usize])?;
            pos = p + 1;
            Ok(())
        };
        self.walk(&mut |p, e| {
            match &mut pending {
                Some((q, last)) if *q == p => *last = e,
                _ => {
                    if let Some((q, last)) = pending.take() {
                        emit(q, last, sink)?;
                    }
                    pending = Some((p, e));
                }
            }
            Ok(())
        })?;
        if let Some((q, last)) = pending.take() {
            emit(q, last, sink)?;
        }
        while pos < total {
            if pos.is_multiple_of(1 << 16) {
                check_interrupted()?;
            }
            sink(fill)?;
            pos += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::FileRange;
    use crate::structure::RaggedMode;

    fn comp(dtype: DType, shape: Vec<u64>, bytes: Vec<u8>) -> Comp {
        Comp {
            dtype,
            shape,
            data: CompData::Fixed(FileRange::from_vec(bytes)),
        }
    }

    fn opts(budget: u64) -> StructureOptions {
        StructureOptions {
            sparse: SparseMode::Dense,
            ragged: RaggedMode::Components,
            fill: None,
            duplicates: Duplicates::Error,
            max_dense_bytes: 1 << 20,
            strict: false,
            view: View::Convert,
            max_fill_bytes: 1 << 20,
            memory_budget: budget,
        }
    }

    /// A [4, 4] float32 sparse tensor with entries at the given (row, column)s.
    fn sparse(at: &[(i64, i64)], budget: u64) -> Result<Sparse> {
        let n = at.len() as u64;
        let indices = at
            .iter()
            .flat_map(|&(r, c)| [r, c])
            .flat_map(i64::to_le_bytes)
            .collect();
        let values: Vec<u8> = (1..=n).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let values = comp(DType::F32, vec![n], values);
        let meta = head(&values);
        let shape = [4i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        Sparse::new(
            comp(DType::I64, vec![n, 2], indices),
            Some(values),
            meta,
            comp(DType::I64, vec![2], shape),
            &opts(budget),
        )
    }

    fn dense(sp: &Sparse) -> Vec<f32> {
        let mut out = Vec::new();
        sp.stream_dense(8, &mut |c: &[u8]| {
            out.extend(
                c.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
            );
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn sorted_indices_densify_in_a_budget_of_nothing_and_unsorted_ones_within_a_budget() {
        let at = [(0, 1), (2, 3), (3, 0)];
        let mut want = vec![0f32; 16];
        for (k, &(r, c)) in at.iter().enumerate() {
            want[(r * 4 + c) as usize] = (k + 1) as f32;
        }
        assert_eq!(dense(&sparse(&at, 0).unwrap()), want);
        let unsorted = [(2, 3), (0, 1), (3, 0)];
        let mut want = vec![0f32; 16];
        for (k, &(r, c)) in unsorted.iter().enumerate() {
            want[(r * 4 + c) as usize] = (k + 1) as f32;
        }
        assert_eq!(dense(&sparse(&unsorted, 1 << 10).unwrap()), want);
    }

    #[test]
    fn unsorted_indices_over_the_memory_budget_are_refused_with_advice() {
        let e = sparse(&[(2, 3), (0, 1), (3, 0)], 64).err().unwrap();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("not in row-major order") && msg.contains("tf.sparse.reorder"),
            "{msg}"
        );
    }

    #[test]
    fn duplicates_are_found_in_sorted_and_unsorted_indices() {
        let e = sparse(&[(0, 1), (0, 1)], 0).err().unwrap();
        assert!(format!("{e:#}").contains("duplicate index [0, 1] (entries 0 and 1)"));
        let e = sparse(&[(0, 1), (2, 2), (0, 1)], 1 << 10).err().unwrap();
        assert!(
            format!("{e:#}").contains("duplicate index [0, 1] (entries 0 and 2)"),
            "{e:#}"
        );
    }
}
