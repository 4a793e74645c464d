//! tensor2npy: the tensor files people hold (TensorFlow checkpoints, SavedModels, TFRecords of
//! tensors or `tf.train.Example`s, TensorProtos, frozen GraphDefs, ONNX, PyTorch and Hugging
//! Face folders, safetensors, GGUF, Keras/HDF5, Flax msgpack) to NumPy `.npy` / `.npz`,
//! streaming, in bounded memory, without any framework or Python.
//!
//! Data flows one way; each arrow is one hop:
//!
//! ```text
//!   main.rs ─ cli.rs (clap, arguments only) ─ cmd/{convert,list,verify,...}.rs (one per subcommand)
//!      │                                          │
//!      │   error.rs (exit codes, interrupts)      │ select.rs (--select/--exclude), report.rs (stderr)
//!      ▼                                          ▼
//!   input.rs (FileRange: file, memory or remote/)  →  source/mod.rs (registry, sniffing)
//!      → container/ (framings beside the formats: zip.rs opens ZIP members with limits and
//!        checks their CRC-32s, for the PyTorch, Keras and NumPy readers; tfrecord/ the
//!        TFRecord framing, CRCs and GZIP/ZLIB spooling; protobuf.rs the one field walker;
//!        cursor.rs the one buffered reader over a FileRange)
//!      → source/<format> (one reader per format: the tensor stream of tensor.rs, whose
//!        TensorMeta carries the reader's facts about each tensor and whose InputFacts carry
//!        the format and notes of the input, so wrappers pass them on whole)
//!      → structure/ (sparse and ragged: recognised, validated, streamed)
//!      → pipeline.rs (one tensor: member, chunks, convert, write, commit); jobs.rs (--jobs:
//!        workers fill members the sink reserved, or convert the outputs of a batch)
//!          → transform.rs (Converter: one description of every conversion; dtype.rs policy)
//!          → device/ (optional GPU stage: kernel.rs maps each conversion to a WGSL kernel)
//!      → sink/ (npy.rs headers, npz.rs + zip.rs archives, dir.rs directories, atomic.rs
//!               temporaries, names.rs member and file names)
//!   batch.rs (--update, --manifest), cmd/plan.rs (the output table and its refusals),
//!   cmd/survey.rs (the first pass over the metadata) and
//!   summary.rs (what was written, left alone or failed, --keep-going) are called by
//!   cmd/convert.rs; checksum.rs (TensorFlow's masked CRC32C, and the count of checksums
//!   verified) serves container/ and the readers.
//!   python/ (feature `python`, the wheel's extension module) enters beside main.rs: its
//!   keyword arguments go through cli.rs, then cmd/, source/ and pipeline.rs as above.
//! ```
//!
//! Readers know nothing of sinks and sinks nothing of readers; only `cli.rs` and `cmd/` use clap.
//! The library exists for the binary, the tests and the fuzz targets; it is not a stable API.

pub mod batch;
pub mod budget;
pub mod checksum;
pub mod cli;
pub mod cmd;
pub mod container;
pub mod device;
pub mod dtype;
pub mod error;
pub mod input;
pub mod jobs;
pub mod pipeline;
pub mod pool;
#[cfg(feature = "python")]
pub mod python;
#[cfg(feature = "remote")]
pub mod remote;
pub mod report;
pub mod select;
pub mod sink;
pub mod source;
pub mod structure;
pub mod summary;
pub mod tensor;
pub mod transform;
