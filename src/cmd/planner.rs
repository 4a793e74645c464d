//! The planner of `convert`: from the output table (`plan.rs`), each input's share found by the
//! first pass over the metadata (`survey.rs`) and the [`Settings`], what becomes of each output
//! before anything is written: written, left alone by `--update` (up to date), or refused by the
//! `--max-output` budget that `--update` defers to the outputs it writes. Pure: input times and
//! the manifest are asked through an [`Oracle`], so that unit tests plan without files, and
//! nothing is opened, converted or written. Called by `cmd/convert.rs`, which acts on each
//! decision (notes, manifest lines, the summary) and runs the outputs to write.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::plan::{target_name, Job, Target};
use super::settings::Settings;

/// What the first pass found of each input (in input order): its selected tensors, their
/// bytes as written, and the `.npy` bytes (headers included) charged to `--max-output`.
#[derive(Debug, Default, Clone)]
pub(super) struct Survey {
    pub(super) selected: Vec<usize>,
    pub(super) bytes: Vec<u64>,
    pub(super) charged: Vec<u64>,
}

/// What an output adds to the manifest and the summary.
#[derive(Debug, Clone)]
pub(super) struct Done {
    /// Its inputs, as shown.
    pub(super) inputs: Vec<String>,
    /// Its path (`None` for standard output).
    pub(super) target: Option<PathBuf>,
    /// The tensors and bytes written.
    pub(super) tensors: u64,
    pub(super) bytes: u64,
    /// The inputs' identity (`batch::identity`; `null` unless `--update` or `--manifest`).
    pub(super) identity: Value,
    /// Its name in the summary (its URL in object storage).
    pub(super) name: String,
}

/// What becomes of one output.
#[derive(Debug)]
pub(super) enum Decision {
    Write,
    /// `--update` leaves it alone: `shown` is its path (its URL in object storage), `previous`
    /// the manifest line that made it (`null` without a manifest: only times were compared).
    UpToDate {
        shown: PathBuf,
        previous: Value,
    },
    /// Over `--max-output`, counting only the outputs `--update` writes.
    OverBudget(anyhow::Error),
}

/// One output of the plan.
pub(super) struct Planned {
    pub(super) job: Job,
    pub(super) done: Done,
    pub(super) decision: Decision,
}

/// What the planner asks of the world: the files each input reads, their identity, and whether
/// an output is up to date (see `batch::up_to_date`).
pub(super) trait Oracle {
    /// The files input `s` reads (its path, when its reader names none).
    fn files(&self, s: usize) -> Vec<PathBuf>;
    /// Asked only with `--update` or `--manifest`.
    fn identity(&self, files: &[PathBuf]) -> Value;
    /// The manifest line of an up-to-date output (`null` without a manifest), or `None`.
    fn up_to_date(&self, shown: &Path, files: &[PathBuf], identity: &Value) -> Option<Value>;
}

