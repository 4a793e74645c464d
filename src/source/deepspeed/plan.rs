//! Where each consolidated tensor's elements lie, computed from numbers only (names, shapes
//! and partition lengths), as DeepSpeed's `zero_to_fp32.py` consolidates them, so that the
//! tensors can be read piece by piece (ranged reads of the rank files) instead of
//! concatenating every rank's partition in memory:
//!
//! * stages 1 and 2 (`_zero2_merge_trainable_params`): param group `g` is the concatenation of
//!   every rank's partition `g`; its parameters follow one another from offset 0, each followed
//!   by its alignment padding (`param_alignment_paddings`, when recorded); the group's end,
//!   rounded up to a multiple of 2 × world size, must be where the partitions end, rounded the
//!   same way.
//! * stage 3 (`_zero3_merge_trainable_params`): each rank's sub-groups form one vector; every
//!   parameter takes `ceil(numel / world)` elements at the same offset of every rank's vector,
//!   and is the concatenation of those slices over the ranks, cut to `numel` (the padding is on
//!   the last rank's slice); the offsets must consume every rank's vector exactly.
//! * stage 3 frozen parameters: the ranks' fragments concatenated, cut to `numel`.
//!
//! A parameter that spans two ranks' partitions (or two sub-groups) is two [`Span`]s. Every
//! offset is checked arithmetic against the lengths present; `mod.rs` turns spans into reads.

use anyhow::{bail, Context, Result};

use crate::tensor::checked_elements;

/// `len` elements from element `start` of flat tensor `flat` (an index into the caller's table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub flat: usize,
    pub start: u64,
    pub len: u64,
}

/// One consolidated tensor: its name, shape and where its elements lie, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub name: String,
    pub shape: Vec<u64>,
    pub spans: Vec<Span>,
}

/// A flat tensor of the caller's table and its element count.
pub type Piece = (usize, u64);

/// The spans covering elements `start..start + len` of the concatenation of `pieces`; `None`
/// when the pieces hold fewer.
pub fn take(pieces: &[Piece], start: u64, len: u64) -> Option<Vec<Span>> {
    let end = start.checked_add(len)?;
    let mut out = Vec::new();
    let mut at = 0u64; // where the current piece starts in the concatenation
    for &(flat, n) in pieces {
        let next = at.checked_add(n)?;
        let lo = start.max(at);
        let hi = end.min(next);
        if lo < hi {
            out.push(Span {
                flat,
                start: lo - at,
                len: hi - lo,
            });
        }
        at = next;
    }
    (end <= at).then_some(out)
}

fn total(pieces: &[Piece]) -> Result<u64> {
    pieces
        .iter()
        .try_fold(0u64, |a, &(_, n)| a.checked_add(n))
        .context("the partitions' lengths overflow")
}

