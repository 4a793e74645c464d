//! The executor of `convert`: runs the plan. It acts on each output's decision (`planner.rs`):
//! a note and a manifest line for what `--update` leaves alone, the refusal of what is over
//! `--max-output`, and the outputs to write, run either as a batch (outputs of one input each,
//! in parallel over `jobs::run_each`) or in order. Within an output it opens the sink (`sink/`)
//! and walks the per-member plan (`members.rs`), writing each member through the pipeline
//! (`pipeline.rs`) in turn or handing it to a worker of the pool (`jobs.rs`). Once an output is
//! complete (or has failed) it uploads it (`remote_out`) and appends its manifest line
//! (`batch.rs`); the summary's counts go to [`Outcomes`]. Called by `cmd/convert.rs`.

use std::path::Path;

use anyhow::{Context, Result};

use crate::batch::{Manifest, Record};
use crate::error::Interrupted;
use crate::jobs;
use crate::pipeline::{prepare, write_tensor, WriteOptions};
use crate::select::Selector;
use crate::sink::{npz_file, DirSink, NpyFileSink, NpzSink, Sink, StdoutNpySink};
use crate::summary::Outcomes;
use crate::tensor::Source;

use super::members::{self, Members, Place, Rules, Step};
use super::plan::{target_name, Job, Target};
use super::planner::{Decision, Done, Planned};
use super::settings::Settings;

/// What every output of a run shares.
pub(super) struct Executor<'a> {
    pub(super) settings: &'a Settings,
    /// The stem of each input, by input number.
    pub(super) stems: &'a [String],
    pub(super) selector: &'a Selector,
    pub(super) manifest: Option<&'a Manifest>,
    /// `--keep-going` leaves out a failing input (each input has an output of its own).
    pub(super) keep_inputs: bool,
}

/// What `run_job` gives the manifest: the output's size and SHA-256 when its sink hashed it
/// while writing (`--manifest`).
type Written = Option<crate::sink::digest::Digest>;

/// One output of a batch: its number, its job, the one input it reads, its record.
type BatchItem<'s> = (usize, Job, Vec<(usize, &'s mut Box<dyn Source>)>, Done);

