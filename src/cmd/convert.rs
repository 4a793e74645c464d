//! `tensor2npy convert`: resolves its command line once (`settings.rs`), opens the inputs, makes
//! the first pass over their metadata (`survey.rs`), decides where each selected tensor goes (the
//! output table of `plan.rs`), refuses to write over an input, lets the planner (`planner.rs`)
//! decide each output (`--update`, `--max-output`), has the executor (`execute.rs`) run what is
//! to be written, and prints the summary.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::batch::Manifest;
use crate::cli::ConvertArgs;
use crate::device::DeviceStage;
use crate::pipeline::WriteOptions;
use crate::report::Reporter;
use crate::select::Selector;
use crate::sink::names::shown;
use crate::source::stem;
use crate::summary::Outcomes;
use crate::tensor::Source;

use super::execute::{record_dropped, Executor};
use super::plan::{plan_jobs, refuse_overwriting_inputs, Target};
use super::planner::{self, Survey};
use super::settings::Settings;

pub fn run(args: ConvertArgs) -> Result<()> {
    let started = Instant::now();
    let report = Reporter::new(args.quiet);
    let mut settings = Settings::convert(args)?;
    let mut selector = settings.selector()?;
    crate::pool::size(settings.workers);
    let manifest = match &settings.manifest {
        Some(p) => Some(Manifest::open(p)?),
        None => None,
    };
    let manifest = manifest.as_ref();
    let mut outcomes = Outcomes::new(settings.keep_going);
    // --keep-going leaves out a failing input only where each input has an output of its own:
    // an output shared by several inputs is never written without one of them.
    let keep_inputs = settings.keep_going && super::plan::outputs_per_input(&settings);
    let mut sources = open(&mut settings, manifest, keep_inputs, &mut outcomes)?;
    for src in &sources {
        for note in src.input_facts().notes {
            report.note(&format!("{}: {note}", src.display_path()));
        }
    }

    // A first pass over the metadata: what each input contributes, and every reason to refuse,
    // before anything is written.
    let (survey, skipped) = first_pass(
        &mut sources,
        &mut settings,
        &mut selector,
        manifest,
        keep_inputs,
        &mut outcomes,
    )?;
    if sources.is_empty() {
        return outcomes.finish();
    }
    let total = survey.bytes.iter().fold(0u64, |a, &b| a.saturating_add(b));
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

    // The plan: the output table, then what becomes of each output.
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
    let oracle = Files {
        sources: &sources,
        paths: &settings.inputs.paths,
        manifest,
        fingerprint: &settings.fingerprint,
    };
    let planned = planner::decide(
        jobs,
        &survey,
        &settings,
        manifest.is_some(),
        &oracle,
        &all_inputs(),
    );

    // The run.
    let opts = WriteOptions {
        policy: &settings.policy,
        chunk: settings.chunk.max(64),
        report: &report,
        device: &device,
    };
    let executor = Executor {
        settings: &settings,
        stems: &stems,
        selector: &selector,
        manifest,
        keep_inputs,
    };
    executor.run(planned, &mut sources, &opts, &mut outcomes)?;

    report.finish();
    if let Some(format) = settings.stats {
        eprint!("{}", device.borrow().report(format));
    }
    if !settings.quiet && std::io::stderr().is_terminal() {
        eprintln!("tensor2npy: {}", shown(&outcomes.line(started.elapsed())));
    }
    outcomes.finish()
}

/// Opens the inputs. With `keep_inputs` (and no `--concat`) each on its own: one that cannot be
/// opened is reported and left out of `settings`, the others go on. With `--concat` the dataset
/// is named and placed as its first input.
fn open(
    settings: &mut Settings,
    manifest: Option<&Manifest>,
    keep_inputs: bool,
    outcomes: &mut Outcomes,
) -> Result<Vec<Box<dyn Source>>> {
    let sources = if keep_inputs && !settings.inputs.concat {
        let (sources, kept) = super::open_each(&settings.inputs, &mut |p, e| {
            record_dropped(manifest, settings, p, &e)?;
            outcomes.failed(e)
        })?;
        settings.inputs.paths = kept;
        sources
    } else {
        super::open_inputs(&settings.inputs)?
    };
    if settings.inputs.concat {
        settings.inputs.paths.truncate(1);
    }
    Ok(sources)
}

/// The first pass over every input's metadata (`survey.rs`): what each contributes, and the
/// tensors `--skip-unsupported` leaves out. With `keep_inputs` an input it refuses is left out
/// (of `sources` and `settings`); its outputs are not written.
fn first_pass(
    sources: &mut Vec<Box<dyn Source>>,
    settings: &mut Settings,
    selector: &mut Selector,
    manifest: Option<&Manifest>,
    keep_inputs: bool,
    outcomes: &mut Outcomes,
) -> Result<(Survey, usize)> {
    let (mut survey, mut skipped) = (Survey::default(), 0);
    // With --update, --max-output is charged only for the outputs it then writes (the
    // planner): the first pass measures each input's share without a limit.
    let defer_budget = settings.update && settings.max_output.is_some();
    let mut budget = crate::budget::OutputBudget::new(match defer_budget {
        true => None,
        false => settings.max_output,
    });
    let mut s = 0;
    while s < sources.len() {
        let before = budget.used();
        match super::survey::survey(sources[s].as_ref(), selector, settings, &mut budget) {
            Ok((n, bytes, skip)) => {
                survey.selected.push(n);
                survey.bytes.push(bytes);
                survey.charged.push(budget.used() - before);
                skipped += skip;
                s += 1;
            }
            Err(e) if !keep_inputs => return Err(e),
            Err(e) => {
                let p = settings.inputs.paths[s].clone();
                record_dropped(manifest, settings, &p, &e)?;
                outcomes.failed(e)?;
                sources.remove(s);
                settings.inputs.paths.remove(s);
            }
        }
    }
    Ok((survey, skipped))
}

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
