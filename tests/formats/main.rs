//! The input formats, one module each: every fixture converted by the binary and compared bit
//! for bit with the oracle its library wrote (`fixtures`, and the per-format modules for what
//! the manifests cannot say), the reader registry and folders, and damaged inputs of each
//! format. One test crate for them all, so the library and its dependencies link once.

#[path = "../common/mod.rs"]
mod common;

mod dcp;
mod deepspeed;
mod example;
mod fixtures;
mod gguf;
mod graph;
mod hdf5_flax;
mod numpy_input;
mod orbax_zarr;
mod pickle;
mod registry;
mod tflite_events;
mod torch;
mod train;
