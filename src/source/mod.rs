//! Source readers and the registry that picks one for an input.
//!
//! Every input format is one module here that declares a [`Reader`] (its `--from` name, the file
//! name endings that suggest it, a content sniffer and an open function) and one line in
//! [`READERS`]. `open` builds an [`Input`] (the path, and for a file its bytes as a `FileRange`
//! plus the first few KiB for sniffing), then asks each reader how sure it is that the input is
//! its format: a signature or a strict parse says [`Sniff::Yes`], a merely plausible start says
//! [`Sniff::Maybe`]. The first `Yes` wins (one whose extension matches the file name first), then
//! the first `Maybe` the same way, so a protobuf file that several readers could parse is decided
//! by the extension first and then by a strict parse. A directory no reader claims is then shown
//! to the [`DIR_WALKERS`], readers that know a folder only by walking its subfolders (a
//! TensorBoard log directory), so that a model folder or a zarr store of many chunk files is never
//! walked. Nothing claimed: the error says what the input looks like (empty, a ZIP archive, text,
//! a directory) and what was tried.
//!
//! Readers produce the tensor stream of `tensor.rs` and know nothing of sinks; the front end
//! (`cli.rs`) takes the `--from` names from [`names`].

pub mod bundle;
pub mod chain;
pub mod dcp;
pub mod deepspeed;
pub mod example;
pub mod flax;
pub mod folder;
pub mod gguf;
pub mod graphdef;
pub mod hdf5;
pub mod hf;
pub mod keras;
pub mod keras_sharded;
pub mod numpy;
pub mod onnx;
pub mod orbax;
pub mod pickle;
pub mod proto;
pub mod safetensors;
pub mod tensorproto;
pub mod tfevents;
pub mod tflite;
pub mod tfrecord;
pub mod torch;
pub mod zarr;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use crate::input::{self, FileRange};
use crate::tensor::Source;

/// The formats, from the most specific signature to the most permissive sniffer.
pub static READERS: &[&Reader] = &[
    &bundle::CHECKPOINT,
    &bundle::SAVEDMODEL,
    &hf::READER,
    &deepspeed::READER,
    &torch::READER,
    &torch::plain::READER,
    &safetensors::READER,
    &example::READER,
    &gguf::READER,
    &hdf5::READER,
    &keras::READER,
    &numpy::READER,
    &keras_sharded::READER,
    &flax::READER,
    &tflite::READER,
    &tfevents::READER,
    &orbax::READER,
    &dcp::READER,
    &zarr::READER,
    &tfrecord::READER,
    &onnx::READER,
    &graphdef::READER,
    &tensorproto::READER,
];

/// Readers that recognise a local directory only by walking it, each with its walk: asked in
/// this order, after every sniffer in [`READERS`], and only about a directory none of them
/// claimed (a walk may list thousands of entries; a sniff must stay cheap).
pub static DIR_WALKERS: &[DirWalker] = &[(&tfevents::READER, tfevents::is_log_dir)];

/// A reader, and the walk that tells whether a directory is its format.
pub type DirWalker = (&'static Reader, fn(&Input) -> bool);

/// One input format.
pub struct Reader {
    /// The name `--from` takes.
    pub name: &'static str,
    /// One line for `--help` and messages.
    pub about: &'static str,
    /// File name endings that suggest the format (lower case, with the dot); they are also
    /// stripped from the input's name to make the output stem.
    pub extensions: &'static [&'static str],
    /// How sure the reader is that `input` is its format. Must be cheap on large files (read
    /// the head, or walk a few structures), and never fail: an unreadable input is `No`.
    pub sniff: fn(&Input) -> Sniff,
    /// Opens the input; called after a sniff, or directly for `--from`.
    pub open: fn(&Input, &OpenOptions) -> Result<Box<dyn Source>>,
}

/// A sniffer's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sniff {
    No,
    /// The start is plausible, nothing more.
    Maybe,
    /// A signature or a strict parse confirms it.
    Yes,
}

/// Reader settings that come from the command line: the limits every reader shares, then one
/// options type per reader, declared in its own module; each reader reads only its own (and the
/// shared ones). `cmd/settings.rs` fills them from the clap structs; readers never see clap.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// `--from`: a name in [`READERS`].
    pub from: Option<String>,
    /// `--max-fill-bytes`: the most bytes TensorFlow's fill rule may expand a field to.
    pub max_fill_bytes: u64,
    /// `--max-decompressed`: the most bytes a compressed stream or member may inflate to.
    pub max_decompressed: u64,
    pub bundle: bundle::BundleOptions,
    pub savedmodel: bundle::SavedModelOptions,
    pub tfrecord: tfrecord::TfRecordOptions,
    pub tfevents: tfevents::TfEventsOptions,
    pub example: example::ExampleOptions,
    pub torch: torch::PickleOptions,
    pub gguf: gguf::GgufOptions,
    pub tflite: tflite::TfliteOptions,
    pub orbax: orbax::OrbaxOptions,
    pub deepspeed: deepspeed::DeepSpeedOptions,
}

