//! TFRecord datasets of `tf.train.Example` and `tf.train.SequenceExample` records: one array per
//! feature, as `tf.io.parse_example` / `parse_sequence_example` with a `RaggedFeature` per key
//! would give them.
//!
//! Owns the dataset rule (see README "TFRecord datasets of tf.train.Example"): a feature with
//! exactly one value in every record is `[N]`, the same k > 1 values in every record `[N, k]`,
//! anything else ragged as `<key>/flat_values` + `<key>/row_splits_0`; a SequenceExample's
//! feature lists are `<key>/flat_values` + `row_splits_0` (steps per record) + `row_splits_1`
//! (values per step). Outputs are sorted by feature key (bytewise), then `flat_values`,
//! `row_splits_0`, `row_splits_1`, so outputs are byte-identical whatever order TensorFlow
//! serialized each map in.
//!
//! Talks to `container::tfrecord` (framing, CRCs and decompression),
//! `wire` (the protobuf walk), `layout` (which arrays each feature becomes, and
//! their elements) and `spool` (pass 2's temporary file). Two passes: `open` walks every
//! record once, checking every CRC and every byte of protobuf, and keeps per-feature statistics
//! only (type, counts, longest string); when the first array is read, one more walk writes every
//! array into the spool (a dataset with a single array is streamed straight from the records),
//! so memory is bounded by the chunk size and the largest record, never by the number of
//! records. Both passes walk the records in groups (`ranges`), side by side on rayon's global
//! pool (sized to the `--jobs` workers), and pass 1 merges the groups' statistics in record
//! order, so the result (and any error) is the one walk in order's. The protobuf walk is hand-written on `wire`'s varints rather than prost-decoded,
//! because decoding a message allocates every key and value list of every record, and both
//! passes only need slices of each record.

mod layout;
mod ranges;
mod spool;
pub mod wire;

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub use self::layout::RaggedChoice;
use self::layout::{Element, Output, Piece, Stats};
use self::ranges::{Partial, Span};
use self::spool::{Spool, SpoolPart, SpoolWriter};
use self::wire::{FType, Section, Value};
use super::{Input, OpenOptions, Reader, Sniff};
use crate::container::tfrecord::{self, Records};
use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::{ChunkSink, Source, TensorMeta};

/// Command-line choices for Example datasets.
#[derive(Clone, Debug, Default)]
pub struct ExampleOptions {
    /// Only these feature keys (all when empty).
    pub features: Vec<String>,
    /// Features written ragged even when every record has the same length.
    pub force_ragged: Vec<String>,
    /// Features written `[N, k]` (also for k = 1); an error when their lengths vary.
    pub force_dense: Vec<String>,
    /// `--ragged`, `--fill`, and whether this is for `list`.
    pub ragged: RaggedChoice,
    /// `--stack`, which a dataset of Examples refuses.
    pub stack: bool,
}

/// One input file of the dataset, already decompressed.
pub struct Part {
    pub display: String,
    pub data: FileRange,
}

pub struct ExampleSource {
    path: String,
    files: Vec<PathBuf>,
    parts: Vec<Part>,
    features: Vec<Stats>,
    /// Feature index by key: context features, feature lists.
    index: [HashMap<Vec<u8>, usize>; 2],
    outputs: Vec<Output>,
    ragged: RaggedChoice,
    /// Every array, written by one walk when the first is read (with more than one array).
    spool: Option<Spool>,
    /// The records, in the groups that threads walk side by side.
    groups: Vec<Vec<Span>>,
}

pub static READER: Reader = Reader {
    name: "example",
    about: "TFRecord datasets of tf.train.Example / SequenceExample records: one array per feature",
    extensions: &[".tfrecord", ".tfrecords"],
    sniff: sniff_input,
    open: open_input,
};

