//! `tensor2npy convert`: decides where each selected tensor goes (the output table of the
//! contract), refuses to write over an input, and drives the pipeline into the sinks.

use std::path::{Path, PathBuf};

use std::cell::RefCell;

use anyhow::{anyhow, Context, Result};

use crate::cli::{ConvertArgs, OutputKind};
use crate::device::DeviceStage;
use crate::input::{absolute, stem};
use crate::pipeline::{
    npy_type, output_bytes, usage, write_tensor, Reporter, Selector, WriteOptions,
};
use crate::sink::{is_special, npz_file, DirSink, NpyFileSink, NpzSink, Sink, StdoutNpySink};
use crate::structure::{StructureOptions, View};
use crate::tensor::Source;

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Npz(PathBuf),
    Npy(PathBuf),
    Dir(PathBuf),
    StdoutNpy,
    StdoutNpz,
}

/// One output and the inputs whose selected tensors go into it.
struct Job {
    target: Target,
    inputs: Vec<usize>,
    /// Names gain a `<stem>/` prefix (several inputs share this output).
    prefixed: bool,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let report = Reporter::new(args.quiet);
    let mut selector = Selector::new(&args.input.select, &args.input.exclude)?;
    let policy = args.dtypes.policy();
    let structure = StructureOptions {
        sparse: args.sparse,
        ragged: args.ragged,
        fill: args.fill.clone(),
        duplicates: args.sparse_duplicates,
        max_dense_bytes: args.max_dense_bytes,
        strict: args.input.strict,
        view: View::Convert,
        max_fill_bytes: args.input.max_fill_bytes,
        memory_budget: crate::structure::DEFAULT_MEMORY_BUDGET,
    };
    let mut sources = super::open_inputs(&args.input, &structure)?;
    for src in &sources {
        for note in src.notes() {
            report.note(&format!("{}: {note}", src.display_path()));
        }
    }

    // A first pass over the metadata: what each input contributes, and every reason to refuse,
    // before anything is written.
    let mut selected = vec![0usize; sources.len()];
    let mut total = 0u64;
    for (s, src) in sources.iter().enumerate() {
        for i in 0..src.len() {
            let meta = src.meta(i)?;
            if !selector.record(&meta.name) {
                continue;
            }
            let context = || format!("{}: tensor '{}'", src.display_path(), meta.name);
            match npy_type(&meta, &policy) {
                Some(t) => total += output_bytes(&meta, t).with_context(context)?,
                None if args.skip_unsupported => continue,
                None => {
                    return Err(anyhow!(
                        "dtype {} has no NumPy form (use --skip-unsupported to leave it out)",
                        meta.dtype
                    )
                    .context(context()))
                }
            }
            selected[s] += 1;
        }
    }
    selector.check_matched()?;

    let stems: Vec<String> = args.input.inputs.iter().map(|p| stem(p)).collect();
    let jobs = plan_jobs(&args, &stems, &selected)?;
    refuse_overwriting_inputs(&jobs, &sources)?;
    let mut device = DeviceStage::open(args.device, args.adapter)?;
    device.keep_per_tensor = args.stats.is_some();
    if let Some(why) = &device.fallback {
        report.note(&format!("--device auto: using the CPU ({why})"));
    }
    let device = RefCell::new(device);
    report.add_total(total);
    let opts = WriteOptions {
        policy: &policy,
        chunk: args.chunk_size.max(64),
        report: &report,
        device: &device,
    };
    for job in jobs {
        run_job(job, &mut sources, &stems, &selector, &args, &opts)?;
    }
    report.finish();
    if let Some(format) = args.stats {
        eprint!("{}", device.borrow().report(format));
    }
    Ok(())
}

