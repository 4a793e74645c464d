//! NumPy files as input: `.npy` (one array, named by the file's stem) and `.npz` (`np.savez`,
//! `np.savez_compressed`: a ZIP of `.npy` members, stored or deflated, zip64 included, read
//! through `container/zip.rs`), each array named as `np.load(f).files` names it (the member name
//! without `.npy`), valued as `np.load(f, allow_pickle=False)` returns it.
//!
//! Every descr the tool writes is read, and the same types big-endian (swapped by the pipeline,
//! like every big-endian input); fixed-width bytes (`|S<n>`) are string tensors. Object arrays
//! are refused as `np.load(allow_pickle=False)` refuses them; unicode, structured and other types
//! are listed with dtype `resource` in an `.npz` (refused on conversion unless
//! `--skip-unsupported`) and refused in a `.npy`. A member whose header does not parse, or names
//! such a type, has its CRC-32 checked first, so that damage is reported as damage.
//! Fortran-order arrays come out in C order, as every output is (`order.rs`: strided reads of the
//! random-access bytes, in bounded memory; a deflated member is spooled to a temporary file for
//! that, at most `--max-decompressed` bytes). A C-order little-endian array in a `.npy` or in a
//! stored member is a byte range of the input (`raw_range`), so the sink copies it in the kernel
//! once its member's CRC-32 has been checked; a deflated member streams through its inflater,
//! CRC-checked at its end. Headers are parsed by `header.rs`.

mod header;
mod order;

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub use header::{parse as parse_header, Descr, Header};

use super::{Input, OpenOptions, Reader, Sniff};
use crate::container::zip::{Archive, MemberData};
use crate::dtype::DType;
use crate::input::FileRange;
use crate::tensor::{checked_elements, ChunkSink, InputFacts, Kind, Source, TensorMeta};

pub static READER: Reader = Reader {
    name: "numpy",
    about: "NumPy .npy arrays and .npz archives (np.save, np.savez, np.savez_compressed)",
    extensions: &[".npy", ".npz"],
    sniff,
    open,
};

/// Fortran-order arrays are transposed through a buffer of at most this many bytes.
const TRANSPOSE_BUDGET: u64 = 16 << 20;

/// A `.npy` by its magic; an `.npz`: a ZIP whose first member is a `.npy` (what `np.savez`
/// writes), or an `.npz`-named ZIP (an empty archive, or members in another order).
fn sniff(input: &Input) -> Sniff {
    let head = &input.head;
    if head.starts_with(header::MAGIC) {
        return Sniff::Yes;
    }
    let is_zip = head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06");
    if head.starts_with(b"PK\x03\x04") && head.len() >= 30 {
        let name_len = u16::from_le_bytes([head[26], head[27]]) as usize;
        if let Some(name) = head.get(30..30 + name_len) {
            if name.ends_with(b".npy") {
                return Sniff::Yes;
            }
        }
    }
    if is_zip && input.has_extension(&[".npz"]) {
        return Sniff::Maybe;
    }
    Sniff::No
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(NumpySource::open(
        &input.display,
        input.files.clone(),
        input.data()?,
        &input.stem,
        opts.max_decompressed,
    )?))
}

