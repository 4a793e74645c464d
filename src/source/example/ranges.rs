//! Record ranges of `example`: the dataset's records cut into groups of whole records that
//! threads walk side by side (in both passes), and the merge of pass 1's per-group statistics,
//! in record order.
//!
//! A group is a run of spans, each a run of whole records of one part (input file). Groups are
//! cut at record boundaries found by a framing scan that reads lengths only; the pass that
//! walks a group still checks every header and every CRC in it. Pass 1 walks each group as if
//! it were the dataset, numbering its records from 0; [`merge`] folds each group's statistics
//! into those of the groups before it, shifting its record numbers, to what one walk in order
//! computes. Where that walk would have failed (a damaged record, a feature whose type changes
//! between groups), the caller walks the dataset again in order, for the same error message.
//!
//! Talks to `tfrecord_io` (the framing) and `layout` (the statistics).

use std::collections::HashMap;

use anyhow::Result;
use rayon::prelude::*;

use super::layout::Stats;
use super::Part;
use crate::container::tfrecord::Records;
use crate::input::FileRange;

/// Below this many bytes per group, the records are walked by one thread. Each group holds its
/// own record window and spool buffers: two groups measured 13 MB over a thousand-record run
/// in the million-record memory test (60 MB of records), past its 12 MB bound, so datasets
/// under 128 MiB stay on one thread.
const MIN_GROUP_BYTES: u64 = 64 << 20;

