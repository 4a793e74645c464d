//! The tensor stream every reader produces and every sink consumes: metadata first (listable
//! without touching the data), then each tensor's bytes in bounded chunks.
//!
//! What a reader knows beyond the bytes travels in two values, not in optional hooks a wrapper
//! could forget to forward: each tensor's [`TensorMeta`] carries its [`Facts`] (source dtype,
//! host decode, quantization, whether a worker may read it), and [`Source::input_facts`] gives
//! the input's format and notes. A reader that holds every tensor's metadata as one table
//! gives it as [`Source::metas`] and inherits `len` and `meta`. Raw ranges and the input's
//! metadata stay methods: they are computed on demand (a reopened part, streamed GGUF
//! key/values).

use anyhow::{bail, Result};

use crate::dtype::DType;

/// How a tensor is laid out, as `list` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dense,
    String,
    Sparse,
    Ragged,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dense => "dense",
            Kind::String => "string",
            Kind::Sparse => "sparse",
            Kind::Ragged => "ragged",
        }
    }
}

/// What a reader knows about one tensor before reading its data.
#[derive(Clone, Debug)]
pub struct TensorMeta {
    /// The name as the source stores it (before any `<stem>/` prefix).
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub kind: Kind,
    /// Bytes the tensor occupies in the source.
    pub stored_bytes: u64,
    /// For string tensors: the longest element, which sizes the `|S<n>` output.
    pub max_string_len: Option<u64>,
    /// Elements are stored big-endian and must be swapped.
    pub big_endian: bool,
    /// For a ragged tensor listed whole: how many dimensions after the first are ragged (their
    /// `shape` entries are the longest row).
    pub ragged_rank: usize,
    /// What the reader says about the tensor beyond its type and shape. It travels with the
    /// metadata, so every wrapper (`Chain`, `Structured`, `.keras`) passes it on by passing
    /// the metadata on.
    pub facts: Facts,
}

/// A reader's facts about one tensor, for `list`, `--stats` and the `--jobs` scheduler; all
/// empty (the default) for most tensors of most formats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// The element type as the format names it, where the dtype alone does not say it (a GGUF
    /// block type such as `q4_K`, dequantized to float32); `list` and errors show it.
    pub source_dtype: Option<String>,
    /// Why the tensor is decoded by the reader on the host (GGUF or TFLite dequantization),
    /// for `--stats`; such tensors never reach a device kernel.
    pub host_decode: Option<String>,
    /// The quantization parameters as stored (a TFLite tensor's scale, zero point and
    /// quantized dimension), for `list --json`.
    pub quantization: Option<serde_json::Value>,
    /// Not worth reading in a `--jobs` worker from a second copy of the source: one read does
    /// the work of all the tensors (the Example reader spools every feature in one pass), or
    /// the tensor is assembled from others.
    pub serial: bool,
}

impl TensorMeta {
    pub fn num_elements(&self) -> Result<u64> {
        checked_elements(&self.shape)
    }

    /// The dtype as messages name it: as its source names it where that differs (`facts`),
    /// else its own name.
    pub fn dtype_shown(&self) -> String {
        self.facts
            .source_dtype
            .clone()
            .unwrap_or_else(|| self.dtype.to_string())
    }
}

