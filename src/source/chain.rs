//! The one concatenation every composite input is built on: several sources read as one, their
//! tensors one after the other, names kept as each part gives them. A SavedModel's variables
//! followed by the constants of its `saved_model.pb` (`--constants`), the shards of a Hugging
//! Face folder (`hf.rs`), the shards of Keras sharded weights (`keras_sharded.rs`), the inputs
//! of `--concat` ([`open_concat`]).
//!
//! A part is either a source already open (held for the chain's life) or a path, opened through
//! the registry (`mod.rs` [`super::probe`] and a [`Reader`]) so that a folder in a bucket reads
//! like a local one and the open options reach every part. A part opened from a path is indexed
//! (its metadata, notes and per-tensor facts kept) and closed again; reading reopens it, keeping
//! at most one such part open at a time, so a folder of thousands of shards needs a handful of
//! file descriptors. A reopened part must list the same tensors, or the read fails.
//!
//! The per-tensor facts (source dtypes, host decodes, parallel reads) travel in each part's
//! metadata; raw ranges, metadata, format and notes are forwarded. A tensor name present in two
//! parts is an error naming both parts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use super::{OpenOptions, Reader};
use crate::input::FileRange;
use crate::tensor::{ChunkSink, InputFacts, Source, TensorMeta};

pub struct Chain {
    display: String,
    parts: Vec<Part>,
    /// Tensor `i` is tensor `.1` of part `.0`.
    index: Vec<(usize, usize)>,
    /// Every part's metadata (with its facts), kept while the part was open.
    metas: Vec<TensorMeta>,
    /// The part that gave each name, while parts are added.
    names: HashMap<String, usize>,
    notes: Vec<String>,
    /// Files read besides the parts' own (an index file).
    files: Vec<PathBuf>,
    format: Option<String>,
    /// The one part opened from a path that is open now.
    current: Mutex<Option<(usize, Box<dyn Source>)>>,
}

struct Part {
    display: String,
    how: How,
}

enum How {
    Held(Box<dyn Source>),
    Path {
        path: PathBuf,
        reader: &'static Reader,
        opts: Box<OpenOptions>,
        len: usize,
    },
}

impl Chain {
    /// An empty chain; `display` names it in messages.
    pub fn new(display: &str) -> Chain {
        Chain {
            display: display.to_string(),
            parts: Vec::new(),
            index: Vec::new(),
            metas: Vec::new(),
            names: HashMap::new(),
            notes: Vec::new(),
            files: Vec::new(),
            format: None,
            current: Mutex::new(None),
        }
    }

    /// Two sources read as one (a SavedModel's variables, then its constants).
    pub fn pair(first: Box<dyn Source>, second: Box<dyn Source>) -> Result<Chain> {
        let mut c = Chain::new(first.display_path());
        c.format = first.input_facts().format.map(String::from);
        c.notes.extend(first.input_facts().notes.iter().cloned());
        c.push_held(first)?;
        c.notes.extend(second.input_facts().notes.iter().cloned());
        c.push_held(second)?;
        Ok(c)
    }

    /// What `list` shows as the input's format.
    pub fn set_format(&mut self, format: &str) {
        self.format = Some(format.to_string());
    }

    /// A file read besides the parts (an index file), so that no output overwrites it.
    pub fn add_file(&mut self, file: PathBuf) {
        self.files.push(file);
    }

    /// A note of the composite itself (what a folder leaves out).
    pub fn add_note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Adds a source that stays open.
    pub fn push_held(&mut self, src: Box<dyn Source>) -> Result<()> {
        self.push_held_under(src, "")
    }

    /// Adds a source that stays open, its tensors named under `prefix` (a model's part folder,
    /// `unet/`); the source itself is read unchanged.
    pub fn push_held_under(&mut self, src: Box<dyn Source>, prefix: &str) -> Result<()> {
        let k = self.parts.len();
        self.index_part(k, src.as_ref(), prefix)?;
        self.parts.push(Part {
            display: src.display_path().to_string(),
            how: How::Held(src),
        });
        Ok(())
    }

    /// Adds the file (or remote object) at `path`, opened by `reader` with `opts`, indexed and
    /// closed again; its notes are kept, prefixed with its path.
    pub fn push_path(
        &mut self,
        path: &Path,
        reader: &'static Reader,
        opts: &OpenOptions,
    ) -> Result<()> {
        let src = open_part(path, reader, opts)?;
        let display = src.display_path().to_string();
        for note in src.input_facts().notes {
            self.notes.push(format!("{display}: {note}"));
        }
        let k = self.parts.len();
        self.index_part(k, src.as_ref(), "")?;
        self.files.extend(src.input_files());
        self.parts.push(Part {
            display,
            how: How::Path {
                path: path.to_path_buf(),
                reader,
                opts: Box::new(opts.clone()),
                len: src.len(),
            },
        });
        Ok(())
    }

