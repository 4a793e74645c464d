//! The command line: argument definitions only. Parsing lives here, behaviour in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::dtype::{parse_cast, DType, DtypePolicy};

/// A command-line twin of a domain enum: clap's `ValueEnum` (and the help of each value) stays
/// in the front end, and the domain type comes out with `.into()`.
macro_rules! value_enum {
    ($(#[$m:meta])* $name:ident => $domain:path { $($(#[$vm:meta])* $v:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        pub enum $name { $($(#[$vm])* $v),* }

        impl From<$name> for $domain {
            fn from(x: $name) -> Self {
                match x { $($name::$v => <$domain>::$v),* }
            }
        }
    };
}

value_enum! {
    /// `--sparse`
    SparseMode => crate::structure::SparseMode {
        /// `X/indices`, `X/values`, `X/dense_shape`
        Coo,
        /// `X` as a dense array, like `tf.sparse.to_dense`
        Dense,
    }
}

value_enum! {
    /// `--ragged`
    RaggedMode => crate::structure::RaggedMode {
        /// `X/flat_values` and `X/row_splits_0`, `X/row_splits_1`, ... (outermost first)
        Components,
        /// `X` = the flat values alone, like `rt.flat_values`
        Flat,
        /// `X` padded into a dense array, like `rt.to_tensor()`
        Pad,
    }
}

value_enum! {
    /// `--sparse-duplicates`
    Duplicates => crate::structure::Duplicates {
        /// Repeated indices are an error
        Error,
        /// Values at repeated indices are added (like `np.add.at`)
        Sum,
        /// The last value at a repeated index wins
        Last,
    }
}

value_enum! {
    /// `--bf16` / `--f8`
    NarrowFloatPolicy => crate::dtype::NarrowFloatPolicy {
        /// Widen losslessly to float32 (`<f4`).
        F32,
        /// Keep the raw bit pattern as an unsigned integer (`<u2` for bf16, `|u1` for float8).
        Bits,
    }
}

value_enum! {
    /// `--device`
    DeviceChoice => crate::device::DeviceChoice {
        /// Convert on the host
        Cpu,
        /// Convert on a GPU through wgpu; fail if there is none
        Gpu,
        /// Use a GPU when one is found, else the host (and say so)
        Auto,
    }
}

value_enum! {
    /// `--stats`
    StatsFormat => crate::device::StatsFormat {
        Text,
        Json,
    }
}

/// `--version`: the version, and whether the GPU device stage was built in.
pub const VERSION: &str = if cfg!(feature = "gpu") {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (GPU device stage built in: wgpu/Vulkan)"
    )
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (CPU only: built without the gpu feature)"
    )
};

