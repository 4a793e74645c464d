//! `tensor2npy convert`: decides where each selected tensor goes (the output table of the
//! contract), refuses to write over an input, and drives the pipeline into the sinks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::{ConvertArgs, OutputKind};
use crate::dtype::DtypePolicy;
use crate::input::{absolute, stem};
use crate::pipeline::{npy_type, usage, write_tensor, Reporter, Selector};
use crate::sink::{DirSink, NpyFileSink, NpzSink, Sink, StdoutNpySink};
use crate::tensor::Source;

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Npz(PathBuf),
    Npy(PathBuf),
    Dir(PathBuf),
    StdoutNpy,
    StdoutNpz,
}

/// One tensor to write: (source, tensor index, output name).
type Item = (usize, usize, String);

struct Job {
    target: Target,
    items: Vec<Item>,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let report = Reporter::new(args.quiet);
    let selector = Selector::new(&args.input.select, &args.input.exclude)?;
    let policy = DtypePolicy {
        bf16: args.bf16,
        f8: args.f8,
        casts: args.cast.clone(),
    };
    let mut sources = super::open_inputs(&args.input)?;
    for src in &sources {
        for note in src.notes() {
            report.note(&format!("{}: {note}", src.display_path()));
        }
    }
    let all_names = sources
        .iter()
        .flat_map(|s| s.tensors().iter().map(|m| m.name.as_str()));
    selector.check_matched(all_names)?;

    let stems: Vec<String> = args.input.inputs.iter().map(|p| stem(p)).collect();
    let mut selected: Vec<Vec<Item>> = Vec::new();
    for (s, src) in sources.iter().enumerate() {
        let mut items = Vec::new();
        for (i, meta) in src.tensors().iter().enumerate() {
            if !selector.keep(&meta.name) {
                continue;
            }
            if npy_type(meta, &policy).is_none() && args.skip_unsupported {
                report.note(&format!(
                    "{}: skipped '{}': dtype {} has no NumPy form",
                    src.display_path(),
                    meta.name,
                    meta.dtype
                ));
                continue;
            }
            items.push((s, i, meta.name.clone()));
        }
        selected.push(items);
    }

    let jobs = plan_jobs(&args, &stems, selected)?;
    refuse_overwriting_inputs(&jobs, &sources)?;
    let total: u64 = jobs
        .iter()
        .flat_map(|j| &j.items)
        .filter_map(|(s, i, _)| {
            let m = &sources[*s].tensors()[*i];
            npy_type(m, &policy).and_then(|t| crate::pipeline::output_bytes(m, t).ok())
        })
        .sum();
    report.add_total(total);
    for job in jobs {
        run_job(job, &mut sources, &policy, &args, &report)?;
    }
    report.finish();
    Ok(())
}