    fn index_part(&mut self, k: usize, src: &dyn Source, prefix: &str) -> Result<()> {
        let display = src.display_path();
        for i in 0..src.len() {
            let mut meta = src.meta(i).with_context(|| display.to_string())?;
            meta.name.insert_str(0, prefix);
            if let Some(&other) = self.names.get(&meta.name) {
                let first = match self.parts.get(other) {
                    Some(p) => p.display.as_str(),
                    None => display,
                };
                bail!(
                    "tensor '{}' is in both {first} and {display}: the parts of one input must not repeat a name",
                    meta.name
                );
            }
            self.names.insert(meta.name.clone(), k);
            self.metas.push(meta);
            self.index.push((k, i));
        }
        Ok(())
    }

    /// The names are no longer needed once every part is in.
    pub fn finish(mut self) -> Chain {
        self.names = HashMap::new();
        self
    }

    /// Runs `f` on part `p`, reopening it (and closing the one open before) when it was opened
    /// from a path.
    fn with_part<T>(&self, p: usize, f: impl FnOnce(&mut dyn Source) -> Result<T>) -> Result<T> {
        let part = &self.parts[p];
        let (path, reader, opts, len) = match &part.how {
            How::Held(_) => bail!("internal: part {} is held", part.display),
            How::Path {
                path,
                reader,
                opts,
                len,
            } => (path, *reader, opts, *len),
        };
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|(k, _)| *k != p) {
            // Close the open part first: one descriptor at a time.
            *current = None;
            let src = open_part(path, reader, opts)?;
            if src.len() != len {
                bail!(
                    "{} changed while it was read: it held {len} tensors, now {}",
                    part.display,
                    src.len()
                );
            }
            *current = Some((p, src));
        }
        let (_, src) = current.as_mut().expect("opened above");
        f(src.as_mut())
    }

    /// Checks that tensor `i` of the reopened part is still the one indexed.
    fn same(&self, index: usize, src: &dyn Source, i: usize) -> Result<()> {
        let now = src.meta(i)?;
        let then = &self.metas[index];
        if now.name != then.name || now.shape != then.shape || now.dtype != then.dtype {
            bail!(
                "{} changed while it was read: tensor {i} was '{}', now '{}'",
                src.display_path(),
                then.name,
                now.name
            );
        }
        Ok(())
    }
}

/// `--concat`: every input read as one. Shards of one `tf.train.Example` dataset (every input
/// read by the Example reader) become one dataset, records in input order; any other inputs
/// are parts of one chain, their tensors under their own names (no stem prefix), a name in two
/// inputs an error naming both. Files and remote objects are parts opened from their paths;
/// standard input and pipes stay open.
pub fn open_concat(paths: &[PathBuf], opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut readers = Vec::with_capacity(paths.len());
    for p in paths {
        let input = super::probe(p).with_context(|| p.display().to_string())?;
        let reader = match &opts.from {
            Some(name) => {
                super::reader(name).ok_or_else(|| anyhow::anyhow!("unknown format '{name}'"))?
            }
            None => super::choose(&input).with_context(|| input.display.clone())?,
        };
        inputs.push(input);
        readers.push(reader);
    }
    let display = match inputs.as_slice() {
        [one] => one.display.clone(),
        [first, rest @ ..] => format!("{} (+{} more)", first.display, rest.len()),
        [] => bail!("--concat needs at least one input"),
    };
    if readers
        .iter()
        .all(|r| std::ptr::eq(*r, &super::example::READER))
    {
        return super::example::open_concat(&inputs, opts);
    }
    let mut chain = Chain::new(&display);
    for (input, reader) in inputs.into_iter().zip(readers) {
        let reopenable = !input.files.is_empty() || crate::input::url_of(&input.path).is_some();
        if reopenable {
            drop(input.data);
            chain.push_path(&input.path, reader, opts)?;
        } else {
            let src = (reader.open)(&input, opts).with_context(|| input.display.clone())?;
            for note in src.input_facts().notes {
                chain.add_note(format!("{}: {note}", input.display));
            }
            chain.push_held(src)?;
        }
    }
    Ok(Box::new(chain.finish()))
}

fn open_part(path: &Path, reader: &'static Reader, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let input = super::probe(path).with_context(|| path.display().to_string())?;
    (reader.open)(&input, opts).with_context(|| input.display.clone())
}

impl Source for Chain {
    fn display_path(&self) -> &str {
        &self.display
    }

    fn metas(&self) -> &[TensorMeta] {
        &self.metas
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let (p, i) = self.index[index];
        if let How::Held(src) = &mut self.parts[p].how {
            return src.read_dense(i, chunk, sink);
        }
        let display = self.parts[p].display.clone();
        self.with_part(p, |src| {
            self.same(index, src, i)?;
            src.read_dense(i, chunk, sink)
        })
        .with_context(|| display)
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let (p, i) = self.index[index];
        if let How::Held(src) = &mut self.parts[p].how {
            return src.read_strings(i, sink);
        }
        let display = self.parts[p].display.clone();
        self.with_part(p, |src| {
            self.same(index, src, i)?;
            src.read_strings(i, sink)
        })
        .with_context(|| display)
    }

