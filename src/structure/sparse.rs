//! Sparse tensors: COO components (`indices` int64 [N, rank], `values` [N], `dense_shape` int64
//! [rank]) validated like `tf.sparse.to_dense` validates them, and densified in row-major order
//! with `--fill` between the given values.

use anyhow::{bail, Result};

use super::{
    check_dense_size, fill_bytes, Component, Data, Duplicates, SparseMode, StructureOptions, View,
};
use crate::dtype::{DType, NpyType};
use crate::tensor::{ChunkSink, Kind, TensorMeta};

pub struct Sparse {
    indices: Component,
    values: Component,
    dense_shape: Component,
    shape: Vec<u64>,
    /// For a dense result: linear positions in increasing order, and their values (duplicates
    /// resolved), plus the fill element.
    dense: Option<Resolved>,
}

struct Resolved {
    positions: Vec<u64>,
    values: Data,
    fill: Vec<u8>,
}

fn describe(index: &[i64]) -> String {
    format!(
        "[{}]",
        index
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl Sparse {
    pub fn new(
        indices: Component,
        values: Component,
        dense_shape: Component,
        opts: &StructureOptions,
    ) -> Result<Sparse> {
        for (what, c) in [
            ("indices", &indices),
            ("values", &values),
            ("dense_shape", &dense_shape),
        ] {
            c.check_consistent(what)?;
        }
        let idx = indices.integers("indices")?;
        let shape_vals = dense_shape.integers("dense_shape")?;
        if indices.dtype != DType::I64 || dense_shape.dtype != DType::I64 {
            bail!("indices and dense_shape must be int64");
        }
        if indices.shape.len() != 2 {
            bail!("indices must have shape [N, rank], not {:?}", indices.shape);
        }
        let (nnz, rank) = (indices.shape[0] as usize, indices.shape[1] as usize);
        if dense_shape.shape != [rank as u64] {
            bail!(
                "dense_shape has shape {:?}, but indices give rank {rank}",
                dense_shape.shape
            );
        }
        if values.shape != [nnz as u64] {
            bail!(
                "values have shape {:?}, but there are {nnz} indices",
                values.shape
            );
        }
        if let Some(d) = shape_vals.iter().position(|&d| d < 0) {
            bail!(
                "dense_shape {} has a negative dimension {d}",
                describe(&shape_vals)
            );
        }
        let shape: Vec<u64> = shape_vals.iter().map(|&d| d as u64).collect();
        for e in 0..nnz {
            let index = &idx[e * rank..(e + 1) * rank];
            if index
                .iter()
                .zip(&shape)
                .any(|(&i, &d)| i < 0 || i as u64 >= d)
            {
                bail!(
                    "index {} (entry {e}) is outside dense_shape {}",
                    describe(index),
                    describe(&shape_vals)
                );
            }
        }
        // Lexicographic order of the entries (stable, so "last" means last as stored).
        let mut order: Vec<usize> = (0..nnz).collect();
        let key = |e: usize| &idx[e * rank..(e + 1) * rank];
        if order.windows(2).any(|w| key(w[0]) > key(w[1])) {
            order.sort_by(|&a, &b| key(a).cmp(key(b)));
        }
        if let Some(w) = order.windows(2).find(|w| key(w[0]) == key(w[1])) {
            if opts.duplicates == Duplicates::Error {
                bail!(
                    "duplicate index {} (entries {} and {}); --sparse-duplicates sum|last resolves them",
                    describe(key(w[0])),
                    w[0].min(w[1]),
                    w[0].max(w[1])
                );
            }
        }
        let mut sp = Sparse {
            indices,
            values,
            dense_shape,
            shape,
            dense: None,
        };
        if opts.view == View::Convert && opts.sparse == SparseMode::Dense {
            sp.dense = Some(sp.resolve(&idx, rank, &order, opts)?);
        }
        Ok(sp)
    }

    fn resolve(
        &self,
        idx: &[i64],
        rank: usize,
        order: &[usize],
        opts: &StructureOptions,
    ) -> Result<Resolved> {
        let mut strides = vec![1u64; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1].saturating_mul(self.shape[d + 1]);
        }
        let linear = |e: usize| -> u64 {
            idx[e * rank..(e + 1) * rank]
                .iter()
                .zip(&strides)
                .map(|(&i, &s)| i as u64 * s)
                .sum()
        };
        let mut positions: Vec<u64> = Vec::with_capacity(order.len());
        let fill = fill_bytes(self.values.dtype, opts)?;
        let values = match &self.values.data {
            Data::Fixed(bytes) => {
                let size = self.values.dtype.item_size().unwrap_or(1);
                let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
                for &e in order {
                    let v = &bytes[e * size..(e + 1) * size];
                    let p = linear(e);
                    if positions.last() == Some(&p) {
                        let last = out.len() - size;
                        let merged = match opts.duplicates {
                            Duplicates::Sum => {
                                crate::transform::add_elements(self.values.dtype, &out[last..], v)?
                            }
                            _ => v.to_vec(),
                        };
                        out.truncate(last);
                        out.extend_from_slice(&merged);
                    } else {
                        positions.push(p);
                        out.extend_from_slice(v);
                    }
                }
                Data::Fixed(out)
            }
            Data::Strings(strings) => {
                let mut out: Vec<Vec<u8>> = Vec::with_capacity(strings.len());
                for &e in order {
                    let p = linear(e);
                    if positions.last() == Some(&p) {
                        if opts.duplicates == Duplicates::Sum {
                            bail!("string values at a repeated index cannot be summed");
                        }
                        *out.last_mut().unwrap() = strings[e].clone();
                    } else {
                        positions.push(p);
                        out.push(strings[e].clone());
                    }
                }
                Data::Strings(out)
            }
        };
        Ok(Resolved {
            positions,
            values,
            fill,
        })
    }

    /// `tf.io.serialize_sparse` output ([3] strings) or `serialize_many_sparse` output ([N, 3]);
    /// `None` when the strings are not serialized sparse components.
    pub fn from_serialized(
        elements: &[Vec<u8>],
        shape: &[u64],
        opts: &StructureOptions,
    ) -> Result<Option<Sparse>> {
        let parse = |triple: &[Vec<u8>]| -> Option<[Component; 3]> {
            let comps: Vec<Component> = triple
                .iter()
                .map(|b| Component::from_proto(b.clone()).ok())
                .collect::<Option<_>>()?;
            let [i, v, s] = <[Component; 3]>::try_from(comps).ok()?;
            let ok = i.dtype == DType::I64
                && i.shape.len() == 2
                && s.dtype == DType::I64
                && s.shape.len() == 1
                && v.shape.len() == 1;
            ok.then_some([i, v, s])
        };
        if shape == [3] {
            let Some([i, v, s]) = parse(elements) else {
                return Ok(None);
            };
            return Sparse::new(i, v, s, opts).map(Some);
        }
        // A batch: row b holds entry b with its leading index dropped.
        let rows: Vec<[Component; 3]> =
            match elements.chunks(3).map(parse).collect::<Option<Vec<_>>>() {
                Some(rows) if !rows.is_empty() => rows,
                _ => return Ok(None),
            };
        let rank = rows[0][2].shape[0] as usize;
        let dtype = rows[0][1].dtype;
        let mut indices: Vec<i64> = Vec::new();
        let mut dense = vec![0i64; rank];
        let mut values = match &rows[0][1].data {
            Data::Fixed(_) => Data::Fixed(Vec::new()),
            Data::Strings(_) => Data::Strings(Vec::new()),
        };
        let mut nnz = 0u64;
        for (b, [i, v, s]) in rows.iter().enumerate() {
            if v.dtype != dtype || s.shape[0] as usize != rank || i.shape[1] as usize != rank {
                bail!(
                    "row {b} of the serialized sparse batch does not match row 0 in dtype or rank"
                );
            }
            for (d, x) in s.integers("dense_shape")?.into_iter().enumerate() {
                dense[d] = dense[d].max(x);
            }
            if v.shape != [i.shape[0]] {
                bail!("row {b} of the serialized sparse batch has {} indices but values of shape {:?}", i.shape[0], v.shape);
            }
            let row = i.integers("indices")?;
            for e in 0..i.shape[0] as usize {
                indices.push(b as i64);
                indices.extend_from_slice(&row[e * rank..(e + 1) * rank]);
            }
            nnz += i.shape[0];
            match (&mut values, &v.data) {
                (Data::Fixed(out), Data::Fixed(x)) => out.extend_from_slice(x),
                (Data::Strings(out), Data::Strings(x)) => out.extend(x.iter().cloned()),
                _ => bail!("row {b} of the serialized sparse batch mixes value kinds"),
            }
        }
        let mut full_shape = vec![rows.len() as i64];
        full_shape.extend(dense);
        let mut ind = Component::from_integers(DType::I64, &indices);
        ind.shape = vec![nnz, rank as u64 + 1];
        let val = Component {
            dtype,
            shape: vec![nnz],
            data: values,
        };
        Sparse::new(
            ind,
            val,
            Component::from_integers(DType::I64, &full_shape),
            opts,
        )
        .map(Some)
    }

    pub fn components(&self) -> Vec<(&'static str, Component)> {
        vec![
            ("indices", self.indices.clone()),
            ("values", self.values.clone()),
            ("dense_shape", self.dense_shape.clone()),
        ]
    }

    pub fn list_meta(&self, name: &str) -> TensorMeta {
        let mut m = self.values.meta(name.to_string());
        m.shape = self.shape.clone();
        m.kind = Kind::Sparse;
        m.stored_bytes += (self.indices.elements() + self.dense_shape.elements()) * 8;
        m
    }

    pub fn dense_meta(&self, name: &str, opts: &StructureOptions) -> Result<TensorMeta> {
        let fill_len = self.dense.as_ref().map_or(0, |r| r.fill.len() as u64);
        let mut m = self.values.meta(name.to_string());
        m.shape = self.shape.clone();
        m.max_string_len = m.max_string_len.map(|l| l.max(fill_len));
        let item = match NpyType::natural(m.dtype) {
            Some(t) => t.size() as u64,
            None => m.max_string_len.unwrap_or(1),
        };
        check_dense_size(name, &self.shape, item, opts)?;
        Ok(m)
    }

    fn resolved(&self) -> Result<&Resolved> {
        self.dense
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("internal: sparse tensor not prepared for densifying"))
    }

    pub fn stream_dense(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let r = self.resolved()?;
        let Data::Fixed(values) = &r.values else {
            bail!("string values stream as strings")
        };
        let size = r.fill.len();
        let total: u64 = self.shape.iter().product();
        let cap = (chunk / size.max(1)).max(1) * size;
        let mut buf: Vec<u8> = Vec::with_capacity(cap.min(total as usize * size));
        let mut pos = 0u64;
        let zero_fill = r.fill.iter().all(|&b| b == 0);
        // Appends `n` fill elements, handing full chunks to the sink.
        let push_fill = |buf: &mut Vec<u8>, n: u64, sink: &mut ChunkSink| -> Result<()> {
            let mut left = n * size as u64;
            while left > 0 {
                let take = left.min((cap - buf.len()) as u64) as usize;
                if zero_fill {
                    buf.resize(buf.len() + take, 0);
                } else {
                    for _ in 0..take / size {
                        buf.extend_from_slice(&r.fill);
                    }
                }
                left -= take as u64;
                if buf.len() >= cap {
                    sink(buf)?;
                    buf.clear();
                }
            }
            Ok(())
        };
        for (k, &p) in r.positions.iter().enumerate() {
            push_fill(&mut buf, p - pos, sink)?;
            buf.extend_from_slice(&values[k * size..(k + 1) * size]);
            if buf.len() >= cap {
                sink(&buf)?;
                buf.clear();
            }
            pos = p + 1;
        }
        push_fill(&mut buf, total - pos, sink)?;
        if !buf.is_empty() {
            sink(&buf)?;
        }
        Ok(())
    }

    pub fn stream_dense_strings(&self, sink: &mut ChunkSink) -> Result<()> {
        let r = self.resolved()?;
        let Data::Strings(values) = &r.values else {
            bail!("numeric values stream as chunks")
        };
        let total: u64 = self.shape.iter().product();
        let mut next = 0usize;
        for p in 0..total {
            if r.positions.get(next) == Some(&p) {
                sink(&values[next])?;
                next += 1;
            } else {
                sink(&r.fill)?;
            }
        }
        Ok(())
    }
}
