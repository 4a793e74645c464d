//! HDF5 reader (`.h5`, Keras `.weights.h5`, classic Keras 2 `.h5`, and the `model.weights.h5`
//! inside a `.keras` archive, which `keras.rs` hands over as a byte range): every dataset, named
//! by its path without the leading `/`, valued as h5py's `ds[()]` gives it.
//!
//! The file structure (superblock, object headers, groups, B-trees, chunk indices, filters,
//! fill values, the global heap) is decoded by the `hdf5-reader` crate, never by libhdf5. Of the
//! two pure-Rust candidates it is the one for this job: read-only, hardened against malformed
//! input (bounded allocations, cycle and depth limits) and fuzzed upstream; it reads through a
//! `Storage` trait, so it works on positioned reads of a [`FileRange`] (a plain file, or a
//! stored member of a zip) without mapping or loading the file; it reads hyperslabs
//! (`read_slice`), which gives bounded memory for chunked data; and its MSRV (1.81) fits ours,
//! where `hdf5-pure` needs Rust 1.89 and reads whole datasets.
//!
//! Streaming: a contiguous, unfiltered dataset is a byte range of the input, streamed (or copied
//! whole, `raw_range`) with positioned reads. Anything else (chunked, filtered, compact, never
//! written) is read through the crate in row-major blocks: along the first axis whose trailing
//! extent fits the chunk size, in runs aligned to the dataset's chunk shape (or along an earlier
//! axis, a row of chunks at a time, where a chunk spans several indices of it), so that every
//! chunk is inflated once and memory stays bounded by the chunk size or one row of HDF5 chunks
//! (at most 64 MiB; a wider row is read a slice at a time), whichever is larger. The chunks of a
//! block are inflated side by side on rayon's pool, sized to the `--jobs` workers.
//!
//! Types: integers and floats of either byte order (`big_endian` set for the pipeline to swap),
//! h5py's bool enum, other enums as their base integer, h5py's `(r, i)` compound as complex,
//! array types as trailing dimensions, fixed and variable-length strings as `|S<n>`, and Keras
//! 3's bfloat16 (a 2-byte opaque type with the attribute `dtype='bfloat16'`). Everything else
//! (other compounds, references, opaque, variable-length sequences), and data stored through a
//! filter `filters.rs` does not decode (Blosc, Zstandard ... from hdf5plugin or PyTables), is
//! listed with dtype `resource`, shown as what it is ("HDF5 compound (a, b)", "Blosc-compressed
//! float32 ..."), which the pipeline refuses, naming the dataset, unless `--skip-unsupported`.
//! Bitfields (PyTables' bool arrays) are unsigned integers, as h5py reads them.
//!
//! `blocks.rs` holds the storage adapter and the block walk; `filters.rs` the filter registry
//! (hdf5-reader's decoders with explicit output limits, and a faster unshuffle); `rows.rs` reads
//! the chunked datasets whose chunks hold whole rows (shuffle, deflate and Fletcher-32 at most)
//! chunk by chunk itself, without the crate's per-block array and copies.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use hdf5_reader::group::Group;
use hdf5_reader::messages::HdfMessage;
use hdf5_reader::{ByteOrder, Dataset, Datatype, Hdf5File, StringPadding, StringSize, VarLenKind};

use blocks::{for_each_element, stream_fixed, RangeStorage};

use super::{Input, OpenOptions, Reader, Sniff};

mod blocks;
mod external;
mod filters;
/// h5py's LZF decoder, public for its fuzz target (`fuzz/fuzz_targets/hdf5_lzf.rs`).
pub use filters::lzf_decompress;
mod links;
mod rows;
mod stored;
use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::{checked_elements, ChunkSink, Facts, InputFacts, Kind, Source, TensorMeta};

pub static READER: Reader = Reader {
    name: "hdf5",
    about: "HDF5 files: Keras .weights.h5 and .h5, any h5py file",
    extensions: &[".weights.h5", ".h5", ".hdf5", ".he5"],
    sniff,
    open,
};

