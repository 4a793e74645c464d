//! The Python module `tensor2npy._native` (cargo feature `python`, built by maturin into the
//! wheel beside the `tensor2npy` command; `python/tensor2npy/__init__.py` wraps it with the
//! public API, docstrings and exceptions). It talks to the library as the command does:
//! keyword arguments become the command line's options (`options.rs`), inputs open through
//! `cmd::open_inputs` and the reader registry, tensors go through `pipeline::write_tensor` into
//! arrays NumPy allocated (`arrays.rs`; unconverted ranges of local files are read straight
//! into them on several threads, `copy.rs`), `convert` is `cmd::convert::run` itself, and failures
//! become the exceptions of `errors.rs`. Nothing here is a second conversion.

mod arrays;
mod copy;
mod errors;
mod options;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use arrays::{allocate, plan_entries, Buffer, Entry, Plan, PlanOptions};
use errors::run;

/// Tensors from this size up are read interruptibly (in a helper thread, see `errors.rs`);
/// smaller ones are read on the calling thread, which is cheaper than starting a thread.
const INTERRUPTIBLE_BYTES: u64 = 1 << 20;

/// Opens the inputs with `convert`'s options and plans what it would write.
fn open_plan(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    kwargs: Option<&Bound<'_, PyDict>>,
    function: &str,
) -> PyResult<Plan> {
    let paths = options::inputs(inputs)?;
    let args = options::convert_args(py, &paths, kwargs, options::OUTPUT_ONLY, function)?;
    let opened = crate::cmd::Inputs::convert(&args).map_err(|e| errors::raise(py, e))?;
    let plan = run(py, true, move || {
        let sources = crate::cmd::open_inputs(&opened)?;
        let entries = plan_entries(
            &sources,
            &PlanOptions::of(
                &args.input,
                args.dtypes.policy(),
                args.skip_unsupported,
                false,
            ),
        )?;
        let device = crate::device::DeviceStage::open(args.device.into(), args.adapter)?;
        Ok(Plan {
            sources,
            entries,
            policy: args.dtypes.policy(),
            chunk: args.chunk_size,
            device,
            quiet: args.quiet,
        })
    })?;
    plan.notes();
    Ok(plan)
}

/// `select` and `exclude` joined to the other keyword arguments.
fn with_selection<'py>(
    py: Python<'py>,
    select: Option<&Bound<'py, PyAny>>,
    exclude: Option<&Bound<'py, PyAny>>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let all = match kwargs {
        Some(k) => k.copy()?,
        None => PyDict::new(py),
    };
    if let Some(s) = select {
        all.set_item("select", s)?;
    }
    if let Some(e) = exclude {
        all.set_item("exclude", e)?;
    }
    Ok(all)
}

/// Every selected tensor as a NumPy array, by name: what `convert` writes into an `.npz`.
#[pyfunction]
#[pyo3(signature = (path_or_url, *, select=None, exclude=None, **options))]
fn load<'py>(
    py: Python<'py>,
    path_or_url: &Bound<'py, PyAny>,
    select: Option<&Bound<'py, PyAny>>,
    exclude: Option<&Bound<'py, PyAny>>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let kwargs = with_selection(py, select, exclude, options)?;
    let mut plan = open_plan(py, path_or_url, Some(&kwargs), "load")?;
    let mut arrays = Vec::with_capacity(plan.entries.len());
    let mut buffers = Vec::with_capacity(plan.entries.len());
    for (e, entry) in plan.entries.iter().enumerate() {
        let array = allocate(py, entry)?;
        buffers.push((e, Buffer::of(&array, entry.out_bytes)));
        arrays.push(array);
    }
    let large = plan
        .entries
        .iter()
        .any(|e| e.out_bytes >= INTERRUPTIBLE_BYTES);
    run(py, large || plan.entries.len() > 1000, move || {
        plan.fill_all(&mut buffers, copy::threads())?;
        Ok(plan)
    })
    .and_then(|plan| {
        let out = PyDict::new(py);
        for (entry, array) in plan.entries.iter().zip(arrays) {
            out.set_item(&entry.name, array)?;
        }
        Ok(out)
    })
}

