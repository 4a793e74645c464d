//! Moves one tensor from a source through the transforms into a sink, and the pieces every
//! command shares: tensor selection, the output dtype of a tensor, notes and progress on stderr.

use std::io::IsTerminal;

use anyhow::{anyhow, bail, Result};
use globset::{Glob, GlobMatcher};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::dtype::{DType, DtypePolicy, NpyType, Plan};
use crate::sink::{npy, MemberSpec, Sink};
use crate::tensor::{Kind, Source, TensorMeta};
use crate::transform::Converter;

/// Set when SIGINT or SIGTERM arrives; conversions stop at the next chunk, and the normal error
/// path removes their temporary files.
static INTERRUPT: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// Installs the SIGINT / SIGTERM handlers (once).
pub fn watch_interrupts() {
    let flag = INTERRUPT.get_or_init(Default::default);
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled ends the process at once.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
}

/// The error a conversion stops with after SIGINT or SIGTERM.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; the partial output was removed")
    }
}

impl std::error::Error for Interrupted {}

/// Fails with [`Interrupted`] once SIGINT or SIGTERM has arrived.
pub fn check_interrupted() -> Result<()> {
    match INTERRUPT.get() {
        Some(flag) if flag.load(std::sync::atomic::Ordering::Relaxed) => Err(anyhow!(Interrupted)),
        _ => Ok(()),
    }
}

/// A command-line mistake: exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow!(UsageError(msg.into()))
}

/// `--select` / `--exclude` globs, remembering which `--select` patterns matched something.
pub struct Selector {
    select: Vec<(String, GlobMatcher, bool)>,
    exclude: Vec<GlobMatcher>,
}

impl Selector {
    pub fn new(select: &[String], exclude: &[String]) -> Result<Selector> {
        let compile = |g: &String| {
            Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| usage(format!("invalid glob '{g}': {e}")))
        };
        Ok(Selector {
            select: select
                .iter()
                .map(|g| Ok((g.clone(), compile(g)?, false)))
                .collect::<Result<_>>()?,
            exclude: exclude.iter().map(compile).collect::<Result<_>>()?,
        })
    }

    pub fn keep(&self, name: &str) -> bool {
        (self.select.is_empty() || self.select.iter().any(|(_, m, _)| m.is_match(name)))
            && !self.exclude.iter().any(|m| m.is_match(name))
    }

    /// Like `keep`, and notes which `--select` patterns matched.
    pub fn record(&mut self, name: &str) -> bool {
        for (_, m, seen) in &mut self.select {
            *seen |= m.is_match(name);
        }
        self.keep(name)
    }

    /// Fails when a `--select` pattern matched none of the names recorded.
    pub fn check_matched(&self) -> Result<()> {
        match self.select.iter().find(|(_, _, seen)| !seen) {
            Some((pattern, _, _)) => bail!("--select '{pattern}' matches no tensor"),
            None => Ok(()),
        }
    }
}

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

/// Notes, warnings and the progress bar, all on stderr.
pub struct Reporter {
    quiet: bool,
    bar: ProgressBar,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        let bar = if !quiet && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Reporter { quiet, bar }
    }

    pub fn note(&self, msg: &str) {
        if !self.quiet {
            let msg = crate::sink::names::shown(msg);
            self.bar.suspend(|| eprintln!("tensor2npy: note: {msg}"));
        }
    }

    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            let msg = crate::sink::names::shown(msg);
            self.bar.suspend(|| eprintln!("tensor2npy: warning: {msg}"));
        }
    }

    pub fn add_total(&self, bytes: u64) {
        self.bar.inc_length(bytes);
    }

    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    pub fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
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

/// Streams tensor `index` of `src` (described by `meta`) into `sink` under `out_name`.
pub fn write_tensor(
    src: &mut dyn Source,
    index: usize,
    meta: &TensorMeta,
    out_name: &str,
    sink: &mut dyn Sink,
    opts: &WriteOptions,
) -> Result<()> {
    let WriteOptions {
        policy,
        chunk,
        report,
        ..
    } = *opts;
    let plan = policy.plan(meta.dtype);
    let Some(out_type) = npy_type(meta, policy) else {
        bail!(
            "dtype {} has no NumPy form (use --skip-unsupported to leave it out)",
            meta.dtype
        );
    };
    let data_len = output_bytes(meta, out_type)?;
    let header = npy::header(&out_type.descr(), &meta.shape);
    report.set_message(crate::sink::names::shown(out_name).into_owned());
    let spec = MemberSpec {
        name: out_name,
        header: &header,
        data_len,
    };
    if meta.kind == Kind::String || meta.dtype == DType::String {
        let width = out_type.size();
        let mut trailing_nul = false;
        let zeros = vec![0u8; width];
        let mut member = sink.member(&spec)?;
        src.read_strings(index, &mut |s: &[u8]| {
            if s.len() > width {
                bail!(
                    "a string element is longer ({}) than the declared maximum ({width})",
                    s.len()
                );
            }
            trailing_nul |= s.last() == Some(&0);
            check_interrupted()?;
            member.write(s)?;
            member.write(&zeros[..width - s.len()])?;
            report.advance(width as u64);
            Ok(())
        })?;
        member.commit()?;
        opts.device
            .borrow_mut()
            .record_host_only(out_name, "strings have no device operation");
        if trailing_nul {
            report.warn(&format!(
                "'{out_name}': some strings end in NUL bytes, which NumPy's |S dtype drops when read back"
            ));
        }
        return Ok(());
    }
    let converter = Converter::new(meta.dtype, plan, meta.big_endian)?;
    let mut device = opts.device.borrow_mut();
    if converter.is_identity() {
        if let Some(range) = src.raw_range(index).filter(|r| r.len() == data_len) {
            check_interrupted()?;
            let mut member = sink.member(&spec)?;
            member.copy(&range)?;
            member.commit()?;
            report.advance(data_len);
            device.record_host_only(out_name, "no device operation (a plain copy)");
            return Ok(());
        }
    }
    let host_decode = src.host_decode(index);
    let mut run = device.start(out_name, &converter, chunk)?;
    let mut member = sink.member(&spec)?;
    let write = |member: &mut crate::sink::Member, out: &[u8]| -> Result<()> {
        check_interrupted()?;
        member.write(out)?;
        report.advance(out.len() as u64);
        Ok(())
    };
    src.read_dense(index, chunk, &mut |c: &[u8]| {
        write(&mut member, run.push(c)?)
    })?;
    write(&mut member, run.finish()?)?;
    member.commit()?;
    // The reader decoded this tensor on the host (GGUF dequantization); say so in --stats.
    if let (Some(why), Some(last)) = (host_decode, device.stats.last_mut()) {
        if last.path != "gpu" {
            last.path = format!("cpu: {why}");
        }
    }
    Ok(())
}