/// True when the first record of a TFRecord stream (its first bytes in `head`) holds an Example
/// or a SequenceExample rather than a serialized TensorProto, whose first field is always the
/// `dtype` varint (key 0x08). Both Example messages start with a length-delimited field 1 or 2
/// (keys 0x0a, 0x12); an empty record is an Example with no features.
pub fn first_record_is_example(head: &[u8]) -> bool {
    match (tfrecord::header_len(head), tfrecord::first_payload(head)) {
        (Some(0), _) => true,
        (_, Some(payload)) => matches!(payload.first(), Some(0x0a | 0x12)),
        _ => false,
    }
}

/// A TFRecord (plain, or the start of a GZIP / ZLIB stream) whose first record is an Example;
/// an empty `.tfrecord` file is a dataset of no records (what `TFRecordWriter` leaves when
/// nothing is written).
fn sniff_input(input: &Input) -> Sniff {
    let Some(data) = &input.data else {
        return Sniff::No;
    };
    if data.is_empty() {
        return if input.has_extension(READER.extensions) {
            Sniff::Maybe
        } else {
            Sniff::No
        };
    }
    let head = tfrecord::records_head(&input.head);
    if first_record_is_example(&head) {
        Sniff::Yes
    } else {
        Sniff::No
    }
}

/// The input's records, decompressed into a temporary file when the stream is compressed.
fn part(input: &Input, opts: &OpenOptions) -> Result<Part> {
    let opened = tfrecord::open(input.data()?, &input.head, opts.max_decompressed)?;
    Ok(Part {
        display: input.display.clone(),
        data: opened.data,
    })
}

/// `--stack` joins records that are tensors; an Example dataset is one array per feature already.
fn refuse_stack(opts: &OpenOptions) -> Result<()> {
    if opts.example.stack {
        return Err(crate::error::usage(
            "--stack stacks TFRecords of serialized tensors; a dataset of tf.train.Example records is already written as one [N, ...] array per feature (leave --stack out)",
        ));
    }
    Ok(())
}

fn open_input(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    refuse_stack(opts)?;
    let part = part(input, opts)?;
    Ok(Box::new(ExampleSource::open(
        &input.display,
        input.files.clone(),
        vec![part],
        &opts.example,
    )?))
}

/// `--concat` of TFRecord files (shards) of `tf.train.Example`s, already probed: one dataset,
/// records in input order (`chain.rs` decides that the inputs are such shards).
pub fn open_concat(inputs: &[Input], opts: &OpenOptions) -> Result<Box<dyn Source>> {
    refuse_stack(opts)?;
    let mut parts = Vec::new();
    let mut files = Vec::new();
    for input in inputs {
        parts.push(part(input, opts).with_context(|| input.display.clone())?);
        files.extend(input.files.iter().cloned());
    }
    let display = match inputs {
        [one] => one.display.clone(),
        [first, rest @ ..] => format!("{} (+{} more)", first.display, rest.len()),
        [] => bail!("--concat needs at least one input"),
    };
    Ok(Box::new(
        ExampleSource::open(&display, files, parts, &opts.example).context(display.clone())?,
    ))
}

