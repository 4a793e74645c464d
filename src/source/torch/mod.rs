//! PyTorch checkpoints (`torch.save` output): the zip format (PyTorch 1.6 and later:
//! `<root>/data.pkl`, `<root>/data/<key>` storages, `<root>/byteorder`) and the legacy pickle
//! stream (`_use_new_zipfile_serialization=False`: magic number, protocol version, sys_info,
//! the data pickle, the storage keys, then each storage as an 8-byte element count and its
//! bytes). The pickles are read by the restricted unpickler of `pickle.rs`; this module names
//! the tensors (state-dict keys, nested containers joined with `/`), validates every view
//! (`storage_offset`, `size`, `stride`) against its storage before reading, and streams each
//! tensor in C order: contiguous ones straight from the file (`raw_range`, so the sink can
//! copy them in the kernel), strided ones gathered chunk by chunk from a bounded window.
//!
//! Also read here, as data: whole pickled modules and other classes (records, named by
//! `names.rs`), TorchScript archives (`jit.rs`), torch.export `.pt2` archives (`pt2.rs`) and
//! plain pickles of NumPy arrays (`.pkl`, Paddle's `.pdparams`/`.pdopt`: `plain.rs`). PyTorch
//! Mobile flatbuffer modules (`PTMF`) are recognised and refused with that said.
//!
//! Zip members are read through `container/zip.rs`. Stored members (what torch writes) are read
//! by range, and their CRC-32 is computed once per storage before its first tensor goes out
//! (and handed on with the range, so that the `.npz` writer does not read the bytes again for
//! it), or, for a tensor converted on its way out that is its whole storage, on the bytes as
//! they stream (`MemberData::stream_checking`); deflated members are inflated into an unlinked
//! temporary file (CRC-32 checked, at most `--max-decompressed` bytes) when their first tensor
//! is read, never by `list`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::pickle::{self, TensorRef};
use crate::dtype::DType;
use crate::input::FileRange;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{ChunkSink, InputFacts, Source, TensorMeta};

pub(crate) mod container;
mod jit;
mod names;
pub mod plain;
mod pt2;
mod tree;

use names::ScriptClasses;
#[cfg(test)]
use names::Walk;
use tree::build;
#[cfg(test)]
use tree::check_view;

pub static READER: Reader = Reader {
    name: "pytorch",
    about: "a PyTorch file: torch.save (zip or legacy, whole modules too), TorchScript, torch.export .pt2; never executed",
    extensions: &[".pt", ".pth", ".bin", ".pt2"],
    sniff: sniff_input,
    open: open_input,
};

/// A legacy pickle opening with torch's magic number, or a zip archive whose first member is
/// `<root>/data.pkl` (torch writes it first) is `Yes`; another zip named `.pt`/`.pth`/`.bin`
/// is `Maybe`.
fn sniff_input(input: &Input) -> Sniff {
    let head = &input.head;
    if sniff_legacy(head) || is_mobile_flatbuffer(head) {
        return Sniff::Yes;
    }
    if !head.starts_with(b"PK\x03\x04") || head.len() < 30 {
        return Sniff::No;
    }
    let name_len = u16::from_le_bytes([head[26], head[27]]) as usize;
    // torch.save writes `<root>/data.pkl` first; torch.jit.save and torch.export.save start
    // with their storages (`<root>/data/0`, `<root>/data/weights/...`).
    let torch_member = |rest: &[u8]| {
        rest == b"data.pkl"
            || rest.starts_with(b"data/weights/")
            || rest.starts_with(b"data/constants/")
            || rest == b"archive_format"
            || rest
                .strip_prefix(b"data/")
                .is_some_and(|k| !k.is_empty() && k.iter().all(u8::is_ascii_digit))
    };
    match head.get(30..30 + name_len) {
        Some(name)
            if name
                .iter()
                .position(|&c| c == b'/')
                .is_some_and(|i| i > 0 && torch_member(&name[i + 1..])) =>
        {
            Sniff::Yes
        }
        _ if input.has_extension(READER.extensions) => Sniff::Maybe,
        _ => Sniff::No,
    }
}

fn open_input(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(TorchSource::open_with(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
        &input.stem,
        &TorchOptions::from(opts),
    )?))
}

