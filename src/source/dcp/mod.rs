//! PyTorch Distributed Checkpoints (`torch.distributed.checkpoint`, `dcp.save`): a folder, local
//! or in a bucket, holding `.metadata` (a pickle of dataclasses, read as inert records by
//! `meta.rs`; torch is never needed) and the `__<rank>_<n>.distcp` files the ranks wrote, or the
//! `.metadata` file itself. Each tensor is named by the state-dict path DCP's planner recorded,
//! joined with `/` as for `torch.save` containers (`model/0.weight`, `optim/state/0/exp_avg`);
//! bytes items (pickled non-tensor values: `step`, optimizer `param_groups`) are left out with a
//! note.
//!
//! Every chunk of a tensor is a complete `torch.save` archive at the offset and length the
//! metadata records; it is opened with the PyTorch reader (`torch/`), its dtype and shape
//! checked against the metadata, and read where it lies (a non-contiguous one is first gathered
//! into a temporary file). The chunks of a sharded tensor (DTensor, FSDP) are placed at their
//! offsets by `assemble.rs` in bounded memory. Before anything is read, every data file must
//! exist and every item must lie inside it, and the chunks of each tensor must tile it
//! exactly; any breach is an error naming the file and the tensor.
//!
//! The safetensors variant (`HuggingFaceStorageWriter(save_distributed=True)`: a safetensors file
//! per rank, each shard's offsets in the header's `DCP_SHARDING_INFO`) is `hf.rs`; the
//! non-distributed one writes a plain Hugging Face folder, which the `huggingface` reader opens.

pub mod assemble;
mod hf;
pub mod meta;

use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use self::assemble::{Piece, Region};
use super::folder;
use super::torch::TorchSource;
use super::zarr::join;
use super::{Input, OpenOptions, Reader, Sniff};
use crate::dtype::DType;
use crate::input::{self, FileRange, RangeReader};
use crate::tensor::{ChunkSink, InputFacts, Kind, Source, TensorMeta};

pub static READER: Reader = Reader {
    name: "dcp",
    about: "a PyTorch Distributed Checkpoint folder (.metadata + .distcp, or its safetensors variant; shards reassembled)",
    extensions: &[],
    sniff,
    open,
};

/// The largest `.metadata` read.
const MAX_METADATA: u64 = 1 << 30;

fn sniff(input: &Input) -> Sniff {
    if input.is_dir {
        if input::is_file(&join(&input.path, ".metadata")) || hf::is_sharded_folder(&input.path) {
            return Sniff::Yes;
        }
        return Sniff::No;
    }
    let named = input.path.file_name().is_some_and(|n| n == ".metadata");
    let marker = b"torch.distributed.checkpoint";
    let head = &input.head;
    if named && head.first() == Some(&0x80) && head.windows(marker.len()).any(|w| w == marker) {
        return Sniff::Yes;
    }
    Sniff::No
}

