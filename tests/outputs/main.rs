//! What comes out and where it goes: real NumPy loading the outputs, `--jobs` giving the bytes
//! one thread gives, batches (`--update`, `--manifest`, the recipes), remote inputs and outputs
//! against loopback servers, the GPU device stage against the CPU path, and the zip64 check
//! (ignored unless asked for). One test crate, so the library links once.

#[path = "../common/mod.rs"]
mod common;

mod batch;
mod edges;
mod gpu;
mod jobs;
mod large;
mod numpy_load;
mod remote;