/// Decides every output of `jobs`, in order. `manifest`: a manifest is kept (identities are
/// then recorded); `inputs_shown`: every input, for the context of a refusal.
pub(super) fn decide(
    jobs: Vec<Job>,
    survey: &Survey,
    settings: &Settings,
    manifest: bool,
    oracle: &dyn Oracle,
    inputs_shown: &str,
) -> Vec<Planned> {
    // How the summary names an output: its URL when it goes to object storage.
    let output_name = |t: &Target| match (&settings.remote_out, t) {
        (Some(r), Target::Npz(p) | Target::Npy(p) | Target::Dir(p)) => {
            r.url_of(p).unwrap_or_else(|| target_name(t))
        }
        _ => target_name(t),
    };
    let defer_budget = settings.update && settings.max_output.is_some();
    let mut later_budget = crate::budget::OutputBudget::new(settings.max_output);
    let mut planned = Vec::new();
    for job in jobs {
        let inputs: Vec<String> = job
            .inputs
            .iter()
            .map(|&s| settings.inputs.paths[s].display().to_string())
            .collect();
        let target = match &job.target {
            Target::Npz(p) | Target::Npy(p) | Target::Dir(p) => Some(p.clone()),
            Target::StdoutNpy | Target::StdoutNpz => None,
        };
        let tensors: u64 = job.inputs.iter().map(|&s| survey.selected[s] as u64).sum();
        let bytes = job
            .inputs
            .iter()
            .fold(0u64, |a, &s| a.saturating_add(survey.bytes[s]));
        let files: Vec<PathBuf> = job.inputs.iter().flat_map(|&s| oracle.files(s)).collect();
        let identity = if settings.update || manifest {
            oracle.identity(&files)
        } else {
            Value::Null
        };
        let name = output_name(&job.target);
        let mut decision = Decision::Write;
        if let (true, Some(t)) = (settings.update, &target) {
            // A remote output is judged by its URL, not by its staging path.
            let shown = match settings.remote_out.as_ref().and_then(|r| r.url_of(t)) {
                Some(u) => PathBuf::from(u),
                None => t.clone(),
            };
            if let Some(previous) = oracle.up_to_date(&shown, &files, &identity) {
                decision = Decision::UpToDate { shown, previous };
            }
        }
        if defer_budget && matches!(decision, Decision::Write) {
            let need = job.inputs.iter().map(|&s| survey.charged[s]).sum::<u64>();
            if let Err(e) = later_budget.charge(need, &format!("{name} (not up to date)")) {
                decision = Decision::OverBudget(e.context(inputs_shown.to_string()));
            }
        }
        planned.push(Planned {
            job,
            done: Done {
                inputs,
                target,
                tensors,
                bytes,
                identity,
                name,
            },
            decision,
        });
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::cmd::mock::mock;
    use crate::select::Selector;
    use crate::tensor::Source;
    use anyhow::Result;
    use clap::Parser;

    /// `tensor2npy convert WORDS...` resolved as the command resolves it.
    fn settings(words: &[&str]) -> Settings {
        let argv = ["tensor2npy", "convert"].iter().chain(words);
        match Cli::try_parse_from(argv)
            .expect("a valid command line")
            .command
        {
            Command::Convert(args) => Settings::convert(args).expect("valid settings"),
            _ => unreachable!(),
        }
    }

    /// Up to date: the outputs named in `fresh`. Identity: the number of files.
    struct Fixed {
        fresh: Vec<&'static str>,
    }

    impl Oracle for Fixed {
        fn files(&self, s: usize) -> Vec<PathBuf> {
            vec![PathBuf::from(format!("input{s}"))]
        }
        fn identity(&self, files: &[PathBuf]) -> Value {
            Value::from(files.len())
        }
        fn up_to_date(&self, shown: &Path, _: &[PathBuf], _: &Value) -> Option<Value> {
            self.fresh
                .iter()
                .any(|f| shown == Path::new(f))
                .then_some(Value::Null)
        }
    }

    /// The first pass over each of `sources`, as `convert` makes it.
    fn survey(settings: &Settings, sources: &[Box<dyn Source>]) -> Result<Survey> {
        let mut selector = settings.selector()?;
        let defer = settings.update && settings.max_output.is_some();
        let mut budget =
            crate::budget::OutputBudget::new(if defer { None } else { settings.max_output });
        let mut out = Survey::default();
        for src in sources {
            let before = budget.used();
            let (n, bytes, _) =
                super::super::survey::survey(src.as_ref(), &mut selector, settings, &mut budget)?;
            out.selected.push(n);
            out.bytes.push(bytes);
            out.charged.push(budget.used() - before);
        }
        Ok(out)
    }

    fn jobs(settings: &Settings, selected: &[usize]) -> Vec<Job> {
        let stems: Vec<String> = settings
            .inputs
            .paths
            .iter()
            .map(|p| crate::source::stem(p))
            .collect();
        super::super::plan::plan_jobs(settings, &stems, selected).expect("a valid table")
    }

    #[test]
    fn several_inputs_into_one_output_are_prefixed_and_into_a_folder_of_archives_are_not() {
        let one = settings(&["-o", "out.npz", "x/a.safetensors", "y/b.safetensors"]);
        let table = jobs(&one, &[1, 1]);
        assert_eq!(table.len(), 1);
        assert_eq!(table[0].target, Target::Npz("out.npz".into()));
        assert_eq!(table[0].inputs, vec![0, 1]);
        assert!(table[0].prefixed);
        let each = settings(&["-o", "out", "--to", "npz", "x/a.safetensors", "y/b.pt"]);
        let table = jobs(&each, &[1, 1]);
        let targets: Vec<_> = table.iter().map(|j| j.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                Target::Npz("out/a.npz".into()),
                Target::Npz("out/b.npz".into())
            ]
        );
        assert!(table.iter().all(|j| !j.prefixed && j.inputs.len() == 1));
        // Without -o each output is beside its input.
        let beside = settings(&["x/a.safetensors"]);
        assert_eq!(jobs(&beside, &[1])[0].target, Target::Npz("x/a.npz".into()));
    }

    #[test]
    fn two_inputs_of_one_stem_into_one_folder_collide_before_anything_is_written() {
        let into_out =
            |second: &str| settings(&["-o", "out", "--to", "npz", "x/a.safetensors", second]);
        let s = into_out("y/a.safetensors");
        let sources = vec![
            mock("x/a.safetensors", &["w"]),
            mock("y/a.safetensors", &["w"]),
        ];
        let table = jobs(&s, &[1, 1]);
        let stems = vec!["a".to_string(), "a".to_string()];
        let selector = Selector::new(&[], &[]).unwrap();
        let e = super::super::plan::refuse_overwriting_inputs(&table, &sources, &stems, &selector)
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("x/a.safetensors and y/a.safetensors would both be written to out/a.npz"),
            "{msg}"
        );
        // Different stems do not collide.
        let s = into_out("y/b.safetensors");
        let stems = vec!["a".to_string(), "b".to_string()];
        let table = jobs(&s, &[1, 1]);
        super::super::plan::refuse_overwriting_inputs(&table, &sources, &stems, &selector).unwrap();
    }

    #[test]
    fn update_leaves_up_to_date_outputs_alone_and_writes_the_rest() {
        let s = settings(&[
            "--update",
            "-o",
            "out",
            "--to",
            "npz",
            "a.safetensors",
            "b.pt",
        ]);
        let sources = vec![mock("a.safetensors", &["w", "v"]), mock("b.pt", &["w"])];
        let survey = survey(&s, &sources).unwrap();
        let table = jobs(&s, &survey.selected);
        let oracle = Fixed {
            fresh: vec!["out/a.npz"],
        };
        let plan = decide(table, &survey, &s, false, &oracle, "a.safetensors, b.pt");
        assert_eq!(plan.len(), 2);
        match &plan[0].decision {
            Decision::UpToDate { shown, previous } => {
                assert_eq!(shown, Path::new("out/a.npz"));
                assert!(previous.is_null());
            }
            d => panic!("out/a.npz should be up to date, not {d:?}"),
        }
        assert!(matches!(plan[1].decision, Decision::Write));
        let done = &plan[1].done;
        assert_eq!(done.inputs, vec!["b.pt".to_string()]);
        assert_eq!(done.target.as_deref(), Some(Path::new("out/b.npz")));
        assert_eq!((done.tensors, done.bytes), (1, 4));
        assert_eq!(done.identity, Value::from(1)); // --update asks for the inputs' identity
        assert_eq!(done.name, "out/b.npz");
        assert_eq!(plan[0].done.tensors, 2);
    }

    #[test]
    fn max_output_refuses_in_the_first_pass_or_counts_only_what_update_writes() {
        // Each tensor's .npy is 4 bytes of data and a 128-byte header: 132 bytes.
        let sources = vec![mock("a.safetensors", &["w", "v"]), mock("b.pt", &["w"])];
        let base = [
            "--max-output",
            "300",
            "-o",
            "o",
            "--to",
            "npz",
            "a.safetensors",
            "b.pt",
        ];
        let s = settings(&base);
        let e = survey(&s, &sources).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.starts_with("b.pt: tensor 'w': its .npy (4 bytes of data, a 128-byte header) needs 132 bytes of output, and with the 264 bytes before it the run would write more than --max-output (300 bytes)"), "{msg}");
        // With --update the first pass charges nothing; an up-to-date output is not charged.
        let s = settings(&[&["--update"][..], &base].concat());
        let survey = survey(&s, &sources).unwrap();
        assert_eq!(survey.charged, vec![264, 132]);
        let plan = |fresh| {
            let oracle = Fixed { fresh };
            decide(
                jobs(&s, &survey.selected),
                &survey,
                &s,
                false,
                &oracle,
                "a, b",
            )
        };
        let fits = plan(vec!["o/a.npz"]);
        assert!(matches!(fits[0].decision, Decision::UpToDate { .. }));
        assert!(matches!(fits[1].decision, Decision::Write));
        let over = plan(vec![]);
        assert!(matches!(over[0].decision, Decision::Write));
        match &over[1].decision {
            Decision::OverBudget(e) => {
                let msg = format!("{e:#}");
                assert!(msg.starts_with("a, b: o/b.npz (not up to date) needs 132 bytes of output, and with the 264 bytes before it"), "{msg}");
            }
            d => panic!("o/b.npz should be over the budget, not {d:?}"),
        }
    }

    #[test]
    fn skip_unsupported_leaves_out_what_has_no_numpy_form_and_refuses_it_otherwise() {
        let sources = vec![mock("a.safetensors", &["w", "res", "v"])];
        let s = settings(&["-o", "o.npz", "a.safetensors"]);
        let msg = format!("{:#}", survey(&s, &sources).unwrap_err());
        assert_eq!(
            msg,
            "a.safetensors: tensor 'res': dtype resource has no NumPy form (use --skip-unsupported to leave it out)"
        );
        let s = settings(&["--skip-unsupported", "-o", "o.npz", "a.safetensors"]);
        let mut selector = s.selector().unwrap();
        let mut budget = crate::budget::OutputBudget::new(None);
        let found =
            super::super::survey::survey(sources[0].as_ref(), &mut selector, &s, &mut budget)
                .unwrap();
        assert_eq!(found, (2, 8, 1));
        assert_eq!(budget.used(), 2 * 132);
    }
}