impl ExampleSource {
    /// Pass 1 over the records of `spans`, numbered from 0: checks every record and counts
    /// what each feature holds.
    fn scan(parts: &[Part], spans: &[Span], opts: &ExampleOptions) -> Result<Partial> {
        // Feature slots by key: context features, feature lists.
        let mut index: [HashMap<Vec<u8>, usize>; 2] = Default::default();
        let mut features: Vec<Stats> = Vec::new();
        let mut n: u64 = 0;
        // One record's map entries as (section, key range, value range), reused.
        let mut found: Vec<(Section, Range<usize>, Range<usize>)> = Vec::new();
        let multi = parts.len() > 1;
        for span in spans {
            let part = &parts[span.part];
            let mut records = Records::new(span.data.clone(), true);
            let mut local = span.first_local;
            while let Some((offset, rec)) = records.next().with_context(|| {
                if multi {
                    part.display.clone()
                } else {
                    "TFRecord framing".into()
                }
            })? {
                let offset = offset + span.start;
                let at = || {
                    if multi {
                        format!(
                            "{}: record {local} (record {n} of the dataset) at byte offset {offset}",
                            part.display
                        )
                    } else {
                        format!("record {local} at byte offset {offset}")
                    }
                };
                // `walk_record` hands out slices of `rec`; keep them as offsets.
                let base = rec.as_ptr() as usize;
                let range = |b: &[u8]| {
                    let start = (b.as_ptr() as usize).saturating_sub(base);
                    start..start + b.len()
                };
                found.clear();
                wire::walk_record(rec, &mut |s, k, v| {
                    found.push((s, range(k), range(v)));
                    Ok(())
                })
                .with_context(|| format!("{}: malformed Example", at()))?;
                // A repeated key keeps its last value, as protobuf maps (and TensorFlow) do.
                found.sort_by(|a, b| (a.0, &rec[a.1.clone()]).cmp(&(b.0, &rec[b.1.clone()])));
                for (i, (section, k, v)) in found.iter().enumerate() {
                    let (key, value) = (&rec[k.clone()], &rec[v.clone()]);
                    if found
                        .get(i + 1)
                        .is_some_and(|f| f.0 == *section && &rec[f.1.clone()] == key)
                    {
                        continue;
                    }
                    let list = *section == Section::Lists;
                    let Ok(name) = std::str::from_utf8(key) else {
                        bail!("{}: a feature key is not UTF-8 ({:?})", at(), key);
                    };
                    if !opts.features.is_empty() && !opts.features.iter().any(|f| f == name) {
                        continue;
                    }
                    let slot = match index[list as usize].get(key) {
                        Some(&s) => s,
                        None => {
                            index[list as usize].insert(key.to_vec(), features.len());
                            features.push(Stats {
                                key: name.to_string(),
                                list,
                                ..Stats::default()
                            });
                            features.len() - 1
                        }
                    };
                    let st = &mut features[slot];
                    let what = || format!("{}: feature '{name}'", at());
                    let check = |ft: Option<FType>, st: &mut Stats| -> Result<()> {
                        match (ft, st.ftype) {
                            (Some(t), None) => st.ftype = Some((t, n)),
                            (Some(t), Some((was, first))) if t != was => bail!(
                                "{} here, but {} in record {first} (the type of a feature cannot change between records)",
                                t.name(),
                                was.name()
                            ),
                            _ => {}
                        }
                        Ok(())
                    };
                    let add = |c: wire::Count, st: &mut Stats| -> Result<()> {
                        check(c.ftype, st)?;
                        st.values += c.values;
                        st.max_len = st.max_len.max(c.longest);
                        st.bytes += c.bytes;
                        Ok(())
                    };
                    let count = if list {
                        let mut steps = 0u64;
                        wire::each_step(value, &mut |step| {
                            let c = wire::count(step)
                                .with_context(|| format!("step {steps}: malformed Feature"))?;
                            st.max_step = st.max_step.max(c.values);
                            add(c, st).with_context(|| format!("step {steps}"))?;
                            steps += 1;
                            Ok(())
                        })
                        .with_context(what)?;
                        st.steps += steps;
                        steps
                    } else {
                        let c = wire::count(value)
                            .context("malformed Feature")
                            .with_context(what)?;
                        add(c, st).with_context(what)?;
                        c.values
                    };
                    st.max_row = st.max_row.max(count);
                    // `value` is the `Feature` / `FeatureList` message itself (the map entry's
                    // field 2, without its tag and length).
                    st.encoded += value.len() as u64;
                    st.present += 1;
                    if st.contiguous == n {
                        st.contiguous += 1;
                    }
                    match st.first_len {
                        None => (st.first_len, st.first_at) = (Some(count), n),
                        Some(k) if k != count && st.differs_at.is_none() => {
                            st.differs_at = Some((n, count))
                        }
                        _ => {}
                    }
                }
                local += 1;
                n += 1;
            }
        }
        Ok(Partial { features, index, n })
    }

