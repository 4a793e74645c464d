//! TensorBoard event file reader (`events.out.tfevents.*`): TFRecord-framed `Event` protos,
//! read in 1 MiB pieces by the record reader of `container::tfrecord` with every length and data
//! CRC checked when the file is opened. Every summary value that carries a tensor becomes `<tag>/<step>`: TF2
//! `tensor` values (their TensorProto, decoded by `tensorproto.rs`), TF1 `simple_value` as a
//! float32 scalar, TF1 `histo` (HistogramProto) as the `[k, 3]` float64 tensor of (left edge,
//! right edge, count) TF2's `tf.summary.histogram` writes, converted as TensorBoard's
//! `data_compat` does (empty buckets at both ends dropped, the outer edges replaced by min and
//! max; in float64, where TensorBoard rounds through float32). The file-version event, graphs,
//! run metadata, log messages, and TF1 images and audio are left out. With `--stack`, each tag's
//! values over its steps become `<tag>` (`[N, ...]`) beside `<tag>/step` (int64) and
//! `<tag>/wall_time` (float64). A tag logged twice at one step keeps its last value (a note
//! says so) unless stacked.
//!
//! Only positions are kept per value, so a long training log costs little memory: when the file
//! is opened, each Event and its tensors are walked (with `container::protobuf`) in the record's
//! bytes, already in memory; when a value is read, its tensor is scanned again from a
//! `cursor::Window` over the file, so that values stored close together cost one read, not
//! one per protobuf field.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use crate::container::cursor::Window;
use crate::container::protobuf::{self as pbwalk, Value};
use crate::container::tfrecord::{self, Records, HEADER};
use crate::dtype::DType;
use crate::input;
use crate::input::FileRange;
use crate::source::chain::Chain;
use crate::source::proto::{Dim, TensorShapeProto};
use crate::source::tensorproto::ScannedTensor;
use crate::source::{folder, Input, OpenOptions, Reader, Sniff};
use crate::tensor::{ChunkSink, InputFacts, Kind, Source, TensorMeta};

/// Values are read through a window of this many bytes.
const WINDOW: usize = 1 << 20;

pub static READER: Reader = Reader {
    name: "tfevents",
    about: "TensorBoard event files (events.out.tfevents.*) of tf.summary values",
    extensions: &[],
    sniff: sniff_input,
    open,
};

/// Deepest subfolder of a log directory searched for event files (`runs/exp1/train/`).
const DIR_DEPTH: usize = 4;
/// Most event files of one log directory (each is held open).
const DIR_FILES: usize = 512;

fn is_event_file(name: &str) -> bool {
    name.contains("tfevents")
}

/// A TFRecord whose file name says `tfevents`, or whose first record is an Event with a
/// `file_version` of `brain.Event:...` (what every summary writer writes first). A directory is
/// left to [`is_log_dir`], which the registry asks only about folders no other reader claims.
fn sniff_input(input: &Input) -> Sniff {
    if input.is_dir {
        return Sniff::No;
    }
    if !tfrecord::is_header(&input.head) {
        return Sniff::No;
    }
    let named = input
        .path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("tfevents"));
    if named || first_is_file_version(&input.head) {
        Sniff::Yes
    } else {
        Sniff::No
    }
}

/// A local directory with event files in it or its subfolders (a TensorBoard log directory): the
/// walk stops at the second one found (or at a folder it cannot list, which `open` then names).
pub fn is_log_dir(input: &Input) -> bool {
    if !input.is_dir || input::url_of(&input.path).is_some() {
        return false;
    }
    !matches!(folder::files_under(&input.path, DIR_DEPTH, 1, &is_event_file), Ok(f) if f.is_empty())
}

fn first_is_file_version(head: &[u8]) -> bool {
    let Some(payload) = tfrecord::first_payload(head)
        .filter(|p| tfrecord::header_len(head) == Some(p.len() as u64))
    else {
        return false;
    };
    let mut version = false;
    let walk = pbwalk::for_each_field(&FileRange::from_vec(payload.to_vec()), |f, v| {
        if let (3, Value::Len(r)) = (f, v) {
            version = r.len() < 64 && pbwalk::string(&r)?.starts_with("brain.Event:");
        }
        Ok(())
    });
    walk.is_ok() && version
}

/// Where a value's tensor comes from.
#[derive(Clone, Copy, Debug)]
enum What {
    /// A TensorProto at this file offset, of this many bytes.
    Tensor(u64, u64),
    /// A TF1 `simple_value`.
    Simple(f32),
    /// A TF1 HistogramProto at this file offset, of this many bytes.
    Histo(u64, u64),
}