/// What a reader sees of one input before opening it.
pub struct Input {
    /// The path as the user gave it (`-` for standard input).
    pub path: PathBuf,
    /// The path for messages.
    pub display: String,
    /// The input's name without its recognised extensions (`stdin` for standard input).
    pub stem: String,
    /// The input is a directory.
    pub is_dir: bool,
    /// The bytes of a regular file or of standard input; `None` for a directory or for a path
    /// that is no file (a checkpoint prefix).
    pub data: Option<FileRange>,
    /// The first bytes of `data` (up to `HEAD_LEN`), for sniffers.
    pub head: Vec<u8>,
    /// The files read so far, so that no output is ever written over one of them.
    pub files: Vec<PathBuf>,
}

/// How many leading bytes sniffers get.
pub const HEAD_LEN: usize = 4096;

impl Input {
    /// The file's bytes, or an error saying that the input is no file.
    pub fn data(&self) -> Result<&FileRange> {
        match &self.data {
            Some(d) => Ok(d),
            None if self.is_dir => bail!("{} is a directory, not a file", self.display),
            None => bail!("{} is not a file", self.display),
        }
    }

    /// The bytes, when they could be a binary protobuf message: a non-empty file that is not
    /// text and starts with no container signature. The sniffers of the protobuf formats
    /// (TensorProto, GraphDef, ONNX) start from this.
    pub fn protobuf_candidate(&self) -> Option<&FileRange> {
        self.data
            .as_ref()
            .filter(|d| !d.is_empty() && !looks_like_text(&self.head) && !has_signature(&self.head))
    }

    /// The file name ends with one of `exts` (case-insensitive), ignoring a trailing `.gz` /
    /// `.zz` compression suffix.
    pub fn has_extension(&self, exts: &[&str]) -> bool {
        let name = match self.path.file_name() {
            Some(n) => n.to_string_lossy().to_lowercase(),
            None => return false,
        };
        let base = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zz"))
            .unwrap_or(&name);
        exts.iter()
            .any(|e| (name.ends_with(e) && name.len() > e.len()) || base.ends_with(e))
    }
}

/// The `--from` names, in registry order.
pub fn names() -> Vec<&'static str> {
    READERS.iter().map(|r| r.name).collect()
}

/// The reader named `name`.
pub fn reader(name: &str) -> Option<&'static Reader> {
    READERS.iter().copied().find(|r| r.name == name)
}

/// Opens one input (a path, or `-` for standard input), sniffing its format from its content
/// unless `--from` says.
pub fn open(arg: &Path, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let input = probe(arg)?;
    let reader = match &opts.from {
        Some(name) => reader(name).ok_or_else(|| anyhow!("unknown format '{name}'"))?,
        None => choose(&input)?,
    };
    (reader.open)(&input, opts)
}

/// Gathers what sniffers look at.
pub(crate) fn probe(arg: &Path) -> Result<Input> {
    let display = arg.display().to_string();
    let is_stdin = arg.as_os_str() == "-";
    let stem = if is_stdin {
        "stdin".to_string()
    } else {
        stem(arg)
    };
    let is_dir = !is_stdin && input::is_dir(arg);
    let (data, files) = if is_stdin {
        (Some(FileRange::whole(input::spool_stdin()?)?), Vec::new())
    } else if input::url_of(arg).is_some() {
        // A remote object, or a remote checkpoint prefix or directory (no object by that name).
        match is_dir {
            true => (None, Vec::new()),
            false => match input::open_range(arg) {
                Ok(r) => (Some(r), Vec::new()),
                Err(_) if input::is_file(&input::with_suffix(arg, ".index")) => (None, Vec::new()),
                Err(e) => return Err(e),
            },
        }
    } else if arg.is_file() {
        let file = input::open_file(arg)?;
        (Some(FileRange::whole(file)?), vec![arg.to_path_buf()])
    } else if !is_dir && arg.exists() {
        // A pipe or device (`<(...)`, /dev/stdin): copied to a temporary file like stdin, so
        // that it can be sniffed and read at any offset.
        let file = input::open_stream(arg)?;
        (Some(FileRange::whole(input::spool(file)?)?), Vec::new())
    } else {
        (None, Vec::new())
    };
    let mut head = Vec::new();
    if let Some(d) = &data {
        head = vec![0u8; (d.len() as usize).min(HEAD_LEN)];
        d.read_at(0, &mut head)?;
    }
    Ok(Input {
        path: arg.to_path_buf(),
        display,
        stem,
        is_dir,
        data,
        head,
        files,
    })
}

