//! `tensor2npy convert`: resolves its command line once (`settings.rs`), opens the inputs, makes
//! the first pass over their metadata (`survey.rs`), decides where each selected tensor goes (the
//! output table of `plan.rs`), refuses to write over an input, lets the planner (`planner.rs`)
//! decide each output (`--update`, `--max-output`), and drives the pipeline into the sinks.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::cli::ConvertArgs;
use crate::device::DeviceStage;
use crate::error::Interrupted;
use crate::jobs;
use crate::pipeline::{npy_type, prepare, write_tensor, WriteOptions};
use crate::report::Reporter;
use crate::select::Selector;
use crate::sink::names::shown;
use crate::sink::{npz_file, DirSink, NpyFileSink, NpzSink, Sink, StdoutNpySink};
use crate::source::stem;
use crate::summary::Outcomes;

use super::plan::{plan_jobs, refuse_overwriting_inputs, target_name, Job, Target};
use super::planner::{self, Decision, Done, Planned, Survey};
use super::settings::Settings;
use crate::tensor::Source;

pub fn run(args: ConvertArgs) -> Result<()> {
    let started = Instant::now();
    let report = Reporter::new(args.quiet);
    let mut settings = Settings::convert(args)?;
    let mut selector = settings.selector()?;
    crate::pool::size(settings.workers);
    let manifest = match &settings.manifest {
        Some(p) => Some(crate::batch::Manifest::open(p)?),
        None => None,
    };
    let mut outcomes = Outcomes::new(settings.keep_going);
    // --keep-going leaves out a failing input only where each input has an output of its own:
    // an output shared by several inputs is never written without one of them.
    let keep_inputs = settings.keep_going && super::plan::outputs_per_input(&settings);
    let mut sources = if keep_inputs && !settings.inputs.concat {
        // Each input on its own: one that cannot be opened is reported, the others go on.
        let (sources, kept) = super::open_each(&settings.inputs, &mut |p, e| {
            record_dropped(manifest.as_ref(), &settings, p, &e)?;
            outcomes.failed(e)
        })?;
        settings.inputs.paths = kept;
        sources
    } else {
        super::open_inputs(&settings.inputs)?
    };
    if settings.inputs.concat {
        // One dataset: named and placed as its first input.
        settings.inputs.paths.truncate(1);
    }
    for src in &sources {
        for note in src.input_facts().notes {
            report.note(&format!("{}: {note}", src.display_path()));
        }
    }

    // A first pass over the metadata: what each input contributes, and every reason to refuse,
    // before anything is written.
    let (mut survey, mut skipped) = (Survey::default(), 0);
    // With --update, --max-output is charged only for the outputs it then writes (below): the
    // first pass measures each input's share without a limit.
    let defer_budget = settings.update && settings.max_output.is_some();
    let mut budget = crate::budget::OutputBudget::new(match defer_budget {
        true => None,
        false => settings.max_output,
    });
    let mut s = 0;
    while s < sources.len() {
        let before = budget.used();
        match super::survey::survey(sources[s].as_ref(), &mut selector, &settings, &mut budget) {
            Ok((n, bytes, skip)) => {
                survey.selected.push(n);
                survey.bytes.push(bytes);
                survey.charged.push(budget.used() - before);
                skipped += skip;
                s += 1;
            }
            Err(e) if !keep_inputs => return Err(e),
            Err(e) => {
                // With --keep-going the input is left out; its outputs are not written.
                let p = settings.inputs.paths[s].clone();
                record_dropped(manifest.as_ref(), &settings, &p, &e)?;
                outcomes.failed(e)?;
                sources.remove(s);
                settings.inputs.paths.remove(s);
            }
        }
    }
    if sources.is_empty() {
        return outcomes.finish();
    }
    let total: u64 = survey.bytes.iter().sum();
    let all_inputs = || super::all_inputs(&sources);
    let count: usize = survey.selected.iter().sum();
    let patterns = !settings.select.is_empty() || !settings.exclude.is_empty();
    super::check_selection(&sources, &selector, count, patterns)?;
    if count == 0 && skipped > 0 {
        return Err(anyhow!(
            "--skip-unsupported skipped every tensor ({skipped}): nothing to write (nothing was written)"
        )
        .context(all_inputs()));
    }

    let stems: Vec<String> = settings.inputs.paths.iter().map(|p| stem(p)).collect();
    let jobs = plan_jobs(&settings, &stems, &survey.selected).with_context(all_inputs)?;
    refuse_overwriting_inputs(&jobs, &sources, &stems, &selector)?;
    for job in &jobs {
        if let Target::Dir(dir) = &job.target {
            if let Some(note) = crate::sink::names::looks_like_a_file(dir) {
                report.note(&note);
            }
        }
    }
    let mut device = DeviceStage::open(settings.device, settings.adapter)?;
    device.keep_per_tensor = settings.stats.is_some();
    if let Some(why) = &device.fallback {
        report.note(&format!("--device auto: using the CPU ({why})"));
    }
    let device = RefCell::new(device);
    report.add_total(total);
    let opts = WriteOptions {
        policy: &settings.policy,
        chunk: settings.chunk.max(64),
        report: &report,
        device: &device,
    };
    let remote_out = &settings.remote_out;
    let fingerprint = &settings.fingerprint;
    let workers = settings.workers;
    let reopen = |s: usize| super::reopen_input(&settings.inputs, s);
    let oracle = Files {
        sources: &sources,
        paths: &settings.inputs.paths,
        manifest: manifest.as_ref(),
        fingerprint,
    };
    let planned = planner::decide(
        jobs,
        &survey,
        &settings,
        manifest.is_some(),
        &oracle,
        &all_inputs(),
    );
    // In order: what --update leaves alone, then what is to be written.
    let mut todo = Vec::new();
    for Planned {
        job,
        done,
        decision,
    } in planned
    {
        match decision {
            Decision::Write => todo.push((job, done)),
            Decision::UpToDate { shown, previous } => {
                report.note(&match previous.is_null() {
                    // Without a manifest only times are compared: the options are not known.
                    true => format!(
                        "{}: up to date (--update: newer than its inputs; without --manifest a change of options is not noticed)",
                        shown.display()
                    ),
                    false => format!("{}: up to date (--update)", shown.display()),
                });
                outcomes.up_to_date();
                if let Some(m) = &manifest {
                    let (inputs, _, tensors, _, identity, _) = &done;
                    m.record(&crate::batch::Record {
                        inputs,
                        output: Some(&shown),
                        url: None,
                        tensors: *tensors,
                        status: "up-to-date",
                        error: None,
                        identity,
                        fingerprint,
                        previous: Some(&previous),
                        digest: None,
                    })?;
                }
            }
            Decision::OverBudget(e) => {
                if !keep_inputs {
                    return Err(e);
                }
                if let (Some(m), [s]) = (&manifest, job.inputs.as_slice()) {
                    let p = settings.inputs.paths[*s].clone();
                    record_dropped(Some(m), &settings, &p, &e)?;
                }
                outcomes.failed(e)?;
            }
        }
    }
    // Once an output is complete (or has failed): upload it when it goes to object storage,
    // then append its manifest line at once (from the worker that wrote it).
    let finished = |(inputs, target, tensors, _, identity, _): &Done, result: Result<Written>| {
        let result = result.and_then(|digest| match (remote_out, target) {
            (Some(r), Some(t)) => r.upload(t).map(|url| (Some(url), digest)),
            _ => Ok((None, digest)),
        });
        let release = || {
            if let (Some(r), Some(t)) = (remote_out, target) {
                r.release(t);
            }
        };
        let Some(m) = &manifest else {
            release();
            return result.map(|_| ());
        };
        let (url, error, digest) = match &result {
            Ok((url, digest)) => (url.clone(), None, digest.as_ref()),
            Err(e) => (None, Some(format!("{e:#}")), None),
        };
        let url = url.or_else(|| {
            let r = remote_out.as_ref()?;
            r.url_of(target.as_deref()?)
        });
        let recorded = m.record(&crate::batch::Record {
            inputs,
            output: target.as_deref(),
            url: url.as_deref(),
            tensors: *tensors,
            status: if error.is_some() { "failed" } else { "written" },
            error,
            identity,
            fingerprint,
            previous: None,
            digest,
        });
        release();
        recorded?;
        result.map(|_| ())
    };
    let mut failures = Vec::new();
    let one_input_each = todo.iter().all(|(job, _)| job.inputs.len() == 1);
    if workers > 1 && todo.len() > 1 && one_input_each && device.borrow().is_host() {
        // A batch: its outputs convert in parallel, each in turn inside.
        let mut slots: Vec<Option<&mut Box<dyn Source>>> = sources.iter_mut().map(Some).collect();
        let (mut items, mut records) = (Vec::new(), Vec::new());
        for (k, (job, record)) in todo.into_iter().enumerate() {
            let s = job.inputs[0];
            let src = slots[s]
                .take()
                .context("internal: two outputs of one input")?;
            records.push(record.clone());
            items.push((k, job, vec![(s, src)], record));
        }
        // With --keep-going a failed output is kept aside, so that the other workers go on.
        let kept = std::sync::Mutex::new(Vec::new());
        let (done, result) =
            jobs::run_each(workers, items, &opts, |(k, job, inputs, record), opts| {
                let done = run_job(job, inputs, &stems, &selector, &settings, opts, &reopen, 0);
                let called_off = done
                    .as_ref()
                    .is_err_and(|e| e.downcast_ref::<crate::error::Cancelled>().is_some());
                if called_off {
                    return done.map(|_| ());
                }
                match finished(&record, done) {
                    Err(e) if settings.keep_going && e.downcast_ref::<Interrupted>().is_none() => {
                        kept.lock().unwrap_or_else(|e| e.into_inner()).push((k, e));
                        Ok(())
                    }
                    r => r,
                }
            });
        let mut kept = kept.into_inner().unwrap_or_else(|e| e.into_inner());
        kept.sort_by_key(|(k, _)| *k);
        for (k, ((_, _, tensors, bytes, _, name), done)) in
            records.into_iter().zip(done).enumerate()
        {
            if done && !kept.iter().any(|(f, _)| *f == k) {
                outcomes.written(name, tensors, bytes);
            }
        }
        failures.extend(kept.into_iter().map(|(_, e)| e));
        result?;
    } else {
        for (job, record) in todo {
            let inputs: Vec<(usize, &mut Box<dyn Source>)> = sources
                .iter_mut()
                .enumerate()
                .filter(|(s, _)| job.inputs.contains(s))
                .collect();
            let done = run_job(
                job, inputs, &stems, &selector, &settings, &opts, &reopen, workers,
            );
            match finished(&record, done) {
                Ok(()) => {
                    let (_, _, tensors, bytes, _, name) = record;
                    outcomes.written(name, tensors, bytes);
                }
                // With --keep-going the failure is reported at once and counted at the end.
                Err(e) => outcomes.failed(e)?,
            }
        }
    }
    for e in failures {
        outcomes.failed(e)?;
    }
    report.finish();
    if let Some(format) = settings.stats {
        eprint!("{}", device.borrow().report(format));
    }
    if !settings.quiet && std::io::stderr().is_terminal() {
        eprintln!("tensor2npy: {}", shown(&outcomes.line(started.elapsed())));
    }
    outcomes.finish()
}