#[derive(Clone, Copy, Debug)]
struct Event {
    tag: u32,
    step: i64,
    wall_time: f64,
    what: What,
}

/// One output tensor.
#[derive(Clone, Copy)]
enum Out {
    One(u32),
    /// A tag's values stacked over its steps, its steps, its wall times.
    Stack(u32),
    Steps(u32),
    Walls(u32),
}

pub struct TfEventsSource {
    path: String,
    files: Vec<PathBuf>,
    /// The file, read through one window: values are read in file order.
    data: RefCell<Window>,
    max_fill: u64,
    tags: Vec<String>,
    events: Vec<Event>,
    /// With `--stack`: each tag's events in file order, and its stacked metadata.
    by_tag: Vec<Vec<u32>>,
    stacked: Vec<Option<TensorMeta>>,
    outs: Vec<Out>,
    notes: Vec<String>,
}

/// What the command line sets for TensorBoard event files.
#[derive(Clone, Debug, Default)]
pub struct TfEventsOptions {
    /// `--stack`: each tag's values over its steps as one array, beside its steps and times.
    pub stack: bool,
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    if input.is_dir {
        return open_dir(input, opts);
    }
    let data = input.data()?.clone();
    let src = TfEventsSource::open(
        &input.display,
        input.files.clone(),
        data,
        opts.tfevents.stack,
        opts.max_fill_bytes,
    )?;
    Ok(Box::new(src))
}

/// A log directory: its event files (sorted by path) read one after the other as one input,
/// each file's tensors named under its folder relative to the directory (`train/loss/3`); a
/// name two files give is an error naming both (the chain's rule).
fn open_dir(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let files = folder::files_under(&input.path, DIR_DEPTH, DIR_FILES, &is_event_file)
        .with_context(|| input.display.clone())?;
    if files.is_empty() {
        bail!(
            "{}: no TensorBoard event file (events.out.tfevents.*) in it or in its subfolders",
            input.display
        );
    }
    let mut chain = Chain::new(&input.display);
    for rel in files {
        let part = super::probe(&input.path.join(&rel))?;
        let mut src = TfEventsSource::open(
            &part.display,
            part.files.clone(),
            part.data()?.clone(),
            opts.tfevents.stack,
            opts.max_fill_bytes,
        )
        .with_context(|| part.display.clone())?;
        if let Some(dir) = rel.parent().filter(|d| !d.as_os_str().is_empty()) {
            src.prefix_tags(&format!("{}/", dir.to_string_lossy()));
        }
        for note in &src.notes {
            chain.add_note(format!("{}: {note}", part.display));
        }
        let pushed = chain.push_held(Box::new(src));
        if opts.tfevents.stack {
            // a writer restarted in one folder writes a second file with the same tags
            pushed.context(
                "--stack stacks the tags of each event file by themselves, and two files of \
                 one folder give the same tag: convert without --stack, or each file by itself",
            )?;
        } else {
            pushed?;
        }
    }
    Ok(Box::new(chain.finish()))
}

