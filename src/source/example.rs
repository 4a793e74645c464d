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
//! Talks to `input` (the decompressed file ranges), `tfrecord_io` (framing and CRCs) and
//! `example_wire` (the protobuf walk). Two passes: `open` walks every record once, checking
//! every CRC and every byte of protobuf, and keeps per-feature statistics only (type, counts,
//! longest string); each output array is then streamed by walking the records again, so memory
//! is bounded by the chunk size and the largest record, never by the number of records. The
//! protobuf walk is hand-written on `wire`'s varints rather than prost-decoded, because decoding
//! a message allocates every key and value list of every record, and the second pass only needs
//! one feature's slice of each record.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use std::io::Read;

use super::example_wire::{self, FType, Section};
use super::tfrecord_io::Records;
use super::{tfrecord, Input, OpenOptions, Reader, Sniff};
use crate::dtype::DType;
use crate::input::{self, Compression, FileRange};
use crate::tensor::{ChunkSink, Kind, Source, TensorMeta};

/// Command-line choices for Example datasets.
#[derive(Clone, Debug, Default)]
pub struct ExampleOptions {
    /// Only these feature keys (all when empty).
    pub features: Vec<String>,
    /// Features written ragged even when every record has the same length.
    pub force_ragged: Vec<String>,
    /// Features written `[N, k]` (also for k = 1); an error when their lengths vary.
    pub force_dense: Vec<String>,
}

/// One input file of the dataset, already decompressed.
pub struct Part {
    pub display: String,
    pub data: FileRange,
}

/// What pass 1 learns about one feature.
#[derive(Clone, Debug, Default)]
struct Stats {
    key: String,
    /// A feature list of a SequenceExample (else a context / Example feature).
    list: bool,
    /// The type and the record it was first seen with.
    ftype: Option<(FType, u64)>,
    /// Records holding the feature.
    present: u64,
    /// Records 0..contiguous all hold it.
    contiguous: u64,
    /// The length of its first occurrence, and the first record whose length differs.
    first_len: Option<u64>,
    differs_at: Option<(u64, u64)>,
    /// Bytes of all bytes values.
    bytes: u64,
    values: u64,
    steps: u64,
    max_len: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Dense,
    Values,
    Splits0,
    Splits1,
}

struct Output {
    feature: usize,
    piece: Piece,
    meta: TensorMeta,
}

pub struct ExampleSource {
    path: String,
    files: Vec<PathBuf>,
    parts: Vec<Part>,
    features: Vec<Stats>,
    outputs: Vec<Output>,
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
    if head.len() < 12 || !tfrecord::sniff(head) {
        return false;
    }
    let len = u64::from_le_bytes(head[..8].try_into().unwrap());
    len == 0 || (head.len() > 12 && matches!(head[12], 0x0a | 0x12))
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
    let head = match Compression::sniff(&input.head) {
        Some(c) if !tfrecord::sniff(&input.head) => decompressed_prefix(&input.head, c),
        _ => input.head.clone(),
    };
    if first_record_is_example(&head) {
        Sniff::Yes
    } else {
        Sniff::No
    }
}

