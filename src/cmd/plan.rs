//! The output table of the contract for `convert`: which output each input's selected tensors go
//! to (`plan_jobs`), and the refusals that run on that table before anything is written (an
//! output over an input, two outputs at one path). Called by `cmd/convert.rs`; knows nothing of
//! the pipeline or the sinks' writing.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::OutputKind;
use crate::error::usage;
use crate::input::absolute;
use crate::select::Selector;
use crate::sink::atomic::file_id;
use crate::sink::names::{self, shown};
use crate::sink::{is_special, is_terminal};
use crate::tensor::Source;

use super::settings::Settings;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    Npz(PathBuf),
    Npy(PathBuf),
    Dir(PathBuf),
    StdoutNpy,
    StdoutNpz,
}

/// One output and the inputs whose selected tensors go into it.
pub(super) struct Job {
    pub(super) target: Target,
    pub(super) inputs: Vec<usize>,
    /// Names gain a `<stem>/` prefix (several inputs share this output).
    pub(super) prefixed: bool,
}

pub(super) fn target_name(t: &Target) -> String {
    match t {
        Target::Npz(p) | Target::Npy(p) | Target::Dir(p) => p.display().to_string(),
        Target::StdoutNpy | Target::StdoutNpz => "standard output".to_string(),
    }
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Whether every input gets an output of its own (no `-o`, or `-o DIR --to npz`), so that
/// `--keep-going` can leave out an input that fails without changing another output.
pub(super) fn outputs_per_input(args: &Settings) -> bool {
    match args.output.as_deref() {
        None => true,
        Some(p) => {
            args.to == Some(OutputKind::Npz)
                && p.as_os_str() != "-"
                && !is_special(p)
                && !has_ext(p, "npz")
                && !has_ext(p, "npy")
        }
    }
}

/// The output of one input where each input has its own (see [`outputs_per_input`]): what
/// [`plan_jobs`] would name it, for the manifest line of an input `--keep-going` leaves out.
pub(super) fn own_output(args: &Settings, input: &Path) -> Option<PathBuf> {
    let stem = crate::source::stem(input);
    match args.output.as_deref() {
        None if input.as_os_str() == "-" => None,
        None => Some(match args.to {
            Some(OutputKind::Npy) => default_parent(input).join(stem),
            _ => default_parent(input).join(format!("{stem}.npz")),
        }),
        Some(dir) => Some(dir.join(format!("{stem}.npz"))),
    }
}

/// The output table of the contract. `selected` counts each input's selected tensors.
pub(super) fn plan_jobs(args: &Settings, stems: &[String], selected: &[usize]) -> Result<Vec<Job>> {
    let inputs = &args.inputs.paths;
    let all: Vec<usize> = (0..inputs.len()).collect();
    let multi = inputs.len() > 1;
    let shared = |target: Target| Job {
        target,
        inputs: all.clone(),
        prefixed: multi,
    };
    let single = |target: Target, what: &str| -> Result<Job> {
        let n: usize = selected.iter().sum();
        if n == 0 {
            return Err(usage(format!(
                "{what} holds exactly one tensor, but the input has none to write"
            )));
        }
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
        Some(p) if p.as_os_str() == "-" && std::io::stdout().is_terminal() => {
            return Err(usage(
                "refusing to write binary .npy/.npz data to a terminal; redirect it (-o - > x.npy, or | python3 ...), or name a file with -o",
            ))
        }
        Some(p) if p.as_os_str() == "-" => match args.to {
            Some(OutputKind::Npz) => vec![shared(Target::StdoutNpz)],
            _ => vec![single(
                Target::StdoutNpy,
                "standard output as .npy (without --to npz)",
            )?],
        },
        Some(p) if is_special(p) && is_terminal(p) =>
        {
            return Err(usage(format!(
                "refusing to write binary .npy/.npz data to the terminal {}; name a file with -o",
                p.display()
            )))
        }
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
            // Batch mode: each input becomes DIR/<stem>.npz with its names unprefixed. DIR is
            // created by the first sink, once every check has passed.
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

/// Refuses every output that would destroy an input, comparing device and inode (a bind mount
/// or a hard link is another path to the same file): an output file that is an input, a file a
/// directory output would replace that is an input, and an output path that is the prefix of an
/// input checkpoint (`-o ckpt-1` beside `ckpt-1.index` would shadow it). Also two outputs at one
/// path.
pub(super) fn refuse_overwriting_inputs(
    jobs: &[Job],
    sources: &[Box<dyn Source>],
    stems: &[String],
    selector: &Selector,
) -> Result<()> {
    // Every input file by device and inode, with the path it was read by.
    let inputs: HashMap<(u64, u64), PathBuf> = sources
        .iter()
        .flat_map(|s| s.input_files())
        .filter_map(|p| file_id(&p).map(|id| (id, p)))
        .collect();
    let input_at = |p: &Path| file_id(p).and_then(|id| inputs.get(&id));
    let is_input = |p: &Path| input_at(p).is_some();
    let mut seen: Vec<(PathBuf, &Job)> = Vec::new();
    for job in jobs {
        let path = match &job.target {
            Target::Npz(p) | Target::Npy(p) | Target::Dir(p) => p,
            _ => continue,
        };
        if !matches!(job.target, Target::Dir(_)) && path.is_dir() {
            return Err(usage(format!(
                "{} is a directory, but -o names a file there (.npz/.npy); remove the directory, or name another output",
                path.display()
            )));
        }
        if let Some(input) = input_at(path) {
            if !matches!(job.target, Target::Dir(_)) && !is_special(path) {
                let alias = if absolute(input) == absolute(path) {
                    String::new()
                } else {
                    format!(
                        " {} (the same file as {}, through a hard link, symbolic link or mount)",
                        input.display(),
                        path.display()
                    )
                };
                return Err(usage(format!(
                    "refusing to write over the input{}",
                    if alias.is_empty() {
                        format!(" {}", path.display())
                    } else {
                        alias
                    }
                )));
            }
        }
        let index = crate::input::with_suffix(path, ".index");
        if is_input(&index) {
            return Err(usage(format!(
                "refusing to write to {}: it is the prefix of the input checkpoint {} and would shadow it; name the output X.npz or a directory",
                path.display(),
                index.display()
            )));
        }
        if let Target::Dir(dir) = &job.target {
            if dir.is_dir() {
                refuse_replacing_inputs_in(dir, job, sources, stems, selector, &is_input)?;
            }
        }
        let abs = absolute(path);
        if let Some((_, other)) = seen.iter().find(|(p, _)| *p == abs) {
            let name = |j: &Job| {
                j.inputs
                    .iter()
                    .map(|&s| sources[s].display_path())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(usage(format!(
                "the inputs {} and {} would both be written to {} (same stem); convert them in separate runs, or into one .npz or directory",
                name(other),
                name(job),
                path.display()
            )));
        }
        seen.push((abs, job));
    }
    Ok(())
}

/// For a directory output that exists: no file it would replace may be an input.
fn refuse_replacing_inputs_in(
    dir: &Path,
    job: &Job,
    sources: &[Box<dyn Source>],
    stems: &[String],
    selector: &Selector,
    is_input: &dyn Fn(&Path) -> bool,
) -> Result<()> {
    for &s in &job.inputs {
        let src = &sources[s];
        for i in 0..src.len() {
            let meta = src.meta(i)?;
            if !selector.keep(&meta.name) {
                continue;
            }
            let name = if job.prefixed {
                format!("{}/{}", stems[s], meta.name)
            } else {
                meta.name
            };
            let Ok(rel) = names::dir_path(&name) else {
                continue; // refused with its own message when written
            };
            let dest = dir.join(rel);
            if is_input(&dest) {
                return Err(usage(format!(
                    "refusing to write over the input {} (tensor '{}' of {} goes there)",
                    dest.display(),
                    shown(&name),
                    src.display_path()
                )));
            }
        }
    }
    Ok(())
}