/// A reader of one or more inputs, tensor by tensor (the `open` of the Python API wraps it in a
/// `Mapping`).
#[pyclass(module = "tensor2npy._native", frozen)]
struct NativeFile {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    metadata: Option<String>,
    /// The inputs, `None` once closed. Locked only without the interpreter lock held.
    plan: Mutex<Option<Plan>>,
}

#[pymethods]
impl NativeFile {
    /// The names, in input order.
    fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }

    fn __contains__(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// name, dtype, descr, shape, kind, bytes, nbytes, source of tensor `name`.
    fn info<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        self.entry(name)?.info(py)
    }

    /// Tensor `name` read into a new array.
    fn read<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let e = *self
            .by_name
            .get(name)
            .ok_or_else(|| PyKeyError::new_err(name.to_string()))?;
        let entry = &self.entries[e];
        let array = allocate(py, entry)?;
        let mut buf = [(e, Buffer::of(&array, entry.out_bytes))];
        run(py, entry.out_bytes >= INTERRUPTIBLE_BYTES, || {
            let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
            let plan = plan.as_mut().ok_or(errors::Closed)?;
            plan.fill_all(&mut buf, copy::threads())
        })?;
        Ok(array.into_any())
    }

    /// The inputs' own metadata (GGUF key/values), as JSON text; `None` when there is none.
    fn metadata_json(&self) -> Option<String> {
        self.metadata.clone()
    }

    /// Releases the inputs (files, remote connections); later reads raise `ValueError`.
    fn close(&self, py: Python<'_>) {
        let plan = py.detach(|| self.plan.lock().unwrap_or_else(|p| p.into_inner()).take());
        py.detach(move || drop(plan));
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.plan.lock().map(|p| p.is_none()).unwrap_or(true))
    }
}

impl NativeFile {
    fn entry(&self, name: &str) -> PyResult<&Entry> {
        self.by_name
            .get(name)
            .map(|&e| &self.entries[e])
            .ok_or_else(|| PyKeyError::new_err(name.to_string()))
    }
}

/// Opens inputs for reading tensor by tensor.
#[pyfunction]
#[pyo3(signature = (path_or_url, *, select=None, exclude=None, **options))]
fn open_file<'py>(
    py: Python<'py>,
    path_or_url: &Bound<'py, PyAny>,
    select: Option<&Bound<'py, PyAny>>,
    exclude: Option<&Bound<'py, PyAny>>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<NativeFile> {
    let kwargs = with_selection(py, select, exclude, options)?;
    let plan = open_plan(py, path_or_url, Some(&kwargs), "open")?;
    let (plan, metadata) = run(py, false, move || {
        let metadata = metadata_json(&plan.sources)?;
        Ok((plan, metadata))
    })?;
    let entries: Vec<Entry> = plan.entries.clone();
    let by_name = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    Ok(NativeFile {
        entries,
        by_name,
        metadata,
        plan: Mutex::new(Some(plan)),
    })
}

/// The inputs' metadata as JSON: one input's own, or for several `{input: metadata}`.
fn metadata_json(sources: &[Box<dyn crate::tensor::Source>]) -> Result<Option<String>> {
    let mut all = serde_json::Map::new();
    for src in sources {
        let m = src
            .metadata()
            .with_context(|| src.display_path().to_string())?;
        if let Some(m) = m {
            all.insert(src.display_path().to_string(), m);
        }
    }
    Ok(match (sources.len(), all.is_empty()) {
        (_, true) => None,
        (1, false) => all.into_iter().next().map(|(_, v)| v.to_string()),
        _ => Some(serde_json::Value::Object(all).to_string()),
    })
}