/// The first bytes a compressed head decompresses to (as many as it yields, up to 16).
fn decompressed_prefix(head: &[u8], c: Compression) -> Vec<u8> {
    let mut reader: Box<dyn Read> = match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(head)),
        Compression::Zlib => Box::new(flate2::read::ZlibDecoder::new(head)),
    };
    let mut out = [0u8; 16];
    let mut n = 0;
    while n < out.len() {
        match reader.read(&mut out[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    out[..n].to_vec()
}

/// The input's records, decompressed into a temporary file when the stream is compressed.
fn part(input: &Input, opts: &OpenOptions) -> Result<Part> {
    let data = input.data()?.clone();
    let data = match Compression::sniff(&input.head) {
        Some(c) if !tfrecord::sniff(&input.head) => {
            FileRange::whole(input::spool_decompressed(&data, c, opts.max_decompressed)?)?
        }
        _ => data,
    };
    Ok(Part {
        display: input.display.clone(),
        data,
    })
}

fn open_input(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let part = part(input, opts)?;
    Ok(Box::new(ExampleSource::open(
        &input.display,
        input.files.clone(),
        vec![part],
        &opts.example,
    )?))
}

/// `--concat`: several TFRecord files (shards) read as one dataset, records in input order.
pub fn open_concat(paths: &[PathBuf], opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let mut parts = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        let input = super::probe(p).with_context(|| p.display().to_string())?;
        parts.push(part(&input, opts).with_context(|| input.display.clone())?);
        files.extend(input.files);
    }
    let display = match paths {
        [one] => one.display().to_string(),
        [first, rest @ ..] => format!("{} (+{} more)", first.display(), rest.len()),
        [] => bail!("--concat needs at least one input"),
    };
    Ok(Box::new(
        ExampleSource::open(&display, files, parts, &opts.example).context(display.clone())?,
    ))
}

impl ExampleSource {
    /// Pass 1: checks every record of every part and infers each feature's array layout.
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        parts: Vec<Part>,
        opts: &ExampleOptions,
    ) -> Result<ExampleSource> {
        let mut index: HashMap<(bool, Vec<u8>), usize> = HashMap::new();
        let mut features: Vec<Stats> = Vec::new();
        let mut n: u64 = 0;
        for part in &parts {
            let mut records = Records::new(part.data.clone(), true);
            let mut local = 0u64;
            let multi = parts.len() > 1;
            while let Some((offset, rec)) = records.next().with_context(|| {
                if multi {
                    part.display.clone()
                } else {
                    "TFRecord framing".into()
                }
            })? {
                let at = || {
                    if parts.len() > 1 {
                        format!(
                            "{}: record {local} (record {n} of the dataset) at byte offset {offset}",
                            part.display
                        )
                    } else {
                        format!("record {local} at byte offset {offset}")
                    }
                };
                // The entries of this record, last one wins for a repeated key (map semantics).
                let rec: &[u8] = rec;
                let mut found: Vec<(Section, &[u8], &[u8])> = Vec::new();
                example_wire::walk_record(rec, &mut |s, k, v| {
                    found.push((s, k, v));
                    Ok(())
                })
                .with_context(|| format!("{}: malformed Example", at()))?;
                found.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
                for (i, e) in found.iter().enumerate() {
                    if found.get(i + 1).is_some_and(|f| (f.0, f.1) == (e.0, e.1)) {
                        continue;
                    }
                    let (section, key, value) = *e;
                    let list = section == Section::Lists;
                    let Ok(name) = std::str::from_utf8(key) else {
                        bail!("{}: a feature key is not UTF-8 ({:?})", at(), key);
                    };
                    if !opts.features.is_empty() && !opts.features.iter().any(|f| f == name) {
                        continue;
                    }
                    let slot = match index.get(&(list, key.to_vec())) {
                        Some(&s) => s,
                        None => {
                            index.insert((list, key.to_vec()), features.len());
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
                                "{}: {} here, but {} in record {first} (the type of a feature cannot change between records)",
                                what(),
                                t.name(),
                                was.name()
                            ),
                            _ => {}
                        }
                        Ok(())
                    };
                    let count = if list {
                        let mut steps = 0u64;
                        let mut values = 0u64;
                        example_wire::each_step(value, &mut |step| {
                            let c = example_wire::count(step)?;
                            check(c.ftype, st)?;
                            steps += 1;
                            values += c.values;
                            st.max_len = st.max_len.max(c.longest);
                            st.bytes += c.bytes;
                            Ok(())
                        })
                        .with_context(|| format!("{}: malformed feature list", what()))?;
                        st.steps += steps;
                        st.values += values;
                        steps
                    } else {
                        let c = example_wire::count(value)
                            .with_context(|| format!("{}: malformed feature", what()))?;
                        check(c.ftype, st)?;
                        st.values += c.values;
                        st.max_len = st.max_len.max(c.longest);
                        st.bytes += c.bytes;
                        c.values
                    };
                    st.present += 1;
                    if st.contiguous == n {
                        st.contiguous += 1;
                    }
                    match st.first_len {
                        None => st.first_len = Some(count),
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
        let outputs = plan_outputs(&features, n, opts)?;
        Ok(ExampleSource {
            path: path.to_string(),
            files,
            parts,
            features,
            outputs,
        })
    }

    /// Pass 2: walks every record and hands each one's value of feature `f` (or `None`) to
    /// `visit`.
    fn walk(&self, f: usize, visit: &mut dyn FnMut(Option<&[u8]>) -> Result<()>) -> Result<()> {
        let st = &self.features[f];
        let section = if st.list {
            Section::Lists
        } else {
            Section::Context
        };
        let key = st.key.as_bytes();
        for part in &self.parts {
            let mut records = Records::new(part.data.clone(), false);
            let mut local = 0u64;
            while let Some((offset, rec)) = records.next().with_context(|| part.display.clone())? {
                let mut value: Option<&[u8]> = None;
                example_wire::walk_record(rec, &mut |s, k, v| {
                    if s == section && k == key {
                        value = Some(v);
                    }
                    Ok(())
                })
                .and_then(|()| visit(value))
                .with_context(|| {
                    format!(
                        "{}: record {local} at byte offset {offset}: feature '{}'",
                        part.display, st.key
                    )
                })?;
                local += 1;
            }
        }
        Ok(())
    }
}

/// The arrays each feature becomes, in output order.
fn plan_outputs(features: &[Stats], n: u64, opts: &ExampleOptions) -> Result<Vec<Output>> {
    let mut outputs = Vec::new();
    let mut names: BTreeMap<String, ()> = BTreeMap::new();
    for (i, st) in features.iter().enumerate() {
        // A feature seen only with empty `Feature` messages has no type; TensorFlow's parser
        // would need one given, and float32 is what tf.train.Feature() defaults to nowhere, so
        // call it what it most often is in practice: an empty float list.
        let ftype = st.ftype.map_or(FType::Float, |(t, _)| t);
        let (dtype, kind, item) = match ftype {
            FType::Bytes => (DType::String, Kind::String, 0u64),
            FType::Float => (DType::F32, Kind::Dense, 4),
            FType::Int64 => (DType::I64, Kind::Dense, 8),
        };
        let every = st.present == n && st.differs_at.is_none();
        let k = st.first_len.unwrap_or(0);
        let forced_dense = opts.force_dense.contains(&st.key);
        let forced_ragged = opts.force_ragged.contains(&st.key);
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
        let dense = !st.list && !forced_ragged && every && (forced_dense || k >= 1);
        let meta = |name: String, dtype: DType, kind: Kind, shape: Vec<u64>, strings: bool| {
            let elements: u64 = shape.iter().product();
            TensorMeta {
                name,
                dtype,
                kind,
                stored_bytes: if strings {
                    st.bytes
                } else {
                    elements.saturating_mul(dtype.item_size().unwrap_or(1) as u64)
                },
                shape,
                max_string_len: strings.then_some(st.max_len),
                big_endian: false,
                ragged_rank: 0,
            }
        };
        let strings = item == 0;
        let mut push = |piece: Piece, m: TensorMeta| -> Result<()> {
            if names.insert(m.name.clone(), ()).is_some() {
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
        if dense {
            let shape = if k == 1 && !forced_dense {
                vec![n]
            } else {
                vec![n, k]
            };
            push(
                Piece::Dense,
                meta(st.key.clone(), dtype, kind, shape, strings),
            )?;
            continue;
        }
        let key = &st.key;
        push(
            Piece::Values,
            meta(
                format!("{key}/flat_values"),
                dtype,
                kind,
                vec![st.values],
                strings,
            ),
        )?;
        let splits = |name: String, len: u64| {
            meta(
                name,
                DType::I64,
                Kind::Dense,
                vec![len.saturating_add(1)],
                false,
            )
        };
        push(Piece::Splits0, splits(format!("{key}/row_splits_0"), n))?;
        if st.list {
            push(
                Piece::Splits1,
                splits(format!("{key}/row_splits_1"), st.steps),
            )?;
        }
    }
    Ok(outputs)
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

impl Source for ExampleSource {
    fn display_path(&self) -> &str {
        &self.path
    }
    fn len(&self) -> usize {
        self.outputs.len()
    }
    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.outputs[index].meta.clone())
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let out = &self.outputs[index];
        let (f, piece) = (out.feature, out.piece);
        let expected = out.meta.num_elements()?;
        let list = self.features[f].list;
        let ftype = self.features[f].ftype.map_or(FType::Float, |(t, _)| t);
        if ftype == FType::Bytes && matches!(piece, Piece::Dense | Piece::Values) {
            bail!("'{}' holds strings", out.meta.name);
        }
        let item = out.meta.dtype.item_size().unwrap_or(8);
        let mut chunker = Chunker::new(chunk, item, sink);
        let mut written = 0u64;
        let mut total = 0i64;
        if matches!(piece, Piece::Splits0 | Piece::Splits1) {
            chunker.push(&0i64.to_le_bytes())?;
            written += 1;
        }
        let width = self.outputs[index].meta.shape.get(1).copied();
        self.walk(f, &mut |value| {
            match piece {
                Piece::Dense | Piece::Values => {
                    let mut c = 0u64;
                    let mut emit = |v: example_wire::Value| -> Result<()> {
                        c += 1;
                        match v {
                            example_wire::Value::Float(x) => chunker.push(&x.to_le_bytes()),
                            example_wire::Value::Int64(x) => chunker.push(&x.to_le_bytes()),
                            example_wire::Value::Bytes(_) => bail!("unexpected bytes value"),
                        }
                    };
                    if let Some(v) = value {
                        if list {
                            example_wire::each_step(v, &mut |s| {
                                example_wire::values(s, &mut emit)
                            })?;
                        } else {
                            example_wire::values(v, &mut emit)?;
                        }
                    }
                    if piece == Piece::Dense && c != width.unwrap_or(1) {
                        bail!("the record changed since it was first read ({c} values)");
                    }
                    written += c;
                }
                Piece::Splits0 => {
                    let c = match value {
                        None => 0,
                        Some(v) if list => {
                            let mut steps = 0i64;
                            example_wire::each_step(v, &mut |_| {
                                steps += 1;
                                Ok(())
                            })?;
                            steps
                        }
                        Some(v) => example_wire::count(v)?.values as i64,
                    };
                    total += c;
                    chunker.push(&total.to_le_bytes())?;
                    written += 1;
                }
                Piece::Splits1 => {
                    if let Some(v) = value {
                        example_wire::each_step(v, &mut |s| {
                            total += example_wire::count(s)?.values as i64;
                            written += 1;
                            chunker.push(&total.to_le_bytes())
                        })?;
                    }
                }
            }
            Ok(())
        })?;
        if written != expected {
            bail!(
                "'{}' has {written} elements, {expected} were found when the file was opened (did it change?)",
                self.outputs[index].meta.name
            );
        }
        chunker.finish()
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let out = &self.outputs[index];
        let f = out.feature;
        let list = self.features[f].list;
        let expected = out.meta.num_elements()?;
        let width = out.meta.shape.get(1).copied().unwrap_or(1);
        let dense = out.piece == Piece::Dense;
        let mut written = 0u64;
        self.walk(f, &mut |value| {
            let mut c = 0u64;
            let mut emit = |v: example_wire::Value| -> Result<()> {
                c += 1;
                match v {
                    example_wire::Value::Bytes(b) => sink(b),
                    _ => bail!("unexpected numeric value in a bytes feature"),
                }
            };
            if let Some(v) = value {
                if list {
                    example_wire::each_step(v, &mut |s| example_wire::values(s, &mut emit))?;
                } else {
                    example_wire::values(v, &mut emit)?;
                }
            }
            if dense && c != width {
                bail!("the record changed since it was first read ({c} values)");
            }
            written += c;
            Ok(())
        })?;
        if written != expected {
            bail!(
                "'{}' has {written} elements, {expected} were found when the file was opened (did it change?)",
                self.outputs[index].meta.name
            );
        }
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}