/// The top-level help's epilogue: the input formats of the registry, then the rest.
fn after_help() -> String {
    let mut s = String::from(
        "Input formats (recognised by content; --from forces one; `tensor2npy list` shows what an\ninput holds without converting it):\n",
    );
    // Wrapped by hand, with the continuation lines indented under the description.
    for r in crate::source::READERS {
        let mut line = format!("  {:<12}", r.name);
        for word in r.about.split(' ') {
            if line.len() + 1 + word.len() > 78 {
                s.push_str(&line);
                s.push('\n');
                line = " ".repeat(15);
            } else {
                line.push(' ');
            }
            line.push_str(word);
        }
        s.push_str(&line);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(AFTER_HELP);
    s
}

const AFTER_HELP: &str = "\
Exit status: 0 success (also when the output pipe is closed early, as by `| head`),
1 conversion failed (bad or corrupt input, checksum mismatch, I/O), 2 usage error,
130 interrupted (SIGINT/SIGTERM; nothing is left behind).

Examples:
  tensor2npy convert model.safetensors -o model.npz
  tensor2npy convert ckpt/model-100 -o weights/            # one .npy per tensor
  tensor2npy convert saved_model/ --select 'dense*' -o w.npz
  tensor2npy convert data.tfrecord.gz --stack -o data.npy
  tensor2npy convert data/train-*.tfrecord --concat -o train.npz   # tf.train.Example shards
  tensor2npy list --json ckpt/model-100
  tensor2npy verify ckpt/model-100                          # check every checksum, like gzip -t";

#[derive(Debug, Parser)]
#[command(
    name = "tensor2npy",
    version = VERSION,
    about = "Convert tensor files (TensorFlow checkpoints and SavedModels, TFRecords, TensorProtos, safetensors, ...) into NumPy .npy/.npz files, exactly and in bounded memory, without Python",
    after_help = after_help(),
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert tensors to .npy / .npz
    #[command(after_help = CONVERT_AFTER_HELP)]
    Convert(ConvertArgs),
    /// List tensors (name, dtype, shape, bytes in the input, kind) without converting them
    List(ListArgs),
    /// Read every input whole and check the checksums it carries, saying what was checked (like gzip -t)
    #[command(after_help = VERIFY_AFTER_HELP)]
    Verify(VerifyArgs),
    /// List the GPU adapters the device stage can use (name, backend, type, limits)
    Devices {
        /// Print one JSON document instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Print the manual page (roff), for `man -l -` or a man1 directory
    Man {
        /// The subcommand whose page to print (default: the main page)
        #[arg(value_name = "SUBCOMMAND")]
        subcommand: Option<String>,
        /// Write every page (tensor2npy.1, tensor2npy-<subcommand>.1) into DIR instead
        #[arg(long, value_name = "DIR", conflicts_with = "subcommand", value_hint = clap::ValueHint::DirPath)]
        write: Option<PathBuf>,
    },
    /// Print a shell completion script
    Completions {
        /// The shell to print a completion script for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const CONVERT_AFTER_HELP: &str = "\
Output (-o):
  X.npz   one archive with every selected tensor (--compress deflates members)
  X.npy   exactly one tensor must be selected
  -       standard output: one tensor as .npy, or an .npz stream with --to npz (not a terminal)
  DIR     any other path: a directory with one .npy per tensor ('/' in names makes subdirectories,
          a leading '.' of a part becomes %2E); files already in DIR are kept, except those
          written, which are replaced
  (none)  IN.ext becomes IN.npz beside the input (--to npy: a directory IN/)
With several inputs and -o DIR --to npz, each input becomes DIR/<stem>.npz.
With several inputs into one .npz or directory, names are prefixed by '<stem>/'.
Missing parent directories are created. An output that is an input (by device and inode, so
also through a link or bind mount), or an input checkpoint's prefix, is refused, naming the
input; so is -o X.npz (or X.npy) where X.npz is a directory. A name like x.npy.gz or w.zip is a
directory too (a note says so). A FIFO or device takes a stream, as -: a FIFO is waited on until
a reader opens it (Ctrl-C ends the wait) and is never read.
With --keep-going, a failed input or output is reported and every other output is written;
the exit status is then 1.

Data types: f16 f32 f64 ints bool complex are kept (little-endian); bfloat16 and float8 widen to
<f4 (or keep their bits with --bf16 bits / --f8 bits); quantized types become their integer type;
int4/uint4/int2/uint2 become int8/uint8; strings become |S<maxlen>.
Output is written atomically, file by file: on failure or interrupt nothing is left at the output
path and an existing output is untouched. New files get mode 0666 minus the umask; a replaced
file keeps its mode. Every checksum the input carries is verified (--no-verify skips those of
checkpoints and SavedModels).";

const VERIFY_AFTER_HELP: &str = "\
Every tensor of every input is read: a checkpoint's CRC32C of each entry (the object graph and
entries convert skips included), a TFRecord's length and data CRCs, the CRC-32 of each member of
a PyTorch archive. Each input gets one line saying what was checked: `ok: N checksums verified,
M tensors read`, or, for formats that carry no checksums (safetensors, ONNX, GGUF, HDF5, Flax, a
bare TensorProto), `ok: this input carries no checksums: structure checked, M tensors read` --
damaged data there goes unnoticed (--require-checksums fails such an input). Every input is
checked, like gzip -t; damage is reported on stderr naming the input and the tensor or record.

Exit status: 0 every input passed, 1 any input failed (or was refused by --require-checksums).";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Inputs to check, as for convert (- for standard input)
    #[arg(required = true, value_name = "INPUT", value_hint = clap::ValueHint::AnyPath)]
    pub inputs: Vec<PathBuf>,

    /// Read the inputs as this format instead of sniffing their content
    #[arg(long, value_name = "FORMAT", value_parser = formats())]
    pub from: Option<String>,

    /// Print nothing for inputs that pass (failures are still reported on stderr)
    #[arg(short, long)]
    pub quiet: bool,

    /// Fail an input that carries no checksums (only its structure could be checked)
    #[arg(long)]
    pub require_checksums: bool,

    /// Print one JSON document: an array of {input, ok, tensors, checksums, checked} or
    /// {input, ok: false, error}, one object per input
    #[arg(long)]
    pub json: bool,

    /// TensorProto: the most bytes TensorFlow's fill rule may expand a short typed field to
    #[arg(long, value_name = "BYTES", default_value = DEFAULT_MAX_FILL, value_parser = parse_bytes, help_heading = heading::LIMITS)]
    pub max_fill_bytes: u64,

    /// Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz), that decompresses to more than BYTES
    #[arg(long, value_name = "BYTES", default_value = "64 GiB", value_parser = parse_bytes, help_heading = heading::LIMITS)]
    pub max_decompressed: u64,
}

/// A byte count: a number with an optional suffix K, M, G, T (powers of 1024; `KiB`, `KB`,
/// `k` and the like mean the same), e.g. `4M`, `64 GiB`, `1048576`; a decimal with a suffix
/// (`1.5G`) is rounded down to a whole byte.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let (whole, fraction) = num.split_once('.').unwrap_or((num, ""));
    let n: u64 = whole
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count (e.g. 4096, 64K, 1.5M, 2G)"))?;
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "'{s}' is not a byte count (at most 9 decimals, e.g. 1.5G)"
        ));
    }
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("'{s}': unknown size suffix (use K, M, G or T)")),
    };
    // The decimals, in units of 2^shift / 10^len, rounded down to a whole byte.
    let part = match fraction {
        "" => 0,
        f => {
            let digits: u128 = f.parse().unwrap_or(0);
            (digits << shift) / 10u128.pow(f.len() as u32)
        }
    };
    n.checked_mul(1u64 << shift)
        .and_then(|b| b.checked_add(u64::try_from(part).ok()?))
        .ok_or_else(|| format!("'{s}' is more than 2^64 bytes"))
}