impl Executor<'_> {
    /// Acts on every output of `planned`, in order: what `--update` leaves alone and what is
    /// refused first, then the outputs to write.
    pub(super) fn run(
        &self,
        planned: Vec<Planned>,
        sources: &mut [Box<dyn Source>],
        opts: &WriteOptions,
        outcomes: &mut Outcomes,
    ) -> Result<()> {
        let settings = self.settings;
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
                    opts.report.note(&match previous.is_null() {
                        // Without a manifest only times are compared: the options are not known.
                        true => format!(
                            "{}: up to date (--update: newer than its inputs; without --manifest a change of options is not noticed)",
                            shown.display()
                        ),
                        false => format!("{}: up to date (--update)", shown.display()),
                    });
                    outcomes.up_to_date();
                    if let Some(m) = self.manifest {
                        m.record(&Record {
                            inputs: &done.inputs,
                            output: Some(&shown),
                            url: None,
                            tensors: done.tensors,
                            status: "up-to-date",
                            error: None,
                            identity: &done.identity,
                            fingerprint: &settings.fingerprint,
                            previous: Some(&previous),
                            digest: None,
                        })?;
                    }
                }
                Decision::OverBudget(e) => {
                    if !self.keep_inputs {
                        return Err(e);
                    }
                    if let (Some(m), [s]) = (self.manifest, job.inputs.as_slice()) {
                        let p = settings.inputs.paths[*s].clone();
                        record_dropped(Some(m), settings, &p, &e)?;
                    }
                    outcomes.failed(e)?;
                }
            }
        }
        let one_input_each = todo.iter().all(|(job, _)| job.inputs.len() == 1);
        if settings.workers > 1
            && todo.len() > 1
            && one_input_each
            && opts.device.borrow().is_host()
        {
            // Each output of a batch reads an input of its own, handed to its worker.
            let mut slots: Vec<Option<&mut Box<dyn Source>>> =
                sources.iter_mut().map(Some).collect();
            let mut items = Vec::new();
            for (k, (job, done)) in todo.into_iter().enumerate() {
                let s = job.inputs[0];
                let src = slots[s]
                    .take()
                    .context("internal: two outputs of one input")?;
                items.push((k, job, vec![(s, src)], done));
            }
            self.batch(items, opts, outcomes)
        } else {
            self.in_order(todo, sources, opts, outcomes)
        }
    }

    /// A batch: its outputs (each numbered, with the one input it reads) convert in parallel,
    /// each in turn inside.
    fn batch(
        &self,
        items: Vec<BatchItem<'_>>,
        opts: &WriteOptions,
        outcomes: &mut Outcomes,
    ) -> Result<()> {
        let reopen = |s: usize| super::reopen_input(&self.settings.inputs, s);
        let records: Vec<Done> = items
            .iter()
            .map(|(_, _, _, record)| record.clone())
            .collect();
        // With --keep-going a failed output is kept aside, so that the other workers go on.
        let kept = std::sync::Mutex::new(Vec::new());
        let (done, result) = jobs::run_each(
            self.settings.workers,
            items,
            opts,
            |(k, job, inputs, record), opts| {
                let done = self.run_job(job, inputs, opts, &reopen, 0);
                let called_off = done
                    .as_ref()
                    .is_err_and(|e| e.downcast_ref::<crate::error::Cancelled>().is_some());
                if called_off {
                    return done.map(|_| ());
                }
                match self.finished(&record, done) {
                    Err(e)
                        if self.settings.keep_going
                            && e.downcast_ref::<Interrupted>().is_none() =>
                    {
                        kept.lock().unwrap_or_else(|e| e.into_inner()).push((k, e));
                        Ok(())
                    }
                    r => r,
                }
            },
        );
        let mut kept = kept.into_inner().unwrap_or_else(|e| e.into_inner());
        kept.sort_by_key(|(k, _)| *k);
        for (k, (record, done)) in records.into_iter().zip(done).enumerate() {
            if done && !kept.iter().any(|(f, _)| *f == k) {
                outcomes.written(record.name, record.tensors, record.bytes);
            }
        }
        result?;
        for (_, e) in kept {
            outcomes.failed(e)?;
        }
        Ok(())
    }

    /// The outputs one after the other, each with the workers inside.
    fn in_order(
        &self,
        todo: Vec<(Job, Done)>,
        sources: &mut [Box<dyn Source>],
        opts: &WriteOptions,
        outcomes: &mut Outcomes,
    ) -> Result<()> {
        let reopen = |s: usize| super::reopen_input(&self.settings.inputs, s);
        for (job, record) in todo {
            let inputs: Vec<(usize, &mut Box<dyn Source>)> = sources
                .iter_mut()
                .enumerate()
                .filter(|(s, _)| job.inputs.contains(s))
                .collect();
            let done = self.run_job(job, inputs, opts, &reopen, self.settings.workers);
            match self.finished(&record, done) {
                Ok(()) => outcomes.written(record.name, record.tensors, record.bytes),
                // With --keep-going the failure is reported at once and counted at the end.
                Err(e) => outcomes.failed(e)?,
            }
        }
        Ok(())
    }

    /// Once an output is complete (or has failed): uploads it when it goes to object storage,
    /// then appends its manifest line at once (from the worker that wrote it).
    fn finished(&self, done: &Done, result: Result<Written>) -> Result<()> {
        let (remote_out, target) = (&self.settings.remote_out, &done.target);
        let result = result.and_then(|digest| match (remote_out, target) {
            (Some(r), Some(t)) => r.upload(t).map(|url| (Some(url), digest)),
            _ => Ok((None, digest)),
        });
        let release = || {
            if let (Some(r), Some(t)) = (remote_out, target) {
                r.release(t);
            }
        };
        let Some(m) = self.manifest else {
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
        let recorded = m.record(&Record {
            inputs: &done.inputs,
            output: target.as_deref(),
            url: url.as_deref(),
            tensors: done.tensors,
            status: if error.is_some() { "failed" } else { "written" },
            error,
            identity: &done.identity,
            fingerprint: &self.settings.fingerprint,
            previous: None,
            digest,
        });
        release();
        recorded?;
        result.map(|_| ())
    }

    /// Writes one output: opens its sink, writes its members (with `workers` > 1 through a
    /// worker pool where the sink can reserve room) and finishes the sink.
    fn run_job(
        &self,
        job: Job,
        mut inputs: Vec<(usize, &mut Box<dyn Source>)>,
        opts: &WriteOptions,
        reopen: &jobs::Reopen,
        workers: usize,
    ) -> Result<Written> {
        let compress = self.settings.compress;
        let target_name = target_name(&job.target);
        let mut sink: Box<dyn Sink> = match &job.target {
            Target::Npz(p) => npz_file(p, compress).with_context(|| target_name.clone())?,
            Target::Npy(p) => {
                Box::new(NpyFileSink::create(p).with_context(|| target_name.clone())?)
            }
            Target::Dir(p) => Box::new(DirSink::create(p).with_context(|| target_name.clone())?),
            Target::StdoutNpy => Box::<StdoutNpySink>::default(),
            Target::StdoutNpz => Box::new(NpzSink::stdout(compress)?),
        };
        let hashed = self.settings.manifest.as_ref().and_then(|_| sink.hash());
        let parallel = workers > 1 && sink.can_reserve() && opts.device.borrow().is_host();
        let sink_ref = sink.as_mut();
        let mut write =
            |pool: Option<&jobs::Pool>| self.write_members(&job, &mut inputs, opts, sink_ref, pool);
        if parallel {
            let from = opts.device.borrow().stats.len();
            jobs::run(workers, reopen, opts, from, |pool| write(Some(pool)))?;
        } else {
            write(None)?;
        }
        sink.finish().with_context(|| target_name)?;
        Ok(hashed.and_then(|h| h.get().cloned()))
    }

    /// Writes the members of a job's inputs into `sink`, in order, as the member plan says. With
    /// a `pool`, large members get their room reserved and go to a worker, the rest are written
    /// here.
    fn write_members(
        &self,
        job: &Job,
        inputs: &mut [(usize, &mut Box<dyn Source>)],
        opts: &WriteOptions,
        sink: &mut dyn Sink,
        pool: Option<&jobs::Pool>,
    ) -> Result<()> {
        let (policy, report) = (opts.policy, opts.report);
        let settings = self.settings;
        let min = jobs::parallel_min();
        // A second copy holds the input's metadata again: not for inputs of very many tensors.
        let reopens: Vec<bool> = match pool {
            None => vec![],
            Some(_) => inputs
                .iter()
                .map(|(s, src)| {
                    members::reopens(
                        settings.inputs.concat,
                        src.len(),
                        jobs::MAX_REOPENED_TENSORS,
                        reopenable(&settings.inputs.paths[*s]),
                    )
                })
                .collect(),
        };
        let mut members = Members::new(Rules {
            prefixed: job.prefixed,
            stems: self.stems,
            selector: self.selector,
            policy,
        });
        loop {
            if pool.is_some_and(|p| p.failed()) {
                return Ok(()); // the worker's error is the one reported
            }
            let Some(member) = members.next(inputs) else {
                return Ok(());
            };
            let members::Member {
                at,
                input: s,
                index: i,
                meta,
                name,
                step,
            } = member?;
            let order = match step {
                Step::Skip(note) => {
                    report.note(&note);
                    continue;
                }
                Step::Write { order } => order,
            };
            let src = &mut inputs[at].1;
            let path = src.display_path().to_string();
            let context = || format!("{path}: tensor '{}'", meta.name);
            let Some(pool) = pool else {
                write_tensor(src.as_mut(), i, &meta, &name, sink, opts).with_context(context)?;
                continue;
            };
            let prepared = prepare(src.as_ref(), i, &meta, policy).with_context(context)?;
            let facts = members::Facts {
                data_len: prepared.data_len,
                copyable: prepared.copy.is_some(),
                reopens: reopens[at],
                serial: meta.facts.serial,
            };
            match members::place(facts, min) {
                Place::Worker => {
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
                }
                Place::Inline => {
                    let from = opts.device.borrow().stats.len();
                    if let Err(e) = write_tensor(src.as_mut(), i, &meta, &name, sink, opts) {
                        pool.fail(order, e.context(context()));
                        return Ok(());
                    }
                    pool.inline_stats(order, &mut opts.device.borrow_mut(), from);
                }
            }
        }
    }
}

/// The manifest line of an input `--keep-going` leaves out when it cannot be opened or is
/// refused by the first pass: status `failed` with the error, under the output it would have had.
pub(super) fn record_dropped(
    manifest: Option<&Manifest>,
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
    m.record(&Record {
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

/// Whether a worker can open input `p` a second time: a file, a folder or a URL, not a pipe,
/// a device or standard input (read once, and spooled when it must be read again).
fn reopenable(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.contains("://"))
        || std::fs::metadata(p).is_ok_and(|m| m.is_file() || m.is_dir())
}