/// The manifest line of an input `--keep-going` leaves out when it cannot be opened or is
/// refused by the first pass: status `failed` with the error, under the output it would have had.
fn record_dropped(
    manifest: Option<&crate::batch::Manifest>,
    settings: &Settings,
    input: &Path,
    e: &anyhow::Error,
) -> Result<()> {
    let Some(m) = manifest else {
        return Ok(());
    };
    if e.downcast_ref::<Interrupted>().is_some() {
        return Ok(());
    }
    let output = super::plan::own_output(settings, input);
    let url = match (&settings.remote_out, &output) {
        (Some(r), Some(p)) => r.url_of(p),
        _ => None,
    };
    m.record(&crate::batch::Record {
        inputs: &[input.display().to_string()],
        output: output.as_deref(),
        url: url.as_deref(),
        tensors: 0,
        status: "failed",
        error: Some(format!("{e:#}")),
        identity: &crate::batch::identity(&[input.to_path_buf()]),
        fingerprint: &settings.fingerprint,
        previous: None,
        digest: None,
    })
}

/// What `run_job` gives the manifest: the output's size and SHA-256 when its sink hashed it
/// while writing (`--manifest`).
type Written = Option<crate::sink::digest::Digest>;

/// What the planner asks of the world: the files of each input, their identity and the
/// manifest (`batch.rs`).
struct Files<'a> {
    sources: &'a [Box<dyn Source>],
    paths: &'a [PathBuf],
    manifest: Option<&'a crate::batch::Manifest>,
    fingerprint: &'a str,
}

