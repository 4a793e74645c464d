//! The tensors of opened inputs as NumPy arrays. [`Plan`] is what `convert` would put into one
//! `.npz` (the same selection, names, `.npy` types and refusals, from one metadata pass), and
//! [`Plan::fill`] streams one planned tensor through the pipeline (`pipeline::write_tensor`:
//! the same conversions, device stage and checks as the command) into an [`ArraySink`] whose
//! member writes straight into the memory of an array NumPy allocated: no copy of the whole
//! tensor is ever made, and memory beyond the array is a chunk. [`Plan::fill_all`] fills
//! several, handing those that are plain byte ranges of local files to `copy.rs`, which reads
//! them on several threads at once.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::device::DeviceStage;
use crate::dtype::DtypePolicy;
use crate::input::FileRange;
use crate::pipeline::{npy_type, output_bytes, prepare, write_tensor, WriteOptions};
use crate::report::Reporter;
use crate::select::Selector;
use crate::sink::{names, MemberSpec, MemberWriter, Sink};
use crate::tensor::{Source, TensorMeta};

/// One tensor `convert` would write.
#[derive(Clone)]
pub struct Entry {
    /// Which input, and which tensor of it.
    pub source: usize,
    pub index: usize,
    /// The output name (`<stem>/` prefixed when several inputs share the output).
    pub name: String,
    pub meta: TensorMeta,
    /// The element type as the format names it (`bfloat16`, `q4_K`).
    pub dtype: String,
    /// The `.npy` descr it is written as.
    pub descr: String,
    /// Bytes of the array.
    pub out_bytes: u64,
    /// The input, for messages.
    pub path: String,
}

impl Entry {
    /// `info()` of `open`, and a row of `list_tensors`: the fields of `list --json`.
    pub fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("name", &self.name)?;
        d.set_item("dtype", &self.dtype)?;
        d.set_item("descr", &self.descr)?;
        let shape: Vec<Option<u64>> = self
            .meta
            .shape
            .iter()
            .enumerate()
            .map(|(d, &n)| (d == 0 || d > self.meta.ragged_rank).then_some(n))
            .collect();
        d.set_item("shape", pyo3::types::PyTuple::new(py, shape)?)?;
        d.set_item("kind", self.meta.kind.name())?;
        d.set_item("bytes", self.meta.stored_bytes)?;
        d.set_item("nbytes", self.out_bytes)?;
        d.set_item("source", &self.path)?;
        Ok(d)
    }
}

/// Opened inputs and what would be read from them.
pub struct Plan {
    pub sources: Vec<Box<dyn Source>>,
    pub entries: Vec<Entry>,
    pub policy: DtypePolicy,
    pub chunk: usize,
    pub device: DeviceStage,
    pub quiet: bool,
}

/// What `plan` needs of the command line.
pub struct PlanOptions<'a> {
    pub inputs: &'a [PathBuf],
    pub select: &'a [String],
    pub exclude: &'a [String],
    pub policy: DtypePolicy,
    pub skip_unsupported: bool,
    /// Several inputs read as one (`concat`): names are not prefixed.
    pub concat: bool,
    /// `list`: every tensor, also those without a NumPy form, and no output-name checks.
    pub listing: bool,
}

impl<'a> PlanOptions<'a> {
    /// The options of the inputs as the Python call gave them.
    pub fn of(
        input: &'a crate::cli::InputArgs,
        policy: DtypePolicy,
        skip_unsupported: bool,
        listing: bool,
    ) -> Self {
        PlanOptions {
            inputs: &input.inputs,
            select: &input.select,
            exclude: &input.exclude,
            policy,
            skip_unsupported,
            concat: input.concat,
            listing,
        }
    }
}