/// What the command line sets for PyTorch files and pickles (the `torch` and `pickle` readers).
#[derive(Clone, Debug, Default)]
pub struct PickleOptions {
    /// `--weights-only`: only the globals `torch.load(weights_only=True)` allows; classes are
    /// refused instead of read as records.
    pub weights_only: bool,
    /// Whether a storage's CRC-32 may be checked as its bytes stream out (one read of them, not
    /// two) instead of before. Only for outputs that a failure discards (a file or folder written
    /// under a temporary name, `convert` sets it); standard output, a pipe or a device gets a
    /// tensor's bytes only after its storage's CRC matched.
    pub check_while_streaming: bool,
}

/// How the pickled formats are read: [`PickleOptions`] and the shared limits, resolved.
#[derive(Clone, Debug)]
pub struct TorchOptions {
    pub pickle: pickle::Options,
    /// The most bytes the tensors of one input may add up to, and the most a compressed
    /// pickle may inflate to (`--max-decompressed`).
    pub max_bytes: u64,
    /// [`PickleOptions::check_while_streaming`].
    pub check_while_streaming: bool,
}

impl Default for TorchOptions {
    fn default() -> Self {
        TorchOptions {
            pickle: pickle::Options::default(),
            max_bytes: 64 << 30,
            check_while_streaming: false,
        }
    }
}

impl From<&OpenOptions> for TorchOptions {
    fn from(o: &OpenOptions) -> Self {
        TorchOptions {
            pickle: pickle::Options {
                strict: o.torch.weights_only,
                strict_numpy: o.torch.weights_only,
                ..Default::default()
            },
            max_bytes: if o.max_decompressed == 0 {
                64 << 30
            } else {
                o.max_decompressed
            },
            check_while_streaming: o.torch.check_while_streaming,
        }
    }
}

/// How a tree is named, beyond its containers.
#[derive(Default)]
pub(super) struct Naming {
    /// TorchScript: the classes `code/` declares.
    pub script: Option<ScriptClasses>,
    /// The classes the pickle read as records, for a note.
    pub classes: Vec<String>,
    /// The blobs of NumPy arrays, and the pickle they lie in.
    pub blobs: Vec<(String, pickle::Blob)>,
    pub pickle: Option<FileRange>,
    pub max_bytes: u64,
}

/// The pickled magic number that opens a legacy file (`0x1950a86a20f9469cfc6c` as LONG1).
const LEGACY_MAGIC: [u8; 12] = [
    0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Strided tensors whose storage span fits in this many bytes are gathered from memory.
const GATHER_WINDOW: u64 = 16 << 20;

/// Beyond that, runs are read through a cache of this many bytes of storage.
const GATHER_BLOCK: u64 = 1 << 20;

/// The most a `data.pkl` may inflate to.
const MAX_PICKLE: u64 = 1 << 30;

/// A flatbuffer whose file identifier (bytes 4..8) is `PTMF`: a PyTorch Mobile module.
fn is_mobile_flatbuffer(head: &[u8]) -> bool {
    head.get(4..8) == Some(b"PTMF")
}

/// `PROTO n`, then the magic number, directly or (protocol 4 and later) after a `FRAME`.
fn sniff_legacy(head: &[u8]) -> bool {
    let at = match head {
        [0x80, _, 0x95, ..] => 11,
        [0x80, ..] => 2,
        _ => return false,
    };
    head.get(at..at + LEGACY_MAGIC.len()) == Some(&LEGACY_MAGIC[..])
}

/// One storage's bytes: a zip member checked (CRC-32) or inflated on first use, or bytes
/// already present (a range of a legacy file, a NumPy array's bytes).
type StorageData = crate::container::zip::MemberData;

enum Entry {
    Tensor(Arc<TensorRef>),
    Unsupported,
}

pub struct TorchSource {
    path: String,
    files: Vec<PathBuf>,
    metas: Vec<TensorMeta>,
    entries: Vec<Entry>,
    /// Each tensor's storage, and the byte offset within it where the tensor's storage (a
    /// legacy view) begins.
    storage_of: Vec<Option<(Arc<StorageData>, u64)>>,
    notes: Vec<String>,
    /// [`PickleOptions::check_while_streaming`].
    check_while_streaming: bool,
}

/// What opening one torch input takes: its name for messages, the files it reads, its bytes,
/// the name of a bare tensor (the file's stem) and the options.
struct Opening<'a> {
    path: &'a str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &'a str,
    opts: &'a TorchOptions,
}