fn open(input: &Input, _opts: &OpenOptions) -> Result<Box<dyn Source>> {
    if input.is_dir && !input::is_file(&join(&input.path, ".metadata")) {
        return Ok(Box::new(hf::open(&input.path, &input.display)?));
    }
    let dir = if input.is_dir {
        input.path.clone()
    } else {
        match input.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    Ok(Box::new(DcpSource::open(&dir, &input.display)?))
}

/// Where a chunk's bytes come from.
enum Bytes {
    /// A `torch.save` archive: the file's index in `files`, and the range within it.
    TorchSave { file: usize, range: FileRange },
    /// Raw C-order bytes (a safetensors tensor).
    Raw(FileRange),
    /// Tensor `index` of a bytes item's `torch.save` archive (a tuple or, with
    /// `flatten_state_dict=False`, a whole nested dict pickled as one value).
    Inner {
        file: usize,
        range: FileRange,
        index: usize,
    },
}

struct Chunk {
    region: Region,
    bytes: Bytes,
}

/// One tensor to read: its metadata, its global shape and its chunks.
struct Entry {
    meta: TensorMeta,
    /// Bytes per element.
    item: u64,
    chunks: Vec<Chunk>,
}

/// A Distributed Checkpoint, or its safetensors variant.
pub struct DcpSource {
    path: String,
    /// The data files by name, for messages.
    file_names: Vec<String>,
    entries: Vec<Entry>,
    input_files: Vec<PathBuf>,
    notes: Vec<String>,
    format: String,
}

impl DcpSource {
    /// Opens the checkpoint in folder `dir`.
    pub fn open(dir: &Path, display: &str) -> Result<DcpSource> {
        let meta_path = join(dir, ".metadata");
        let data = input::open_range(&meta_path)?;
        if data.len() > MAX_METADATA {
            bail!(
                "{}: {} bytes is larger than expected",
                meta_path.display(),
                data.len()
            );
        }
        let ckpt = meta::parse(&mut BufReader::new(RangeReader::new(data)))
            .with_context(|| meta_path.display().to_string())?;
        let mut input_files = Vec::new();
        if input::url_of(dir).is_none() {
            input_files.push(meta_path.clone());
        }
        let mut file_names: Vec<String> = Vec::new();
        let mut ranges: Vec<FileRange> = Vec::new();
        let mut entries = Vec::new();
        let mut notes = Vec::new();
        for t in &ckpt.tensors {
            let at = || format!("{}: the tensor '{}'", display, t.name);
            let Some(dtype) = t.dtype.dtype else {
                notes.push(format!(
                    "'{}' left out: dtype torch.{} has no NumPy form",
                    t.name, t.dtype.name
                ));
                continue;
            };
            let mut chunks = Vec::with_capacity(t.chunks.len());
            let mut stored_bytes = 0u64;
            for c in &t.chunks {
                let s = &c.stored;
                if !s.transforms.is_empty() {
                    bail!(
                        "{}: its chunk in {} was saved through the extensions {:?}, which tensor2npy does not undo",
                        at(),
                        s.file,
                        s.transforms
                    );
                }
                let k = match file_names.iter().position(|n| *n == s.file) {
                    Some(k) => k,
                    None => {
                        let p = data_file(dir, &s.file).with_context(at)?;
                        let r = input::open_range(&p).with_context(|| {
                            format!("{}: its data file {} cannot be opened", at(), p.display())
                        })?;
                        if input::url_of(dir).is_none() {
                            input_files.push(p);
                        }
                        file_names.push(s.file.clone());
                        ranges.push(r);
                        file_names.len() - 1
                    }
                };
                let range = ranges[k].slice(s.offset, s.length).map_err(|_| {
                    anyhow!(
                        "{}: its chunk at {:?} lies at bytes {}..{} of {}, past the end of the file ({} bytes; truncated?)",
                        at(),
                        c.region.offsets,
                        s.offset,
                        s.offset as u128 + s.length as u128,
                        join(dir, &s.file).display(),
                        ranges[k].len()
                    )
                })?;
                stored_bytes = stored_bytes.saturating_add(s.length);
                chunks.push(Chunk {
                    region: c.region.clone(),
                    bytes: Bytes::TorchSave { file: k, range },
                });
            }
            entries.push(Entry {
                meta: tensor_meta(&t.name, dtype, &t.size, stored_bytes),
                item: t.dtype.item_size,
                chunks,
            });
        }
        // Bytes items holding tensors (`dcp.load` restores them with torch.load): each tensor
        // of the item's archive, named under the item; the others are left out with a note.
        let mut left_out: Vec<&str> = Vec::new();
        for (name, stored) in &ckpt.bytes {
            let found = match stored {
                Some(s) if s.transforms.is_empty() => bytes_item_tensors(
                    dir,
                    display,
                    name,
                    s,
                    &mut file_names,
                    &mut ranges,
                    &mut input_files,
                )?,
                _ => Vec::new(),
            };
            if found.is_empty() {
                left_out.push(name);
            }
            entries.extend(found);
        }
        if !left_out.is_empty() {
            let shown: Vec<&str> = left_out.iter().take(8).copied().collect();
            notes.push(format!(
                "{} non-tensor value(s) left out (DCP bytes items, pickled Python objects): {}{}",
                left_out.len(),
                shown.join(", "),
                if left_out.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ));
        }
        let format = match &ckpt.version {
            Some(v) => format!("dcp (metadata version {v})"),
            None => "dcp".to_string(),
        };
        Ok(DcpSource {
            path: display.to_string(),
            file_names,
            entries,
            input_files,
            notes,
            format,
        })
    }

    /// The bytes of chunk `c` of tensor `index`, raw and in C order; with `gather` false,
    /// `None` for a strided chunk instead of gathering it into a temporary file.
    fn chunk_bytes(&self, index: usize, c: &Chunk, gather: bool) -> Result<Option<FileRange>> {
        let e = &self.entries[index];
        let (file, range, inner) = match &c.bytes {
            Bytes::Raw(r) => return Ok(Some(r.clone())),
            Bytes::TorchSave { file, range } => (*file, range, None),
            Bytes::Inner { file, range, index } => (*file, range, Some(*index)),
        };
        let what = format!(
            "{}/{} at byte {}: the chunk of '{}' at {:?}",
            self.path.trim_end_matches('/'),
            self.file_names[file],
            range.file_offset(),
            e.meta.name,
            c.region.offsets
        );
        let mut head = [0u8; 4];
        if range.len() < 4 || range.read_at(0, &mut head).is_err() || &head != b"PK\x03\x04" {
            bail!("{what}: not a torch.save archive");
        }
        let mut item = TorchSource::open(&what, Vec::new(), range.clone(), "chunk")
            .with_context(|| what.clone())?;
        let k = inner.unwrap_or(0);
        if inner.is_none() && item.len() != 1 {
            bail!("{what}: the archive holds {} tensors, not one", item.len());
        }
        if k >= item.len() {
            bail!("{what}: the archive holds {} tensors", item.len());
        }
        let m = item.meta(k).with_context(|| what.clone())?;
        if m.dtype != e.meta.dtype || m.shape != c.region.sizes || m.big_endian {
            bail!(
                "{what}: the archive holds a {} tensor of shape {:?}, the metadata says {} {:?}",
                m.dtype.name(),
                m.shape,
                e.meta.dtype.name(),
                c.region.sizes
            );
        }
        if let Some(r) = item.raw_range(k) {
            return Ok(Some(r));
        }
        if !gather {
            return Ok(None);
        }
        // A strided chunk: gathered into a temporary file once.
        use std::io::Write;
        let tmp = tempfile::tempfile().context("cannot create a temporary file for a chunk")?;
        let mut w = std::io::BufWriter::new(tmp);
        item.read_dense(k, 1 << 20, &mut |b: &[u8]| {
            w.write_all(b)
                .context("cannot write a chunk to a temporary file")
        })
        .with_context(|| what.clone())?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        FileRange::whole(file).map(Some)
    }
}

/// The tensors of bytes item `name` (its `torch.save` archive at `s`), as entries named
/// `name/<path in the item>`; none where the item holds no tensor or is no archive.
fn bytes_item_tensors(
    dir: &Path,
    display: &str,
    name: &str,
    s: &meta::Stored,
    file_names: &mut Vec<String>,
    ranges: &mut Vec<FileRange>,
    input_files: &mut Vec<PathBuf>,
) -> Result<Vec<Entry>> {
    let at = || format!("{display}: the bytes item '{name}'");
    let k = match file_names.iter().position(|n| *n == s.file) {
        Some(k) => k,
        None => {
            let p = data_file(dir, &s.file).with_context(at)?;
            let r = input::open_range(&p).with_context(at)?;
            if input::url_of(dir).is_none() {
                input_files.push(p);
            }
            file_names.push(s.file.clone());
            ranges.push(r);
            file_names.len() - 1
        }
    };
    let Ok(range) = ranges[k].slice(s.offset, s.length) else {
        bail!("{}: it lies past the end of {}", at(), s.file);
    };
    let mut head = [0u8; 4];
    if range.len() < 4 || range.read_at(0, &mut head).is_err() || &head != b"PK\x03\x04" {
        return Ok(Vec::new());
    }
    let Ok(item) = TorchSource::open(&at(), Vec::new(), range.clone(), "item") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(item.len());
    for index in 0..item.len() {
        let Ok(m) = item.meta(index) else {
            continue;
        };
        let Some(size) = m.dtype.item_size() else {
            continue;
        };
        if m.kind != Kind::Dense {
            continue;
        }
        let region = Region {
            offsets: vec![0; m.shape.len()],
            sizes: m.shape.clone(),
        };
        out.push(Entry {
            meta: tensor_meta(
                &format!("{name}/{}", m.name),
                m.dtype,
                &m.shape,
                m.stored_bytes,
            ),
            item: size as u64,
            chunks: vec![Chunk {
                region,
                // its bytes where they lie in the item, found now: a `flatten_state_dict=False`
                // item pickles a whole model, which would otherwise be parsed again per tensor
                bytes: match item.raw_range(index).filter(|_| !m.big_endian) {
                    Some(r) => Bytes::Raw(r),
                    None => Bytes::Inner {
                        file: k,
                        range: range.clone(),
                        index,
                    },
                },
            }],
        });
    }
    Ok(out)
}

/// A data file the metadata names: a plain name (or path) inside the checkpoint folder.
fn data_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let bad =
        |c: &str| c.is_empty() || c == ".." || c == "." || c.contains('\0') || c.contains('\\');
    if name.starts_with('/') || name.split('/').any(bad) {
        bail!("the data file '{name}' leaves the checkpoint folder");
    }
    let p = join(dir, name);
    if !input::is_file(&p) {
        bail!("its data file {} is missing", p.display());
    }
    folder::check_inside(dir, &p)?;
    Ok(p)
}

