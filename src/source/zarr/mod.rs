//! zarr reader: a zarr v2 (`.zarray`, `.zgroup`) or v3 (`zarr.json`) array or group folder,
//! local or in a bucket, each array named by its path in the group (`sub/w`; a lone array by
//! the input's stem), valued as `zarr.open(...)[...]` returns it.
//!
//! `meta.rs` parses and checks the array metadata, `chunks.rs` fetches, decodes and assembles
//! chunks through the [`chunks::Store`] interface (`window.rs` decodes the row chunks of one array
//! side by side on the pool); [`DirStore`] is that interface over a folder
//! (files opened as `FileRange`s through `input.rs`, so `s3://` and the like work too). The
//! Orbax reader (`source/orbax`) reuses all three with its OCDBT store. `list` reads only
//! metadata documents.

mod blosc;
pub mod chunks;
pub mod meta;
mod window;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Input, OpenOptions, Reader, Sniff};
use crate::dtype::DType;
use crate::input::{self, FileRange};
use crate::tensor::{ChunkSink, Facts, Kind, Source, TensorMeta};
use chunks::{ArrayReader, Store};
use meta::{ArrayMeta, UnsupportedDtype};

pub static READER: Reader = Reader {
    name: "zarr",
    about: "zarr v2 and v3 arrays and groups (folders with .zarray/.zgroup or zarr.json)",
    extensions: &[".zarr"],
    sniff,
    open,
};

/// Metadata documents are small; refuse anything larger.
const MAX_METADATA: u64 = 64 << 20;
/// Deepest group nesting walked.
const MAX_DEPTH: usize = 64;

fn sniff(input: &Input) -> Sniff {
    if !input.is_dir {
        return Sniff::No;
    }
    let has = |n: &str| input::is_file(&join(&input.path, n));
    if has(".zarray") || has(".zgroup") || has("zarr.json") {
        Sniff::Yes
    } else {
        Sniff::No
    }
}

fn open(input: &Input, _opts: &OpenOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(ZarrSource::open(
        &input.path,
        &input.display,
        &input.stem,
    )?))
}

/// `dir/name`, keeping a URL's `//` intact.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    if input::url_of(dir).is_some() {
        let s = dir.to_string_lossy();
        PathBuf::from(format!("{}/{name}", s.trim_end_matches('/')))
    } else {
        dir.join(name)
    }
}

/// A folder as a key-value store: key `a/b` is the file `dir/a/b`.
pub struct DirStore {
    pub root: PathBuf,
}

impl Store for DirStore {
    fn get(&self, key: &str) -> Result<Option<FileRange>> {
        // Keys come from metadata (an Orbax `_METADATA` names them): never outside the folder.
        let bad = |c: &str| c == ".." || c == "." || c.contains('\0');
        if key.starts_with('/') || key.split('/').any(bad) {
            bail!("{}: the key '{key}' leaves the folder", self.root.display());
        }
        input::open_optional(&join(&self.root, key))
    }

    fn describe(&self, key: &str) -> String {
        join(&self.root, key).display().to_string()
    }
}

/// One array of the input.
pub struct Array {
    pub name: String,
    /// The key prefix of its metadata and chunks (`""` or `sub/w/`).
    pub prefix: String,
    pub meta: ArrayMeta,
}

impl Array {
    pub fn tensor_meta(&self) -> TensorMeta {
        let m = &self.meta;
        let bytes = m.dtype == DType::String;
        TensorMeta {
            name: self.name.clone(),
            dtype: m.dtype,
            shape: m.shape.clone(),
            kind: if bytes { Kind::String } else { Kind::Dense },
            stored_bytes: m.shape.iter().product::<u64>() * m.item as u64,
            max_string_len: bytes.then_some(m.item as u64),
            big_endian: m.big_endian,
            ragged_rank: 0,
            facts: Default::default(),
        }
    }
}

/// Reads the array metadata under `prefix` of a store, v2 or v3; `None` when there is none.
pub fn array_at(store: &dyn Store, prefix: &str) -> Result<Option<ArrayMeta>> {
    for (doc, v3) in [(".zarray", false), ("zarr.json", true)] {
        let key = format!("{prefix}{doc}");
        let Some(r) = store.get(&key)? else { continue };
        let text = small(&r).with_context(|| store.describe(&key))?;
        if v3 && meta::v3_node_type(&text).with_context(|| store.describe(&key))? != "array" {
            return Ok(None);
        }
        let m = if v3 {
            meta::parse_v3(&text)
        } else {
            meta::parse_v2(&text)
        };
        return m.map(Some).with_context(|| store.describe(&key));
    }
    Ok(None)
}

