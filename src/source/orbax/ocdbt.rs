//! TensorStore's OCDBT key-value database (the store Orbax checkpoints are written into), read
//! into a sorted map of keys to values: small values inline, large ones as byte ranges of the
//! data files, opened on demand through `input.rs` (local folders and buckets alike).
//!
//! Format (tensorstore `kvstore/ocdbt/index.rst`): every manifest and B+tree node is an
//! envelope `magic u32 BE | length u64 LE | version varint | compression varint | body |
//! crc32c u32 LE`, the body a zstd frame when compression is 1. The manifest names data files
//! (a prefix-compressed path table) and the versions; the newest inline version gives the root
//! node `(file, offset, length, height)`. Leaf nodes hold keys and values (inline bytes, or an
//! indirect `(file, offset, length)`); interior nodes hold children, whose keys are relative to
//! a prefix the parent carries. Every length, count and offset is checked against the bytes
//! present before use; a node must have the height its parent promises and may be visited
//! once, so a node that points at itself (or any cycle) is an error, not a loop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};

use crate::input::{self, FileRange};

const MAGIC_MANIFEST: u32 = 0x0CDB_3A2A;
const MAGIC_NODE: u32 = 0x0CDB_20DE;
/// The most bytes a node body may decode to, whatever its manifest allows.
const MAX_NODE: u64 = 256 << 20;
/// The most nodes walked (a sanity bound against hostile trees).
const MAX_NODES: usize = 1 << 20;
/// The most keys held.
const MAX_KEYS: usize = 1 << 24;

/// A value of the database.
#[derive(Clone, Debug)]
pub enum Value {
    Inline(Vec<u8>),
    /// Bytes `[offset, offset + length)` of a data file (path relative to the database root).
    Indirect {
        file: String,
        offset: u64,
        length: u64,
    },
}

/// An opened database: every key, and the data files opened so far.
pub struct Database {
    root: PathBuf,
    pub keys: BTreeMap<Vec<u8>, Value>,
    files: Mutex<HashMap<String, FileRange>>,
}

impl Database {
    /// Reads `root/manifest.ocdbt` and walks the newest version's whole tree.
    pub fn open(root: &Path) -> Result<Database> {
        let manifest_path = crate::source::zarr::join(root, "manifest.ocdbt");
        let range = input::open_range(&manifest_path)?;
        let db = Database {
            root: root.to_path_buf(),
            keys: BTreeMap::new(),
            files: Mutex::new(HashMap::new()),
        };
        let body = envelope(&range, MAGIC_MANIFEST, MAX_NODE)
            .with_context(|| format!("{}: corrupt OCDBT manifest", manifest_path.display()))?;
        let root_ref = parse_manifest(&body)
            .with_context(|| format!("{}: corrupt OCDBT manifest", manifest_path.display()))?;
        let mut db = db;
        if let Some(r) = root_ref {
            let mut walk = Walk {
                db: &db,
                seen: HashSet::new(),
                keys: BTreeMap::new(),
            };
            walk.node(&r, &[], 0)?;
            db.keys = walk.keys;
        }
        Ok(db)
    }

    /// The value of `key`, as a range (an inline value copied into memory).
    pub fn get(&self, key: &str) -> Result<Option<FileRange>> {
        match self.keys.get(key.as_bytes()) {
            None => Ok(None),
            Some(Value::Inline(b)) => Ok(Some(FileRange::from_vec(b.clone()))),
            Some(Value::Indirect {
                file,
                offset,
                length,
            }) => {
                let f = self.file(file)?;
                f.slice(*offset, *length)
                    .with_context(|| format!("{}", self.path(file).display()))
                    .map(Some)
            }
        }
    }