/// Stages 1 and 2. `shapes[g]`: the names and shapes of param group `g` in flat-buffer order;
/// `parts[r][g]`: rank `r`'s partition of group `g`; `paddings[g][i]`: the alignment padding
/// after parameter `i` of group `g`, when the checkpoint records them.
pub fn zero2(
    shapes: &[Vec<(String, Vec<u64>)>],
    parts: &[Vec<Piece>],
    paddings: Option<&[Vec<u64>]>,
) -> Result<Vec<Out>> {
    let world = parts.len() as u64;
    let groups = parts.first().map_or(0, Vec::len);
    if let Some(r) = parts.iter().position(|p| p.len() != groups) {
        bail!(
            "rank {r} holds {} fp32 partitions, rank 0 holds {groups}",
            parts[r].len()
        );
    }
    if shapes.len() != groups {
        bail!(
            "param_shapes lists {} param groups, the optimizer files hold {groups} partitions each",
            shapes.len()
        );
    }
    let align_to = world.checked_mul(2).context("world size overflows")?;
    let align = |x: u64| -> Result<u64> {
        x.div_ceil(align_to)
            .checked_mul(align_to)
            .context("an offset overflows")
    };
    let mut out = Vec::new();
    for (g, group_shapes) in shapes.iter().enumerate() {
        let pieces: Vec<Piece> = parts.iter().map(|p| p[g]).collect();
        let avail = total(&pieces)?;
        let pads = match paddings {
            Some(p) => {
                let pads = p
                    .get(g)
                    .with_context(|| format!("param_alignment_paddings has no group {g}"))?;
                if pads.len() != group_shapes.len() {
                    bail!(
                        "expected {} parameter alignment paddings for group {g}, but found {}",
                        group_shapes.len(),
                        pads.len()
                    );
                }
                Some(pads)
            }
            None => None,
        };
        let mut offset = 0u64;
        for (i, (name, shape)) in group_shapes.iter().enumerate() {
            let numel = checked_elements(shape).with_context(|| format!("'{name}'"))?;
            let spans = take(&pieces, offset, numel).with_context(|| {
                format!(
                    "the fp32 partitions are too short: '{name}' (shape {shape:?}) needs elements {offset}..{} of param group {g}, the {world} ranks' partitions hold {avail}",
                    offset.saturating_add(numel)
                )
            })?;
            out.push(Out {
                name: name.clone(),
                shape: shape.clone(),
                spans,
            });
            offset += numel; // within avail: take() checked it
            if let Some(p) = pads {
                offset = offset.checked_add(p[i]).context("an offset overflows")?;
            }
        }
        if align(offset)? != align(avail)? {
            bail!(
                "param group {g}: the parameters consume {offset} elements of the {avail} the ranks' partitions hold (aligned to {align_to}: {} vs {}); the shapes do not match the partitions",
                align(offset)?,
                align(avail)?
            );
        }
    }
    Ok(out)
}

/// The padded per-rank slice of a parameter of `numel` elements: `ceil(numel / world)`.
fn part_of(numel: u64, world: u64) -> u64 {
    numel.div_ceil(world)
}

/// Stage 3. `shapes`: every param group's names and shapes, merged in order; `parts[r]`:
/// rank `r`'s flat sub-groups in order (every rank's must have the same lengths).
pub fn zero3(shapes: &[(String, Vec<u64>)], parts: &[Vec<Piece>]) -> Result<Vec<Out>> {
    let world = parts.len() as u64;
    if world == 0 {
        bail!("no rank holds a partition");
    }
    let lens = |r: usize| parts[r].iter().map(|p| p.1).collect::<Vec<_>>();
    if let Some(r) = (1..parts.len()).find(|&r| lens(r) != lens(0)) {
        bail!(
            "rank {r}'s fp32 sub-groups hold {:?} elements, rank 0's {:?}: the ranks disagree",
            lens(r),
            lens(0)
        );
    }
    let per_rank = total(&parts[0])?;
    let avail = per_rank.checked_mul(world).context("sizes overflow")?;
    let mut offset = 0u64;
    let mut out = Vec::new();
    for (name, shape) in shapes {
        let numel = checked_elements(shape).with_context(|| format!("'{name}'"))?;
        let part = part_of(numel, world);
        let mut spans = Vec::new();
        let mut left = numel;
        for (r, pieces) in parts.iter().enumerate() {
            let s = take(pieces, offset, part).with_context(|| {
                format!(
                    "the fp32 partitions are too short: '{name}' (shape {shape:?}) needs elements {offset}..{} of rank {r}'s partition, which holds {per_rank}",
                    offset.saturating_add(part)
                )
            })?;
            for mut span in s {
                if left == 0 {
                    break;
                }
                span.len = span.len.min(left);
                left -= span.len;
                spans.push(span);
            }
        }
        out.push(Out {
            name: name.clone(),
            shape: shape.clone(),
            spans,
        });
        offset += part;
    }
    let consumed = offset.checked_mul(world).context("sizes overflow")?;
    if consumed != avail {
        bail!("the parameters consume {consumed} elements of the {avail} the ranks' partitions hold; the shapes do not match the partitions");
    }
    Ok(out)
}

