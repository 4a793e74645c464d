//! The array layout of an Example dataset, for `example`: what pass 1 learned about each
//! feature ([`Stats`]), the arrays each feature becomes under the dataset rule and the ragged
//! mode ([`plan`]), and the element sequence of each array in pass 2 ([`elements`]).
//!
//! Ragged features are declared by the reader rather than found by name by `structure`: their
//! components carry `Kind::Ragged`, which `structure` leaves alone, and `--ragged flat` /
//! `--ragged pad` / `list` are answered here, as each array's elements are laid out for pass 2
//! ([`elements`]), so a padded feature is written in the same one walk over the records as
//! every other array (the structure layer would read its components back to pad them).

use std::collections::BTreeSet;

use anyhow::{bail, Result};

use super::wire::{self, FType, Value};
use crate::dtype::{DType, NpyType};
use crate::structure::RaggedMode;
use crate::tensor::{Kind, TensorMeta};

/// What pass 1 learns about one feature.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub key: String,
    /// A feature list of a SequenceExample (else a context / Example feature).
    pub list: bool,
    /// The type and the record it was first seen with.
    pub ftype: Option<(FType, u64)>,
    /// Records holding the feature.
    pub present: u64,
    /// Records 0..contiguous all hold it.
    pub contiguous: u64,
    /// The length (values, or steps for a list) of its first occurrence, and the first record
    /// whose length differs with that length.
    pub first_len: Option<u64>,
    pub differs_at: Option<(u64, u64)>,
    /// The record of its first occurrence (for merging the statistics of record ranges).
    pub first_at: u64,
    /// Values in all records, steps in all records (lists).
    pub values: u64,
    pub steps: u64,
    /// The most values (context) or steps (lists) in one record; the most values in one step.
    pub max_row: u64,
    pub max_step: u64,
    /// The longest and the total bytes of all bytes values.
    pub max_len: u64,
    pub bytes: u64,
    /// Bytes the feature's encoded `Feature` (context) or `FeatureList` (lists) messages take in
    /// all records (each message's own bytes, without the key, the map entry or the field's tag
    /// and length): what it occupies in the input, `list`'s BYTES.
    pub encoded: u64,
}

impl Stats {
    pub fn ftype(&self) -> FType {
        // A feature seen only as empty `Feature` messages has no type of its own; it is written
        // as an empty float list.
        self.ftype.map_or(FType::Float, |(t, _)| t)
    }
}

/// Which array of a feature an output is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `[N]` or `[N, k]`.
    Dense,
    /// `<key>/flat_values`, or `<key>` with `--ragged flat`.
    Values,
    Splits0,
    Splits1,
    /// `<key>` padded like `rt.to_tensor()`.
    Padded,
    /// The whole ragged tensor, for `list`.
    Listed,
}

pub struct Output {
    pub feature: usize,
    pub piece: Piece,
    pub meta: TensorMeta,
}

/// How the user asked for ragged features to be written.
#[derive(Clone, Debug, Default)]
pub struct RaggedChoice {
    pub mode: RaggedMode,
    /// `--fill` for padded arrays (zeros / b"" when absent).
    pub fill: Option<String>,
    /// Refuse padded arrays over this many bytes.
    pub max_dense_bytes: Option<u64>,
    /// `list`: one row per ragged feature.
    pub list: bool,
}

/// The arrays of every feature, in output order (features sorted by key).
pub fn plan(
    features: &[Stats],
    n: u64,
    force_dense: &[String],
    force_ragged: &[String],
    ragged: &RaggedChoice,
) -> Result<Vec<Output>> {
    let mut outputs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, st) in features.iter().enumerate() {
        let (dtype, kind) = match st.ftype() {
            FType::Bytes => (DType::String, Kind::String),
            FType::Float => (DType::F32, Kind::Dense),
            FType::Int64 => (DType::I64, Kind::Dense),
        };
        let strings = dtype == DType::String;
        let every = st.present == n && st.differs_at.is_none();
        let k = st.first_len.unwrap_or(0);
        let forced_dense = force_dense.contains(&st.key);
        let forced_ragged = force_ragged.contains(&st.key);
        if forced_dense && forced_ragged {
            bail!("feature '{}' is forced both dense and ragged", st.key);
        }
        if forced_dense && (st.list || !every) {
            let why = if st.list {
                "it is a feature list, ragged over steps".to_string()
            } else if st.present < n {
                format!("record {} does not hold it", st.contiguous)
            } else {
                let (r, c) = st.differs_at.unwrap_or_default();
                format!("record {r} holds {c} values, record 0 holds {k}")
            };
            bail!("feature '{}' cannot be dense: {why}", st.key);
        }
        // The piece holding the values is what the feature occupies in the records; row splits
        // are derived from the records' structure and occupy nothing of their own.
        let meta = |name: String, kind: Kind, shape: Vec<u64>| TensorMeta {
            name,
            dtype,
            kind,
            stored_bytes: st.encoded,
            shape,
            max_string_len: strings.then_some(st.max_len),
            big_endian: false,
            ragged_rank: 0,
            facts: Default::default(),
        };
        let splits = |name: String, len: u64| TensorMeta {
            name,
            dtype: DType::I64,
            kind: Kind::Ragged,
            shape: vec![len.saturating_add(1)],
            stored_bytes: 0,
            max_string_len: None,
            big_endian: false,
            ragged_rank: 0,
            facts: Default::default(),
        };
        let mut push = |piece: Piece, m: TensorMeta| -> Result<()> {
            if !names.insert(m.name.clone()) {
                bail!(
                    "two features would both be written as '{}' (a feature list and a context feature of one name, or a key ending in /flat_values)",
                    m.name
                );
            }
            outputs.push(Output {
                feature: i,
                piece,
                meta: m,
            });
            Ok(())
        };
        let key = &st.key;
        if !st.list && !forced_ragged && every && (forced_dense || k >= 1) {
            let shape = if k == 1 && !forced_dense {
                vec![n]
            } else {
                vec![n, k]
            };
            push(Piece::Dense, meta(key.clone(), kind, shape))?;
            continue;
        }
        let padded_shape = if st.list {
            vec![n, st.max_row, st.max_step]
        } else {
            vec![n, st.max_row]
        };
        if ragged.list {
            let mut m = meta(key.clone(), Kind::Ragged, padded_shape);
            m.ragged_rank = if st.list { 2 } else { 1 };
            push(Piece::Listed, m)?;
            continue;
        }
        match ragged.mode {
            RaggedMode::Flat => push(Piece::Values, meta(key.clone(), kind, vec![st.values]))?,
            RaggedMode::Pad => {
                let mut m = meta(key.clone(), kind, padded_shape);
                let fill = fill_bytes(dtype, ragged)?;
                if strings {
                    m.max_string_len = Some(st.max_len.max(fill.len() as u64));
                }
                let item = match NpyType::natural(dtype) {
                    Some(t) => t.size() as u64,
                    None => m.max_string_len.unwrap_or(1).max(1),
                };
                let bytes = crate::tensor::checked_elements(&m.shape)
                    .ok()
                    .and_then(|e| e.checked_mul(item));
                let limit = ragged.max_dense_bytes.unwrap_or(u64::MAX);
                if bytes.is_none_or(|b| b > limit) {
                    bail!(
                        "'{key}': the padded result of shape {:?} would take {} bytes, over --max-dense-bytes ({limit})",
                        m.shape,
                        bytes.map_or("more than 2^64".to_string(), |b| b.to_string()),
                    );
                }
                push(Piece::Padded, m)?;
            }
            RaggedMode::Components => {
                let values = meta(format!("{key}/flat_values"), Kind::Ragged, vec![st.values]);
                push(Piece::Values, values)?;
                push(Piece::Splits0, splits(format!("{key}/row_splits_0"), n))?;
                if st.list {
                    push(
                        Piece::Splits1,
                        splits(format!("{key}/row_splits_1"), st.steps),
                    )?;
                }
            }
        }
    }
    Ok(outputs)
}

