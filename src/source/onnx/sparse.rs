//! The `X/indices` component of an ONNX sparse initializer, streamed: int64 `[NNZ, rank]`
//! coordinates read from the stored indices chunk by chunk, widened from int32 where needed,
//! and linear `[NNZ]` positions unravelled into coordinates as they pass (as
//! `np.unravel_index` does), so that a small file of positions never becomes its coordinates in
//! memory. `mod.rs` checks every position against the shape once at open, before anything is
//! written; `tensor.rs` calls [`Indices::stream`] for the data.

use anyhow::{bail, Result};

use super::tensor::OnnxTensor;
use crate::dtype::DType;
use crate::tensor::{ChunkSink, Gather};

/// The stored indices of a sparse initializer and, for linear positions, the dense shape they
/// unravel into.
#[derive(Clone, Debug)]
pub struct Indices {
    pub src: OnnxTensor,
    pub unravel: Option<Vec<i64>>,
    /// The initializer's name, for errors.
    pub name: String,
}

impl Indices {
    /// Walks every index once, refusing a linear position outside the shape.
    pub fn check(&self) -> Result<()> {
        self.each(1 << 20, &mut |_| Ok(()))
    }

    /// Streams the coordinates as little-endian int64, in chunks of about `chunk` bytes.
    pub fn stream(&self, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let mut out = Gather::new((chunk / 8).clamp(1, 1 << 20) * 8, sink);
        self.each(chunk, &mut |row| {
            for v in row {
                out.buf.extend_from_slice(&v.to_le_bytes());
            }
            out.flush_full()
        })?;
        out.finish()
    }

    /// Calls `f` with the int64 values in order: each stored index, or each position's row of
    /// coordinates.
    fn each(&self, chunk: usize, f: &mut dyn FnMut(&[i64]) -> Result<()>) -> Result<()> {
        let width = match self.src.dtype {
            DType::I64 => 8,
            DType::I32 => 4,
            d => bail!(
                "sparse initializer {}: indices of type {d}, not int64",
                self.name
            ),
        };
        let rank = self.unravel.as_ref().map_or(0, Vec::len);
        let mut row = vec![0i64; rank];
        let mut values = Vec::new();
        self.src.read_dense(chunk, &mut |c: &[u8]| {
            values.clear();
            values.extend(c.chunks_exact(width).map(|b| match width {
                8 => i64::from_le_bytes(b.try_into().unwrap()),
                _ => i64::from(i32::from_le_bytes(b.try_into().unwrap())),
            }));
            let Some(dims) = &self.unravel else {
                return f(&values);
            };
            for &p in &values {
                let mut rest = p;
                for (k, &d) in dims.iter().enumerate().rev() {
                    if d == 0 {
                        break;
                    }
                    row[k] = rest.rem_euclid(d);
                    rest = rest.div_euclid(d);
                }
                if rest != 0 || p < 0 {
                    bail!(
                        "sparse initializer {}: linear index {p} is outside the shape {dims:?}",
                        self.name
                    );
                }
                f(&row)?;
            }
            Ok(())
        })
    }
}