impl TorchSource {
    /// Opens a torch file with the default options. `stem` names a file that holds one bare
    /// tensor.
    pub fn open(path: &str, files: Vec<PathBuf>, data: FileRange, stem: &str) -> Result<Self> {
        Self::open_with(path, files, data, stem, &TorchOptions::default())
    }

    /// [`TorchSource::open`], with deflated zip members (and the tensors' total) bounded by
    /// `max_decompressed`.
    pub fn open_limited(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        stem: &str,
        max_decompressed: u64,
    ) -> Result<Self> {
        let opts = TorchOptions {
            max_bytes: max_decompressed,
            ..Default::default()
        };
        Self::open_with(path, files, data, stem, &opts)
    }

    /// Opens a torch file (torch.save, TorchScript or torch.export archive).
    pub fn open_with(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        stem: &str,
        opts: &TorchOptions,
    ) -> Result<Self> {
        let mut head = [0u8; 32];
        let n = (data.len() as usize).min(32);
        data.read_at(0, &mut head[..n])?;
        let at = Opening {
            path,
            files,
            data,
            stem,
            opts,
        };
        if is_mobile_flatbuffer(&head[..n]) {
            bail!("a PyTorch Mobile flatbuffer module (_save_for_lite_interpreter(_use_flatbuffer=True) or save_jit_module_to_flatbuffer; file identifier PTMF) is not supported: save the module with torch.jit.save (or its state_dict with torch.save) instead")
        }
        let mut src = if sniff_legacy(&head[..n]) {
            container::open_legacy(at)?
        } else if head.starts_with(b"PK") {
            container::open_zip(at)?
        } else {
            bail!("not a PyTorch file: neither a zip archive nor a legacy torch.save pickle")
        };
        src.check_while_streaming = opts.check_while_streaming;
        Ok(src)
    }
}

impl TorchSource {
    fn tensor(&self, index: usize) -> Result<(&TensorRef, &StorageData, u64)> {
        match (&self.entries[index], &self.storage_of[index]) {
            (Entry::Tensor(t), Some((s, base))) => Ok((t, s, *base)),
            _ => bail!(
                "tensor '{}' cannot be converted (see the note above; --skip-unsupported leaves it out)",
                self.metas[index].name
            ),
        }
    }
}

/// Checks a storage no named tensor reads (its CRC-32; a deflated one inflated and dropped),
/// counted by `verify` through `container/zip.rs`.
fn verify(s: &StorageData) -> Result<()> {
    s.verify()
}

/// The bytes to XOR into every element of a view whose conjugate or negative bit is set, as
/// torch resolves them (`resolve_conj()`, `resolve_neg()`): the sign bit of the imaginary part
/// for `conj`, of every part for `neg`. `None` when neither bit is set.
fn sign_mask(t: &TensorRef, big_endian: bool) -> Result<Option<Vec<u8>>> {
    if !t.conj && !t.neg {
        return Ok(None);
    }
    let item = t.dtype.item_size as usize;
    // Which parts (real, imaginary) change sign.
    let flip: &[bool] = match t.dtype.dtype {
        Some(DType::C64 | DType::C128) => &[t.neg, t.neg != t.conj],
        Some(
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 | DType::F8E4M3FN | DType::F8E5M2,
        ) if !t.conj => &[true],
        _ => bail!(
            "a view with its {} bit set is not supported for dtype torch.{}",
            if t.conj { "conjugate" } else { "negative" },
            t.dtype.name
        ),
    };
    let part = item / flip.len();
    let mut mask = vec![0u8; item];
    for (i, _) in flip.iter().enumerate().filter(|(_, &f)| f) {
        mask[if big_endian {
            i * part
        } else {
            i * part + part - 1
        }] = 0x80;
    }
    Ok(Some(mask))
}

fn is_contiguous(t: &TensorRef) -> bool {
    let mut expect = 1u64;
    for (&n, &st) in t.size.iter().zip(&t.stride).rev() {
        if n != 1 && st != expect {
            return false;
        }
        expect = expect.saturating_mul(n);
    }
    true
}