/// The fill element of a padded array in the source layout (`--fill`, or zeros / b"").
pub fn fill_bytes(dtype: DType, ragged: &RaggedChoice) -> Result<Vec<u8>> {
    match &ragged.fill {
        Some(text) => crate::transform::parse_fill(dtype, text),
        None => Ok(vec![0u8; dtype.item_size().unwrap_or(0)]),
    }
}

/// One element of an output array.
pub enum Element<'a> {
    Value(Value<'a>),
    Fill,
    Split(i64),
}

/// The elements record `value` (the feature's `Feature` or `FeatureList`, `None` where the
/// record lacks it) contributes to output `out`; `total` carries the running row split.
pub fn elements<'a>(
    out: &Output,
    st: &Stats,
    value: Option<&'a [u8]>,
    total: &mut i64,
    emit: &mut dyn FnMut(Element<'a>) -> Result<()>,
) -> Result<()> {
    let mut values_of = |feature: &'a [u8], pad_to: Option<u64>| -> Result<u64> {
        let mut c = 0u64;
        wire::values(feature, &mut |v| {
            c += 1;
            emit(Element::Value(v))
        })?;
        if let Some(width) = pad_to {
            if c > width {
                bail!("a row of {c} values, wider than the {width} found when the file was opened");
            }
            for _ in c..width {
                emit(Element::Fill)?;
            }
        }
        Ok(c)
    };
    match out.piece {
        Piece::Dense => {
            let c = match value {
                Some(v) => values_of(v, None)?,
                None => 0,
            };
            let width = out.meta.shape.get(1).copied().unwrap_or(1);
            if c != width {
                bail!("{c} values where the file held {width} when it was opened (did it change?)");
            }
        }
        Piece::Values => {
            if let Some(v) = value {
                if st.list {
                    wire::each_step(v, &mut |s| values_of(s, None).map(|_| ()))?;
                } else {
                    values_of(v, None)?;
                }
            }
        }
        Piece::Padded => {
            let row = out.meta.shape[1];
            if st.list {
                let step = out.meta.shape[2];
                let mut steps = 0u64;
                if let Some(v) = value {
                    wire::each_step(v, &mut |s| {
                        steps += 1;
                        values_of(s, Some(step)).map(|_| ())
                    })?;
                }
                if steps > row {
                    bail!("{steps} steps, more than the {row} found when the file was opened");
                }
                for _ in 0..(row - steps) * step {
                    emit(Element::Fill)?;
                }
            } else {
                match value {
                    Some(v) => {
                        values_of(v, Some(row))?;
                    }
                    None => (0..row).try_for_each(|_| emit(Element::Fill))?,
                }
            }
        }
        Piece::Splits0 => {
            let c = match value {
                None => 0,
                Some(v) if st.list => {
                    let mut steps = 0i64;
                    wire::each_step(v, &mut |_| {
                        steps += 1;
                        Ok(())
                    })?;
                    steps
                }
                Some(v) => wire::count(v)?.values as i64,
            };
            *total += c;
            emit(Element::Split(*total))?;
        }
        Piece::Splits1 => {
            if let Some(v) = value {
                wire::each_step(v, &mut |s| {
                    *total += wire::count(s)?.values as i64;
                    emit(Element::Split(*total))
                })?;
            }
        }
        Piece::Listed => bail!("'{}' is listed whole and cannot be read", out.meta.name),
    }
    Ok(())
}