    /// Where `key`'s value lives, for messages.
    pub fn describe(&self, key: &str) -> String {
        match self.keys.get(key.as_bytes()) {
            Some(Value::Indirect { file, .. }) => {
                format!("{} (OCDBT key '{key}')", self.path(file).display())
            }
            _ => format!(
                "{} (OCDBT key '{key}')",
                crate::source::zarr::join(&self.root, "manifest.ocdbt").display()
            ),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        crate::source::zarr::join(&self.root, rel)
    }

    /// A data file, opened once.
    fn file(&self, rel: &str) -> Result<FileRange> {
        let mut files = self.files.lock().map_err(|_| anyhow!("poisoned lock"))?;
        if let Some(f) = files.get(rel) {
            return Ok(f.clone());
        }
        let f = input::open_range(&self.path(rel)).context("a data file of the OCDBT database")?;
        files.insert(rel.to_string(), f.clone());
        Ok(f)
    }
}

/// Where a node is: a data file (relative to the root), an offset, a length, and the height
/// its parent promises.
#[derive(Clone, Debug)]
pub struct NodeRef {
    file: String,
    /// The path prefix the node's own data file table is relative to.
    transitive: String,
    offset: u64,
    length: u64,
    height: u8,
}

struct Walk<'a> {
    db: &'a Database,
    seen: HashSet<(String, u64)>,
    keys: BTreeMap<Vec<u8>, Value>,
}