impl Source for TorchSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn metas(&self) -> &[TensorMeta] {
        &self.metas
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let (t, s, base) = self.tensor(index)?;
        let item = t.dtype.item_size;
        let numel = self.metas[index].num_elements()?;
        // A contiguous tensor that is its whole storage, going to an output a failure discards:
        // the storage's CRC-32 is checked on the bytes as they stream out (one read of them, not
        // two); a corrupt byte can change only this tensor's values, and the failure discards
        // the output.
        let whole = self.check_while_streaming
            && numel > 0
            && is_contiguous(t)
            && t.offset.checked_mul(item).and_then(|o| o.checked_add(base)) == Some(0)
            && numel.checked_mul(item) == Some(s.len());
        let range = if whole { None } else { Some(s.range()?) };
        if numel == 0 {
            return Ok(());
        }
        let mask = sign_mask(t, self.metas[index].big_endian)
            .with_context(|| format!("tensor '{}'", self.metas[index].name))?;
        let mut flipped = Vec::new();
        let mut resolve = |c: &[u8]| -> Result<()> {
            let Some(mask) = &mask else { return sink(c) };
            flipped.clear();
            flipped.extend_from_slice(c);
            for (b, m) in flipped.iter_mut().zip(mask.iter().cycle()) {
                *b ^= m;
            }
            sink(&flipped)
        };
        let sink: &mut ChunkSink = &mut resolve;
        let Some(range) = range else {
            return s.stream_checking(item as usize, chunk, sink);
        };
        if is_contiguous(t) {
            let r = range.slice(base + t.offset * item, numel * item)?;
            return r.stream(item as usize, chunk, sink);
        }
        gather(
            t,
            &range,
            base,
            chunk,
            GATHER_WINDOW.max(chunk as u64),
            sink,
        )
    }

    fn read_strings(&mut self, index: usize, _sink: &mut ChunkSink) -> Result<()> {
        bail!("tensor '{}' is not a string tensor", self.metas[index].name)
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        let (t, s, base) = self.tensor(index).ok()?;
        let meta = &self.metas[index];
        if meta.big_endian || t.conj || t.neg || !is_contiguous(t) {
            return None;
        }
        let n = meta.num_elements().ok()?;
        s.range()
            .ok()?
            .slice(base + t.offset * t.dtype.item_size, n * t.dtype.item_size)
            .ok()
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts::with_notes(&self.notes)
    }
}

