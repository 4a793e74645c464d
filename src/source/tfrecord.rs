//! TFRecord reader: TFRecord files whose records are each a serialized TensorProto. The framing
//! (headers, CRCs, GZIP / ZLIB streams decompressed once into an unlinked temporary file) is
//! `container::tfrecord`'s; this reader interprets the payloads with `tensorproto.rs`. Every
//! CRC is verified when the file is opened, so a corrupt record fails before anything is
//! written; afterwards only each record's position is kept (16 bytes a record), and its
//! TensorProto is re-walked on demand, so a file of millions of small records is never held in
//! memory. A `tf.data.Dataset.save` folder is refused with a message saying what its files are.

use std::cell::RefCell;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::container::tfrecord::{self, Records, HEADER};
use crate::input::FileRange;
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

/// A TFRecord (plain, or a GZIP / ZLIB stream, which only TFRecords are compressed as):
/// `Yes` when its first record starts like a serialized TensorProto (its `dtype` field, key
/// 0x08, which `tf.io.serialize_tensor` always writes first), `Maybe` for records of anything
/// else, so that the readers of other payloads (Example datasets, TensorBoard events) win even
/// for names that end in `.tfrecord`, `.gz` or `.zz`.
fn sniff_input(input: &Input) -> Sniff {
    if input.is_dir {
        return match is_dataset_save(&input.path) {
            true => Sniff::Yes,
            false => Sniff::No,
        };
    }
    if !(tfrecord::is_header(&input.head) || tfrecord::compression(&input.head).is_some()) {
        return Sniff::No;
    }
    let head = tfrecord::records_head(&input.head);
    match tfrecord::first_payload(&head) {
        Some([0x08, ..]) => Sniff::Yes,
        _ => Sniff::Maybe,
    }
}

/// What the command line sets for TFRecords of serialized tensors.
#[derive(Clone, Debug, Default)]
pub struct TfRecordOptions {
    /// `--stack`: records of one dtype and shape as one `[N, ...]` array named after the input.
    pub stack: bool,
}

/// A `tf.data.Dataset.save` (or `snapshot`) folder: `snapshot.metadata` and
/// `dataset_spec.pb` beside `<run>/<shard>.shard/*.snapshot` files.
fn is_dataset_save(dir: &std::path::Path) -> bool {
    ["snapshot.metadata", "dataset_spec.pb"]
        .iter()
        .all(|f| crate::input::is_file(&dir.join(f)))
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    if input.is_dir {
        bail!(
            "{}: a tf.data Dataset.save (snapshot) folder, which tensor2npy does not read as a \
             dataset (tf.data.Dataset.load does); each of its <run>/<shard>.shard/*.snapshot \
             files, uncompressed or GZIP, converts as a TFRecord of serialized tensors: one \
             record per component of each element, in element order",
            input.display
        );
    }
    let opened = tfrecord::open(input.data()?, &input.head, opts.max_decompressed)?;
    let mut src = TfRecordSource::open(
        &input.display,
        input.files.clone(),
        opened.data,
        &input.stem,
        opts.tfrecord.stack,
        opts.max_fill_bytes,
    )?;
    src.spooled = opened.spooled;
    Ok(Box::new(src))
}

pub struct TfRecordSource {
    path: String,
    files: Vec<PathBuf>,
    /// The records, read again by position.
    reread: RefCell<Records>,
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
        let total = data.len();
        if total >= HEADER && !tfrecord::is_header(&data.read_vec(0, HEADER as usize)?) {
            bail!("not a TFRecord file: its first 12 bytes are not a record header (the length checksum does not match)");
        }
        let mut reader = Records::new(data.clone(), true);
        while let Some((pos, body)) = reader.next_range()? {
            crate::error::check_interrupted()?;
            let index = records.len();
            let at = || format!("record {index} at byte offset {pos}");
            if body.is_empty() {
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
            records.push((pos + HEADER, body.len()));
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
            reread: RefCell::new(Records::new(data, false)),
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
        let range = self.reread.borrow_mut().payload(offset, len)?;
        let t = ScannedTensor::scan(&range, self.max_fill)
            .with_context(|| format!("record {i} at byte offset {}", offset - HEADER))?;
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
        let mut meta = match &self.stacked {
            Some(m) => m.clone(),
            None => self.record(index)?.meta(format!("{}/{index}", self.stem)),
        };
        // A spooled (compressed) file is decompressed in one pass by one reader.
        meta.facts.serial = self.spooled;
        Ok(meta)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(bytes: Vec<u8>) -> Input {
        Input {
            path: "x.gz".into(),
            display: "x.gz".into(),
            stem: "x".into(),
            is_dir: false,
            head: bytes.clone(),
            data: Some(FileRange::from_vec(bytes)),
            files: Vec::new(),
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_first_record_that_starts_like_a_tensorproto_is_sure_and_others_only_maybe() {
        let tensor = tfrecord::frame(&[0x08, 0x01, 0x12, 0x00]); // dtype float, scalar shape
        let example = tfrecord::frame(&[0x0a, 0x00]);
        assert_eq!(sniff_input(&input(tensor.clone())), Sniff::Yes);
        assert_eq!(sniff_input(&input(gzip(&tensor))), Sniff::Yes);
        assert_eq!(sniff_input(&input(example.clone())), Sniff::Maybe);
        assert_eq!(sniff_input(&input(gzip(&example))), Sniff::Maybe);
        assert_eq!(sniff_input(&input(tfrecord::frame(&[]))), Sniff::Maybe);
        assert_eq!(
            sniff_input(&input(b"not a record at all".to_vec())),
            Sniff::No
        );
    }
}