/// Advances `idx`, a row-major index into `shape` (last dimension fastest), to the next
/// position; `false` (and `idx` back at zeros) once it has passed the last one.
pub fn next_index(idx: &mut [u64], shape: &[u64]) -> bool {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < shape[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

/// The element count of a shape, refusing shapes whose product overflows.
pub fn checked_elements(shape: &[u64]) -> Result<u64> {
    let mut n: u64 = 1;
    for &d in shape {
        n = match n.checked_mul(d) {
            Some(n) => n,
            None => bail!("shape {shape:?} has more elements than fit in 64 bits"),
        };
    }
    Ok(n)
}

/// Receives a tensor's bytes chunk by chunk.
pub type ChunkSink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// Bytes gathered into chunks of at least `cap` before they go to a [`ChunkSink`] (checking for
/// an interrupt before each); `finish` hands on the rest.
pub struct Gather<'s, 'a> {
    /// The bytes gathered so far; append to it directly, then [`Gather::flush_full`].
    pub buf: Vec<u8>,
    cap: usize,
    sink: &'s mut ChunkSink<'a>,
}

impl<'s, 'a> Gather<'s, 'a> {
    pub fn new(cap: usize, sink: &'s mut ChunkSink<'a>) -> Self {
        Gather {
            buf: Vec::with_capacity(cap),
            cap,
            sink,
        }
    }

    /// Appends `bytes`, handing the chunk on once it is full.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        self.flush_full()
    }

    /// Hands the gathered bytes on if they reach `cap`.
    pub fn flush_full(&mut self) -> Result<()> {
        if self.buf.len() >= self.cap {
            crate::error::check_interrupted()?;
            (self.sink)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Hands on what is left.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        (self.sink)(&self.buf)
    }
}

/// A reader of one input: lists its tensors, then streams any of them.
pub trait Source: Send {
    /// The input path as the user gave it, for messages.
    fn display_path(&self) -> &str;

    /// How many tensors the input holds (by default, the length of [`Source::metas`]).
    fn len(&self) -> usize {
        self.metas().len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metadata of tensor `index` (by default, entry `index` of [`Source::metas`]).
    /// Readers of inputs with very many tensors (TFRecords) recompute it on demand instead of
    /// holding it all, and readers that add facts to a stored entry build it here.
    fn meta(&self, index: usize) -> Result<TensorMeta> {
        match self.metas().get(index) {
            Some(m) => Ok(m.clone()),
            None => bail!("{}: there is no tensor {index}", self.display_path()),
        }
    }

    /// Every tensor's metadata, for a reader that holds it as one table: `len` and `meta`
    /// follow from it. Empty for a reader that implements `len` and `meta` itself, as any
    /// reader that does not hold the table must.
    fn metas(&self) -> &[TensorMeta] {
        &[]
    }

    /// Streams the elements of fixed-size tensor `index`, row-major, in the source dtype's
    /// little-endian layout (or big-endian when `big_endian` is set), in chunks of at most
    /// `chunk` bytes, each holding whole elements.
    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()>;

    /// Streams the elements of string tensor `index`, one call per element, row-major.
    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()>;

    /// Every file this source reads, so that no output is ever written over one of them.
    fn input_files(&self) -> Vec<std::path::PathBuf>;

    /// The bytes of tensor `index` when they are stored contiguously, little-endian and need no
    /// checking on the way out, so that an unconverted tensor can be copied as it is.
    fn raw_range(&self, _index: usize) -> Option<crate::input::FileRange> {
        None
    }

    /// The input's own metadata (GGUF key/values), for `list --json --metadata`.
    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    /// Writes [`Source::metadata`] as JSON to `out` (false, writing nothing, when there is
    /// none); a reader whose metadata can be large (GGUF arrays) streams it instead of
    /// materialising it.
    fn write_metadata(&self, out: &mut dyn std::io::Write) -> Result<bool> {
        match self.metadata()? {
            Some(v) => {
                let bytes = serde_json::to_vec(&v)?;
                out.write_all(&bytes).map_err(anyhow::Error::new)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The reader's facts about the input as a whole (format, notes), in one value so that a
    /// wrapper passes all of them on by passing it on.
    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts::default()
    }
}

/// A reader's facts about its input as a whole ([`Source::input_facts`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct InputFacts<'a> {
    /// What the input was read as (`graphdef`, `onnx (ir_version 9)`, `tensorproto`), for the
    /// readers of formats told apart by structure; `list` shows it.
    pub format: Option<&'a str>,
    /// Things the user should hear about (skipped entries), printed unless `--quiet`.
    pub notes: &'a [String],
}

impl<'a> InputFacts<'a> {
    /// The facts of a reader that has notes and no format name of its own.
    pub fn with_notes(notes: &'a [String]) -> Self {
        InputFacts {
            format: None,
            notes,
        }
    }
}
