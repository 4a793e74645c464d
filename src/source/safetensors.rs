//! safetensors reader. The header is read by its length and parsed straight into compact
//! arenas with the checks the `safetensors` crate makes (contiguous offsets, sizes matching
//! shapes, header length bounds), without the crate's buffered map of every entry, which costs
//! ten times the header's size; the data is then streamed with positioned reads.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::dtype::DType;
use crate::input::FileRange;
use crate::source::{Input, OpenOptions, Reader, Sniff};
use crate::tensor::{ChunkSink, Facts, InputFacts, Kind, Source, TensorMeta};

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
    data: FileRange,
    /// Per tensor, a few dozen bytes: where its name ends in `names`, where its shape ends in
    /// `dims`, its dtype and its byte range. `TensorMeta`s are built on demand, so a header
    /// of 200,000 tensors is not held twice over in strings and vectors.
    names: String,
    entries: Vec<Entry>,
    dims: Vec<u64>,
    /// The tensors whose safetensors dtype has no NumPy form (`F4`, `F6_E2M3`, ...), listed as
    /// dtype `resource`: an error when converted, left out with `--skip-unsupported`.
    unsupported: Vec<(usize, String)>,
    /// The header's `__metadata__` (string keys and values), for `list --metadata`.
    metadata: Option<serde_json::Value>,
    notes: Vec<String>,
}

struct Entry {
    name_end: usize,
    dims_end: usize,
    dtype: DType,
    start: u64,
    len: u64,
}

impl SafetensorsSource {
    pub fn open(path: &str, files: Vec<PathBuf>, data: FileRange) -> Result<SafetensorsSource> {
        if data.len() < 8 {
            bail!(
                "not a safetensors file: {} bytes is too short for the 8-byte header length",
                data.len()
            );
        }
        let (header_len, parsed) = parse_header(&data)?;
        let data_start = 8 + header_len as u64;
        let Parsed {
            metadata,
            names,
            dims,
            tensors,
        } = parsed;
        let mut source = SafetensorsSource {
            path: path.to_string(),
            files,
            data: data.clone(),
            names: String::with_capacity(names.len()),
            entries: Vec::with_capacity(tensors.len()),
            dims: Vec::with_capacity(dims.len()),
            unsupported: Vec::new(),
            notes: Vec::new(),
            metadata: metadata.map(|m| serde_json::json!(m)),
        };
        // In offset order, as the crate orders them.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].offsets);
        let mut expected = 0u64;
        for &i in &order {
            let t = &tensors[i];
            let name = &names[span(&tensors, i, |t| t.name_end)];
            let shape = &dims[span(&tensors, i, |t| t.dims_end)];
            // Bits per element; safetensors' sub-byte float dtypes have no NumPy form.
            let (dtype, bits) = match DType::from_safetensors(&t.dtype) {
                Some(d) => (d, d.item_size().unwrap_or(1) as u64 * 8),
                None => match t.dtype.as_str() {
                    "F4" => (DType::Resource, 4),
                    "F6_E2M3" | "F6_E3M2" => (DType::Resource, 6),
                    _ => bail!(
                        "invalid safetensors header: tensor '{name}': dtype {} is unknown",
                        t.dtype
                    ),
                },
            };
            if dtype == DType::Resource {
                source.notes.push(format!("tensor '{name}' has safetensors dtype {}, which has no NumPy form (listed as dtype resource; --skip-unsupported leaves it out)", t.dtype));
                source
                    .unsupported
                    .push((source.entries.len(), t.dtype.clone()));
            }
            let (start, end) = t.offsets;
            if start != expected || end < start {
                bail!(
                    "invalid safetensors header: tensor '{name}': data offsets are out of order, overlapping, or leave a gap"
                );
            }
            let size = crate::tensor::checked_elements(shape)
                .ok()
                .and_then(|n| n.checked_mul(bits))
                .filter(|b| b % 8 == 0)
                .map(|b| b / 8);
            if size != Some(end - start) {
                bail!("invalid safetensors header: a tensor's byte size does not match its shape and dtype ('{name}')");
            }
            expected = end;
            source.names.push_str(name);
            source.dims.extend_from_slice(shape);
            source.entries.push(Entry {
                name_end: source.names.len(),
                dims_end: source.dims.len(),
                dtype,
                start: data_start + start,
                len: end - start,
            });
        }
        if data_start.checked_add(expected) != Some(data.len()) {
            bail!("invalid safetensors header: the data section's size does not match the header (truncated or padded file)");
        }
        source.names.shrink_to_fit();
        source.dims.shrink_to_fit();
        Ok(source)
    }

    fn name(&self, index: usize) -> &str {
        &self.names[span(&self.entries, index, |e| e.name_end)]
    }

    fn range(&self, index: usize) -> Result<FileRange> {
        let e = &self.entries[index];
        self.data.slice(e.start, e.len)
    }
}

