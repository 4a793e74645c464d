//! The command line resolved once, before any work (ripgrep's low and high arguments): the clap
//! structs of `cli.rs` become plain values that the rest of a run reads. [`Inputs`] says which
//! inputs there are and how they are opened (the readers' [`OpenOptions`], the sparse/ragged
//! [`StructureOptions`]); [`Settings`] is every choice of a `convert` run. `convert`, `list`,
//! `verify` and the Python module (`python/`) build theirs through one function each here, so
//! that their defaults cannot differ. Talks to `cli.rs` (its input), `cmd/mod.rs` (which opens
//! [`Inputs`]) and `cmd/convert.rs`, `cmd/plan.rs`, `cmd/survey.rs` (which read [`Settings`]).

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::{
    ConvertArgs, InputArgs, ListArgs, OutputKind, QuantMode, RaggedMode, SparseMode, VerifyArgs,
};
use crate::device::{DeviceChoice, StatsFormat};
use crate::dtype::DtypePolicy;
use crate::error::usage;
use crate::select::Selector;
use crate::sink::remote::RemoteOutput;
use crate::source::{self, bundle::BundleOptions, OpenOptions};
use crate::structure::{self, Duplicates, StructureOptions, View};

/// Which inputs a run reads, and how each is opened.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// As named on the command line (`-` is standard input).
    pub paths: Vec<PathBuf>,
    /// `--concat`: the inputs are read as one.
    pub concat: bool,
    /// `--request-timeout`, in seconds.
    pub request_timeout: Option<u32>,
    pub open: OpenOptions,
    pub structure: StructureOptions,
}

impl Inputs {
    /// `convert`'s (also the Python module's `load`, `open` and `convert`): sparse and ragged
    /// tensors as `--sparse`/`--ragged` ask, with the check of `--fill`.
    pub fn convert(args: &ConvertArgs) -> Result<Inputs> {
        if args.fill.is_some() && args.sparse != SparseMode::Dense && args.ragged != RaggedMode::Pad
        {
            return Err(usage(
                "--fill is used only with --sparse dense or --ragged pad; add one of them, or drop --fill",
            ));
        }
        let structure = StructureOptions {
            sparse: args.sparse.into(),
            ragged: args.ragged.into(),
            fill: args.fill.clone(),
            duplicates: args.sparse_duplicates.into(),
            max_dense_bytes: args.max_dense_bytes,
            strict: args.input.strict,
            view: View::Convert,
            max_fill_bytes: args.input.max_fill_bytes,
            memory_budget: structure::DEFAULT_MEMORY_BUDGET,
        };
        Ok(Inputs::new(&args.input, structure))
    }

    /// `list`'s (also the Python module's `list_tensors`): sparse and ragged tensors shown as
    /// their components would be written, duplicates not judged.
    pub fn list(args: &ListArgs) -> Inputs {
        let structure = StructureOptions {
            sparse: Default::default(),
            ragged: Default::default(),
            fill: None,
            duplicates: Duplicates::Sum, // listing does not judge duplicates; converting does
            max_dense_bytes: u64::MAX,
            strict: args.input.strict,
            view: View::List,
            max_fill_bytes: args.input.max_fill_bytes,
            memory_budget: structure::DEFAULT_MEMORY_BUDGET,
        };
        Inputs::new(&args.input, structure)
    }

    fn new(args: &InputArgs, structure: StructureOptions) -> Inputs {
        let open = OpenOptions {
            from: args.from.clone(),
            max_fill_bytes: args.max_fill_bytes,
            max_decompressed: args.max_decompressed,
            bundle: BundleOptions {
                verify: !args.no_verify,
                include_internal: args.include_internal,
            },
            savedmodel: source::bundle::SavedModelOptions {
                constants: args.constants,
            },
            tfrecord: source::tfrecord::TfRecordOptions { stack: args.stack },
            tfevents: source::tfevents::TfEventsOptions { stack: args.stack },
            example: source::example::ExampleOptions {
                features: args.features.clone(),
                force_ragged: args.ragged_features.clone(),
                force_dense: args.dense_features.clone(),
                ragged: source::example::RaggedChoice {
                    mode: structure.ragged,
                    fill: structure.fill.clone(),
                    max_dense_bytes: Some(structure.max_dense_bytes),
                    list: structure.view == View::List,
                },
                stack: args.stack,
            },
            torch: source::torch::PickleOptions {
                weights_only: args.weights_only,
                check_while_streaming: false,
            },
            gguf: source::gguf::GgufOptions {
                quant: match args.quant {
                    None | Some(QuantMode::Dequant) => source::gguf::GgufQuant::Dequant,
                    Some(QuantMode::Raw) => source::gguf::GgufQuant::Raw,
                    Some(QuantMode::Params) => source::gguf::GgufQuant::Params,
                },
            },
            tflite: source::tflite::TfliteOptions {
                quant: match args.quant {
                    None | Some(QuantMode::Raw) => source::tflite::QuantOutput::Stored,
                    Some(QuantMode::Params) => source::tflite::QuantOutput::Params,
                    Some(QuantMode::Dequant) => source::tflite::QuantOutput::Dequant,
                },
            },
            orbax: source::orbax::OrbaxOptions { step: args.step },
            deepspeed: source::deepspeed::DeepSpeedOptions { step: args.step },
        };
        Inputs {
            paths: args.inputs.clone(),
            concat: args.concat,
            request_timeout: args.request_timeout,
            open,
            structure,
        }
    }
}

