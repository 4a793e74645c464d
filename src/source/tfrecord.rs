//! TFRecord reader: `u64 length | masked crc32c(length) | data | masked crc32c(data)`, repeated,
//! each record a serialized TensorProto. Compressed files (GZIP or ZLIB wrap the whole stream)
//! are decompressed once into an unlinked temporary file by `input`. Every CRC is verified when
//! the file is opened, so a corrupt record fails before anything is written; afterwards only
//! each record's position is kept (16 bytes a record), and its TensorProto is re-walked on
//! demand, so a file of millions of small records is never held in memory.

use std::cell::RefCell;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::input::{self, Compression, FileRange};
use crate::source::proto::mask_crc;
use crate::source::tensorproto::ScannedTensor;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{ChunkSink, Source, TensorMeta};

pub static READER: Reader = Reader {
    name: "tfrecord",
    about: "TFRecord files (plain, GZIP or ZLIB) of serialized tensors",
    extensions: &[".tfrecord", ".tfrecords", ".gz", ".zz"],
    sniff: sniff_input,
    open,
};

/// A record header whose length CRC checks out; or a GZIP / ZLIB stream, which only
/// TFRecords are compressed as. Only `Maybe` when the first record is a `tf.train.Example`, so
/// that the Example reader wins even for names that end in `.gz` / `.zz` only (TFDS shards
/// `train.tfrecord-00000-of-00004.gz`); the same for TensorBoard event files, whichever their
/// name.
fn sniff_input(input: &Input) -> Sniff {
    if !(sniff(&input.head) || Compression::sniff(&input.head).is_some()) {
        Sniff::No
    } else if (super::example::READER.sniff)(input) == Sniff::Yes
        || (super::tfevents::READER.sniff)(input) == Sniff::Yes
    {
        Sniff::Maybe
    } else {
        Sniff::Yes
    }
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let data = input.data()?.clone();
    let (data, spooled) = match Compression::sniff(&input.head) {
        Some(c) if !sniff(&input.head) => (
            FileRange::whole(input::spool_decompressed(&data, c, opts.max_decompressed)?)?,
            true,
        ),
        _ => (data, false),
    };
    let mut src = TfRecordSource::open(
        &input.display,
        input.files.clone(),
        data,
        &input.stem,
        opts.stack,
        opts.max_fill_bytes,
    )?;
    src.spooled = spooled;
    Ok(Box::new(src))
}

/// Small records are read through one in-memory window of this many bytes, a single `pread`
/// per window instead of several per record.
const WINDOW: u64 = 1 << 20;

/// A read-ahead window over the file: ranges that fit are served from memory.
struct Window {
    data: FileRange,
    cached: Option<(u64, FileRange)>,
}

impl Window {
    fn range(&mut self, offset: u64, len: u64) -> Result<FileRange> {
        if let Some((start, w)) = &self.cached {
            if offset >= *start && offset + len <= start + w.len() {
                return w.slice(offset - start, len);
            }
        }
        if len > WINDOW / 2 {
            return self.data.slice(offset, len);
        }
        let n = WINDOW.min(self.data.len().saturating_sub(offset));
        let w = FileRange::from_vec(self.data.read_vec(offset, n as usize)?);
        let r = w.slice(0, len)?;
        self.cached = Some((offset, w));
        Ok(r)
    }
}

pub struct TfRecordSource {
    path: String,
    files: Vec<PathBuf>,
    window: RefCell<Window>,
    /// The record scanned last, since `meta` and `read_*` ask for the same one in turn.
    last: RefCell<Option<(usize, ScannedTensor)>>,
    stem: String,
    /// (offset, length) of each record's payload.
    records: Vec<(u64, u64)>,
    /// With `--stack`: the one tensor all records form.
    stacked: Option<TensorMeta>,
    max_fill: u64,
    /// Inflated from a compressed file: a second copy would inflate it all again.
    spooled: bool,
}

/// True when the first 12 bytes are a record header whose length CRC checks out.
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 12
        && mask_crc(crc32c::crc32c(&head[..8]))
            == u32::from_le_bytes(head[8..12].try_into().unwrap())
}