/// The header, parsed straight into arenas: names end to end, dims end to end, and per tensor
/// its dtype name and offsets (in file order of the JSON, not yet sorted).
#[derive(Default)]
struct Parsed {
    /// The `__metadata__` object (string to string), in key order.
    metadata: Option<std::collections::BTreeMap<String, String>>,
    names: String,
    dims: Vec<u64>,
    tensors: Vec<Parsed1>,
}

struct Parsed1 {
    name_end: usize,
    dims_end: usize,
    dtype: String,
    offsets: (u64, u64),
}

/// The safetensors format's limit on the header size.
const MAX_HEADER: u64 = 100_000_000;

/// Reads and parses the header the way the `safetensors` crate does (same limits and checks),
/// but without its intermediate map of every entry: serde's `flatten` there buffers the whole
/// header as a tree, which for 200,000 tensors is ten times the header's size.
fn parse_header(data: &FileRange) -> Result<(usize, Parsed)> {
    use serde::de::Deserializer;
    let mut len = [0u8; 8];
    data.read_at(0, &mut len)?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER {
        bail!("invalid safetensors header: the header length is larger than the 100 MB safetensors allows");
    }
    if n.checked_add(8).is_none_or(|end| end > data.len()) {
        bail!("invalid safetensors header: the header length reaches past the end of the file");
    }
    // Read by its length alone (a local file, a buffer or a remote object alike).
    let header = data.read_vec(8, n as usize)?;
    let mut de = serde_json::Deserializer::from_slice(&header);
    let parsed = de
        .deserialize_map(HeaderVisitor)
        .and_then(|p| de.end().map(|_| p))
        .context("invalid safetensors header")?;
    Ok((n as usize, parsed))
}

struct HeaderVisitor;

impl<'de> serde::de::Visitor<'de> for HeaderVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object of tensor entries")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut p = Parsed::default();
        let state = std::collections::hash_map::RandomState::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "__metadata__" {
                p.metadata = Some(map.next_value()?);
                continue;
            }
            let info = map.next_value::<Info>()?;
            // A hash of the name, not the name: duplicates are refused at 8 bytes a tensor.
            if !seen.insert(std::hash::BuildHasher::hash_one(&state, &*key))
                && (0..p.tensors.len())
                    .any(|i| p.names[span(&p.tensors, i, |t| t.name_end)] == *key)
            {
                return Err(serde::de::Error::custom(format!(
                    "tensor '{key}' appears twice"
                )));
            }
            p.names.push_str(&key);
            p.dims.extend_from_slice(&info.shape);
            p.tensors.push(Parsed1 {
                name_end: p.names.len(),
                dims_end: p.dims.len(),
                dtype: info.dtype,
                offsets: info.offsets,
            });
        }
        Ok(p)
    }
}

/// One tensor entry: `{"dtype": ..., "shape": [...], "data_offsets": [start, end]}`.
struct Info {
    dtype: String,
    shape: Vec<u64>,
    offsets: (u64, u64),
}

impl<'de> serde::Deserialize<'de> for Info {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Info, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Info;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a tensor entry with dtype, shape and data_offsets")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Info, A::Error> {
                use serde::de::Error;
                let (mut dtype, mut shape, mut offsets) = (None, None, None);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "dtype" => dtype = Some(map.next_value::<String>()?),
                        "shape" => shape = Some(map.next_value::<Vec<u64>>()?),
                        "data_offsets" => offsets = Some(map.next_value::<(u64, u64)>()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Info {
                    dtype: dtype.ok_or_else(|| A::Error::missing_field("dtype"))?,
                    shape: shape.ok_or_else(|| A::Error::missing_field("shape"))?,
                    offsets: offsets.ok_or_else(|| A::Error::missing_field("data_offsets"))?,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl Source for SafetensorsSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn metadata(&self) -> Result<Option<serde_json::Value>> {
        Ok(self.metadata.clone())
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        let e = &self.entries[index];

        Ok(TensorMeta {
            name: self.name(index).to_string(),
            dtype: e.dtype,
            shape: self.dims[span(&self.entries, index, |e| e.dims_end)].to_vec(),
            kind: Kind::Dense,
            stored_bytes: e.len,
            max_string_len: None,
            big_endian: false,
            ragged_rank: 0,
            facts: Facts {
                source_dtype: self
                    .unsupported
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map(|(_, name)| name.clone()),
                ..Facts::default()
            },
        })
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let unit = self.entries[index].dtype.item_size().unwrap_or(1);
        self.range(index)?.stream(unit, chunk, sink)
    }

    fn read_strings(&mut self, index: usize, _sink: &mut ChunkSink) -> Result<()> {
        bail!("tensor '{}' is not a string tensor", self.name(index))
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        self.range(index).ok()
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts::with_notes(&self.notes)
    }
}

/// The part of item `i` in an arena (names, dims) where each item records only where its own
/// part ends, the previous item's end being its start.
fn span<T>(items: &[T], i: usize, end: impl Fn(&T) -> usize) -> std::ops::Range<usize> {
    i.checked_sub(1).map_or(0, |j| end(&items[j]))..end(&items[i])
}