impl TfEventsSource {
    /// Names every tensor under `prefix` (a log directory's subfolder, `train/`).
    fn prefix_tags(&mut self, prefix: &str) {
        for t in &mut self.tags {
            t.insert_str(0, prefix);
        }
        for m in self.stacked.iter_mut().flatten() {
            m.name.insert_str(0, prefix);
        }
    }

    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        stack: bool,
        max_fill: u64,
    ) -> Result<TfEventsSource> {
        let mut src = TfEventsSource {
            path: path.to_string(),
            files,
            data: RefCell::new(Window::new(data.clone(), WINDOW)),
            max_fill,
            tags: Vec::new(),
            events: Vec::new(),
            by_tag: Vec::new(),
            stacked: Vec::new(),
            outs: Vec::new(),
            notes: Vec::new(),
        };
        let mut tag_ids: HashMap<String, u32> = HashMap::new();
        let mut skipped: HashMap<&'static str, u64> = HashMap::new();
        // a writer that is still running leaves its last record cut short: TensorBoard reads
        // the records before it, and so does this (with a note)
        let mut records = Records::new(data, true).stop_at_cut();
        let mut index = 0u64;
        while let Some((pos, payload)) = records.next()? {
            crate::error::check_interrupted()?;
            let at = format!("record {index} at byte offset {pos}");
            index += 1;
            let payload = FileRange::from_vec(payload.to_vec());
            let body = pos + HEADER;
            let found = scan_event(&payload)
                .and_then(|(step, wall_time, values)| {
                    for (tag, what) in values {
                        let what = match what {
                            Ok(w) => w,
                            Err(kind) => {
                                *skipped.entry(kind).or_default() += 1;
                                continue;
                            }
                        };
                        let next = tag_ids.len() as u32;
                        let id = *tag_ids.entry(tag.clone()).or_insert(next);
                        if id == next {
                            src.tags.push(tag);
                        }
                        src.scan_in(what, &payload).with_context(|| {
                            format!("tag '{}' step {step}", src.tags[id as usize])
                        })?;
                        src.events.push(Event {
                            tag: id,
                            step,
                            wall_time,
                            what: what.at(body),
                        });
                    }
                    Ok(())
                })
                .with_context(|| at.clone());
            found?;
        }
        if let Some(at) = records.cut() {
            src.notes.push(format!(
                "the file ends inside record {index} (byte offset {at}), as one still being \
                 written does: the {index} complete records before it are read, as TensorBoard \
                 reads them"
            ));
        }
        let mut kinds: Vec<_> = skipped.into_iter().collect();
        kinds.sort();
        for (kind, n) in kinds {
            src.notes.push(format!(
                "left out {n} {kind} summary value(s), which carry no tensor"
            ));
        }
        if stack {
            src.stack()?;
        } else {
            src.unstacked();
        }
        Ok(src)
    }

    /// One output per tag and step; a repeated (tag, step) keeps its last value.
    fn unstacked(&mut self) {
        let mut last: HashMap<(u32, i64), usize> = HashMap::new();
        for (i, e) in self.events.iter().enumerate() {
            last.insert((e.tag, e.step), i);
        }
        let mut repeated = 0u64;
        for (i, e) in self.events.iter().enumerate() {
            if last[&(e.tag, e.step)] == i {
                self.outs.push(Out::One(i as u32));
            } else {
                repeated += 1;
            }
        }
        if repeated > 0 {
            self.notes.push(format!(
                "{repeated} value(s) logged again later under the same tag and step were replaced by the later one"
            ));
        }
    }

    /// Each tag's values over its steps, checked to share one dtype and shape.
    fn stack(&mut self) -> Result<()> {
        self.by_tag = vec![Vec::new(); self.tags.len()];
        for (i, e) in self.events.iter().enumerate() {
            self.by_tag[e.tag as usize].push(i as u32);
        }
        for (t, list) in self.by_tag.iter().enumerate() {
            let tag = &self.tags[t];
            let mut meta: Option<TensorMeta> = None;
            for &i in list {
                let e = self.events[i as usize];
                let s = self.scan(&e)?;
                match &mut meta {
                    None => meta = Some(s.meta(tag.clone())),
                    Some(m) => {
                        if s.dtype != m.dtype || s.shape != m.shape[..] {
                            bail!(
                                "--stack needs one dtype and shape per tag: tag '{tag}' is {} {:?} at its first step and {} {:?} at step {}",
                                m.dtype, m.shape, s.dtype, s.shape, e.step
                            );
                        }
                        m.max_string_len = m.max_string_len.map(|l| l.max(s.max_string_len));
                        m.stored_bytes += s.stored_bytes;
                    }
                }
            }
            let mut meta = meta.expect("a tag has at least one value");
            meta.shape.insert(0, list.len() as u64);
            self.stacked.push(Some(meta));
            let t = t as u32;
            self.outs
                .extend([Out::Stack(t), Out::Steps(t), Out::Walls(t)]);
        }
        Ok(())
    }

    /// The value of event `e` as a validated TensorProto, read from the file.
    fn scan(&self, e: &Event) -> Result<ScannedTensor> {
        let (o, n, what) = match e.what {
            What::Tensor(o, n) => (o, n, What::Tensor(0, n)),
            What::Histo(o, n) => (o, n, What::Histo(0, n)),
            w => (0, 0, w),
        };
        let bytes = if n <= WINDOW as u64 / 2 {
            let mut w = self.data.borrow_mut();
            FileRange::from_vec(w.get(o, n as usize)?.to_vec())
        } else {
            self.data.borrow().range().slice(o, n)?
        };
        self.scan_in(what, &bytes)
    }

    /// A value as a validated TensorProto, its bytes at `what`'s offsets in `from`.
    fn scan_in(&self, what: What, from: &FileRange) -> Result<ScannedTensor> {
        let range = match what {
            What::Tensor(o, n) => from.slice(o, n)?,
            What::Simple(v) => FileRange::from_vec(tensor_proto(1, &[], &v.to_le_bytes())),
            What::Histo(o, n) => {
                FileRange::from_vec(histogram(&from.slice(o, n)?).context("histogram")?)
            }
        };
        ScannedTensor::scan(&range, self.max_fill)
    }

    fn event(&self, i: u32) -> Result<ScannedTensor> {
        let e = &self.events[i as usize];
        self.scan(e)
            .with_context(|| format!("tag '{}' step {}", self.tags[e.tag as usize], e.step))
    }

    /// The events tensor `index` is read from, in order.
    fn parts(&self, index: usize) -> Vec<u32> {
        match self.outs[index] {
            Out::One(i) => vec![i],
            Out::Stack(t) => self.by_tag[t as usize].clone(),
            Out::Steps(_) | Out::Walls(_) => Vec::new(),
        }
    }

    /// The bytes of `<tag>/step` (int64) or `<tag>/wall_time` (float64).
    fn column(&self, index: usize) -> Option<Vec<u8>> {
        let (t, steps) = match self.outs[index] {
            Out::Steps(t) => (t, true),
            Out::Walls(t) => (t, false),
            _ => return None,
        };
        let list = &self.by_tag[t as usize];
        let mut out = Vec::with_capacity(list.len() * 8);
        for &i in list {
            let e = &self.events[i as usize];
            out.extend_from_slice(&match steps {
                true => e.step.to_le_bytes(),
                false => e.wall_time.to_le_bytes(),
            });
        }
        Some(out)
    }
}