fn parse_chunk(s: &str) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("'{s}': the chunk size must be at least 1 byte"))
}

/// The INPUT help of `convert` and `list`: every format of the registry, so that it never
/// lags behind the readers.
fn input_help() -> String {
    let names: Vec<&str> = crate::source::READERS.iter().map(|r| r.name).collect();
    format!(
        "Input files or folders, recognised by content ({} formats: {}), or - for standard input",
        names.len(),
        names.join(", ")
    )
}

/// Default of --max-fill-bytes, as help shows it (= tensorproto::DEFAULT_MAX_FILL_BYTES).
const DEFAULT_MAX_FILL: &str = "1 GiB";

/// The `--help` headings (also the man pages' sections). Options every reader reads sit under
/// the general ones; an option only some readers read, under the heading that names them (each
/// reader's own options type in `source/`).
pub mod heading {
    pub const SELECTION: &str = "Selection";
    pub const LIMITS: &str = "Input limits";
    pub const TENSORFLOW: &str = "TensorFlow checkpoints and SavedModels";
    pub const TFRECORD: &str = "TFRecords, tf.train.Example and TensorBoard events";
    pub const PICKLE: &str = "PyTorch and pickles";
    pub const QUANT: &str = "GGUF and TFLite";
    pub const STEP: &str = "Orbax and DeepSpeed checkpoints";
    pub const OUTPUT: &str = "Output options";
    pub const DTYPES: &str = "Dtypes";
    pub const STRUCTURE: &str = "Sparse and ragged tensors";
    pub const BATCH: &str = "Batch runs";
    pub const PERFORMANCE: &str = "Performance";
}