/// How `verify` (and the Python module's `verify`) opens each input: every checksum checked,
/// internal tensors included, the readers' defaults otherwise.
pub fn verify_open(args: &VerifyArgs) -> OpenOptions {
    OpenOptions {
        from: args.from.clone(),
        bundle: BundleOptions {
            verify: true,
            include_internal: true,
        },
        max_fill_bytes: args.max_fill_bytes,
        max_decompressed: args.max_decompressed,
        ..Default::default()
    }
}

/// Every choice of a `convert` run, resolved from its command line before anything is opened.
pub struct Settings {
    pub inputs: Inputs,
    /// `--select` / `--exclude` (checked; [`Settings::selector`] builds the matcher).
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub policy: DtypePolicy,
    /// `-o`: for an output in object storage, its local staging path.
    pub output: Option<PathBuf>,
    /// `-o s3://…`: where the staged outputs are uploaded.
    pub remote_out: Option<RemoteOutput>,
    pub to: Option<OutputKind>,
    pub compress: bool,
    pub skip_unsupported: bool,
    pub max_output: Option<u64>,
    pub update: bool,
    pub keep_going: bool,
    pub manifest: Option<PathBuf>,
    /// What the manifest records of the options that shape an output ([`crate::batch::fingerprint`]).
    pub fingerprint: String,
    /// `--jobs` workers (0: one thread does everything in turn).
    pub workers: usize,
    pub chunk: usize,
    pub device: DeviceChoice,
    pub adapter: Option<usize>,
    pub stats: Option<StatsFormat>,
    pub quiet: bool,
}

impl Settings {
    /// `convert`'s settings; the usage errors of its options come here, in the order the
    /// command has always given them.
    pub fn convert(mut args: ConvertArgs) -> Result<Settings> {
        // `-o s3://…`: the sinks write to a local staging path, uploaded as each output completes.
        let remote_out = crate::sink::remote::plan(args.output.as_deref())?;
        if let Some(r) = &remote_out {
            args.output = Some(r.local().to_path_buf());
        }
        let fingerprint = crate::batch::fingerprint(&mut args);
        Selector::new(&args.input.select, &args.input.exclude)?;
        let mut inputs = Inputs::convert(&args)?;
        // Outputs written under a temporary name are discarded on failure, so a PyTorch
        // storage's CRC may be checked as its bytes go out; standard output and special files
        // (a pipe, a device) get no byte before the check.
        inputs.open.torch.check_while_streaming = !args
            .output
            .as_deref()
            .is_some_and(|o| o.as_os_str() == "-" || crate::sink::is_special(o));
        if let (Some(p), Some(o)) = (&args.manifest, &args.output) {
            if p.as_os_str() == "-" && o.as_os_str() == "-" {
                return Err(usage(
                    "--manifest - and -o - would both write to standard output; name a file for one",
                ));
            }
        }
        Ok(Settings {
            inputs,
            select: args.input.select,
            exclude: args.input.exclude,
            policy: args.dtypes.policy(),
            output: args.output,
            remote_out,
            to: args.to,
            compress: args.compress,
            skip_unsupported: args.skip_unsupported,
            max_output: args.max_output,
            update: args.update,
            keep_going: args.keep_going,
            manifest: args.manifest,
            fingerprint,
            workers: workers(args.jobs),
            chunk: args.chunk_size,
            device: args.device.into(),
            adapter: args.adapter,
            stats: args.stats.map(StatsFormat::from),
            quiet: args.quiet,
        })
    }

    /// A matcher for `--select` / `--exclude`, which also records which patterns matched.
    pub fn selector(&self) -> Result<Selector> {
        Selector::new(&self.select, &self.exclude)
    }
}

/// How many `--jobs` workers convert at once (none: one thread does everything in turn).
fn workers(jobs: Option<u16>) -> usize {
    let n = match jobs {
        Some(n) => n as usize,
        None => crate::jobs::default_threads(),
    };
    match n.min(crate::jobs::MAX_WORKERS) {
        1 => 0,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use source::{gguf::GgufQuant, tflite::QuantOutput};

    fn list_open(args: &[&str]) -> OpenOptions {
        let cli = Cli::try_parse_from([&["tensor2npy", "list", "in"], args].concat()).unwrap();
        match cli.command {
            Command::List(a) => Inputs::list(&a).open,
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_option_two_readers_share_reaches_each_reader_s_own_type() {
        // Without options, each reader's default: GGUF dequantizes, TFLite keeps what is stored.
        let o = list_open(&[]);
        assert_eq!(o.gguf.quant, GgufQuant::Dequant);
        assert_eq!(o.tflite.quant, QuantOutput::Stored);
        assert_eq!((o.orbax.step, o.deepspeed.step), (None, None));
        assert!(!o.tfrecord.stack && !o.tfevents.stack && !o.example.stack);
        assert!(!o.torch.weights_only && !o.savedmodel.constants);
        for (mode, gguf, tflite) in [
            ("raw", GgufQuant::Raw, QuantOutput::Stored),
            ("dequant", GgufQuant::Dequant, QuantOutput::Dequant),
            ("params", GgufQuant::Params, QuantOutput::Params),
        ] {
            let o = list_open(&["--quant", mode]);
            assert_eq!((o.gguf.quant, o.tflite.quant), (gguf, tflite), "{mode}");
        }
        let o = list_open(&["--step", "7", "--stack", "--weights-only", "--constants"]);
        assert_eq!((o.orbax.step, o.deepspeed.step), (Some(7), Some(7)));
        assert!(o.tfrecord.stack && o.tfevents.stack && o.example.stack);
        assert!(o.torch.weights_only && o.savedmodel.constants);
    }
}