/// The tensors of `sources` that `convert` would write into one `.npz`, refused where it would
/// refuse them (a dtype without a NumPy form, a `--select` that matches nothing, an empty
/// selection, a name an `.npz` cannot hold or holds twice, an overflowing size).
pub fn plan_entries(sources: &[Box<dyn Source>], o: &PlanOptions) -> Result<Vec<Entry>> {
    let mut selector = Selector::new(o.select, o.exclude)?;
    let prefixed = sources.len() > 1 && !o.concat;
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for (s, src) in sources.iter().enumerate() {
        let path = src.display_path().to_string();
        for i in 0..src.len() {
            crate::error::check_interrupted()?;
            let meta = src.meta(i).with_context(|| format!("{path}: tensor {i}"))?;
            if !selector.record(&meta.name) {
                continue;
            }
            let context = || format!("{path}: tensor '{}'", meta.name);
            let dtype = meta
                .facts
                .source_dtype
                .clone()
                .unwrap_or_else(|| meta.dtype.name().to_string());
            let (descr, out_bytes) = match npy_type(&meta, &o.policy) {
                Some(t) => (t.descr(), output_bytes(&meta, t).with_context(context)?),
                None if o.listing => (String::new(), 0),
                None if o.skip_unsupported => continue,
                None => {
                    return Err(anyhow!(
                        "dtype {dtype} has no NumPy form (use --skip-unsupported to leave it out)"
                    )
                    .context(context()))
                }
            };
            let name = match prefixed {
                true => format!("{}/{}", crate::source::stem(&o.inputs[s]), meta.name),
                false => meta.name.clone(),
            };
            if !o.listing {
                names::npz_member(&name).with_context(context)?;
                if !seen.insert(name.clone()) {
                    bail!("two tensors are both named '{name}' in the same .npz");
                }
            }
            entries.push(Entry {
                source: s,
                index: i,
                name,
                meta,
                dtype,
                descr,
                out_bytes,
                path: path.clone(),
            });
        }
    }
    let patterns = !o.select.is_empty() || !o.exclude.is_empty();
    crate::cmd::check_selection(sources, &selector, entries.len(), patterns)?;
    Ok(entries)
}

/// An uninitialised C-order array for `entry`, allocated by NumPy (`numpy.empty`).
pub fn allocate<'py>(py: Python<'py>, entry: &Entry) -> PyResult<Bound<'py, PyUntypedArray>> {
    let np = py.import("numpy")?;
    let shape = pyo3::types::PyTuple::new(py, &entry.meta.shape)?;
    let array = np.call_method1("empty", (shape, entry.descr.as_str()))?;
    let array = array.cast_into::<PyUntypedArray>()?;
    let nbytes = array.len() as u64 * array.dtype().itemsize() as u64;
    if nbytes != entry.out_bytes || !array.is_c_contiguous() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "tensor2npy: internal error: '{}': NumPy made {nbytes} bytes for {}",
            entry.name, entry.out_bytes
        )));
    }
    Ok(array)
}

/// The memory of an array NumPy allocated, handed to a thread that fills it without the
/// interpreter lock.
pub struct Buffer {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the array is new and not yet visible to any Python code; the caller keeps it alive
// and touches it from nowhere else until the fill has returned.
unsafe impl Send for Buffer {}

impl Buffer {
    pub fn of(array: &Bound<'_, PyUntypedArray>, len: u64) -> Buffer {
        // SAFETY: a valid array object; `data` is its C-contiguous buffer of `len` bytes
        // (checked by `allocate`).
        let ptr = unsafe { (*array.as_array_ptr()).fields.data as *mut u8 };
        Buffer {
            ptr,
            len: len as usize,
        }
    }

