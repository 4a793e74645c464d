//! One module per subcommand.

pub mod completions;
pub mod convert;
pub mod devices;
pub mod list;
pub mod man;
pub mod plan;
pub mod survey;
pub mod verify;

use anyhow::Result;

use crate::cli::{InputArgs, QuantMode};
use crate::source::{self, bundle::BundleOptions, OpenOptions};
use crate::structure::{self, StructureOptions};
use crate::tensor::Source;

/// `--request-timeout`: one setting for every remote request of the run (reads and uploads).
fn apply_request_timeout(args: &InputArgs) {
    #[cfg(feature = "remote")]
    if let Some(secs) = args.request_timeout {
        crate::remote::set_request_timeout(std::time::Duration::from_secs(secs.into()));
    }
    #[cfg(not(feature = "remote"))]
    let _ = args;
}

/// Opens every input named on the command line, with sparse and ragged tensors recognised.
pub fn open_inputs(args: &InputArgs, structure: &StructureOptions) -> Result<Vec<Box<dyn Source>>> {
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(crate::error::usage(
            "standard input (-) can be given only once",
        ));
    }
    apply_request_timeout(args);
    let opts = open_options(args, structure);
    if args.concat {
        let src = source::chain::open_concat(&args.inputs, &opts)?;
        return Ok(vec![structure::wrap(src, structure)?]);
    }
    args.inputs
        .iter()
        .map(|p| open_one(p, &opts, structure))
        .collect()
}

/// The sources opened, and the paths they were opened from.
pub type Opened = (Vec<Box<dyn Source>>, Vec<std::path::PathBuf>);

/// Opens every input on its own (`--keep-going`): an input that cannot be opened goes to
/// `failed` (which may stop the run by returning its error) and is left out. Returns the
/// sources and the paths they were opened from, in order.
pub fn open_each(
    args: &InputArgs,
    structure: &StructureOptions,
    failed: &mut dyn FnMut(&std::path::Path, anyhow::Error) -> Result<()>,
) -> Result<Opened> {
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(crate::error::usage(
            "standard input (-) can be given only once",
        ));
    }
    apply_request_timeout(args);
    let opts = open_options(args, structure);
    let (mut sources, mut kept) = (Vec::new(), Vec::new());
    for p in &args.inputs {
        match open_one(p, &opts, structure) {
            Ok(src) => {
                sources.push(src);
                kept.push(p.clone());
            }
            Err(e) => failed(p, e)?,
        }
    }
    Ok((sources, kept))
}

/// Opens input `s` of the command line once more (for a `--jobs` worker), as
/// [`open_inputs`] did; not standard input, nor inputs read as one (`--concat`).
pub fn reopen_input(
    args: &InputArgs,
    structure: &StructureOptions,
    s: usize,
) -> Result<Box<dyn Source>> {
    let path = &args.inputs[s];
    if args.concat || path.as_os_str() == "-" {
        anyhow::bail!("internal: {} cannot be opened twice", path.display());
    }
    open_one(path, &open_options(args, structure), structure)
}

fn open_options(args: &InputArgs, structure: &StructureOptions) -> OpenOptions {
    OpenOptions {
        from: args.from.clone(),
        stack: args.stack,
        bundle: BundleOptions {
            verify: !args.no_verify,
            include_internal: args.include_internal,
        },
        max_fill_bytes: args.max_fill_bytes,
        max_decompressed: args.max_decompressed,
        example: source::example::ExampleOptions {
            features: args.features.clone(),
            force_ragged: args.ragged_features.clone(),
            force_dense: args.dense_features.clone(),
            ragged: source::example::RaggedChoice {
                mode: structure.ragged,
                fill: structure.fill.clone(),
                max_dense_bytes: Some(structure.max_dense_bytes),
                list: structure.view == structure::View::List,
            },
        },
        quant_raw: args.quant == Some(QuantMode::Raw),
        tflite_quant: match args.quant {
            None | Some(QuantMode::Raw) => source::tflite::QuantOutput::Stored,
            Some(QuantMode::Params) => source::tflite::QuantOutput::Params,
            Some(QuantMode::Dequant) => source::tflite::QuantOutput::Dequant,
        },
        constants: args.constants,
        step: args.step,
        weights_only: args.weights_only,
    }
}

fn open_one(
    p: &std::path::Path,
    opts: &OpenOptions,
    structure: &StructureOptions,
) -> Result<Box<dyn Source>> {
    let src = source::open(p, opts).map_err(|e| name_input(e, &p.display().to_string()))?;
    let display = src.display_path().to_string();
    // Errors in sparse/ragged component groups (a checksum inside one) name the input.
    structure::wrap(src, structure).map_err(|e| name_input(e, &display))
}

/// `e` with the input's path in front, unless its message already names it (`cannot open
/// PATH: ...` must not print the path twice).
pub fn name_input(e: anyhow::Error, display: &str) -> anyhow::Error {
    if format!("{e:#}").contains(display) {
        e
    } else {
        e.context(display.to_string())
    }
}