    /// Pass 1: checks every record of every part and infers each feature's array layout.
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        parts: Vec<Part>,
        opts: &ExampleOptions,
    ) -> Result<ExampleSource> {
        // Groups of records walked side by side; a failure is named by one walk in order.
        crate::pool::ready();
        let groups = match rayon::current_num_threads() {
            1 => ranges::whole(&parts),
            n => ranges::groups(&parts, n).unwrap_or_else(|_| ranges::whole(&parts)),
        };
        let Partial {
            mut features, n, ..
        } = if groups.len() == 1 {
            Self::scan(&parts, &groups[0], opts)?
        } else {
            let each = ranges::each(groups.len(), |g| Self::scan(&parts, &groups[g], opts));
            match ranges::merged(each) {
                Some(all) => all,
                None => Self::scan(&parts, &ranges::whole(&parts)[0], opts)?,
            }
        };
        for f in opts.force_ragged.iter().chain(&opts.force_dense) {
            if !features.iter().any(|s| &s.key == f) {
                bail!("no feature '{f}' in the dataset");
            }
        }
        if !opts.features.is_empty() {
            for f in &opts.features {
                if !features.iter().any(|s| &s.key == f) {
                    bail!("--features names '{f}', which no record holds");
                }
            }
        }
        features.sort_by(|a, b| a.key.cmp(&b.key).then(a.list.cmp(&b.list)));
        let outputs = layout::plan(
            &features,
            n,
            &opts.force_dense,
            &opts.force_ragged,
            &opts.ragged,
        )?;
        let mut index: [HashMap<Vec<u8>, usize>; 2] = Default::default();
        for (i, st) in features.iter().enumerate() {
            index[st.list as usize].insert(st.key.as_bytes().to_vec(), i);
        }
        Ok(ExampleSource {
            path: path.to_string(),
            files,
            parts,
            features,
            index,
            outputs,
            ragged: opts.ragged.clone(),
            spool: None,
            groups,
        })
    }

    /// Pass 2: walks the records of `spans` and hands `visit` each feature's value in each (its
    /// `Feature` or `FeatureList`; `None` where the record lacks it), indexed like `features`.
    fn walk(&self, spans: &[Span], visit: &mut dyn FnMut(&Values) -> Result<()>) -> Result<()> {
        let mut ranges: Vec<Option<Range<usize>>> = Vec::with_capacity(self.features.len());
        for span in spans {
            let part = &self.parts[span.part];
            let mut records = Records::new(span.data.clone(), false);
            let mut local = span.first_local;
            while let Some((offset, rec)) = records.next().with_context(|| part.display.clone())? {
                let offset = offset + span.start;
                ranges.clear();
                ranges.resize(self.features.len(), None);
                let base = rec.as_ptr() as usize;
                wire::walk_record(rec, &mut |s, k, v| {
                    if let Some(&f) = self.index[(s == Section::Lists) as usize].get(k) {
                        // the last of a repeated key wins
                        let start = (v.as_ptr() as usize).saturating_sub(base);
                        ranges[f] = Some(start..start + v.len());
                    }
                    Ok(())
                })
                .and_then(|()| {
                    visit(&Values {
                        rec,
                        ranges: &ranges,
                    })
                })
                .with_context(|| {
                    format!("{}: record {local} at byte offset {offset}", part.display)
                })?;
                local += 1;
            }
        }
        Ok(())
    }

    /// The spool's region size of each array: numbers at their width, strings as `u64` length
    /// plus bytes.
    fn region_sizes(&self) -> Result<Vec<u64>> {
        let mut sizes = Vec::with_capacity(self.outputs.len());
        for out in &self.outputs {
            let st = &self.features[out.feature];
            let elements = out.meta.num_elements()?;
            let size = match out.meta.dtype.item_size() {
                _ if out.piece == Piece::Listed => Some(0),
                Some(item) => elements.checked_mul(item as u64),
                None => {
                    let fills = match out.piece {
                        Piece::Padded => elements - st.values.min(elements),
                        _ => 0,
                    };
                    let fill = layout::fill_bytes(DType::String, &self.ragged)?.len() as u64;
                    elements
                        .checked_mul(8)
                        .and_then(|b| b.checked_add(st.bytes))
                        .and_then(|b| b.checked_add(fills.checked_mul(fill)?))
                }
            };
            sizes.push(
                size.with_context(|| format!("'{}' takes more than 2^64 bytes", out.meta.name))?,
            );
        }
        Ok(sizes)
    }

    /// Writes every array into the spool with one walk over the records: each group of records
    /// into a spool part of its own, side by side (row splits counted from 0 in each, shifted
    /// when read).
    fn build_spool(&self) -> Result<Spool> {
        let sizes = self.region_sizes()?;
        let splits: Vec<bool> = (self.outputs.iter())
            .map(|o| matches!(o.piece, Piece::Splits0 | Piece::Splits1))
            .collect();
        let each = ranges::each(self.groups.len(), |g| self.spool_part(g, &sizes, &splits));
        Spool::join(each, &splits, &sizes)
    }

    /// Group `g`'s part of the spool, and the last row split of each array in it.
    fn spool_part(
        &self,
        g: usize,
        sizes: &[u64],
        splits: &[bool],
    ) -> Result<(SpoolPart, Vec<i64>)> {
        let mut spool = SpoolWriter::new(sizes, self.groups.len())?;
        let fills: Vec<Vec<u8>> = self
            .outputs
            .iter()
            .map(|o| layout::fill_bytes(o.meta.dtype, &self.ragged))
            .collect::<Result<_>>()?;
        let mut totals = vec![0i64; self.outputs.len()];
        for o in (0..self.outputs.len()).filter(|&o| g == 0 && splits[o]) {
            spool.push(o, &0i64.to_le_bytes())?;
        }
        self.walk(&self.groups[g], &mut |values| {
            for (o, out) in self.outputs.iter().enumerate() {
                if out.piece == Piece::Listed {
                    continue;
                }
                let st = &self.features[out.feature];
                let strings = out.meta.dtype == DType::String;
                layout::elements(
                    out,
                    st,
                    values.get(out.feature),
                    &mut totals[o],
                    &mut |e| match e {
                        Element::Value(Value::Bytes(b)) if strings => spool.push_string(o, b),
                        Element::Fill if strings => spool.push_string(o, &fills[o]),
                        Element::Value(Value::Float(x)) => spool.push(o, &x.to_le_bytes()),
                        Element::Value(Value::Int64(x)) | Element::Split(x) => {
                            spool.push(o, &x.to_le_bytes())
                        }
                        Element::Fill => spool.push(o, &fills[o]),
                        Element::Value(Value::Bytes(_)) => {
                            bail!("a bytes value in a numeric feature")
                        }
                    },
                )
                .with_context(|| format!("feature '{}'", st.key))?;
            }
            Ok(())
        })?;
        Ok((spool.finish()?, totals))
    }

    /// The spool, written on first use; `None` when there is one array only (read directly).
    fn spool(&mut self) -> Result<Option<&Spool>> {
        if self.outputs.len() < 2 {
            return Ok(None);
        }
        if self.spool.is_none() {
            self.spool = Some(self.build_spool()?);
        }
        Ok(self.spool.as_ref())
    }
}