impl planner::Oracle for Files<'_> {
    fn files(&self, s: usize) -> Vec<PathBuf> {
        match self.sources[s].input_files() {
            f if f.is_empty() => vec![self.paths[s].clone()],
            f => f,
        }
    }
    fn identity(&self, files: &[PathBuf]) -> serde_json::Value {
        crate::batch::identity(files)
    }
    fn up_to_date(
        &self,
        shown: &Path,
        files: &[PathBuf],
        identity: &serde_json::Value,
    ) -> Option<serde_json::Value> {
        crate::batch::up_to_date(shown, files, self.manifest, identity, self.fingerprint)
    }
}

#[allow(clippy::too_many_arguments)]
fn run_job(
    job: Job,
    mut inputs: Vec<(usize, &mut Box<dyn Source>)>,
    stems: &[String],
    selector: &Selector,
    settings: &Settings,
    opts: &WriteOptions,
    reopen: &jobs::Reopen,
    workers: usize,
) -> Result<Written> {
    let target_name = target_name(&job.target);
    let mut sink: Box<dyn Sink> = match &job.target {
        Target::Npz(p) => npz_file(p, settings.compress).with_context(|| target_name.clone())?,
        Target::Npy(p) => Box::new(NpyFileSink::create(p).with_context(|| target_name.clone())?),
        Target::Dir(p) => Box::new(DirSink::create(p).with_context(|| target_name.clone())?),
        Target::StdoutNpy => Box::<StdoutNpySink>::default(),
        Target::StdoutNpz => Box::new(NpzSink::stdout(settings.compress)?),
    };
    let hashed = settings.manifest.as_ref().and_then(|_| sink.hash());
    let parallel = workers > 1 && sink.can_reserve() && opts.device.borrow().is_host();
    let sink_ref = sink.as_mut();
    let mut write = |pool: Option<&jobs::Pool>| {
        write_members(
            &job,
            &mut inputs,
            stems,
            selector,
            settings,
            opts,
            sink_ref,
            pool,
        )
    };
    if parallel {
        let from = opts.device.borrow().stats.len();
        jobs::run(workers, reopen, opts, from, |pool| write(Some(pool)))?;
    } else {
        write(None)?;
    }
    sink.finish().with_context(|| target_name)?;
    Ok(hashed.and_then(|h| h.get().cloned()))
}

