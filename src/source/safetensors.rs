//! safetensors reader. The header is parsed and validated by the `safetensors` crate itself
//! (contiguous offsets, sizes matching shapes, header length bounds) on a memory map of the file,
//! which touches only the header's pages; the data is then streamed with positioned reads.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use memmap2::Mmap;
use safetensors::SafeTensors;

use crate::dtype::DType;
use crate::input::FileRange;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{ChunkSink, Kind, Source, TensorMeta};

pub static READER: Reader = Reader {
    name: "safetensors",
    about: "safetensors files (Hugging Face)",
    extensions: &[".safetensors"],
    sniff,
    open,
};

/// A JSON object after the 8-byte header length (no TensorProto or TFRecord starts so); the
/// header itself is judged by the parser, with its own errors.
fn sniff(input: &Input) -> Sniff {
    if input.head.len() > 8 && input.head[8] == b'{' {
        Sniff::Yes
    } else {
        Sniff::No
    }
}

fn open(input: &Input, _opts: &OpenOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(SafetensorsSource::open(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
    )?))
}

pub struct SafetensorsSource {
    path: String,
    files: Vec<PathBuf>,
    metas: Vec<TensorMeta>,
    /// Byte range of each tensor within the file.
    ranges: Vec<FileRange>,
    /// The safetensors name of each dtype that has no NumPy form (`F4`, `F6_E2M3`, ...).
    unsupported: Vec<Option<String>>,
    notes: Vec<String>,
}

impl SafetensorsSource {
    pub fn open(path: &str, files: Vec<PathBuf>, data: FileRange) -> Result<SafetensorsSource> {
        if data.len() < 8 {
            bail!(
                "not a safetensors file: {} bytes is too short for the 8-byte header length",
                data.len()
            );
        }
        let map;
        let (header_len, metadata) = match (data.file(), data.memory()) {
            (Some(file), _) => {
                // SAFETY: the map is read-only and only read while the file is open; a
                // concurrent writer truncating the file is the one hazard, which every
                // mmap-based reader shares.
                map =
                    unsafe { Mmap::map(file) }.map_err(|e| anyhow!("cannot map the file: {e}"))?;
                SafeTensors::read_metadata(&map[..])
                    .map_err(|e| anyhow!("invalid safetensors header: {}", describe(&e)))?
            }
            (None, Some(bytes)) => SafeTensors::read_metadata(bytes)
                .map_err(|e| anyhow!("invalid safetensors header: {}", describe(&e)))?,
            (None, None) => read_metadata_ranged(&data)?,
        };
        let data_start = 8 + header_len as u64;
        let mut metas = Vec::new();
        let mut ranges = Vec::new();
        let mut unsupported = Vec::new();
        let mut notes = Vec::new();
        let infos = metadata.tensors();
        for name in metadata.offset_keys() {
            let info = infos[&name];
            let st_name = format!("{:?}", info.dtype);
            // A dtype with no NumPy form is listed as `resource`: an error when converted,
            // left out with --skip-unsupported.
            let dtype = match DType::from_safetensors(&st_name) {
                Some(d) => {
                    unsupported.push(None);
                    d
                }
                None => {
                    notes.push(format!("tensor '{name}' has safetensors dtype {st_name}, which has no NumPy form (listed as dtype resource; --skip-unsupported leaves it out)"));
                    unsupported.push(Some(st_name));
                    DType::Resource
                }
            };
            let (start, end) = info.data_offsets;
            ranges.push(data.slice(data_start + start as u64, (end - start) as u64)?);
            metas.push(TensorMeta {
                name,
                dtype,
                shape: info.shape.iter().map(|&d| d as u64).collect(),
                kind: Kind::Dense,
                stored_bytes: (end - start) as u64,
                max_string_len: None,
                big_endian: false,
                ragged_rank: 0,
            });
        }
        Ok(SafetensorsSource {
            path: path.to_string(),
            files,
            metas,
            ranges,
            unsupported,
            notes,
        })
    }
}

/// The header of a file that is no local file (a remote object): read by its length alone,
/// validated by the crate's own `Metadata` deserializer, then checked against the data size
/// as `SafeTensors::read_metadata` does for a whole buffer.
fn read_metadata_ranged(data: &FileRange) -> Result<(usize, safetensors::tensor::Metadata)> {
    use safetensors::SafeTensorError as E;
    let fail = |e: E| anyhow!("invalid safetensors header: {}", describe(&e));
    let mut len = [0u8; 8];
    data.read_at(0, &mut len)?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return Err(fail(E::HeaderTooLarge));
    }
    if n.checked_add(8).is_none_or(|end| end > data.len()) {
        return Err(fail(E::InvalidHeaderLength));
    }
    let header = data.read_vec(8, n as usize)?;
    let text = std::str::from_utf8(&header).map_err(|e| fail(E::InvalidHeader(e)))?;
    let metadata: safetensors::tensor::Metadata =
        serde_json::from_str(text).map_err(|e| fail(E::InvalidHeaderDeserialization(e)))?;
    if (metadata.data_len() as u64).checked_add(8 + n) != Some(data.len()) {
        return Err(fail(E::MetadataIncompleteBuffer));
    }
    Ok((n as usize, metadata))
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooLarge => {
            "the header length is larger than the 100 MB safetensors allows".into()
        }
        E::HeaderTooSmall => "the file is too short to hold a header".into(),
        E::InvalidHeaderLength => "the header length reaches past the end of the file".into(),
        E::MetadataIncompleteBuffer => {
            "the data section's size does not match the header (truncated or padded file)".into()
        }
        E::InvalidOffset(name) => {
            format!("tensor '{name}': data offsets are out of order, overlapping, or leave a gap")
        }
        E::TensorInvalidInfo => "a tensor's byte size does not match its shape and dtype".into(),
        other => other.to_string(),
    }
}

impl Source for SafetensorsSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.metas.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.metas[index].clone())
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let unit = self.metas[index].dtype.item_size().unwrap_or(1);
        self.ranges[index].stream(unit, chunk, sink)
    }

    fn read_strings(&mut self, index: usize, _sink: &mut ChunkSink) -> Result<()> {
        bail!("tensor '{}' is not a string tensor", self.metas[index].name)
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        Some(self.ranges[index].clone())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn source_dtype(&self, index: usize) -> Option<String> {
        self.unsupported[index].clone()
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }
}