/// `tensor2npy convert`, with the command's options as keyword arguments.
#[pyfunction]
#[pyo3(signature = (inputs, output=None, **options))]
fn convert(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    output: Option<&Bound<'_, PyAny>>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    let paths = options::inputs(inputs)?;
    let kwargs = match options {
        Some(k) => k.copy()?,
        None => PyDict::new(py),
    };
    if let Some(o) = output {
        kwargs.set_item("output", o)?;
    }
    let args = options::convert_args(py, &paths, Some(&kwargs), &[], "convert")?;
    run(py, true, move || crate::cmd::convert::run(args))
}

/// What `verify` checked of each input: how many tensors and bytes were read.
#[pyfunction]
#[pyo3(signature = (paths, **options))]
fn verify<'py>(
    py: Python<'py>,
    paths: &Bound<'py, PyAny>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyList>> {
    let paths = options::inputs(paths)?;
    let args = options::verify_args(py, &paths, options)?;
    let results = run(py, true, move || verify_all(&args))?;
    let out = PyList::empty(py);
    for (input, tensors, bytes, format) in results {
        let d = PyDict::new(py);
        d.set_item("input", input)?;
        d.set_item("format", format)?;
        d.set_item("tensors", tensors)?;
        d.set_item("bytes", bytes)?;
        out.append(d)?;
    }
    Ok(out)
}

/// What was checked of one input: its path, tensors and bytes read, and what it was read as.
type Checked = (String, usize, u64, Option<String>);

/// Reads every tensor of every input, as `tensor2npy verify` does.
fn verify_all(args: &crate::cli::VerifyArgs) -> Result<Vec<Checked>> {
    use crate::tensor::Kind;
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(crate::error::usage(
            "standard input (-) can be given only once",
        ));
    }
    let opts = crate::cmd::settings::verify_open(args);
    let mut results = Vec::new();
    for p in &args.inputs {
        let display = p.display().to_string();
        let mut src = crate::source::open(p, &opts).with_context(|| display.clone())?;
        let mut bytes = 0u64;
        for i in 0..src.len() {
            crate::error::check_interrupted()?;
            let meta = src.meta(i).with_context(|| display.clone())?;
            let strings = meta.kind == Kind::String
                || matches!(
                    meta.dtype,
                    crate::dtype::DType::String | crate::dtype::DType::Variant
                );
            let mut count = |c: &[u8]| {
                bytes += c.len() as u64;
                crate::error::check_interrupted()
            };
            let result = match strings {
                true => src.read_strings(i, &mut count),
                false => src.read_dense(i, 1 << 20, &mut count),
            };
            result.with_context(|| format!("{display}: tensor '{}'", meta.name))?;
        }
        let format = src.input_facts().format.map(String::from);
        results.push((display, src.len(), bytes, format));
    }
    Ok(results)
}

/// What `tensor2npy list --json` prints, one dict per tensor.
#[pyfunction]
#[pyo3(signature = (paths, **options))]
fn list_tensors<'py>(
    py: Python<'py>,
    paths: &Bound<'py, PyAny>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyList>> {
    let paths: Vec<PathBuf> = options::inputs(paths)?;
    let args = options::list_args(py, &paths, options)?;
    let opened = crate::cmd::Inputs::list(&args);
    let (entries, formats) = run(py, true, move || {
        let sources = crate::cmd::open_inputs(&opened)?;
        let entries = plan_entries(
            &sources,
            &PlanOptions::of(&args.input, args.dtypes.policy(), false, true),
        )?;
        let formats: Vec<Option<String>> = sources
            .iter()
            .map(|s| s.input_facts().format.map(String::from))
            .collect();
        Ok((entries, formats))
    })?;
    let out = PyList::empty(py);
    for e in &entries {
        let d = e.info(py)?;
        d.set_item("npy_dtype", (!e.descr.is_empty()).then_some(&e.descr))?;
        d.del_item("descr")?;
        d.del_item("nbytes")?;
        if let Some(f) = &formats[e.source] {
            d.set_item("format", f)?;
        }
        out.append(d)?;
    }
    Ok(out)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("VERSION", crate::cli::VERSION)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(open_file, m)?)?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(list_tensors, m)?)?;
    m.add_class::<NativeFile>()?;
    Ok(())
}