/// Writes the selected tensors of a job's inputs into `sink`, in order. With a `pool`, large
/// tensors get their room reserved and go to a worker, the rest are written here.
#[allow(clippy::too_many_arguments)]
fn write_members(
    job: &Job,
    inputs: &mut [(usize, &mut Box<dyn Source>)],
    stems: &[String],
    selector: &Selector,
    settings: &Settings,
    opts: &WriteOptions,
    sink: &mut dyn Sink,
    pool: Option<&jobs::Pool>,
) -> Result<()> {
    let (policy, report) = (opts.policy, opts.report);
    let min = jobs::parallel_min();
    let mut order = 0;
    for (s, src) in inputs.iter_mut() {
        let s = *s;
        // A second copy holds the input's metadata again: not for inputs of very many tensors.
        let reopens = !settings.inputs.concat
            && src.len() <= jobs::MAX_REOPENED_TENSORS
            && reopenable(&settings.inputs.paths[s]);
        for i in 0..src.len() {
            if pool.is_some_and(|p| p.failed()) {
                return Ok(()); // the worker's error is the one reported
            }
            let meta = src.meta(i)?;
            if !selector.keep(&meta.name) {
                continue;
            }
            let path = src.display_path().to_string();
            if npy_type(&meta, policy).is_none() {
                let dtype = meta
                    .facts
                    .source_dtype
                    .clone()
                    .unwrap_or_else(|| meta.dtype.to_string());
                report.note(&format!(
                    "{path}: skipped '{}': dtype {dtype} has no NumPy form",
                    shown(&meta.name)
                ));
                continue;
            }
            let name = if job.prefixed {
                format!("{}/{}", stems[s], meta.name)
            } else {
                meta.name.clone()
            };
            let context = || format!("{path}: tensor '{}'", meta.name);
            order += 1;
            let Some(pool) = pool else {
                write_tensor(src.as_mut(), i, &meta, &name, sink, opts).with_context(context)?;
                continue;
            };
            let prepared = prepare(src.as_ref(), i, &meta, policy).with_context(context)?;
            let to_worker = prepared.data_len >= min
                && (prepared.copy.is_some() || (reopens && !meta.facts.serial));
            if to_worker {
                let member = sink.reserve(&prepared.spec(&name)).with_context(context)?;
                pool.submit(jobs::Task {
                    order,
                    input: s,
                    index: i,
                    tensor: meta.name,
                    name,
                    path,
                    prepared,
                    member,
                })?;
            } else {
                let from = opts.device.borrow().stats.len();
                if let Err(e) = write_tensor(src.as_mut(), i, &meta, &name, sink, opts) {
                    pool.fail(order, e.context(context()));
                    return Ok(());
                }
                pool.inline_stats(order, &mut opts.device.borrow_mut(), from);
            }
        }
    }
    Ok(())
}

/// Whether a worker can open input `p` a second time: a file, a folder or a URL, not a pipe,
/// a device or standard input (read once, and spooled when it must be read again).
fn reopenable(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.contains("://"))
        || std::fs::metadata(p).is_ok_and(|m| m.is_file() || m.is_dir())
}