impl NumpySource {
    /// Opens a `.npy` (named `stem`) or an `.npz` (told apart by the magic); a deflated member
    /// may inflate to at most `max_decompressed` bytes.
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: &FileRange,
        stem: &str,
        max_decompressed: u64,
    ) -> Result<NumpySource> {
        let mut src = NumpySource {
            path: path.to_string(),
            files,
            arrays: Vec::new(),
            notes: Vec::new(),
        };
        let mut head = [0u8; 6];
        let n = (data.len() as usize).min(6);
        data.read_at(0, &mut head[..n])?;
        if &head[..n] == header::MAGIC {
            let h = header::read(&mut crate::input::RangeReader::new(data.clone()))?;
            if let Descr::Unsupported { what, .. } = &h.descr {
                // the file's one array: nothing would be left to convert
                bail!("array '{stem}' has {what}, which tensor2npy does not write");
            }
            let bytes = MemberData::checked(path.to_string(), data.clone());
            src.add(stem.to_string(), h, Bytes::Range(bytes), data.len())?;
            return Ok(src);
        }
        let mut zip = Archive::open(data, max_decompressed)?;
        for i in 0..zip.len() {
            let entry = zip.entries()[i].clone();
            if entry.name.ends_with('/') {
                continue;
            }
            let name = entry
                .name
                .strip_suffix(".npy")
                .unwrap_or(&entry.name)
                .to_string();
            let member = zip.member(i)?;
            let mut r = member.head_reader();
            let mut magic = [0u8; 6];
            let is_npy =
                entry.size >= 6 && r.read_exact(&mut magic).is_ok() && &magic == header::MAGIC;
            if !is_npy {
                // np.load returns such a member as raw bytes, not as an array, having read it
                // whole: so is its CRC-32 checked here (a damaged magic is an error, not a
                // member left out).
                member
                    .check()
                    .with_context(|| format!("member {}", entry.name))?;
                src.notes.push(format!(
                    "member '{}' is not a .npy array; left out",
                    entry.name
                ));
                continue;
            }
            let mut r = std::io::Cursor::new(magic).chain(r);
            let at = || format!("member {}", entry.name);
            // A header that fails to parse, or names a type no output has, is checked against
            // the member's CRC-32 first, so that damage is reported as damage.
            let h = match header::read(&mut r) {
                Ok(h) if !matches!(h.descr, Descr::Unsupported { .. }) => h,
                other => {
                    member.check().with_context(at)?;
                    other.with_context(at)?
                }
            };
            let bytes = if member.is_deflated() {
                Bytes::Deflated(MemberData::new(member.clone()))
            } else {
                Bytes::Range(MemberData::new(member.clone()))
            };
            if let Err(e) = src.add(name, h, bytes, entry.size) {
                member.check().with_context(at)?;
                return Err(e.context(at()));
            }
        }
        Ok(src)
    }
}

/// Where an array's `.npy` bytes (header included) are.
enum Bytes {
    /// A `.npy` file, or a stored member (its CRC-32 checked on first use).
    Range(MemberData),
    /// A deflated member: streamed, or spooled for a Fortran-order read.
    Deflated(MemberData),
}

struct Array {
    meta: TensorMeta,
    header: Header,
    bytes: Bytes,
    /// Bytes per element; 0 for an unsupported type.
    item: u64,
    /// The data's length (elements × item).
    len: u64,
    supported: bool,
}

pub struct NumpySource {
    path: String,
    files: Vec<PathBuf>,
    arrays: Vec<Array>,
    notes: Vec<String>,
}

impl NumpySource {
    /// Adds one array, checking its header against the bytes present (`total`: the `.npy`
    /// length, header included).
    fn add(&mut self, name: String, h: Header, bytes: Bytes, total: u64) -> Result<()> {
        let elements = checked_elements(&h.shape)?;
        let (dtype, big_endian, kind, max_string_len, supported) = match &h.descr {
            Descr::Numeric { dtype, big_endian } => (*dtype, *big_endian, Kind::Dense, None, true),
            Descr::Bytes(n) => (DType::String, false, Kind::String, Some(*n), true),
            Descr::Object => bail!(
                "array '{name}' holds Python objects: Object arrays cannot be loaded when allow_pickle=False"
            ),
            Descr::Unsupported { what, .. } => {
                self.notes.push(format!(
                    "array '{name}' has {what}, which tensor2npy does not write (listed as dtype resource; --skip-unsupported leaves it out)"
                ));
                (DType::Resource, false, Kind::Dense, None, false)
            }
        };
        let item = h.descr.item_size().unwrap_or(0);
        let len = elements
            .checked_mul(item)
            .with_context(|| format!("array '{name}': its size overflows"))?;
        let present = total.saturating_sub(h.data_offset);
        if supported && present < len {
            bail!(
                "array '{name}' of shape {:?} needs {len} bytes of data, but only {present} follow its header (truncated, or the header lies)",
                h.shape
            );
        }
        if supported && present > len {
            self.notes.push(format!(
                "array '{name}': {} bytes after its data are ignored, as np.load ignores them",
                present - len
            ));
        }
        self.arrays.push(Array {
            meta: TensorMeta {
                name,
                dtype,
                shape: h.shape.clone(),
                kind,
                stored_bytes: len,
                max_string_len,
                big_endian,
                ragged_rank: 0,
                facts: Default::default(),
            },
            header: h,
            bytes,
            item,
            len,
            supported,
        });
        Ok(())
    }