fn tensor_meta(name: &str, dtype: DType, size: &[u64], stored_bytes: u64) -> TensorMeta {
    TensorMeta {
        name: name.to_string(),
        dtype,
        shape: size.to_vec(),
        kind: Kind::Dense,
        stored_bytes,
        max_string_len: None,
        big_endian: false,
        ragged_rank: 0,
        facts: Default::default(),
    }
}

impl Source for DcpSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.entries[index].meta.clone())
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let e = &self.entries[index];
        let pieces = e
            .chunks
            .iter()
            .map(|c| {
                Ok(Piece {
                    region: c.region.clone(),
                    data: self.chunk_bytes(index, c, true)?.expect("gathered"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        assemble::stream(&e.meta.shape, e.item, &pieces, chunk, sink)
            .with_context(|| format!("{}: the tensor '{}'", self.path, e.meta.name))
    }

    fn read_strings(&mut self, index: usize, _sink: &mut ChunkSink) -> Result<()> {
        bail!("'{}' is not a string tensor", self.entries[index].meta.name)
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        let e = &self.entries[index];
        match e.chunks.as_slice() {
            [c] if c.region.sizes == e.meta.shape => self.chunk_bytes(index, c, false).ok()?,
            _ => None,
        }
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.input_files.clone()
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts {
            format: Some(&self.format),
            notes: &self.notes,
        }
    }
}