fn run_job(
    job: Job,
    sources: &mut [Box<dyn Source>],
    stems: &[String],
    selector: &Selector,
    args: &ConvertArgs,
    opts: &WriteOptions,
) -> Result<()> {
    let (policy, report) = (opts.policy, opts.report);
    let target_name = match &job.target {
        Target::Npz(p) | Target::Npy(p) | Target::Dir(p) => p.display().to_string(),
        Target::StdoutNpy | Target::StdoutNpz => "standard output".to_string(),
    };
    let mut sink: Box<dyn Sink> = match &job.target {
        Target::Npz(p) => npz_file(p, args.compress).with_context(|| target_name.clone())?,
        Target::Npy(p) => Box::new(NpyFileSink::create(p).with_context(|| target_name.clone())?),
        Target::Dir(p) => Box::new(DirSink::create(p).with_context(|| target_name.clone())?),
        Target::StdoutNpy => Box::<StdoutNpySink>::default(),
        Target::StdoutNpz => Box::new(NpzSink::stream(std::io::stdout(), args.compress)),
    };
    for &s in &job.inputs {
        let src = &mut sources[s];
        for i in 0..src.len() {
            let meta = src.meta(i)?;
            if !selector.keep(&meta.name) {
                continue;
            }
            let path = src.display_path().to_string();
            if npy_type(&meta, policy).is_none() {
                report.note(&format!(
                    "{path}: skipped '{}': dtype {} has no NumPy form",
                    meta.name, meta.dtype
                ));
                continue;
            }
            let name = if job.prefixed {
                format!("{}/{}", stems[s], meta.name)
            } else {
                meta.name.clone()
            };
            write_tensor(src.as_mut(), i, &meta, &name, sink.as_mut(), opts)
                .with_context(|| format!("{path}: tensor '{}'", meta.name))?;
        }
    }
    sink.finish().with_context(|| target_name)
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The output table of the contract. `selected` counts each input's selected tensors.
fn plan_jobs(args: &ConvertArgs, stems: &[String], selected: &[usize]) -> Result<Vec<Job>> {
    let inputs = &args.input.inputs;
    let all: Vec<usize> = (0..inputs.len()).collect();
    let multi = inputs.len() > 1;
    let shared = |target: Target| Job {
        target,
        inputs: all.clone(),
        prefixed: multi,
    };
    let single = |target: Target, what: &str| -> Result<Job> {
        let n: usize = selected.iter().sum();
        if n != 1 {
            return Err(usage(format!(
                "{what} holds exactly one tensor, but {n} are selected; narrow them with --select, or write an .npz or a directory"
            )));
        }
        Ok(shared(target))
    };
    Ok(match args.output.as_deref() {
        None => {
            // Each input gets an output of its own beside it.
            let mut jobs = Vec::new();
            for (s, input) in inputs.iter().enumerate() {
                if input.as_os_str() == "-" {
                    return Err(usage(
                        "reading standard input needs -o (a path, or - for standard output)",
                    ));
                }
                let dir = default_parent(input);
                let target = match args.to {
                    Some(OutputKind::Npy) => Target::Dir(dir.join(&stems[s])),
                    _ => Target::Npz(dir.join(format!("{}.npz", stems[s]))),
                };
                jobs.push(Job {
                    target,
                    inputs: vec![s],
                    prefixed: false,
                });
            }
            jobs
        }
        Some(p) if p.as_os_str() == "-" => match args.to {
            Some(OutputKind::Npz) => vec![shared(Target::StdoutNpz)],
            _ => vec![single(
                Target::StdoutNpy,
                "standard output as .npy (without --to npz)",
            )?],
        },
        Some(p) if is_special(p) => match args.to {
            // A device or pipe (/dev/stdout, a FIFO) takes a stream, like `-`.
            Some(OutputKind::Npz) => vec![shared(Target::Npz(p.to_path_buf()))],
            _ => vec![single(
                Target::Npy(p.to_path_buf()),
                "a device or pipe as .npy (without --to npz)",
            )?],
        },
        Some(p) if has_ext(p, "npz") => {
            if args.to == Some(OutputKind::Npy) {
                return Err(usage(
                    "-o names an .npz file but --to npy asks for .npy files",
                ));
            }
            vec![shared(Target::Npz(p.to_path_buf()))]
        }
        Some(p) if has_ext(p, "npy") => {
            if args.to == Some(OutputKind::Npz) {
                return Err(usage(
                    "-o names an .npy file but --to npz asks for an archive",
                ));
            }
            vec![single(Target::Npy(p.to_path_buf()), "an .npy file")?]
        }
        Some(dir) if args.to == Some(OutputKind::Npz) => {
            // Batch mode: each input becomes DIR/<stem>.npz with its names unprefixed.
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            (0..inputs.len())
                .map(|s| Job {
                    target: Target::Npz(dir.join(format!("{}.npz", stems[s]))),
                    inputs: vec![s],
                    prefixed: false,
                })
                .collect()
        }
        Some(dir) => vec![shared(Target::Dir(dir.to_path_buf()))],
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