    /// The bytes (the caller upholds what the `Send` impl says).
    fn bytes(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: see `Buffer::of` and the `Send` impl.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Plan {
    /// Reads planned tensor `e` into `buf`, through the pipeline.
    fn fill(&mut self, e: usize, buf: &mut Buffer) -> Result<()> {
        let entry = &self.entries[e];
        // Silent: a progress bar per tensor would flicker in a terminal; the readers' notes are
        // printed once by `notes`.
        let report = Reporter::new(true);
        let device = RefCell::new(std::mem::replace(&mut self.device, DeviceStage::cpu()));
        let opts = WriteOptions {
            policy: &self.policy,
            chunk: self.chunk.max(64),
            report: &report,
            device: &device,
        };
        let mut sink = ArraySink {
            buf: buf.bytes(),
            used: false,
        };
        let src = self.sources[entry.source].as_mut();
        let result = write_tensor(src, entry.index, &entry.meta, &entry.name, &mut sink, &opts)
            .with_context(|| format!("{}: tensor '{}'", entry.path, entry.meta.name));
        self.device = device.into_inner();
        // Per-tensor numbers are kept only for --stats, which Python has not; drop them.
        self.device.stats.clear();
        result
    }

    /// Fills planned tensors `items` (the entry, its array's memory) in order, as `fill` one by
    /// one would; runs of tensors read as they are from a local file are read by `threads`
    /// threads at once (`copy.rs`).
    pub fn fill_all(&mut self, items: &mut [(usize, Buffer)], threads: usize) -> Result<()> {
        let mut copies = Vec::new();
        for (e, buf) in items.iter_mut() {
            match self.local_copy(*e) {
                Some(range) => {
                    let entry = &self.entries[*e];
                    copies.push(super::copy::Copy {
                        range,
                        buf: buf.bytes(),
                        context: format!("{}: tensor '{}'", entry.path, entry.meta.name),
                    });
                }
                None => {
                    super::copy::read_all(std::mem::take(&mut copies), threads)?;
                    self.fill(*e, buf)?;
                }
            }
        }
        super::copy::read_all(copies, threads)
    }

    /// The input range of planned tensor `e` when it is copied as it is from a local file
    /// (what `pipeline::copy_member` would copy), else `None`: converted, read from elsewhere,
    /// or refused (which `fill` then reports).
    fn local_copy(&self, e: usize) -> Option<FileRange> {
        let entry = &self.entries[e];
        let src = self.sources[entry.source].as_ref();
        let prepared = prepare(src, entry.index, &entry.meta, &self.policy).ok()?;
        prepared
            .copy
            .filter(|r| r.file().is_some() && r.len() == entry.out_bytes)
    }

    /// What `open` and `load` print unless `quiet`: the readers' notes.
    pub fn notes(&self) {
        let report = Reporter::new(self.quiet);
        for src in &self.sources {
            for note in src.input_facts().notes {
                report.note(&format!("{}: {note}", src.display_path()));
            }
        }
    }
}

/// A sink of one member: the array's memory.
struct ArraySink<'a> {
    buf: &'a mut [u8],
    used: bool,
}

impl Sink for ArraySink<'_> {
    fn begin_member(&mut self, spec: &MemberSpec) -> Result<Box<dyn MemberWriter + '_>> {
        if self.used || spec.data_len != self.buf.len() as u64 {
            bail!(
                "internal: '{}' is {} bytes where the array has {}",
                spec.name,
                spec.data_len,
                self.buf.len()
            );
        }
        self.used = true;
        Ok(Box::new(ArrayMember {
            buf: self.buf,
            pos: 0,
        }))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

struct ArrayMember<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl ArrayMember<'_> {
    /// The next `n` bytes of the array, refusing more than it holds.
    fn next(&mut self, n: usize) -> Result<&mut [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| anyhow!("internal: more data than the array holds"))?;
        let out = &mut self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

impl MemberWriter for ArrayMember<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.next(data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// An unconverted range is read straight into the array, a few MiB at a time.
    fn copy(&mut self, range: &FileRange) -> Result<()> {
        const STEP: u64 = 8 << 20;
        let mut at = 0;
        while at < range.len() {
            crate::error::check_interrupted()?;
            let n = STEP.min(range.len() - at);
            range.read_at(at, self.next(n as usize)?)?;
            at += n;
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