impl Walk<'_> {
    fn node(&mut self, r: &NodeRef, prefix: &[u8], depth: usize) -> Result<()> {
        let path = self.db.path(&r.file);
        let at = || format!("{}: OCDBT node at offset {}", path.display(), r.offset);
        if !self.seen.insert((r.file.clone(), r.offset)) {
            bail!(
                "{}: the node is reached twice (it points at itself or at an ancestor)",
                at()
            );
        }
        if self.seen.len() > MAX_NODES || depth > 64 {
            bail!("{}: the tree is too large or too deep", at());
        }
        let file = self.db.file(&r.file)?;
        let range = file.slice(r.offset, r.length).with_context(at)?;
        let body = envelope(&range, MAGIC_NODE, MAX_NODE).with_context(at)?;
        let node = parse_node(&body).with_context(at)?;
        if node.height != r.height {
            bail!(
                "{}: the node has height {}, its parent says {} (a node that points at itself?)",
                at(),
                node.height,
                r.height
            );
        }
        let files: Vec<(String, usize)> = node
            .files
            .iter()
            .map(|(p, base)| (format!("{}{p}", r.transitive), *base))
            .collect();
        let file_of = |id: u64| -> Result<&(String, usize)> {
            files.get(id as usize).ok_or_else(|| {
                anyhow!("{}: data file {id} of {} does not exist", at(), files.len())
            })
        };
        match node.entries {
            Entries::Leaf(entries) => {
                for (key, v) in entries {
                    let mut full = prefix.to_vec();
                    full.extend_from_slice(&key);
                    let v = match v {
                        LeafValue::Inline(b) => Value::Inline(b),
                        LeafValue::Indirect {
                            file,
                            offset,
                            length,
                        } => Value::Indirect {
                            file: file_of(file)?.0.clone(),
                            offset,
                            length,
                        },
                    };
                    if self.keys.len() >= MAX_KEYS {
                        bail!("{}: more than {MAX_KEYS} keys", at());
                    }
                    self.keys.insert(full, v);
                }
            }
            Entries::Interior(children) => {
                let child_height = r
                    .height
                    .checked_sub(1)
                    .ok_or_else(|| anyhow!("{}: an interior node of height 0", at()))?;
                for c in children {
                    let (p, base) = file_of(c.file)?;
                    let mut child_prefix = prefix.to_vec();
                    child_prefix.extend_from_slice(&c.key[..c.common]);
                    let child = NodeRef {
                        file: p.clone(),
                        transitive: format!(
                            "{}{}",
                            r.transitive,
                            &p[r.transitive.len()..][..*base]
                        ),
                        offset: c.offset,
                        length: c.length,
                        height: child_height,
                    };
                    self.node(&child, &child_prefix, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Checks an encoded object's magic, length and crc32c; returns its (decompressed) body.
pub fn envelope(range: &FileRange, magic: u32, max_body: u64) -> Result<Vec<u8>> {
    if range.len() < 16 {
        bail!("{} bytes is too short for an OCDBT object", range.len());
    }
    if range.len() > MAX_NODE {
        bail!("an OCDBT object of {} bytes is too large", range.len());
    }
    let bytes = range.read_vec(0, range.len() as usize)?;
    let got_magic = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    if got_magic != magic {
        bail!("bad magic {got_magic:#010x} (expected {magic:#010x})");
    }
    let length = u64::from_le_bytes(bytes[4..12].try_into().unwrap());
    if length != bytes.len() as u64 {
        bail!(
            "the object says {length} bytes, {} are present",
            bytes.len()
        );
    }
    let body_end = bytes.len() - 4;
    let crc = u32::from_le_bytes(bytes[body_end..].try_into().unwrap());
    if crc32c::crc32c(&bytes[..body_end]) != crc {
        bail!("crc32c mismatch");
    }
    crate::checksum::verified(1);
    let mut b = Buf::new(&bytes[12..body_end]);
    let version = b.varint()?;
    if version != 0 {
        bail!("format version {version} is not supported");
    }
    let compression = b.varint()?;
    let rest = b.rest();
    match compression {
        0 => Ok(rest.to_vec()),
        1 => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(rest)
                .context("cannot start zstd")?
                .take(max_body + 1)
                .read_to_end(&mut out)
                .context("corrupt zstd body")?;
            if out.len() as u64 > max_body {
                bail!("the body decodes to more than {max_body} bytes");
            }
            Ok(out)
        }
        c => bail!("unknown compression {c}"),
    }
}

/// The manifest's newest version's root node, or `None` for an empty database.
pub fn parse_manifest(body: &[u8]) -> Result<Option<NodeRef>> {
    let mut b = Buf::new(body);
    b.take(16)?; // uuid
    let kind = b.varint()?;
    if kind != 0 {
        bail!("manifest kind {kind} (numbered manifests) is not supported");
    }
    let _max_inline = b.varint()?;
    let _max_decoded = b.varint()?;
    let _arity = b.u8()?;
    if b.varint()? == 1 {
        b.take(4)?; // zstd level
    }
    let files = file_table(&mut b)?;
    let n = b.count()?;
    let _gen = b.varints(n)?;
    let heights = b.take(n)?.to_vec();
    let file_ids = b.varints(n)?;
    let offsets = b.varints(n)?;
    let lengths = b.varints(n)?;
    let num_keys = b.varints(n)?;
    let _tree_bytes = b.varints(n)?;
    let _indirect_bytes = b.varints(n)?;
    b.take(
        n.checked_mul(8)
            .ok_or_else(|| anyhow!("too many versions"))?,
    )?;
    // The version-tree nodes that follow index older generations only.
    if n == 0 {
        bail!("the manifest lists no version");
    }
    let i = n - 1;
    if num_keys[i] == 0 || lengths[i] == 0 {
        return Ok(None);
    }
    let (path, base) = files
        .get(file_ids[i] as usize)
        .ok_or_else(|| anyhow!("the root node's data file {} does not exist", file_ids[i]))?;
    Ok(Some(NodeRef {
        file: path.clone(),
        transitive: path[..*base].to_string(),
        offset: offsets[i],
        length: lengths[i],
        height: heights[i],
    }))
}

enum LeafValue {
    Inline(Vec<u8>),
    Indirect { file: u64, offset: u64, length: u64 },
}

struct Child {
    key: Vec<u8>,
    common: usize,
    file: u64,
    offset: u64,
    length: u64,
}

enum Entries {
    Leaf(Vec<(Vec<u8>, LeafValue)>),
    Interior(Vec<Child>),
}

pub struct Node {
    height: u8,
    /// Each data file's path (relative to the node's transitive path) and base path length.
    files: Vec<(String, usize)>,
    entries: Entries,
}

/// Parses a decoded B+tree node body; the whole body must be consumed.
pub fn parse_node(body: &[u8]) -> Result<Node> {
    let mut b = Buf::new(body);
    let height = b.u8()?;
    let files = file_table(&mut b)?;
    let n = b.count()?;
    if n == 0 {
        bail!("a node with no entries");
    }
    let prefix_len = b.varints(n - 1)?;
    let suffix_len = b.varints(n)?;
    let common = if height > 0 { b.varints(n)? } else { vec![] };
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut k = match i {
            0 => Vec::new(),
            _ => {
                let p = prefix_len[i - 1] as usize;
                let prev = &keys[i - 1];
                if p > prev.len() {
                    bail!("key {i} shares {p} bytes with a {}-byte key", prev.len());
                }
                prev[..p].to_vec()
            }
        };
        k.extend_from_slice(b.take(usize::try_from(suffix_len[i])?)?);
        keys.push(k);
    }
    let entries = if height == 0 {
        let lengths = b.varints(n)?;
        let kinds = b.varints(n)?;
        let k = kinds.iter().filter(|&&x| x == 1).count();
        if let Some(bad) = kinds.iter().find(|&&x| x > 1) {
            bail!("unknown value kind {bad}");
        }
        let ids = b.varints(k)?;
        let offsets = b.varints(k)?;
        let mut j = 0;
        let mut out = Vec::with_capacity(n);
        for (i, key) in keys.into_iter().enumerate() {
            let v = if kinds[i] == 1 {
                let v = LeafValue::Indirect {
                    file: ids[j],
                    offset: offsets[j],
                    length: lengths[i],
                };
                j += 1;
                v
            } else {
                LeafValue::Inline(b.take(usize::try_from(lengths[i])?)?.to_vec())
            };
            out.push((key, v));
        }
        Entries::Leaf(out)
    } else {
        let ids = b.varints(n)?;
        let offsets = b.varints(n)?;
        let lengths = b.varints(n)?;
        for _ in 0..3 {
            b.varints(n)?; // num_keys, num_tree_bytes, num_indirect_value_bytes
        }
        let mut out = Vec::with_capacity(n);
        for (i, key) in keys.into_iter().enumerate() {
            let c = common[i] as usize;
            if c > key.len() {
                bail!(
                    "subtree prefix {c} is longer than its {}-byte key",
                    key.len()
                );
            }
            out.push(Child {
                key,
                common: c,
                file: ids[i],
                offset: offsets[i],
                length: lengths[i],
            });
        }
        Entries::Interior(out)
    };
    if !b.rest().is_empty() {
        bail!("{} unexpected bytes at the end of the node", b.rest().len());
    }
    Ok(Node {
        height,
        files,
        entries,
    })
}

/// A data file table: each path and the length of its base path.
fn file_table(b: &mut Buf) -> Result<Vec<(String, usize)>> {
    let n = b.count()?;
    let prefix = b.varints(n.saturating_sub(1))?;
    let suffix = b.varints(n)?;
    let base = b.varints(n)?;
    let mut out: Vec<(String, usize)> = Vec::with_capacity(n);
    for i in 0..n {
        let mut p = match i {
            0 => Vec::new(),
            _ => {
                let k = prefix[i - 1] as usize;
                let prev = out[i - 1].0.as_bytes();
                if k > prev.len() {
                    bail!("data file path {i} shares {k} bytes with a shorter path");
                }
                prev[..k].to_vec()
            }
        };
        p.extend_from_slice(b.take(usize::try_from(suffix[i])?)?);
        let p = String::from_utf8(p).map_err(|_| anyhow!("a data file path that is not UTF-8"))?;
        if p.split('/').any(|c| c == ".." || c == ".") || p.starts_with('/') || p.contains('\\') {
            bail!("data file path '{p}' leaves the database folder");
        }
        let bl = base[i] as usize;
        if bl > p.len() || !p.is_char_boundary(bl) {
            bail!("base path length {bl} of '{p}' is out of range");
        }
        out.push((p, bl));
    }
    Ok(out)
}

/// A cursor over a decoded body.
struct Buf<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Buf<'a> {
    fn new(b: &'a [u8]) -> Buf<'a> {
        Buf { b, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| anyhow!("truncated: {n} bytes wanted at offset {}", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn rest(&self) -> &'a [u8] {
        &self.b[self.pos..]
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                bail!("a varint overflows 64 bits");
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("a varint longer than 10 bytes")
    }

    /// A count of items, each at least one byte, checked against what is left.
    fn count(&mut self) -> Result<usize> {
        let n = self.varint()?;
        let left = (self.b.len() - self.pos) as u64;
        if n > left {
            bail!("a count of {n} items does not fit in the {left} bytes left");
        }
        Ok(n as usize)
    }

    fn varints(&mut self, n: usize) -> Result<Vec<u64>> {
        if n > self.b.len() - self.pos {
            bail!("{n} varints do not fit in the bytes left");
        }
        (0..n).map(|_| self.varint()).collect()
    }
}