/// The HDF5 signature; it sits at offset 0, 512, 1024, ... (after a user block).
pub const MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// The signature at the start of the file or after a user block of 512, 1024 or 2048 bytes.
fn sniff(input: &Input) -> Sniff {
    let head = &input.head;
    let found = [0usize, 512, 1024, 2048]
        .iter()
        .any(|&at| head.get(at..at + 8) == Some(&MAGIC[..]));
    if found {
        Sniff::Yes
    } else {
        Sniff::No
    }
}

fn open(input: &Input, _opts: &OpenOptions) -> Result<Box<dyn Source>> {
    // External raw storage resolves beside a local file or a remote object, not beside
    // standard input.
    let beside = match input.files.as_slice() {
        [one] => external::Beside::of(one),
        [] if crate::input::url_of(&input.path).is_some() => external::Beside::of(&input.path),
        _ => None,
    };
    Ok(Box::new(Hdf5Source::open_with(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
        beside,
    )?))
}

/// The largest HDF5 chunk decoded (a chunk is inflated whole): h5py's automatic chunks are at
/// most 1 MiB, so this refuses only chunk bombs (a 260 KB file declaring a 256 MiB gzip chunk)
/// and files chunked far beyond what h5py and Keras write.
const MAX_CHUNK_BYTES: usize = 64 << 20;

/// How deep groups may nest before the walk gives up (the crate guards cycles in its own
/// structures; this guards the group graph, which hard links can make cyclic).
const MAX_DEPTH: usize = 64;

/// What a dataset's elements become.
#[derive(Clone, Debug)]
enum Elem {
    /// Fixed-size numbers: the dtype, whether stored big-endian, trailing dims of an array type.
    Numeric {
        dtype: DType,
        big_endian: bool,
        extra_dims: Vec<u64>,
    },
    /// Fixed-length strings of `size` bytes.
    Fixed { size: u64, nullterm: bool },
    /// Variable-length strings (global heap references).
    Vlen,
    /// No NumPy form; the text says what it was.
    Unsupported(String),
}