/// Options shared by `convert` and `list`: what to read, and which tensors. The order of the
/// fields is that of the manifests' options fingerprint (`batch::fingerprint` hashes their
/// `Debug` form): reordering them makes `--update` redo every output of an earlier manifest.
/// It also orders the headings of `--help` (by each heading's first option).
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Input files or folders, recognised by content (the formats of `--from`), or - for
    /// standard input
    #[arg(required = true, value_name = "INPUT", value_hint = clap::ValueHint::AnyPath,
          help = input_help(), long_help = input_help())]
    pub inputs: Vec<PathBuf>,

    /// Read the inputs as this format instead of sniffing their content
    #[arg(long, value_name = "FORMAT", value_parser = formats())]
    pub from: Option<String>,

    /// Keep only tensors whose name matches GLOB (repeatable; '*' also matches '/')
    #[arg(long = "select", value_name = "GLOB", help_heading = heading::SELECTION)]
    pub select: Vec<String>,

    /// Drop tensors whose name matches GLOB (repeatable)
    #[arg(long = "exclude", value_name = "GLOB", help_heading = heading::SELECTION)]
    pub exclude: Vec<String>,

    /// Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH
    #[arg(long, help_heading = heading::TENSORFLOW)]
    pub include_internal: bool,

    /// Remote inputs and outputs: give up on one request (connecting included) after SECS
    /// seconds, then retry it; a failure that outlasts the retries exits 75
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=3600), help_heading = heading::LIMITS)]
    pub request_timeout: Option<u32>,

    /// TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>.
    /// TensorBoard event files: stack each tag's values over its steps into <tag>, beside
    /// <tag>/step and <tag>/wall_time
    #[arg(long, help_heading = heading::TFRECORD)]
    pub stack: bool,

    /// SavedModel directories: add the Const nodes of saved_model.pb's graphs to the variables
    #[arg(long, help_heading = heading::TENSORFLOW)]
    pub constants: bool,

    /// Checkpoints and SavedModels: do not verify the CRC32C of each entry, the object graph
    /// included (faster on large checkpoints); the CRCs of TFRecords and of PyTorch archives are
    /// always checked
    #[arg(long, help_heading = heading::TENSORFLOW)]
    pub no_verify: bool,

    /// Orbax CheckpointManager root or Flax `save_checkpoint` folder (`checkpoint_<N>` files):
    /// read this step instead of the latest; DeepSpeed checkpoint folder: read tag global_stepN
    /// instead of the one `latest` names
    #[arg(long, value_name = "N", help_heading = heading::STEP)]
    pub step: Option<u64>,

    /// Treat skipped entries (variants such as tf.data iterator state) as errors
    #[arg(long)]
    pub strict: bool,

    /// Pickles (PyTorch, NumPy, Paddle): allow only the globals torch.load(weights_only=True)
    /// allows, refusing classes (whole modules, TorchScript) instead of reading them as data
    #[arg(long, help_heading = heading::PICKLE)]
    pub weights_only: bool,

    /// TensorProto: the most bytes TensorFlow's fill rule may expand a short typed field to
    #[arg(long, value_name = "BYTES", default_value = DEFAULT_MAX_FILL, value_parser = parse_bytes, help_heading = heading::LIMITS)]
    pub max_fill_bytes: u64,

    /// Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz,
    /// data.pkl), that decompresses to more than BYTES; pickles: refuse tensors adding up to more
    /// than BYTES
    #[arg(long, value_name = "BYTES", default_value = "64 GiB", value_parser = parse_bytes, help_heading = heading::LIMITS)]
    pub max_decompressed: u64,

    /// Read all inputs as one: tf.train.Example shards as one dataset (records in input order);
    /// other inputs' tensors merged under their own names, a name in two inputs an error
    #[arg(long)]
    pub concat: bool,

    /// tf.train.Example datasets: only these feature keys (comma-separated, repeatable)
    #[arg(long, value_name = "KEYS", value_delimiter = ',', help_heading = heading::TFRECORD)]
    pub features: Vec<String>,

    /// tf.train.Example datasets: write these features ragged even when every record has the same length
    #[arg(long, value_name = "KEYS", value_delimiter = ',', help_heading = heading::TFRECORD)]
    pub ragged_features: Vec<String>,

    /// tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary
    #[arg(long, value_name = "KEYS", value_delimiter = ',', help_heading = heading::TFRECORD)]
    pub dense_features: Vec<String>,

    /// Quantized tensors. GGUF (default dequant): dequantize block-quantized tensors to float32
    /// like gguf-py, or keep their blocks as |u1 bytes (raw). TFLite (default raw): keep them as
    /// stored like the interpreter's get_tensor, add <name>/scale and <name>/zero_point arrays
    /// (params), or dequantize them to float32 (dequant)
    #[arg(long, value_enum, value_name = "MODE", help_heading = heading::QUANT)]
    pub quant: Option<QuantMode>,
}

