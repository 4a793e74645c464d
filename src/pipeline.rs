//! Moves one tensor from a source through the transforms (and the device stage) into a sink
//! member: open the member, read chunks, convert, write, commit. Also the output dtype and size
//! of a tensor, which `list` shares. Errors live in `error.rs`, selection in `select.rs`,
//! progress and notes in `report.rs`.

use anyhow::{anyhow, bail, Result};

use std::time::{Duration, Instant};

use crate::device::HostTimes;
use crate::dtype::{DType, DtypePolicy, NpyType, Plan};
use crate::input::FileRange;
use crate::sink::{npy, Member, MemberSpec, Sink};
use crate::tensor::{Kind, Source, TensorMeta};
use crate::transform::Converter;

use crate::error::check_interrupted;
use crate::report::Reporter;

/// The `.npy` type a tensor is written as, or `None` when its dtype has no NumPy form.
pub fn npy_type(meta: &TensorMeta, policy: &DtypePolicy) -> Option<NpyType> {
    match policy.plan(meta.dtype) {
        Plan::Numeric(t) | Plan::Bits(t) => Some(t),
        Plan::Strings => Some(NpyType::Bytes(
            meta.max_string_len.unwrap_or(0).max(1) as usize
        )),
        Plan::Unsupported => None,
    }
}

/// The output byte count of a tensor, refusing sizes that overflow.
pub fn output_bytes(meta: &TensorMeta, t: NpyType) -> Result<u64> {
    meta.num_elements()?
        .checked_mul(t.size() as u64)
        .ok_or_else(|| {
            anyhow!(
                "the output of shape {:?} would exceed 2^64 bytes",
                meta.shape
            )
        })
}

/// What every tensor of a conversion shares.
pub struct WriteOptions<'a> {
    pub policy: &'a DtypePolicy,
    /// Bytes read and converted at a time.
    pub chunk: usize,
    pub report: &'a Reporter,
    /// Where dense conversions run, and what they cost.
    pub device: &'a std::cell::RefCell<crate::device::DeviceStage>,
}

/// What a tensor's member looks like before its data: the `.npy` header, the data length,
/// the conversion (none for strings), and the input range the data is copied from when it
/// needs no conversion.
pub struct Prepared {
    out_type: NpyType,
    header: Vec<u8>,
    pub data_len: u64,
    converter: Option<Converter>,
    pub copy: Option<FileRange>,
    /// Why the reader decodes this tensor on the host (the tensor's `facts.host_decode`).
    host_decode: Option<String>,
}

impl Prepared {
    /// The member of `out_name` as a sink receives it.
    pub fn spec<'a>(&'a self, out_name: &'a str) -> MemberSpec<'a> {
        MemberSpec {
            name: out_name,
            header: &self.header,
            data_len: self.data_len,
            copy_from: self
                .copy
                .as_ref()
                .filter(|r| crate::sink::kernel_copies(r))
                .map(FileRange::file_offset),
        }
    }
}

/// Decides how tensor `index` of `src` is written: refuses dtypes without a NumPy form and
/// sizes that overflow, and finds the input range of an unconverted tensor.
pub fn prepare(
    src: &dyn Source,
    index: usize,
    meta: &TensorMeta,
    policy: &DtypePolicy,
) -> Result<Prepared> {
    let Some(out_type) = npy_type(meta, policy) else {
        bail!(
            "dtype {} has no NumPy form (use --skip-unsupported to leave it out)",
            meta.dtype
        );
    };
    let data_len = output_bytes(meta, out_type)?;
    let header = npy::header(&out_type.descr(), &meta.shape);
    let string = meta.kind == Kind::String || meta.dtype == DType::String;
    let converter = match string {
        true => None,
        false => Some(Converter::new(
            meta.dtype,
            policy.plan(meta.dtype),
            meta.big_endian,
        )?),
    };
    let copy = match &converter {
        Some(c) if c.is_identity() => src.raw_range(index).filter(|r| r.len() == data_len),
        _ => None,
    };
    Ok(Prepared {
        out_type,
        header,
        data_len,
        converter,
        copy,
        host_decode: meta.facts.host_decode.clone(),
    })
}

/// Streams tensor `index` of `src` (described by `meta`) into `sink` under `out_name`.
pub fn write_tensor(
    src: &mut dyn Source,
    index: usize,
    meta: &TensorMeta,
    out_name: &str,
    sink: &mut dyn Sink,
    opts: &WriteOptions,
) -> Result<()> {
    let prepared = prepare(src, index, meta, opts.policy)?;
    opts.report.set_message(out_name);
    let member = sink.member(&prepared.spec(out_name))?;
    fill(src, index, out_name, &prepared, member, opts)
}