    /// Streams array `index`'s elements in C order, as stored (not swapped), in chunks of whole
    /// elements.
    fn elements(&self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        let a = &self.arrays[index];
        if !a.supported {
            bail!(
                "array '{}' has a dtype tensor2npy does not write (see the note above)",
                a.meta.name
            );
        }
        let offset = a.header.data_offset;
        let unit = a.item.max(1) as usize;
        match (&a.bytes, a.header.fortran_order) {
            (Bytes::Range(d), false) => d.range()?.slice(offset, a.len)?.stream(unit, chunk, sink),
            (Bytes::Range(d) | Bytes::Deflated(d), true) => {
                let data = d.range()?.slice(offset, a.len)?;
                let budget = TRANSPOSE_BUDGET.max(chunk as u64);
                order::stream_c_order(&data, &a.meta.shape, a.item, chunk, budget, sink)
            }
            (Bytes::Deflated(d), false) => {
                // Inflate from the start, skip the header, stream the data, then drain the
                // rest so that the CRC-32 is checked at the end.
                let m = d.member();
                let mut r = m.reader();
                let fail = |e: std::io::Error| {
                    anyhow::Error::new(e).context(format!("ZIP member {} is corrupt", m.name))
                };
                std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink()).map_err(fail)?;
                let step = (chunk / unit).max(1) * unit;
                let mut buf = vec![0u8; step.min(a.len as usize)];
                let mut left = a.len;
                while left > 0 {
                    let n = (step as u64).min(left) as usize;
                    r.read_exact(&mut buf[..n]).map_err(fail)?;
                    sink(&buf[..n])?;
                    left -= n as u64;
                }
                std::io::copy(&mut r, &mut std::io::sink()).map_err(fail)?;
                Ok(())
            }
        }
    }
}

impl Source for NumpySource {
    fn display_path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> usize {
        self.arrays.len()
    }

    fn meta(&self, index: usize) -> Result<TensorMeta> {
        Ok(self.arrays[index].meta.clone())
    }

    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        if self.arrays[index].meta.kind == Kind::String {
            bail!(
                "array '{}' holds bytes, not numbers",
                self.arrays[index].meta.name
            );
        }
        self.elements(index, chunk, sink)
    }

    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        let a = &self.arrays[index];
        if a.meta.kind != Kind::String {
            bail!("array '{}' is not a bytes array", a.meta.name);
        }
        let item = a.item as usize;
        self.elements(index, 1 << 20, &mut |c: &[u8]| {
            // NumPy's |S drops trailing NULs.
            c.chunks(item).try_for_each(|e| {
                let end = e.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                sink(&e[..end])
            })
        })
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn raw_range(&self, index: usize) -> Option<FileRange> {
        let a = &self.arrays[index];
        match &a.bytes {
            Bytes::Range(d)
                if a.supported
                    && a.meta.kind == Kind::Dense
                    && !a.meta.big_endian
                    && !a.header.fortran_order =>
            {
                d.range().ok()?.slice(a.header.data_offset, a.len).ok()
            }
            _ => None,
        }
    }

    fn input_facts(&self) -> InputFacts<'_> {
        InputFacts::with_notes(&self.notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str, head: &[u8]) -> Input {
        Input {
            path: path.into(),
            display: path.into(),
            stem: "x".into(),
            is_dir: false,
            data: None,
            head: head.to_vec(),
            files: vec![],
        }
    }

    #[test]
    fn npy_files_and_npz_archives_are_told_from_other_zips() {
        assert_eq!(sniff(&input("a.bin", b"\x93NUMPY\x01\x00")), Sniff::Yes);
        let mut zip = b"PK\x03\x04".to_vec();
        zip.resize(26, 0);
        zip.extend([7, 0, 0, 0]);
        zip.extend(b"arr.npy");
        assert_eq!(sniff(&input("a.zip", &zip)), Sniff::Yes);
        zip.truncate(30);
        zip.extend(b"a/x.pkl");
        assert_eq!(sniff(&input("a.zip", &zip)), Sniff::No);
        assert_eq!(sniff(&input("a.npz", &zip)), Sniff::Maybe);
        assert_eq!(sniff(&input("a.npz", b"PK\x05\x06")), Sniff::Maybe);
    }
}