fn classify(dt: &Datatype, bf16_attr: bool) -> Elem {
    let numeric = |dtype, order: &ByteOrder| Elem::Numeric {
        dtype,
        big_endian: *order == ByteOrder::BigEndian,
        extra_dims: Vec::new(),
    };
    match dt {
        Datatype::FixedPoint {
            size,
            signed,
            byte_order,
        } => match (size, signed) {
            (1, true) => numeric(DType::I8, byte_order),
            (1, false) => numeric(DType::U8, byte_order),
            (2, true) => numeric(DType::I16, byte_order),
            (2, false) => numeric(DType::U16, byte_order),
            (4, true) => numeric(DType::I32, byte_order),
            (4, false) => numeric(DType::U32, byte_order),
            (8, true) => numeric(DType::I64, byte_order),
            (8, false) => numeric(DType::U64, byte_order),
            _ => Elem::Unsupported(format!("HDF5 {size}-byte integer")),
        },
        Datatype::FloatingPoint { size, byte_order } => match size {
            2 => numeric(DType::F16, byte_order),
            4 => numeric(DType::F32, byte_order),
            8 => numeric(DType::F64, byte_order),
            _ => Elem::Unsupported(format!("HDF5 {size}-byte float")),
        },
        Datatype::Enum { base, members } => {
            // h5py stores NumPy bool as an int8 enum {FALSE: 0, TRUE: 1} and reads it as bool;
            // any other enum reads as its base integer type.
            let is_bool = matches!(**base, Datatype::FixedPoint { size: 1, .. })
                && members.len() == 2
                && members
                    .iter()
                    .any(|m| m.name == "FALSE" && m.value.as_slice() == [0])
                && members
                    .iter()
                    .any(|m| m.name == "TRUE" && m.value.as_slice() == [1]);
            if is_bool {
                return Elem::Numeric {
                    dtype: DType::Bool,
                    big_endian: false,
                    extra_dims: Vec::new(),
                };
            }
            match classify(base, false) {
                e @ Elem::Numeric { .. } => e,
                _ => Elem::Unsupported("HDF5 enum over a non-integer type".into()),
            }
        }
        Datatype::Compound { size, fields } => {
            // h5py's complex numbers: fields named r and i, two floats of one size and order.
            if let [r, i] = fields.as_slice() {
                if let (
                    Datatype::FloatingPoint {
                        size: a,
                        byte_order: oa,
                    },
                    Datatype::FloatingPoint {
                        size: b,
                        byte_order: ob,
                    },
                ) = (&r.datatype, &i.datatype)
                {
                    let dtype = match a {
                        4 => Some(DType::C64),
                        8 => Some(DType::C128),
                        _ => None,
                    };
                    if let Some(dtype) = dtype.filter(|_| {
                        r.name == "r"
                            && i.name == "i"
                            && a == b
                            && oa == ob
                            && r.byte_offset == 0
                            && i.byte_offset == u32::from(*a)
                            && *size == 2 * u32::from(*a)
                    }) {
                        return numeric(dtype, oa);
                    }
                }
            }
            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            Elem::Unsupported(format!("HDF5 compound ({})", names.join(", ")))
        }
        Datatype::Array { base, dims } => match classify(base, bf16_attr) {
            Elem::Numeric {
                dtype,
                big_endian,
                extra_dims,
            } if extra_dims.is_empty() => Elem::Numeric {
                dtype,
                big_endian,
                extra_dims: dims.clone(),
            },
            _ => Elem::Unsupported("HDF5 array of non-numeric elements".into()),
        },
        Datatype::String {
            size: StringSize::Fixed(n),
            padding,
            ..
        } => Elem::Fixed {
            size: u64::from(*n),
            nullterm: *padding == StringPadding::NullTerminate,
        },
        Datatype::VarLen {
            base,
            kind: VarLenKind::String,
            ..
        } if base.is_vlen_string_base() => Elem::Vlen,
        Datatype::Opaque { size: 2, .. } if bf16_attr => Elem::Numeric {
            dtype: DType::BF16,
            big_endian: false,
            extra_dims: Vec::new(),
        },
        Datatype::Opaque { size, .. } => Elem::Unsupported(format!("HDF5 {size}-byte opaque")),
        Datatype::Reference { .. } => Elem::Unsupported("HDF5 reference".into()),
        // h5py reads a bitfield (PyTables' bool arrays are 8-bit ones) as the unsigned integer
        // of its size.
        Datatype::Bitfield { size, byte_order } => match size {
            1 => numeric(DType::U8, byte_order),
            2 => numeric(DType::U16, byte_order),
            4 => numeric(DType::U32, byte_order),
            8 => numeric(DType::U64, byte_order),
            _ => Elem::Unsupported(format!("HDF5 {size}-byte bitfield")),
        },
        Datatype::VarLen { .. } => Elem::Unsupported("HDF5 variable-length sequence".into()),
        Datatype::String { .. } => Elem::Unsupported("HDF5 string of no fixed size".into()),
    }
}

struct Entry {
    dataset: Dataset,
    elem: Elem,
    /// The dataset's own shape (without array-type dims).
    shape: Vec<u64>,
    /// Bytes per stored element (of `shape`).
    elem_size: usize,
    /// The stored bytes, for a contiguous, unfiltered, written dataset.
    range: Option<FileRange>,
}

pub struct Hdf5Source {
    path: String,
    files: Vec<PathBuf>,
    /// Every dataset's metadata, and how to read it.
    metas: Vec<TensorMeta>,
    entries: Vec<Entry>,
    /// What the container around the file says (a `.keras` archive's config), for `list
    /// --metadata`.
    metadata: Option<serde_json::Value>,
    /// Datasets left out (virtual ones).
    notes: Vec<String>,
    /// The open file and its bytes, for chunks read without the crate's block walk (`rows.rs`).
    file: Hdf5File,
    data: FileRange,
}

impl Hdf5Source {
    /// Opens the HDF5 file held by `data` and lists every dataset (external raw storage is not
    /// resolved: the file is no plain local file).
    pub fn open(path: &str, files: Vec<PathBuf>, data: FileRange) -> Result<Hdf5Source> {
        Hdf5Source::open_with(path, files, data, None)
    }