/// Writes the data of tensor `index` into `member` (whose header is written) and commits it:
/// strings padded to their width, an unconverted range copied, anything else converted chunk
/// by chunk through the device stage. The `--jobs` workers call this with members reserved in
/// the output.
pub fn fill(
    src: &mut dyn Source,
    index: usize,
    out_name: &str,
    prepared: &Prepared,
    mut member: Member,
    opts: &WriteOptions,
) -> Result<()> {
    let WriteOptions { chunk, report, .. } = *opts;
    // Host times only under --stats: reading the clock per string element costs.
    let timed = opts.device.borrow().keep_per_tensor;
    let now = || timed.then(Instant::now);
    let since = |t: Option<Instant>| t.map_or(Duration::ZERO, |t| t.elapsed());
    let mut host = HostTimes::default();
    let started = now();
    let Some(converter) = &prepared.converter else {
        let width = prepared.out_type.size();
        let mut trailing_nul = false;
        let zeros = vec![0u8; width];
        src.read_strings(index, &mut |s: &[u8]| {
            if s.len() > width {
                bail!(
                    "a string element is longer ({}) than the declared maximum ({width})",
                    s.len()
                );
            }
            trailing_nul |= s.last() == Some(&0);
            check_interrupted()?;
            let t = now();
            member.write(s)?;
            member.write(&zeros[..width - s.len()])?;
            host.write += since(t);
            host.bytes_read += s.len() as u64;
            host.bytes_written += width as u64;
            report.advance(width as u64);
            Ok(())
        })?;
        let t = now();
        member.commit()?;
        host.write += since(t);
        host.read = since(started).saturating_sub(host.write);
        opts.device.borrow_mut().record_host_only(
            out_name,
            "strings have no device operation",
            host,
        );
        if trailing_nul {
            report.warn(&format!(
                "'{out_name}': some strings end in NUL bytes, which NumPy's |S dtype drops when read back"
            ));
        }
        return Ok(());
    };
    if let Some(range) = &prepared.copy {
        return copy_member(range, out_name, member, opts);
    }
    let mut device = opts.device.borrow_mut();
    let mut run = device.start(out_name, converter, chunk)?;
    let write = |member: &mut Member, out: &[u8], host: &mut HostTimes| -> Result<()> {
        check_interrupted()?;
        let t = now();
        member.write(out)?;
        host.write += since(t);
        host.bytes_written += out.len() as u64;
        report.advance(out.len() as u64);
        Ok(())
    };
    src.read_dense(index, chunk, &mut |c: &[u8]| {
        let t = now();
        let out = run.push(c)?;
        host.convert += since(t);
        host.bytes_read += c.len() as u64;
        write(&mut member, out, &mut host)
    })?;
    let t = now();
    let rest = run.finish()?;
    host.convert += since(t);
    write(&mut member, rest, &mut host)?;
    let t = now();
    member.commit()?;
    host.write += since(t);
    host.read = since(started).saturating_sub(host.convert + host.write);
    device.add_host_times(host);
    // The reader decoded this tensor on the host (GGUF dequantization); say so in --stats.
    if let (Some(why), Some(last)) = (&prepared.host_decode, device.stats.last_mut()) {
        if last.path != "gpu" {
            last.path = format!("cpu: {why}");
        }
    }
    Ok(())
}

/// Bytes an unconverted copy moves between progress updates (a multiple of the page size, so
/// that the kernel copies of an `.npz` stay aligned).
const COPY_PIECE: u64 = 64 << 20;

/// Copies `range` into `member` a `piece` at a time, calling `done` after each, so that the
/// progress bar moves inside a large unconverted tensor (the sinks check for interrupts between
/// their own smaller pieces).
fn copy_in_pieces(
    range: &FileRange,
    member: &mut Member,
    piece: u64,
    done: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut at = 0;
    while at < range.len() {
        check_interrupted()?;
        let n = piece.min(range.len() - at);
        member.copy(&range.slice(at, n)?)?;
        done(n);
        at += n;
    }
    Ok(())
}

/// Copies the unconverted input `range` into `member` and commits it (see [`fill`]).
pub fn copy_member(
    range: &FileRange,
    out_name: &str,
    mut member: Member,
    opts: &WriteOptions,
) -> Result<()> {
    check_interrupted()?;
    let started = Instant::now();
    copy_in_pieces(range, &mut member, COPY_PIECE, &mut |n| {
        opts.report.advance(n)
    })?;
    member.commit()?;
    // The copy reads and writes at once: its time is the write's.
    let host = HostTimes {
        write: started.elapsed(),
        bytes_read: range.len(),
        bytes_written: range.len(),
        ..Default::default()
    };
    opts.device
        .borrow_mut()
        .record_host_only(out_name, "no device operation (a plain copy)", host);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemberWriter;

    /// Counts what a member receives.
    struct Counting(std::rc::Rc<std::cell::RefCell<Vec<u64>>>);

    impl MemberWriter for Counting {
        fn write(&mut self, data: &[u8]) -> Result<()> {
            self.0.borrow_mut().push(data.len() as u64);
            Ok(())
        }
        fn copy(&mut self, range: &FileRange) -> Result<()> {
            self.0.borrow_mut().push(range.len());
            Ok(())
        }
        fn commit(self: Box<Self>) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_large_copy_goes_in_pieces_and_reports_each() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let range = FileRange::from_vec(vec![7u8; 10_000]);
        let mut member = Member::reserved_local(Box::new(Counting(seen.clone())), 10_000);
        let mut progress = Vec::new();
        copy_in_pieces(&range, &mut member, 4096, &mut |n| progress.push(n)).unwrap();
        member.commit().unwrap();
        assert_eq!(progress, vec![4096, 4096, 1808]);
        assert_eq!(*seen.borrow(), vec![4096, 4096, 1808]);
    }
}