fn run_job(
    job: Job,
    sources: &mut [Box<dyn Source>],
    policy: &DtypePolicy,
    args: &ConvertArgs,
    report: &Reporter,
) -> Result<()> {
    let target_name = match &job.target {
        Target::Npz(p) | Target::Npy(p) | Target::Dir(p) => p.display().to_string(),
        Target::StdoutNpy | Target::StdoutNpz => "standard output".to_string(),
    };
    let mut sink: Box<dyn Sink> = match &job.target {
        Target::Npz(p) => {
            Box::new(NpzSink::create(p, args.compress).with_context(|| target_name.clone())?)
        }
        Target::Npy(p) => Box::new(NpyFileSink::create(p).with_context(|| target_name.clone())?),
        Target::Dir(p) => Box::new(DirSink::create(p).with_context(|| target_name.clone())?),
        Target::StdoutNpy => Box::new(StdoutNpySink::new()),
        Target::StdoutNpz => Box::new(NpzSink::stdout(args.compress)),
    };
    for (s, i, name) in &job.items {
        let src = &mut sources[*s];
        let path = src.display_path().to_string();
        let stored = src.tensors()[*i].name.clone();
        write_tensor(
            src.as_mut(),
            *i,
            name,
            policy,
            args.chunk_size.max(64),
            sink.as_mut(),
            report,
        )
        .with_context(|| format!("{path}: tensor '{stored}'"))?;
    }
    sink.finish().with_context(|| target_name)
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The output table of the contract. `selected` holds each input's tensors under their stored
/// names; they gain a `<stem>/` prefix only where several inputs share one output.
fn plan_jobs(args: &ConvertArgs, stems: &[String], selected: Vec<Vec<Item>>) -> Result<Vec<Job>> {
    let inputs = &args.input.inputs;
    let multi = inputs.len() > 1;
    let merged = || -> Vec<Item> {
        selected
            .iter()
            .flatten()
            .map(|(s, i, name)| {
                let name = if multi {
                    format!("{}/{name}", stems[*s])
                } else {
                    name.clone()
                };
                (*s, *i, name)
            })
            .collect()
    };
    let one = |target: Target, items: Vec<Item>, what: &str| -> Result<Job> {
        if items.len() != 1 {
            return Err(usage(format!(
                "{what} holds exactly one tensor, but {} are selected; narrow them with --select, or write an .npz or a directory",
                items.len()
            )));
        }
        Ok(Job { target, items })
    };
    Ok(match args.output.as_deref() {
        None => {
            // Each input gets an output of its own beside it.
            let mut jobs = Vec::new();
            for ((input, items), stem) in inputs.iter().zip(selected).zip(stems) {
                if input.as_os_str() == "-" {
                    return Err(usage(
                        "reading standard input needs -o (a path, or - for standard output)",
                    ));
                }
                let dir = default_parent(input);
                let target = match args.to {
                    Some(OutputKind::Npy) => Target::Dir(dir.join(stem)),
                    _ => Target::Npz(dir.join(format!("{stem}.npz"))),
                };
                jobs.push(Job { target, items });
            }
            jobs
        }
        Some(p) if p.as_os_str() == "-" => match args.to {
            Some(OutputKind::Npz) => vec![Job {
                target: Target::StdoutNpz,
                items: merged(),
            }],
            _ => vec![one(
                Target::StdoutNpy,
                merged(),
                "standard output as .npy (without --to npz)",
            )?],
        },
        Some(p) if has_ext(p, "npz") => {
            if args.to == Some(OutputKind::Npy) {
                return Err(usage(
                    "-o names an .npz file but --to npy asks for .npy files",
                ));
            }
            vec![Job {
                target: Target::Npz(p.to_path_buf()),
                items: merged(),
            }]
        }
        Some(p) if has_ext(p, "npy") => {
            if args.to == Some(OutputKind::Npz) {
                return Err(usage(
                    "-o names an .npy file but --to npz asks for an archive",
                ));
            }
            vec![one(Target::Npy(p.to_path_buf()), merged(), "an .npy file")?]
        }
        Some(dir) if args.to == Some(OutputKind::Npz) => {
            // Batch mode: each input becomes DIR/<stem>.npz with its names unprefixed.
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            selected
                .into_iter()
                .zip(stems)
                .map(|(items, stem)| Job {
                    target: Target::Npz(dir.join(format!("{stem}.npz"))),
                    items,
                })
                .collect()
        }
        Some(dir) => vec![Job {
            target: Target::Dir(dir.to_path_buf()),
            items: merged(),
        }],
    })
}

fn default_parent(input: &Path) -> PathBuf {
    let trimmed: PathBuf = input.components().collect();
    match trimmed.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn refuse_overwriting_inputs(jobs: &[Job], sources: &[Box<dyn Source>]) -> Result<()> {
    let inputs: Vec<PathBuf> = sources
        .iter()
        .flat_map(|s| s.input_files())
        .map(|p| absolute(&p))
        .collect();
    let mut seen: Vec<PathBuf> = Vec::new();
    for job in jobs {
        let path = match &job.target {
            Target::Npz(p) | Target::Npy(p) | Target::Dir(p) => absolute(p),
            _ => continue,
        };
        if inputs.contains(&path) {
            return Err(usage(format!(
                "refusing to write over the input {}",
                path.display()
            )));
        }
        if matches!(job.target, Target::Dir(_)) {
            if let Some(i) = inputs.iter().find(|i| i.starts_with(&path)) {
                return Err(usage(format!(
                    "refusing to replace the directory {}: it holds the input {}",
                    path.display(),
                    i.display()
                )));
            }
        }
        if seen.contains(&path) {
            return Err(usage(format!(
                "two inputs would both be written to {} (same stem); name the outputs apart",
                path.display()
            )));
        }
        seen.push(path);
    }
    Ok(())
}