/// Streams a strided view in C order. Offsets were validated by `check_view`. When the span of
/// storage the view touches fits in `GATHER_WINDOW`, it is read once into memory; otherwise
/// each contiguous run is read where it lies, through a one-block cache (`GATHER_BLOCK`).
fn gather(
    t: &TensorRef,
    range: &FileRange,
    base: u64,
    chunk: usize,
    window_limit: u64,
    sink: &mut ChunkSink,
) -> Result<()> {
    let item = t.dtype.item_size;
    let nd = t.size.len();
    // The innermost dimensions that are contiguous form one run.
    let mut run = 1u64;
    let mut k = nd;
    while k > 0 && (t.size[k - 1] == 1 || t.stride[k - 1] == run) {
        run *= t.size[k - 1];
        k -= 1;
    }
    let mut last = t.offset;
    for (&n, &st) in t.size.iter().zip(&t.stride) {
        last += (n - 1) * st;
    }
    let span = (last + 1 - t.offset) * item;
    let window = if span <= window_limit {
        Some(range.read_vec(base + t.offset * item, span as usize)?)
    } else {
        None
    };
    let mut cache = crate::container::cursor::Window::new(range.clone(), GATHER_BLOCK as usize);
    let run_bytes = run * item;
    let step = ((chunk as u64 / item).max(1) * item) as usize;
    let mut out: Vec<u8> = Vec::with_capacity(step);
    let mut idx = vec![0u64; k];
    loop {
        let mut at = t.offset;
        for (i, st) in idx.iter().zip(&t.stride) {
            at += i * st;
        }
        let mut done = 0u64;
        while done < run_bytes {
            let take = (run_bytes - done).min((step - out.len()) as u64) as usize;
            let from = (at - t.offset) * item + done;
            let len = out.len();
            out.resize(len + take, 0);
            match &window {
                Some(w) => out[len..].copy_from_slice(&w[from as usize..from as usize + take]),
                None => cache.read(base + t.offset * item + from, &mut out[len..])?,
            }
            done += take as u64;
            if out.len() == step {
                sink(&out)?;
                out.clear();
            }
        }
        // Next line, last dimension fastest.
        if !crate::tensor::next_index(&mut idx, &t.size[..k]) {
            if !out.is_empty() {
                sink(&out)?;
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::source::pickle::{self, StorageRef, Value};

    fn tensor(offset: u64, size: &[u64], stride: &[u64]) -> TensorRef {
        TensorRef {
            storage: Arc::new(StorageRef {
                dtype: pickle::TorchDType {
                    name: "int16",
                    dtype: Some(DType::I16),
                    item_size: 2,
                },
                key: "0".into(),
                numel: 24,
                view: None,
                big_endian: false,
            }),
            dtype: pickle::TorchDType {
                name: "int16",
                dtype: Some(DType::I16),
                item_size: 2,
            },
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
            conj: false,
            neg: false,
        }
    }

    fn gathered(t: &TensorRef, chunk: usize) -> Vec<i16> {
        let bytes: Vec<u8> = (0..24i16).flat_map(|v| v.to_le_bytes()).collect();
        let range = FileRange::from_vec(bytes);
        let mut out = Vec::new();
        gather(t, &range, 0, chunk, 1 << 20, &mut |c: &[u8]| {
            assert!(c.len() <= chunk.max(2));
            out.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        // the same through the block cache, with no in-memory window
        let mut direct = Vec::new();
        gather(t, &range, 0, chunk, 0, &mut |c: &[u8]| {
            direct.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(direct, out);
        out.chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn gathers_transposes_blocks_and_expansions_in_c_order() {
        // a 4x6 matrix 0..24, transposed: element (i, j) = j * 6 + i
        let t = tensor(0, &[6, 4], &[1, 6]);
        let want: Vec<i16> = (0..6)
            .flat_map(|i| (0..4).map(move |j| j * 6 + i))
            .collect();
        for chunk in [2, 6, 64] {
            assert_eq!(gathered(&t, chunk), want);
        }
        // block [1:3, 2:5]
        let t = tensor(8, &[2, 3], &[6, 1]);
        assert_eq!(gathered(&t, 4), vec![8, 9, 10, 14, 15, 16]);
        // stride 0: a row repeated
        let t = tensor(3, &[3, 2], &[0, 1]);
        assert_eq!(gathered(&t, 64), vec![3, 4, 3, 4, 3, 4]);
    }

    #[test]
    fn nested_names_join_with_slashes_and_a_repeated_key_keeps_its_last_value() {
        let key = |s: &str| Value::Str(s.into());
        let inner = Value::Dict(std::rc::Rc::new(std::cell::RefCell::new(vec![
            (Value::Int(0), Value::Unsupported("first")),
            (key("epoch"), Value::Int(3)),
            (Value::Int(0), Value::Unsupported("second")),
        ])));
        let root = Value::Dict(std::rc::Rc::new(std::cell::RefCell::new(vec![(
            key("state"),
            inner,
        )])));
        let mut walk = Walk::default();
        walk.visit(String::new(), &root, 0).unwrap();
        assert_eq!(walk.found.len(), 1);
        assert_eq!(walk.found[0].0, "state/0");
        assert!(matches!(walk.found[0].1, Value::Unsupported("second")));
        assert_eq!(
            (walk.skipped, walk.first_skipped.as_deref()),
            (1, Some("state/epoch"))
        );
    }

    #[test]
    fn views_past_the_storage_are_refused() {
        let storages = HashMap::from([(
            "0".to_string(),
            Arc::new(StorageData::checked(
                "s".into(),
                FileRange::from_vec(vec![0; 48]),
            )),
        )]);
        assert!(check_view("x", &tensor(0, &[4, 6], &[6, 1]), &storages).is_ok());
        let Err(e) = check_view("x", &tensor(1, &[4, 6], &[6, 1]), &storages) else {
            panic!("accepted")
        };
        assert!(format!("{e}").contains("past the end"), "{e}");
        assert!(check_view("x", &tensor(0, &[2, u64::MAX], &[1, 1 << 62]), &storages).is_err());
        assert!(check_view("x", &tensor(99, &[0], &[1]), &storages).is_ok());
    }
}