fn small(r: &FileRange) -> Result<Vec<u8>> {
    if r.len() > MAX_METADATA {
        bail!("a metadata document of {} bytes is too large", r.len());
    }
    r.read_vec(0, r.len() as usize)
}

/// An array of a group whose dtype has no NumPy form: listed as such (so `--skip-unsupported`
/// leaves it out and the others convert), never read.
struct Refused {
    name: String,
    why: UnsupportedDtype,
}

pub struct ZarrSource {
    path: String,
    store: DirStore,
    arrays: Vec<Result<Array, Refused>>,
    files: Vec<PathBuf>,
}

impl ZarrSource {
    pub fn open(root: &Path, display: &str, stem: &str) -> Result<ZarrSource> {
        let store = DirStore {
            root: root.to_path_buf(),
        };
        let mut arrays = Vec::new();
        if let Some(meta) = array_at(&store, "")? {
            arrays.push(Ok(Array {
                name: stem.to_string(),
                prefix: String::new(),
                meta,
            }));
        } else {
            walk(&store, root, "", 0, &mut arrays)?;
        }
        Ok(ZarrSource {
            path: display.to_string(),
            store,
            arrays,
            files: if input::url_of(root).is_some() {
                vec![]
            } else {
                vec![root.to_path_buf()]
            },
        })
    }
}

/// Every array under the group folder `dir` (key prefix `prefix`), depth first, sorted by name.
fn walk(
    store: &DirStore,
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<Result<Array, Refused>>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            "{}: groups nest deeper than {MAX_DEPTH} levels",
            dir.display()
        );
    }
    let mut names =
        input::list_dirs(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    names.sort();
    for name in names {
        let key = format!("{prefix}{name}/");
        let found = match array_at(store, &key) {
            Ok(found) => found,
            Err(e) => match e.chain().find_map(|c| c.downcast_ref::<UnsupportedDtype>()) {
                Some(u) => {
                    out.push(Err(Refused {
                        name: format!("{prefix}{name}"),
                        why: UnsupportedDtype {
                            dtype: u.dtype.clone(),
                            shape: u.shape.clone(),
                            why: format!("{e:#}"),
                        },
                    }));
                    continue;
                }
                None => return Err(e),
            },
        };
        if let Some(meta) = found {
            out.push(Ok(Array {
                name: format!("{prefix}{name}"),
                prefix: key,
                meta,
            }));
        } else if store.get(&format!("{key}.zgroup"))?.is_some()
            || store.get(&format!("{key}zarr.json"))?.is_some()
        {
            walk(store, &join(dir, &name), &key, depth + 1, out)?;
        }
    }
    Ok(())
}

impl Source for ZarrSource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.arrays.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(match &self.arrays[index] {
            Ok(a) => a.tensor_meta(),
            Err(r) => TensorMeta {
                name: r.name.clone(),
                dtype: DType::Resource,
                shape: r.why.shape.clone(),
                kind: Kind::Dense,
                stored_bytes: 0,
                max_string_len: None,
                big_endian: false,
                ragged_rank: 0,
                facts: Facts {
                    source_dtype: Some(r.why.dtype.clone()),
                    ..Default::default()
                },
            },
        })
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let a = match &self.arrays[index] {
            Ok(a) => a,
            Err(r) => bail!("{}", r.why.why),
        };
        ArrayReader {
            store: &self.store,
            prefix: &a.prefix,
            meta: &a.meta,
        }
        .stream(chunk, sink)
    }

    /// A `|S<n>` array: each element without its trailing NUL bytes, as NumPy gives it.
    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let a = match &self.arrays[index] {
            Ok(a) if a.meta.dtype == DType::String => a,
            Ok(a) => bail!("array '{}' is not a bytes array", a.name),
            Err(r) => bail!("{}", r.why.why),
        };
        let item = a.meta.item;
        ArrayReader {
            store: &self.store,
            prefix: &a.prefix,
            meta: &a.meta,
        }
        .stream(1 << 20, &mut |c: &[u8]| {
            if !c.len().is_multiple_of(item) {
                bail!("a piece of {} bytes is not whole elements", c.len());
            }
            c.chunks(item).try_for_each(|e| {
                let end = e.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                sink(&e[..end])
            })
        })
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}
