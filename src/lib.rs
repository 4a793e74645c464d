//! tensor2npy: serialized tensors (safetensors, TensorFlow TensorProto, TFRecord, checkpoints,
//! SavedModel variables) to NumPy `.npy` / `.npz`, streaming, without TensorFlow or Python.
//!
//! Data flows one way: `source` readers → the `tensor` stream → `structure` (sparse and ragged)
//! → `transform` → `sink` writers; `cli` parses, `cmd` dispatches. The library exists for the
//! binary and for the fuzz targets; it is not a stable API.

pub mod batch;
pub mod cli;
pub mod cmd;
pub mod device;
pub mod dtype;
pub mod input;
pub mod pipeline;
#[cfg(feature = "remote")]
pub mod remote;
pub mod sink;
pub mod source;
pub mod structure;
pub mod tensor;
pub mod transform;

// Old paths of modules that moved (`source::wire`, `source::proto`, `sink::names`), kept so that
// work in flight still builds.
pub use sink::names;
pub use source::{proto, wire};