impl Source for TfEventsSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.outs.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        let column = |t: u32, suffix: &str, dtype: DType| TensorMeta {
            name: format!("{}/{suffix}", self.tags[t as usize]),
            dtype,
            shape: vec![self.by_tag[t as usize].len() as u64],
            kind: Kind::Dense,
            stored_bytes: 8 * self.by_tag[t as usize].len() as u64,
            max_string_len: None,
            big_endian: false,
            ragged_rank: 0,
            facts: Default::default(),
        };
        Ok(match self.outs[index] {
            Out::One(i) => {
                let e = &self.events[i as usize];
                self.event(i)?
                    .meta(format!("{}/{}", self.tags[e.tag as usize], e.step))
            }
            Out::Stack(t) => self.stacked[t as usize].clone().expect("stacked"),
            Out::Steps(t) => column(t, "step", DType::I64),
            Out::Walls(t) => column(t, "wall_time", DType::F64),
        })
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        if let Some(bytes) = self.column(index) {
            return FileRange::from_vec(bytes).stream(8, chunk, sink);
        }
        for i in self.parts(index) {
            self.event(i)?.read_dense(chunk, sink)?;
        }
        Ok(())
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        for i in self.parts(index) {
            self.event(i)?.read_strings(sink)?;
        }
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts::with_notes(&self.notes)
    }
}

/// What a summary value holds: its tensor, or the kind of value that carries none.
type Found = std::result::Result<What, &'static str>;

impl What {
    /// Offsets within the record's payload made file offsets.
    fn at(self, body: u64) -> What {
        match self {
            What::Tensor(o, n) => What::Tensor(body + o, n),
            What::Histo(o, n) => What::Histo(body + o, n),
            w => w,
        }
    }
}

/// Walks one Event: its step, wall time, and the summary values with what each holds (offsets
/// within `payload`). Events without a summary (the file version, graphs, log messages) give
/// no values.
#[allow(clippy::type_complexity)]
fn scan_event(payload: &FileRange) -> Result<(i64, f64, Vec<(String, Found)>)> {
    let (mut step, mut wall_time) = (0i64, 0f64);
    let mut summaries = Vec::new();
    pbwalk::for_each_field(payload, |f, v| {
        match (f, v) {
            (1, Value::Fixed64(r)) => {
                wall_time = f64::from_le_bytes(r.read_vec(0, 8)?.try_into().unwrap())
            }
            (2, Value::Varint(x)) => step = x as i64,
            (5, v) => summaries.push(pbwalk::len(5, "summary", v)?),
            (1 | 2, v) => bail!("Event field {f} has wire type {}", v.wire()),
            _ => {}
        }
        Ok(())
    })
    .context("not an Event")?;
    let mut values = Vec::new();
    for summary in summaries {
        pbwalk::for_each_field(&summary, |f, v| {
            if f == 1 {
                values.push(summary_value(&pbwalk::len(1, "value", v)?)?);
            }
            Ok(())
        })
        .context("malformed Summary")?;
    }
    Ok((step, wall_time, values))
}