    /// [`Hdf5Source::open`], with external raw data files resolved by `external`.
    fn open_with(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        external: Option<Arc<dyn hdf5_reader::ExternalFileResolver>>,
    ) -> Result<Hdf5Source> {
        // Until the walk has seen every dataset, a filter stage may decode the largest chunk
        // the reader accepts; then at most the file's own largest chunk (filters.rs).
        let largest = Arc::new(AtomicUsize::new(MAX_CHUNK_BYTES));
        let mut options = hdf5_reader::OpenOptions::default()
            .with_chunk_cache_bytes(1 << 20)
            .with_max_chunk_bytes(MAX_CHUNK_BYTES)
            .with_filter_registry(filters::registry(largest.clone()));
        if let Some(r) = external {
            options = options.with_external_file_resolver(r);
        }
        let file =
            Hdf5File::from_storage_with_options(Arc::new(RangeStorage(data.clone())), options)
                .context("not a readable HDF5 file")?;
        let base = file.superblock().base_address;
        let root = file.root_group().context("cannot read the root group")?;
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut notes = Vec::new();
        walk(&file, &root, "", 0, &mut seen, &mut found, &mut notes)?;
        let file_largest = filters::largest_chunk(found.iter().map(|(_, d)| d), MAX_CHUNK_BYTES);
        largest.store(file_largest, Ordering::Relaxed);
        let (mut metas, mut entries) = (Vec::new(), Vec::new());
        for (name, ds) in found {
            let (meta, entry) = describe(&file, &data, base, name, ds)?;
            metas.push(meta);
            entries.push(entry);
        }
        Ok(Hdf5Source {
            path: path.to_string(),
            files,
            metas,
            entries,
            metadata: None,
            notes,
            file,
            data,
        })
    }

    /// The input's own metadata, which `list --metadata` shows.
    pub fn with_metadata(mut self, metadata: Option<serde_json::Value>) -> Hdf5Source {
        self.metadata = metadata;
        self
    }
}

/// Collects every dataset below `group` in name order, each object once and through hard links
/// only (as h5py's `visititems` does: soft and external links are not followed), refusing group
/// graphs deeper than [`MAX_DEPTH`].
fn walk(
    file: &Hdf5File,
    group: &Group,
    prefix: &str,
    depth: usize,
    seen: &mut HashSet<u64>,
    out: &mut Vec<(String, Dataset)>,
    notes: &mut Vec<String>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!("groups nest deeper than {MAX_DEPTH} levels at '{prefix}'");
    }
    let links = links::read(file, group).with_context(|| format!("group '/{prefix}'"))?;
    let (mut groups, mut datasets) = match group.members() {
        Ok(members) => members,
        Err(e) if links::is_virtual(&e) => links::one_by_one(group, prefix, &links.hard, notes)?,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot list group '/{prefix}'")))
        }
    };
    groups.sort_by(|a, b| a.name().cmp(b.name()));
    datasets.sort_by(|a, b| a.name().cmp(b.name()));
    // h5py visits a group's members in name order, groups and datasets interleaved.
    let mut items: Vec<(String, Option<Group>, Option<Dataset>)> = Vec::new();
    for g in groups {
        items.push((g.name().to_string(), Some(g), None));
    }
    for d in datasets {
        items.push((d.name().to_string(), None, Some(d)));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, g, d) in items {
        if links.soft.contains(&name) {
            continue;
        }
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if let Some(g) = g {
            if seen.insert(g.address()) {
                walk(file, &g, &full, depth + 1, seen, out, notes)?;
            }
        } else if let Some(d) = d {
            if seen.insert(d.address()) {
                out.push((full, d));
            }
        }
    }
    Ok(())
}