    fn input_files(&self) -> Vec<PathBuf> {
        let mut files = self.files.clone();
        for part in &self.parts {
            if let How::Held(src) = &part.how {
                files.extend(src.input_files());
            }
        }
        files
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        let (p, i) = self.index[index];
        match &self.parts[p].how {
            How::Held(src) => src.raw_range(i),
            How::Path { .. } => self
                .with_part(p, |src| {
                    self.same(index, src, i)?;
                    Ok(src.raw_range(i))
                })
                .ok()
                .flatten(),
        }
    }

    /// One part's metadata as it is; several parts' under their paths.
    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        let mut all = serde_json::Map::new();
        for (p, part) in self.parts.iter().enumerate() {
            let m = match &part.how {
                How::Held(src) => src.metadata()?,
                How::Path { .. } => self.with_part(p, |src| src.metadata())?,
            };
            if let Some(m) = m {
                all.insert(part.display.clone(), m);
            }
        }
        Ok(match all.len() {
            0 => None,
            1 if self.parts.len() == 1 => all.into_iter().next().map(|(_, v)| v),
            _ => Some(serde_json::Value::Object(all)),
        })
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts {
            format: self.format.as_deref(),
            notes: &self.notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::tensor::{Facts, Kind};

    /// One tensor `name` and an answer from every optional hook.
    struct Mock {
        path: String,
        name: String,
        notes: Vec<String>,
    }

    fn mock(path: &str, name: &str) -> Box<dyn Source> {
        Box::new(Mock {
            path: path.into(),
            name: name.into(),
            notes: vec![format!("note of {path}")],
        })
    }

    impl Source for Mock {
        fn display_path(&self) -> &str {
            &self.path
        }
        fn len(&self) -> usize {
            1
        }
        fn meta(&self, _: usize) -> Result<TensorMeta> {
            Ok(TensorMeta {
                name: self.name.clone(),
                dtype: DType::U8,
                shape: vec![1],
                kind: Kind::Dense,
                stored_bytes: 1,
                max_string_len: None,
                big_endian: false,
                ragged_rank: 0,
                facts: Facts {
                    source_dtype: Some(format!("dtype of {}", self.path)),
                    host_decode: Some(format!("decode of {}", self.path)),
                    quantization: Some(serde_json::json!(self.path)),
                    serial: self.path != "a",
                },
            })
        }
        fn read_dense(&mut self, _: usize, _: usize, sink: &mut ChunkSink) -> Result<()> {
            sink(self.path.as_bytes())
        }
        fn read_strings(&mut self, _: usize, _: &mut ChunkSink) -> Result<()> {
            bail!("no strings")
        }
        fn input_files(&self) -> Vec<PathBuf> {
            vec![PathBuf::from(&self.path)]
        }
        fn raw_range(&self, _: usize) -> Option<FileRange> {
            Some(FileRange::from_vec(self.path.as_bytes().to_vec()))
        }
        fn metadata(&self) -> Result<Option<serde_json::Value>> {
            Ok(Some(serde_json::json!(self.path)))
        }
        fn input_facts(&self) -> InputFacts<'_> {
            InputFacts {
                format: Some("mock"),
                notes: &self.notes,
            }
        }
    }

    #[test]
    fn every_hook_is_forwarded_and_a_name_in_two_parts_names_both() {
        let mut c = Chain::pair(mock("a", "x"), mock("b", "y"))
            .unwrap()
            .finish();
        assert_eq!(c.len(), 2);
        assert_eq!(c.meta(1).unwrap().name, "y");
        let (a, b) = (c.meta(0).unwrap().facts, c.meta(1).unwrap().facts);
        assert_eq!(b.source_dtype.as_deref(), Some("dtype of b"));
        assert_eq!(a.host_decode.as_deref(), Some("decode of a"));
        assert_eq!(b.quantization, Some(serde_json::json!("b")));
        assert!(!a.serial && b.serial);
        assert_eq!(c.raw_range(1).unwrap().memory(), Some(&b"b"[..]));
        assert_eq!(c.input_facts().format, Some("mock"));
        assert_eq!(c.input_facts().notes, ["note of a", "note of b"]);
        assert_eq!(
            c.metadata().unwrap().unwrap(),
            serde_json::json!({"a": "a", "b": "b"})
        );
        assert_eq!(c.input_files(), [PathBuf::from("a"), PathBuf::from("b")]);
        let mut got = Vec::new();
        c.read_dense(1, 16, &mut |b: &[u8]| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, b"b");

        let e = Chain::pair(mock("a", "x"), mock("b", "x")).err().unwrap();
        let e = e.to_string();
        assert!(e.contains("'x'") && e.contains("in both a and b"), "{e}");
    }
}