/// One record's value of each feature, for pass 2.
struct Values<'r> {
    rec: &'r [u8],
    ranges: &'r [Option<Range<usize>>],
}

impl<'r> Values<'r> {
    fn get(&self, feature: usize) -> Option<&'r [u8]> {
        self.ranges[feature].clone().and_then(|r| self.rec.get(r))
    }
}

/// Collects fixed-size elements into chunks of at most `chunk` bytes for a sink.
struct Chunker<'s, 'a> {
    buf: Vec<u8>,
    cap: usize,
    sink: &'s mut ChunkSink<'a>,
}

impl<'s, 'a> Chunker<'s, 'a> {
    fn new(chunk: usize, item: usize, sink: &'s mut ChunkSink<'a>) -> Self {
        let cap = (chunk / item).max(1) * item;
        Chunker {
            buf: Vec::with_capacity(cap.min(1 << 20)),
            cap,
            sink,
        }
    }
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.cap {
            (self.sink)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
    fn finish(mut self) -> Result<()> {
        if !self.buf.is_empty() {
            (self.sink)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl ExampleSource {
    /// Streams every element of output `index`, walking all records once.
    fn stream(&self, index: usize, emit: &mut dyn FnMut(Element) -> Result<()>) -> Result<()> {
        let out = &self.outputs[index];
        let st = &self.features[out.feature];
        let expected = out.meta.num_elements()?;
        let mut written = 0u64;
        let mut total = 0i64;
        if matches!(out.piece, Piece::Splits0 | Piece::Splits1) {
            emit(Element::Split(0))?;
            written += 1;
        }
        let all: Vec<Span> = self.groups.concat();
        self.walk(&all, &mut |values| {
            layout::elements(out, st, values.get(out.feature), &mut total, &mut |e| {
                written += 1;
                emit(e)
            })
            .with_context(|| format!("feature '{}'", st.key))
        })?;
        if written != expected {
            bail!(
                "'{}' has {written} elements, {expected} were found when the file was opened (did it change?)",
                out.meta.name
            );
        }
        Ok(())
    }
}

impl Source for ExampleSource {
    fn display_path(&self) -> &str {
        &self.path
    }
    fn len(&self) -> usize {
        self.outputs.len()
    }
    fn meta(&self, index: usize) -> Result<TensorMeta> {
        let mut meta = self.outputs[index].meta.clone();
        // One read spools every feature; a second copy would do it all again.
        meta.facts.serial = true;
        Ok(meta)
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let meta = &self.outputs[index].meta;
        let Some(item) = meta.dtype.item_size() else {
            bail!("'{}' holds strings", meta.name);
        };
        let name = meta.name.clone();
        let fill = layout::fill_bytes(meta.dtype, &self.ragged)?;
        if let Some(spool) = self.spool()? {
            return spool.read_dense(index, item, chunk, sink).context(name);
        }
        let mut chunker = Chunker::new(chunk, item, sink);
        self.stream(index, &mut |e| match e {
            Element::Value(Value::Float(x)) => chunker.push(&x.to_le_bytes()),
            Element::Value(Value::Int64(x)) | Element::Split(x) => chunker.push(&x.to_le_bytes()),
            Element::Value(Value::Bytes(_)) => bail!("a bytes value in a numeric feature"),
            Element::Fill => chunker.push(&fill),
        })?;
        chunker.finish()
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        if let Some(spool) = self.spool()? {
            return spool.read_strings(index, sink);
        }
        let fill = layout::fill_bytes(DType::String, &self.ragged)?;
        self.stream(index, &mut |e| match e {
            Element::Value(Value::Bytes(b)) => sink(b),
            Element::Fill => sink(&fill),
            _ => bail!("a numeric value in a bytes feature"),
        })
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::proto::mask_crc;

    fn header(len: u64) -> Vec<u8> {
        let mut h = len.to_le_bytes().to_vec();
        h.extend(mask_crc(crc32c::crc32c(&h)).to_le_bytes());
        h
    }

    #[test]
    fn examples_are_told_from_tensorprotos_by_their_first_byte() {
        let with = |first: u8| [header(5), vec![first, 0, 0, 0, 0]].concat();
        assert!(first_record_is_example(&with(0x0a))); // Example.features / context
        assert!(first_record_is_example(&with(0x12))); // SequenceExample.feature_lists
        assert!(!first_record_is_example(&with(0x08))); // TensorProto.dtype
        assert!(first_record_is_example(&header(0))); // an Example with no features
        let mut bad_crc = with(0x0a);
        bad_crc[8] ^= 1;
        assert!(!first_record_is_example(&bad_crc));
        assert!(!first_record_is_example(&header(5))); // the payload is not in the head
    }

    #[test]
    fn a_compressed_head_is_sniffed_through_its_first_bytes() {
        use std::io::Write;
        let record = [header(2), vec![0x0a, 0x00, 0, 0, 0, 0]].concat();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&record).unwrap();
        let gz = gz.finish().unwrap();
        let head = tfrecord::records_head(&gz);
        assert_eq!(&head[..], &record[..head.len()]);
        assert!(first_record_is_example(&head));
    }
}