fn describe(
    file: &Hdf5File,
    data: &FileRange,
    base: u64,
    name: String,
    ds: Dataset,
) -> Result<(TensorMeta, Entry)> {
    let context = || format!("dataset '{name}'");
    let bf16_attr = matches!(ds.dtype(), Datatype::Opaque { size: 2, .. })
        && ds
            .attribute("dtype")
            .ok()
            .and_then(|a| a.read_string().ok())
            .is_some_and(|s| s == "bfloat16");
    let shape = ds.shape().to_vec();
    // A dimension past its maximum (H5S_UNLIMITED aside: all ones in the file's 2, 4 or 8-byte
    // lengths) is no dataspace HDF5 writes or opens.
    const UNLIMITED: [u64; 3] = [u16::MAX as u64, u32::MAX as u64, u64::MAX];
    if let Some(max) = ds.max_dims() {
        if let Some((d, m)) = shape
            .iter()
            .zip(max)
            .find(|(d, m)| d > m && !UNLIMITED.contains(*m))
        {
            return Err(anyhow!(
                "a dimension of {d} is past its maximum {m} (a damaged dataspace)"
            ))
            .with_context(context);
        }
    }
    // A null dataspace (h5py.Empty) has no elements and no array form.
    let null = shape.is_empty() && ds.num_elements().is_ok_and(|n| n == 0);
    let elem = if null {
        Elem::Unsupported("HDF5 null dataspace (h5py.Empty)".into())
    } else if let Some(what) = ds
        .raw_element_size()
        .ok()
        .and_then(|size| filters::unknown_filter(file, &ds, size as u64))
    {
        Elem::Unsupported(what)
    } else {
        classify(ds.dtype(), bf16_attr)
    };
    let count = checked_elements(&shape).with_context(context)?;
    let elem_size = ds
        .raw_element_size()
        .map_err(anyhow::Error::new)
        .with_context(context)?;
    let stored_bytes = count
        .checked_mul(elem_size as u64)
        .ok_or_else(|| anyhow!("{}: the dataset's size overflows", context()))?;
    let (dtype, big_endian, full_shape, kind, max_string_len) = match &elem {
        Elem::Numeric {
            dtype,
            big_endian,
            extra_dims,
        } => {
            let mut s = shape.clone();
            s.extend_from_slice(extra_dims);
            checked_elements(&s).with_context(context)?;
            (*dtype, *big_endian, s, Kind::Dense, None)
        }
        Elem::Fixed { size, .. } => (
            DType::String,
            false,
            shape.clone(),
            Kind::String,
            Some(*size),
        ),
        Elem::Vlen => {
            let mut longest = 0u64;
            for_each_element(&ds, &shape, elem_size, 1 << 20, &mut |e| {
                // A variable-length reference starts with its length in bytes.
                let len = e
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                longest = longest.max(u64::from(len.unwrap_or(0)));
                Ok(())
            })
            .with_context(context)?;
            (
                DType::String,
                false,
                shape.clone(),
                Kind::String,
                Some(longest),
            )
        }
        Elem::Unsupported(_) => (DType::Resource, false, shape.clone(), Kind::Dense, None),
    };
    let range = match elem {
        Elem::Numeric { .. } => {
            contiguous_range(file, data, base, &ds, stored_bytes).with_context(context)?
        }
        _ => None,
    };
    // BYTES is what the dataset occupies: for a chunked one, its chunks as stored.
    let stored_bytes = match stored::chunked_bytes(file, &ds, elem_size as u64) {
        Ok(Some(n)) => n,
        Ok(None) | Err(_) => stored_bytes,
    };
    let meta = TensorMeta {
        name,
        dtype,
        shape: full_shape,
        kind,
        stored_bytes,
        max_string_len,
        big_endian,
        ragged_rank: 0,
        // what an unsupported dataset is, for `list` and the refusal ("dtype <this> has no
        // NumPy form")
        facts: Facts {
            source_dtype: match &elem {
                Elem::Unsupported(what) => Some(what.clone()),
                _ => None,
            },
            ..Facts::default()
        },
    };
    let entry = Entry {
        dataset: ds,
        elem,
        shape,
        elem_size,
        range,
    };
    Ok((meta, entry))
}