impl TfRecordSource {
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        stem: &str,
        stack: bool,
        max_fill: u64,
    ) -> Result<Self> {
        let mut records = Vec::new();
        let mut stacked: Option<TensorMeta> = None;
        let mut pos: u64 = 0;
        let total = data.len();
        let mut window = Window {
            data: data.clone(),
            cached: None,
        };
        while pos < total {
            crate::error::check_interrupted()?;
            let index = records.len();
            let at = || format!("record {index} at byte offset {pos}");
            if total - pos < 12 {
                bail!("{}: truncated header ({} bytes left)", at(), total - pos);
            }
            let header = window.range(pos, 12)?.read_vec(0, 12)?;
            let len = u64::from_le_bytes(header[..8].try_into().unwrap());
            let stored = u32::from_le_bytes(header[8..].try_into().unwrap());
            if mask_crc(crc32c::crc32c(&header[..8])) != stored {
                if index == 0 {
                    bail!("not a TFRecord file: its first 12 bytes are not a record header (the length checksum does not match)");
                }
                bail!("{}: length checksum mismatch (corrupt file)", at());
            }
            let body_start = pos + 12;
            if len > total - body_start || total - body_start - len < 4 {
                bail!(
                    "{}: truncated (the record claims {len} bytes, {} remain)",
                    at(),
                    total - body_start
                );
            }
            let body = window.range(body_start, len)?;
            let mut crc = 0u32;
            body.stream(1, 1 << 20, &mut |c: &[u8]| {
                crc = crc32c::crc32c_append(crc, c);
                Ok(())
            })?;
            let trailer = window.range(body_start + len, 4)?.read_vec(0, 4)?;
            if mask_crc(crc) != u32::from_le_bytes(trailer[..].try_into().unwrap()) {
                bail!("{}: data checksum mismatch (corrupt file)", at());
            }
            crate::checksum::verified(2);
            if len == 0 {
                bail!(
                    "{}: the record is empty, not a serialized TensorProto",
                    at()
                );
            }
            let t = ScannedTensor::scan(&body, max_fill).with_context(at)?;
            if stack {
                match &mut stacked {
                    None => stacked = Some(t.meta(stem.to_string())),
                    Some(first) => {
                        if t.dtype != first.dtype || t.shape != first.shape {
                            bail!(
                                "--stack needs records of one dtype and shape: record 0 is {} {:?}, record {index} is {} {:?}",
                                first.dtype, first.shape, t.dtype, t.shape
                            );
                        }
                        first.max_string_len =
                            first.max_string_len.map(|m| m.max(t.max_string_len));
                    }
                }
            }
            records.push((body_start, len));
            pos = body_start + len + 4;
        }
        if stack {
            let meta = stacked
                .as_mut()
                .context("--stack needs at least one record")?;
            meta.shape.insert(0, records.len() as u64);
            meta.stored_bytes = total;
        }
        Ok(TfRecordSource {
            path: path.to_string(),
            files,
            window: RefCell::new(window),
            last: RefCell::new(None),
            stem: stem.to_string(),
            records,
            stacked,
            max_fill,
            spooled: false,
        })
    }

    fn record(&self, i: usize) -> Result<ScannedTensor> {
        if let Some((j, t)) = &*self.last.borrow() {
            if *j == i {
                return Ok(t.clone());
            }
        }
        let (offset, len) = self.records[i];
        let range = self.window.borrow_mut().range(offset, len)?;
        let t = ScannedTensor::scan(&range, self.max_fill)
            .with_context(|| format!("record {i} at byte offset {}", offset - 12))?;
        *self.last.borrow_mut() = Some((i, t.clone()));
        Ok(t)
    }

    /// The records tensor `index` is made of.
    fn parts(&self, index: usize) -> std::ops::Range<usize> {
        if self.stacked.is_some() {
            0..self.records.len()
        } else {
            index..index + 1
        }
    }
}

impl Source for TfRecordSource {
    fn parallel_reads(&self, _index: usize) -> bool {
        !self.spooled
    }

    fn display_path(&self) -> &str {
        &self.path
    }
    fn len(&self) -> usize {
        if self.stacked.is_some() {
            1
        } else {
            self.records.len()
        }
    }
    fn meta(&self, index: usize) -> Result<TensorMeta> {
        match &self.stacked {
            Some(m) => Ok(m.clone()),
            None => Ok(self.record(index)?.meta(format!("{}/{index}", self.stem))),
        }
    }
    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        for i in self.parts(index) {
            self.record(i)?.read_dense(chunk, sink)?;
        }
        Ok(())
    }
    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        for i in self.parts(index) {
            self.record(i)?.read_strings(sink)?;
        }
        Ok(())
    }
    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}