/// What happens to quantized tensors; without `--quant`, each format's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantMode {
    /// Dequantize to <f4: GGUF bit for bit what gguf.quants.dequantize returns; TFLite
    /// (q - zero_point) * scale in float64, rounded to float32, per axis
    Dequant,
    /// As stored: GGUF blocks as |u1 arrays of GGUFReader's byte shape [..., bytes_per_row];
    /// TFLite the stored integers
    Raw,
    /// TFLite: as stored, plus <name>/scale (float32) and <name>/zero_point (int32) arrays as
    /// the interpreter's quantization_parameters give them
    Params,
}

/// The dtype policy options, shared by `convert` and `list` (whose npy_dtype column shows
/// what convert would write).
#[derive(Debug, Args)]
pub struct DtypeArgs {
    /// bfloat16: widen to float32 (<f4), or keep the raw bits as <u2
    #[arg(long, value_enum, default_value_t = NarrowFloatPolicy::F32, value_name = "MODE", help_heading = heading::DTYPES)]
    pub bf16: NarrowFloatPolicy,

    /// float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1
    #[arg(long, value_enum, default_value_t = NarrowFloatPolicy::F32, value_name = "MODE", help_heading = heading::DTYPES)]
    pub f8: NarrowFloatPolicy,

    /// Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16
    #[arg(long, value_name = "FROM=TO", value_parser = parse_cast, help_heading = heading::DTYPES)]
    pub cast: Vec<(DType, DType)>,
}

impl DtypeArgs {
    pub fn policy(&self) -> DtypePolicy {
        DtypePolicy {
            bf16: self.bf16.into(),
            f8: self.f8.into(),
            casts: self.cast.clone(),
        }
    }
}