/// The reader the registry picks for `input`.
pub(crate) fn choose(input: &Input) -> Result<&'static Reader> {
    choose_in(input, READERS, DIR_WALKERS).ok_or_else(|| unrecognised(input))
}

/// [`choose`] over the given tables.
fn choose_in(
    input: &Input,
    readers: &[&'static Reader],
    walkers: &[DirWalker],
) -> Option<&'static Reader> {
    let verdicts: Vec<Sniff> = readers.iter().map(|r| (r.sniff)(input)).collect();
    for level in [Sniff::Yes, Sniff::Maybe] {
        let candidates = || {
            readers
                .iter()
                .zip(&verdicts)
                .filter(move |(_, &v)| v == level)
                .map(|(r, _)| *r)
        };
        if let Some(r) = candidates()
            .find(|r| input.has_extension(r.extensions))
            .or_else(|| candidates().next())
        {
            return Some(r);
        }
    }
    if !input.is_dir {
        return None;
    }
    walkers
        .iter()
        .find(|(_, walk)| walk(input))
        .map(|(r, _)| *r)
}

/// The error for an input no reader claims: what it looks like, and what was tried.
fn unrecognised(input: &Input) -> anyhow::Error {
    let tried = names().join(", ");
    if input.is_dir {
        return anyhow!(
            "{} is a directory, but not one tensor2npy reads: no SavedModel (saved_model.pb with variables/variables.index), no checkpoint directory (a `checkpoint` file naming an .index file) and no Hugging Face model folder (*.index.json, model.safetensors or pytorch_model.bin), no Keras weights folder (*.weights.json, or config.json with model.weights.h5), no Orbax checkpoint (_METADATA, _CHECKPOINT_METADATA or step folders), no PyTorch Distributed Checkpoint (.metadata), no DeepSpeed checkpoint (`latest` and global_step* folders of *_optim_states.pt), no zarr array or group (.zarray, .zgroup or zarr.json), no TensorBoard log directory (events.out.tfevents.* files up to 4 folders down); pass the files themselves",
            input.display
        );
    }
    let Some(data) = &input.data else {
        // Neither a file nor a checkpoint prefix: let the open error speak (no such file...).
        return match input::open_file(&input.path) {
            Err(e) => e,
            Ok(_) => anyhow!("{} is not a regular file", input.display),
        };
    };
    let head = &input.head;
    let looks = if data.is_empty() {
        "the input is empty".to_string()
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        "a ZIP archive that is no known format".to_string()
    } else if looks_like_text(head) && head.trim_ascii_start().starts_with(b"node {") {
        "a text-format GraphDef (tf.io.write_graph's default as_text=True); tensor2npy reads \
         binary protobufs: write it with as_text=False"
            .to_string()
    } else if data.len() >= 48
        && data
            .read_vec(data.len() - 8, 8)
            .is_ok_and(|m| m == 0xdb47_7524_8b80_fb57_u64.to_le_bytes())
    {
        "a LevelDB-style table like a checkpoint's .index, with no .index/.data files: a \
         TensorFlow V1 checkpoint (tf.compat.v1.train.Saver(write_version=V1)), which tensor2npy \
         does not read: restore it in TensorFlow and save it again as V2 (the default)"
            .to_string()
    } else if input.has_extension(&[".pdiparams", ".pdmodel"]) || paddle_lod_tensor(head) {
        "Paddle's binary tensor format (the .pdiparams/.pdmodel of paddle.jit.save or \
         save_inference_model, or paddle.save(..., use_binary_format=True)), which tensor2npy \
         does not read: load it in Paddle and paddle.save its state_dict() as .pdparams"
            .to_string()
    } else if looks_like_text(head) {
        "a text file, not a tensor file".to_string()
    } else {
        "binary data in no known format".to_string()
    };
    anyhow!("unrecognised input: {looks} (tried: {tried})")
}

/// True when `head` opens like Paddle's serialized LoDTensor: version 0, LoD level 0, tensor
/// version 0, then a `TensorDesc` protobuf (field 1, its data type) of a small size.
fn paddle_lod_tensor(head: &[u8]) -> bool {
    head.len() > 20
        && head[..16].iter().all(|&b| b == 0)
        && (1..4096).contains(&u32::from_le_bytes([
            head[16], head[17], head[18], head[19],
        ]))
        && head[20] == 0x08
}

/// True when `head` starts with the signature of a container format (ZIP, `.npy`, HDF5, GGUF,
/// GZIP), which permissive sniffers (a protobuf's first field) must not claim.
pub fn has_signature(head: &[u8]) -> bool {
    const MAGICS: [&[u8]; 6] = [
        b"PK\x03\x04",
        b"PK\x05\x06",
        b"\x93NUMPY",
        b"\x89HDF\r\n\x1a\n",
        b"GGUF",
        b"\x1f\x8b",
    ];
    MAGICS.iter().any(|m| head.starts_with(m))
}

