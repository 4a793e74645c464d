//! Source readers and the sniffing that picks one. Each reader turns one input into the tensor
//! stream of `tensor.rs`; none knows anything about sinks.

pub mod bundle;
pub mod pickle;
pub mod torch;
pub mod safetensors;
pub mod tensorproto;
pub mod tfrecord;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::input::{self, Compression, FileRange};
use crate::tensor::Source;

/// An input format, as `--from` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Safetensors,
    Checkpoint,
    Savedmodel,
    Tfrecord,
    Tensorproto,
}

/// Reader settings that come from the command line.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub from: Option<Format>,
    pub stack: bool,
    pub bundle: bundle::BundleOptions,
    pub max_fill_bytes: u64,
    pub max_decompressed: u64,
}

/// Opens one input (a path, or `-` for standard input), sniffing its format from its content
/// unless `--from` says.
pub fn open(arg: &Path, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let display = arg.display().to_string();
    let is_stdin = arg.as_os_str() == "-";
    let stem = if is_stdin {
        "stdin".to_string()
    } else {
        input::stem(arg)
    };

    if !is_stdin {
        let wants_bundle = matches!(opts.from, Some(Format::Checkpoint | Format::Savedmodel));
        if wants_bundle || opts.from.is_none() {
            if let Some(prefix) = bundle::prefix_for(arg) {
                return Ok(Box::new(bundle::BundleSource::open(
                    &display,
                    &prefix,
                    opts.bundle.clone(),
                )?));
            }
            if wants_bundle {
                if arg.is_dir() {
                    bail!("{display} is a directory without variables/variables.index: not a SavedModel");
                }
                bail!("no checkpoint index found: neither {display}.index nor {display} is a bundle .index file");
            }
        }
        if arg.is_dir() {
            bail!("{display} is a directory, but not a SavedModel (no saved_model.pb with variables/variables.index)");
        }
    }

    let (file, files) = if is_stdin {
        (input::spool_stdin()?, Vec::new())
    } else {
        (input::open_file(arg)?, vec![arg.to_path_buf()])
    };
    let data = FileRange::whole(file)?;
    let mut head = [0u8; 64];
    let head_len = (data.len() as usize).min(64);
    data.read_at(0, &mut head[..head_len])?;
    let head = &head[..head_len];

    let format = match opts.from {
        Some(f) => f,
        None if tfrecord::sniff(head) => Format::Tfrecord,
        // A JSON object after the 8-byte length is safetensors (no TensorProto starts so); the
        // header itself is judged by the safetensors parser, with its own errors.
        None if head.len() > 8 && head[8] == b'{' => Format::Safetensors,
        None if Compression::sniff(head).is_some() => Format::Tfrecord,
        None if head.is_empty() => bail!("the input is empty"),
        None if tensorproto::plausible(head) => Format::Tensorproto,
        None => bail!(
            "unrecognised input: not safetensors, a TFRecord, a TensorProto, a checkpoint (no .index beside it) or a SavedModel directory"
        ),
    };
    open_data(&display, files, data, &stem, format, opts)
}

fn open_data(
    display: &str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &str,
    format: Format,
    opts: &OpenOptions,
) -> Result<Box<dyn Source>> {
    Ok(match format {
        Format::Safetensors => {
            Box::new(safetensors::SafetensorsSource::open(display, files, data)?)
        }
        Format::Tensorproto => Box::new(tensorproto::TensorProtoSource::open(
            display,
            files,
            data,
            stem.to_string(),
            opts.max_fill_bytes,
        )?),
        Format::Tfrecord => {
            let mut head = [0u8; 3];
            let n = (data.len() as usize).min(3);
            data.read_at(0, &mut head[..n])?;
            let data = match Compression::sniff(&head[..n]) {
                Some(c) if !tfrecord::sniff(&first_12(&data)?) => {
                    FileRange::whole(input::spool_decompressed(&data, c, opts.max_decompressed)?)?
                }
                _ => data,
            };
            Box::new(tfrecord::TfRecordSource::open(
                display,
                files,
                data,
                stem,
                opts.stack,
                opts.max_fill_bytes,
            )?)
        }
        Format::Checkpoint | Format::Savedmodel => {
            bail!("a checkpoint is read from its files: pass the prefix, the .index file or the SavedModel directory")
        }
    })
}

fn first_12(data: &FileRange) -> Result<Vec<u8>> {
    let n = data.len().min(12) as usize;
    let mut v = vec![0u8; n];
    let mut r = input::RangeReader::new(data.clone());
    r.read_exact(&mut v)?;
    Ok(v)
}