/// [`MIN_GROUP_BYTES`], or the byte count in `T2N_JOBS_MIN_BYTES` (at least 1): the test suite
/// sets it to 0 to walk even its small fixtures in groups.
fn min_group_bytes() -> u64 {
    std::env::var("T2N_JOBS_MIN_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MIN_GROUP_BYTES)
        .max(1)
}

/// Whole records `data` of part `part`, starting at byte `start` of it with its record
/// `first_local`.
#[derive(Clone)]
pub struct Span {
    pub part: usize,
    pub start: u64,
    pub data: FileRange,
    pub first_local: u64,
}

/// The dataset in one group: every part whole, in order.
pub fn whole(parts: &[Part]) -> Vec<Vec<Span>> {
    vec![parts
        .iter()
        .enumerate()
        .map(|(part, p)| Span {
            part,
            start: 0,
            data: p.data.clone(),
            first_local: 0,
        })
        .collect()]
}

/// The dataset in at most `groups` groups of about equal bytes (fewer when it is small), each
/// cut at the end of the first record that reaches its share. An error is a framing problem
/// that the walk in order reports with its own message.
pub fn groups(parts: &[Part], groups: usize) -> Result<Vec<Vec<Span>>> {
    groups_of(parts, groups, min_group_bytes())
}

/// [`groups`], with groups of at least `min_bytes`.
fn groups_of(parts: &[Part], groups: usize, min_bytes: u64) -> Result<Vec<Vec<Span>>> {
    let total: u64 = parts.iter().map(|p| p.data.len()).sum();
    let groups = (groups as u64).min(total / min_bytes).max(1);
    if groups == 1 {
        return Ok(whole(parts));
    }
    let cut = |k: u64| (u128::from(total) * u128::from(k) / u128::from(groups)) as u64;
    let mut out: Vec<Vec<Span>> = vec![Vec::new()];
    let mut next = 1u64;
    let mut base = 0u64;
    for (part, p) in parts.iter().enumerate() {
        let len = p.data.len();
        let mut records = Records::new(p.data.clone(), false);
        let (mut start, mut first_local) = (0u64, 0u64);
        let (mut end, mut local) = (0u64, 0u64);
        while next < groups && cut(next) < base + len {
            let c = cut(next) - base;
            while end < c {
                match records.next()? {
                    Some((offset, rec)) => {
                        end = offset + 16 + rec.len() as u64;
                        local += 1;
                    }
                    None => break,
                }
            }
            if end > start && end < len {
                out.last_mut().unwrap().push(Span {
                    part,
                    start,
                    data: p.data.slice(start, end - start)?,
                    first_local,
                });
                out.push(Vec::new());
                (start, first_local) = (end, local);
            }
            next += 1;
        }
        if start < len || len == 0 {
            out.last_mut().unwrap().push(Span {
                part,
                start,
                data: p.data.slice(start, len - start)?,
                first_local,
            });
        }
        base += len;
        while next < groups && cut(next) <= base {
            if !out.last().unwrap().is_empty() && part + 1 < parts.len() {
                out.push(Vec::new());
            }
            next += 1;
        }
    }
    out.retain(|g| !g.is_empty());
    Ok(out)
}

/// `f` of every group `0..groups`, side by side on rayon's pool when there are several, in
/// group order.
pub fn each<T: Send>(groups: usize, f: impl Fn(usize) -> Result<T> + Sync) -> Vec<Result<T>> {
    match groups {
        1 => vec![f(0)],
        _ => (0..groups).into_par_iter().map(&f).collect(),
    }
}

/// Every group's statistics folded in record order; `None` where a group failed or two
/// disagree, so that one walk in order names the failure with the records' own numbers.
pub fn merged(each: Vec<Result<Partial>>) -> Option<Partial> {
    let mut each = each.into_iter();
    let mut all = each.next()?.ok()?;
    for p in each {
        if !merge(&mut all, p.ok()?) {
            return None;
        }
    }
    Some(all)
}

/// Pass 1's statistics of a run of records, numbered from 0 within it.
#[derive(Default)]
pub struct Partial {
    pub features: Vec<Stats>,
    /// Feature slot by key: context features, feature lists.
    pub index: [HashMap<Vec<u8>, usize>; 2],
    /// Records walked.
    pub n: u64,
}

/// Folds `b`, the statistics of the records right after `a`'s, into `a`. False where a
/// feature's type differs between the two (one walk in order fails there).
pub fn merge(a: &mut Partial, b: Partial) -> bool {
    let shift = a.n;
    for mut st in b.features {
        st.ftype = st.ftype.map(|(t, r)| (t, r + shift));
        st.differs_at = st.differs_at.map(|(r, len)| (r + shift, len));
        st.first_at += shift;
        let list = st.list as usize;
        let Some(&slot) = a.index[list].get(st.key.as_bytes()) else {
            if shift > 0 {
                st.contiguous = 0;
            }
            a.index[list].insert(st.key.as_bytes().to_vec(), a.features.len());
            a.features.push(st);
            continue;
        };
        let s = &mut a.features[slot];
        match (s.ftype, st.ftype) {
            (Some((t, _)), Some((u, _))) if t != u => return false,
            (None, t) => s.ftype = t,
            _ => {}
        }
        if s.contiguous == shift {
            s.contiguous += st.contiguous;
        }
        match (s.first_len, st.first_len) {
            (None, _) => {
                s.first_len = st.first_len;
                s.first_at = st.first_at;
                s.differs_at = st.differs_at;
            }
            (Some(_), None) => {}
            (Some(k), Some(l)) if s.differs_at.is_none() => {
                s.differs_at = if k == l {
                    st.differs_at
                } else {
                    Some((st.first_at, l))
                };
            }
            _ => {}
        }
        s.present += st.present;
        s.values += st.values;
        s.steps += st.steps;
        s.bytes += st.bytes;
        s.encoded += st.encoded;
        s.max_row = s.max_row.max(st.max_row);
        s.max_step = s.max_step.max(st.max_step);
        s.max_len = s.max_len.max(st.max_len);
    }
    a.n += b.n;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::proto::mask_crc;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u64).to_le_bytes().to_vec();
        v.extend(mask_crc(crc32c::crc32c(&v)).to_le_bytes());
        v.extend_from_slice(payload);
        v.extend(mask_crc(crc32c::crc32c(payload)).to_le_bytes());
        v
    }

    /// Groups cover every record once, in order, cut at record boundaries.
    #[test]
    fn groups_are_cut_at_record_boundaries_and_cover_every_record() {
        let record = frame(&vec![7u8; 100_000]);
        let file: Vec<u8> = (0..100).flat_map(|_| record.clone()).collect();
        let parts = vec![
            Part {
                display: "a".into(),
                data: FileRange::from_vec(file.clone()),
            },
            Part {
                display: "b".into(),
                data: FileRange::from_vec(file[..record.len() * 3].to_vec()),
            },
        ];
        for n in [1, 2, 3, 8] {
            let g = groups_of(&parts, n, 4 << 20).unwrap();
            assert_eq!(g.len(), n.min(2), "{n} groups asked");
            let spans: Vec<&Span> = g.iter().flatten().collect();
            let mut at = (0usize, 0u64, 0u64);
            for s in spans {
                if s.part != at.0 {
                    assert_eq!((s.part, s.start, s.first_local), (at.0 + 1, 0, 0));
                    at = (s.part, 0, 0);
                }
                assert_eq!((s.start, s.first_local), (at.1, at.2), "{n} groups");
                assert_eq!(s.start % record.len() as u64, 0);
                at.1 += s.data.len();
                at.2 += s.data.len() / record.len() as u64;
            }
            assert_eq!((at.0, at.1), (1, record.len() as u64 * 3));
        }
    }
}