/// True when `head` reads as text: valid UTF-8 (a cut last character allowed) with no control
/// characters other than whitespace.
pub fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\x0c'))
}

/// The name of an input without the extensions any reader recognises, as the contract defines
/// `stem`: `dir/data.tfrecord.gz` → `data`.
pub fn stem(path: &Path) -> String {
    let mut name = path.file_name().map(escaped_name).unwrap_or_else(|| {
        // `dir/` or `.`: take the last real component.
        path.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(escaped_name))
            .unwrap_or_else(|| "stdin".into())
    });
    let exts = || READERS.iter().flat_map(|r| r.extensions.iter());
    while let Some(e) = exts()
        .find(|e| name.len() > e.len() && name.to_lowercase().ends_with(&e.to_lowercase()[..]))
    {
        name.truncate(name.len() - e.len());
    }
    name
}

/// A file name as text: itself when it is UTF-8; otherwise each byte that is not part of valid
/// UTF-8 becomes `%XX`, and `%` itself `%25`, so that the original bytes can be recovered by
/// percent-decoding (instead of U+FFFD, which loses them and makes names collide).
pub fn escaped_name(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    if let Some(s) = name.to_str() {
        return s.to_string();
    }
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '%' => out.push_str("%25"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_is_not_utf8_is_escaped_reversibly() {
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"w\xe9ights%1.safetensors");
        assert_eq!(escaped_name(raw), "w%E9ights%251.safetensors");
        assert_eq!(stem(Path::new(raw)), "w%E9ights%251");
        assert_eq!(escaped_name(std::ffi::OsStr::new("50%.pt")), "50%.pt");
    }

    #[test]
    fn stem_strips_every_recognised_extension_but_keeps_others() {
        assert_eq!(stem(Path::new("dir/data.tfrecord.gz")), "data");
        assert_eq!(stem(Path::new("model.safetensors")), "model");
        assert_eq!(stem(Path::new("ckpt/model-100.index")), "model-100");
        assert_eq!(stem(Path::new("model.ckpt")), "model.ckpt");
        assert_eq!(stem(Path::new("x.npy")), "x");
        assert_eq!(stem(Path::new("arrays.npz")), "arrays");
        assert_eq!(stem(Path::new("x.npy.bak")), "x.npy.bak");
        assert_eq!(stem(Path::new(".pb")), ".pb");
    }

    #[test]
    fn every_reader_has_a_unique_name() {
        let mut n = names();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), READERS.len());
    }

    static CLAIMS_DIRS: Reader = Reader {
        name: "claims",
        about: "",
        extensions: &[],
        sniff: |i| if i.is_dir { Sniff::Yes } else { Sniff::No },
        open: |_, _| unreachable!(),
    };
    static NEVER: Reader = Reader {
        name: "never",
        about: "",
        extensions: &[],
        sniff: |_| Sniff::No,
        open: |_, _| unreachable!(),
    };

    #[test]
    fn a_directory_is_walked_only_when_no_sniffer_claims_it() {
        let dir = tempfile::tempdir().unwrap();
        let input = probe(dir.path()).unwrap();
        assert!(input.is_dir);
        let refuses: fn(&Input) -> bool = |_| panic!("walked a claimed directory");
        let claimed = choose_in(&input, &[&NEVER, &CLAIMS_DIRS], &[(&NEVER, refuses)]);
        assert_eq!(claimed.map(|r| r.name), Some("claims"));
        let finds: fn(&Input) -> bool = |i| i.is_dir;
        let walked = choose_in(
            &input,
            &[&NEVER],
            &[(&NEVER, |_| false), (&CLAIMS_DIRS, finds)],
        );
        assert_eq!(walked.map(|r| r.name), Some("claims"));
        let file = dir.path().join("f.bin");
        std::fs::write(&file, b"\x00\x01").unwrap();
        let not_dir = probe(&file).unwrap();
        let walks_files: fn(&Input) -> bool = |_| panic!("walked a file");
        assert!(choose_in(&not_dir, &[&NEVER], &[(&CLAIMS_DIRS, walks_files)]).is_none());
    }

    #[test]
    fn text_is_told_from_binary() {
        assert!(looks_like_text(b"hello world\nsecond line\t\n"));
        assert!(looks_like_text("h\u{e9}llo".as_bytes()));
        assert!(looks_like_text(&"h\u{e9}llo".as_bytes()[..2]));
        assert!(!looks_like_text(b"\x08\x01\x12\x04"));
        assert!(!looks_like_text(b""));
    }
}