/// One `Summary.Value`: its tag, and its tensor (the last of the `value` oneof wins, as in
/// protobuf).
fn summary_value(r: &FileRange) -> Result<(String, Found)> {
    let mut tag = String::new();
    let mut what: Found = Err("empty");
    pbwalk::for_each_field(r, |f, v| {
        let span = |v: &Value| match v {
            Value::Len(r) => Ok((r.file_offset(), r.len())),
            v => bail!("field {f} has wire type {}", v.wire()),
        };
        match f {
            1 => tag = pbwalk::string(&pbwalk::len(1, "tag", v)?)?,
            2 => match v {
                Value::Fixed32(r) => {
                    what = Ok(What::Simple(f32::from_le_bytes(
                        r.read_vec(0, 4)?.try_into().unwrap(),
                    )))
                }
                v => bail!("simple_value has wire type {}", v.wire()),
            },
            3 => what = Err("obsolete histogram"),
            4 => what = Err("image"),
            5 => what = Ok(span(&v).map(|(o, n)| What::Histo(o, n))?),
            6 => what = Err("audio"),
            8 => what = Ok(span(&v).map(|(o, n)| What::Tensor(o, n))?),
            _ => {}
        }
        Ok(())
    })
    .context("malformed Summary.Value")?;
    Ok((tag, what))
}

/// A serialized TensorProto: dtype, shape, and `tensor_content`.
fn tensor_proto(dtype: u64, shape: &[u64], content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 32);
    encode_key(1, WireType::Varint, &mut out);
    encode_varint(dtype, &mut out);
    let shape = TensorShapeProto {
        dim: shape
            .iter()
            .map(|&d| Dim {
                size: d as i64,
                name: Vec::new(),
            })
            .collect(),
        unknown_rank: false,
    }
    .encode_to_vec();
    encode_key(2, WireType::LengthDelimited, &mut out);
    encode_varint(shape.len() as u64, &mut out);
    out.extend_from_slice(&shape);
    if !content.is_empty() {
        encode_key(4, WireType::LengthDelimited, &mut out);
        encode_varint(content.len() as u64, &mut out);
        out.extend_from_slice(content);
    }
    out
}

/// The most buckets a histogram may have (TensorFlow's default has 30 or so).
const MAX_BUCKETS: usize = 1 << 20;

/// A HistogramProto as the `[k, 3]` float64 TensorProto of (left edge, right edge, count),
/// converted as TensorBoard's `data_compat._migrate_histogram_value` does, in float64.
fn histogram(r: &FileRange) -> Result<Vec<u8>> {
    let (mut min, mut max) = (0f64, 0f64);
    let (mut limits, mut counts) = (Vec::new(), Vec::new());
    pbwalk::for_each_field(r, |f, v| {
        let doubles = |v: Value, into: &mut Vec<f64>| -> Result<()> {
            let bytes = match v {
                Value::Fixed64(r) | Value::Len(r) => r,
                v => bail!("field {f} has wire type {}", v.wire()),
            };
            if bytes.len() % 8 != 0 || into.len() + (bytes.len() / 8) as usize > MAX_BUCKETS {
                bail!(
                    "field {f} holds {} bytes, not a list of at most {MAX_BUCKETS} doubles",
                    bytes.len()
                );
            }
            let b = bytes.read_vec(0, bytes.len() as usize)?;
            into.extend(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap())),
            );
            Ok(())
        };
        match (f, v) {
            (1, Value::Fixed64(r)) => {
                min = f64::from_le_bytes(r.read_vec(0, 8)?.try_into().unwrap())
            }
            (2, Value::Fixed64(r)) => {
                max = f64::from_le_bytes(r.read_vec(0, 8)?.try_into().unwrap())
            }
            (6, v) => doubles(v, &mut limits)?,
            (7, v) => doubles(v, &mut counts)?,
            _ => {}
        }
        Ok(())
    })
    .context("malformed HistogramProto")?;
    let start = counts.iter().position(|&c| c > 0.0);
    let end = counts.iter().rposition(|&c| c > 0.0);
    let mut content = Vec::new();
    let k = match (start, end) {
        (Some(start), Some(end)) => {
            if limits.len() < end {
                bail!(
                    "{} buckets but {} bucket limits",
                    counts.len(),
                    limits.len()
                );
            }
            let inner = &limits[start..end];
            let lefts = std::iter::once(min).chain(inner.iter().copied());
            let rights = inner.iter().copied().chain(std::iter::once(max));
            for ((l, r), c) in lefts.zip(rights).zip(&counts[start..=end]) {
                for x in [l, r, *c] {
                    content.extend_from_slice(&x.to_le_bytes());
                }
            }
            end - start + 1
        }
        _ => 0,
    };
    Ok(tensor_proto(2, &[k as u64, 3], &content))
}