/// The stored bytes of a contiguous, unfiltered dataset whose data has been written, checked
/// to lie inside the input.
fn contiguous_range(
    file: &Hdf5File,
    data: &FileRange,
    base: u64,
    ds: &Dataset,
    bytes: u64,
) -> Result<Option<FileRange>> {
    let header = file
        .get_or_parse_header(ds.address())
        .context("cannot read the object header")?;
    let mut layout = None;
    for m in &header.messages {
        match m {
            HdfMessage::DataLayout(l) => layout = Some(l.layout.clone()),
            HdfMessage::FilterPipeline(_) | HdfMessage::ExternalFiles(_) => return Ok(None),
            _ => {}
        }
    }
    let Some(hdf5_reader::messages::layout::DataLayout::Contiguous { address, size }) = layout
    else {
        return Ok(None);
    };
    let offset_size = file.superblock().offset_size;
    if hdf5_reader::io::Cursor::is_undefined_offset(address, offset_size) || bytes == 0 {
        return Ok(None); // never written: the fill value, through the crate
    }
    if size < bytes {
        bail!("its contiguous storage holds {size} bytes, its shape needs {bytes}");
    }
    let start = base
        .checked_add(address)
        .ok_or_else(|| anyhow!("its data address {address} overflows"))?;
    let range = data
        .slice(start, bytes)
        .context("its data lies past the end of the file")?;
    Ok(Some(range))
}

impl Source for Hdf5Source {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        Ok(self.metadata.clone())
    }

    fn metas(&self) -> &[TensorMeta] {
        &self.metas
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts::with_notes(&self.notes)
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let e = &self.entries[index];
        let dtype = match &e.elem {
            Elem::Numeric { dtype, .. } => dtype,
            Elem::Unsupported(what) => bail!("dtype {what} has no NumPy form"),
            _ => bail!("not a numeric dataset"),
        };
        let unit = dtype.item_size().unwrap_or(1);
        if let Some(range) = &e.range {
            return range.stream(unit, chunk, sink);
        }
        let ds = &e.dataset;
        // Chunks of whole rows, read and decoded here (rows.rs); anything else through the crate.
        if let Some(plan) = rows::plan(
            &self.file,
            &self.data,
            ds,
            &e.shape,
            e.elem_size,
            MAX_CHUNK_BYTES,
        ) {
            return plan.stream(chunk, sink);
        }
        match e.elem_size {
            1 => stream_fixed::<1>(ds, &e.shape, chunk, sink),
            2 => stream_fixed::<2>(ds, &e.shape, chunk, sink),
            4 => stream_fixed::<4>(ds, &e.shape, chunk, sink),
            8 => stream_fixed::<8>(ds, &e.shape, chunk, sink),
            16 => stream_fixed::<16>(ds, &e.shape, chunk, sink),
            size => {
                // array types of odd total size: whole elements, re-chunked
                let per = (chunk / size).max(1) * size;
                let mut buf = Vec::with_capacity(per.min(1 << 20));
                for_each_element(ds, &e.shape, size, chunk, &mut |el| {
                    if buf.len() + el.len() > per {
                        sink(&buf)?;
                        buf.clear();
                    }
                    buf.extend_from_slice(el);
                    Ok(())
                })?;
                if !buf.is_empty() {
                    sink(&buf)?;
                }
                Ok(())
            }
        }
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let e = &self.entries[index];
        let ds = &e.dataset;
        match e.elem {
            Elem::Fixed { nullterm, .. } => {
                for_each_element(ds, &e.shape, e.elem_size, 1 << 20, &mut |el| {
                    // NumPy's |S drops trailing NULs; a null-terminated string ends at its first.
                    let end = if nullterm {
                        el.iter().position(|&b| b == 0).unwrap_or(el.len())
                    } else {
                        el.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
                    };
                    sink(&el[..end])
                })
            }
            Elem::Vlen => for_each_element(ds, &e.shape, e.elem_size, 1 << 20, &mut |el| {
                let bytes = ds
                    .resolve_vlen_reference_bytes(el, 1)
                    .map_err(anyhow::Error::new)?;
                sink(&bytes)
            }),
            _ => bail!("not a string dataset"),
        }
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        let e = &self.entries[index];
        match e.elem {
            Elem::Numeric {
                big_endian: false, ..
            } => e.range.clone(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