/// The `--from` values: one per reader in the registry, with its description.
fn formats() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        crate::source::READERS
            .iter()
            .map(|r| clap::builder::PossibleValue::new(r.name).help(r.about)),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputKind {
    Npy,
    Npz,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Output: X.npz, X.npy, a directory, or - for standard output (default: IN.npz beside IN)
    #[arg(short, long, value_name = "PATH", value_hint = clap::ValueHint::AnyPath, help_heading = heading::OUTPUT)]
    pub output: Option<PathBuf>,

    /// Output kind where -o does not say: npz (an archive) or npy (.npy files)
    #[arg(long, value_enum, value_name = "KIND", help_heading = heading::OUTPUT)]
    pub to: Option<OutputKind>,

    /// Deflate .npz members, like np.savez_compressed
    #[arg(long, help_heading = heading::OUTPUT)]
    pub compress: bool,

    #[command(flatten)]
    pub dtypes: DtypeArgs,

    /// Sparse tensors: COO components X/indices, X/values, X/dense_shape, or X densified
    #[arg(long, value_enum, default_value_t = SparseMode::Coo, value_name = "MODE", help_heading = heading::STRUCTURE)]
    pub sparse: SparseMode,

    /// Ragged tensors: X/flat_values + X/row_splits_K, the flat values alone, or X padded like rt.to_tensor()
    #[arg(long, value_enum, default_value_t = RaggedMode::Components, value_name = "MODE", help_heading = heading::STRUCTURE)]
    pub ragged: RaggedMode,

    /// The value written where a densified sparse or padded ragged tensor has none (default 0,
    /// or b"" for strings). A number fills numeric tensors only (strings still pad with b""); a
    /// bytes literal such as "b'N/A'" fills string tensors only
    #[arg(long, value_name = "V", allow_hyphen_values = true, help_heading = heading::STRUCTURE)]
    pub fill: Option<String>,

    /// Sparse indices given more than once: an error, or their values summed, or the last one kept
    #[arg(long, value_enum, default_value_t = Duplicates::Error, value_name = "HOW", help_heading = heading::STRUCTURE)]
    pub sparse_duplicates: Duplicates,

    /// Refuse to densify or pad a tensor into more than BYTES
    #[arg(long, value_name = "BYTES", default_value = "4 GiB", value_parser = parse_bytes, help_heading = heading::STRUCTURE)]
    pub max_dense_bytes: u64,

    /// Refuse a run that would write more than BYTES in all (every output together, .npy headers and data before --compress), before anything is written
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, help_heading = heading::OUTPUT)]
    pub max_output: Option<u64>,

    /// Skip tensors whose dtype has no NumPy form (resource handles) instead of failing; when
    /// that leaves nothing to write, it is an error (exit 1)
    #[arg(long, help_heading = heading::OUTPUT)]
    pub skip_unsupported: bool,

    /// Where dense conversions run: the host, a GPU through wgpu, or a GPU when there is one
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu, value_name = "DEVICE", help_heading = heading::PERFORMANCE)]
    pub device: DeviceChoice,

    /// The GPU adapter to use, by its index in `tensor2npy devices`
    #[arg(long, value_name = "N", help_heading = heading::PERFORMANCE)]
    pub adapter: Option<usize>,

    /// Print, per tensor and in total, to stderr: the time the host spent reading, converting
    /// and writing, the bytes read and written and the throughput; with a GPU also the bytes
    /// moved host-to-device and device-to-host and the kernel and readback times (--stats for
    /// text, --stats=json for JSON, which always has every field)
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "text", help_heading = heading::PERFORMANCE)]
    pub stats: Option<StatsFormat>,

    /// Silence notes, warnings, the progress bar and the summary line (errors are still printed)
    #[arg(short, long)]
    pub quiet: bool,

    /// Leave an output alone when it is newer than all its inputs (like `cp -u`), so that a
    /// rerun of a killed batch does only what is left
    #[arg(long, help_heading = heading::BATCH)]
    pub update: bool,

    /// Go on after an input or output fails: write every output that can be written, report
    /// each failure as it happens and again in the count at the end, and exit with status 1
    /// (without it, the first failure stops the run). An input that fails on its way into an
    /// output it shares with other inputs still stops the run
    #[arg(long, help_heading = heading::BATCH)]
    pub keep_going: bool,

    /// Append one JSON line per output to FILE: input, output, status (written or up-to-date),
    /// tensors, bytes and the sha256 of the output file, hashed as it is written (for a
    /// directory: of the files this run wrote, the sha256 of their `sha256sum` lines in path
    /// order)
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath, help_heading = heading::BATCH)]
    pub manifest: Option<PathBuf>,

    /// Bytes read and converted at a time; bounds memory use
    #[arg(long, value_name = "BYTES", default_value = "4 MiB", value_parser = parse_chunk, help_heading = heading::PERFORMANCE)]
    pub chunk_size: usize,

    /// Threads converting at once (default: the number of cores, at most 8): the large tensors
    /// of a stored .npz, and the outputs of a batch; 1 does everything in turn. The output is
    /// byte for byte the same whatever N, and memory stays bounded
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..), help_heading = heading::PERFORMANCE)]
    pub jobs: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Print one JSON document (an array of objects) instead of a table
    #[arg(long)]
    pub json: bool,

    /// With --json: print {"metadata": {INPUT: ...}, "tensors": [...]}, with each input's own
    /// metadata (GGUF key/values, safetensors __metadata__, ONNX metadata_props and producer,
    /// a .keras archive's config.json and metadata.json; null where the format has none)
    #[arg(long, requires = "json")]
    pub metadata: bool,

    /// Silence notes (the listing itself is still printed)
    #[arg(short, long)]
    pub quiet: bool,

    /// The dtype options convert would be given, for the npy_dtype column
    #[command(flatten)]
    pub dtypes: DtypeArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_take_binary_suffixes_and_the_shown_defaults_are_the_real_ones() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        assert_eq!(parse_bytes("64 GiB"), Ok(64 << 30));
        assert_eq!(parse_bytes("2k"), Ok(2048));
        // Decimals (issue 31): 1.5 GiB, rounded down to a byte.
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("0.5 KiB"), Ok(512));
        assert_eq!(parse_bytes("1.0001k"), Ok(1024));
        assert!(parse_bytes("1.5.5G").is_err());
        assert!(parse_bytes(".").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        assert_eq!(
            parse_bytes(DEFAULT_MAX_FILL),
            Ok(crate::source::tensorproto::DEFAULT_MAX_FILL_BYTES)
        );
        assert_eq!(
            parse_chunk("0"),
            Err("'0': the chunk size must be at least 1 byte".into())
        );
    }
}