/// A stage-3 frozen parameter: the ranks' fragments (`frags[r]`) concatenated, cut to the
/// shape's element count.
pub fn zero3_frozen(name: &str, shape: &[u64], frags: &[Piece]) -> Result<Out> {
    let numel = checked_elements(shape).with_context(|| format!("'{name}'"))?;
    let spans = take(frags, 0, numel).with_context(|| {
        format!(
            "the frozen parameter '{name}' (shape {shape:?}) needs {numel} elements, the ranks' fragments hold {}",
            frags.iter().map(|f| f.1).sum::<u64>()
        )
    })?;
    Ok(Out {
        name: name.to_string(),
        shape: shape.to_vec(),
        spans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(flat: usize, start: u64, len: u64) -> Span {
        Span { flat, start, len }
    }

    fn named(v: &[(&str, &[u64])]) -> Vec<(String, Vec<u64>)> {
        v.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
    }

    #[test]
    fn take_splits_a_range_across_pieces() {
        let p = [(0, 4), (1, 3), (2, 5)];
        assert_eq!(
            take(&p, 2, 6).unwrap(),
            vec![span(0, 2, 2), span(1, 0, 3), span(2, 0, 1)]
        );
        assert_eq!(take(&p, 12, 0).unwrap(), vec![]);
        assert!(take(&p, 10, 3).is_none());
        assert!(take(&p, u64::MAX, 2).is_none());
    }

    #[test]
    fn zero2_walks_the_concatenated_partitions_with_paddings() {
        // two ranks, one group: a (2x3) then b (3), 9 elements, partitions 5 + 4
        let shapes = vec![named(&[("a", &[2, 3]), ("b", &[3])])];
        let parts = vec![vec![(0, 5)], vec![(1, 4)]];
        let out = zero2(&shapes, &parts, None).unwrap();
        assert_eq!(out[0].spans, vec![span(0, 0, 5), span(1, 0, 1)]);
        assert_eq!(out[1].spans, vec![span(1, 1, 3)]);
        // a padding of 1 after a: b starts at 7 (9 + 1 = 10 elements needed: too few)
        let pads = vec![vec![1, 0]];
        assert!(zero2(&shapes, &parts, Some(&pads)).is_err());
        let parts = vec![vec![(0, 5)], vec![(1, 5)]];
        let out = zero2(&shapes, &parts, Some(&pads)).unwrap();
        assert_eq!(out[1].spans, vec![span(1, 2, 3)]);
        // shapes that leave a partition unused past the alignment are refused
        let parts = vec![vec![(0, 9)], vec![(1, 9)]];
        assert!(zero2(&shapes, &parts, None).is_err());
    }

    #[test]
    fn zero3_takes_the_same_slice_of_every_rank() {
        // a: 5 elements -> 3 per rank (one padding), b: 2 -> 1 per rank; 4 per rank in two
        // sub-groups of 2, so a's slice straddles them
        let shapes = named(&[("a", &[5]), ("b", &[2, 1])]);
        let parts = vec![vec![(0, 2), (1, 2)], vec![(2, 2), (3, 2)]];
        let out = zero3(&shapes, &parts).unwrap();
        assert_eq!(
            out[0].spans,
            vec![span(0, 0, 2), span(1, 0, 1), span(2, 0, 2)]
        );
        assert_eq!(out[1].spans, vec![span(1, 1, 1), span(3, 1, 1)]);
        // a rank with a shorter vector, or vectors longer than the shapes use, are refused
        assert!(zero3(&shapes, &[vec![(0, 4)], vec![(1, 3)]]).is_err());
        assert!(zero3(&shapes, &[vec![(0, 5)], vec![(1, 5)]]).is_err());
        assert!(zero3(&shapes, &[vec![(0, 3)], vec![(1, 3)]]).is_err());
    }

    #[test]
    fn zero3_frozen_cuts_the_padding() {
        let out = zero3_frozen("f", &[5], &[(0, 3), (1, 3)]).unwrap();
        assert_eq!(out.spans, vec![span(0, 0, 3), span(1, 0, 2)]);
        assert!(zero3_frozen("f", &[7], &[(0, 3), (1, 3)]).is_err());
    }
}
