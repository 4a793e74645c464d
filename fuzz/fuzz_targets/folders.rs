#![no_main]
//! Composite folders: a Hugging Face folder (index + two safetensors shards) or Keras sharded
//! weights (index + two HDF5 shards), written from the input (first byte: which; then the index
//! and the first shard, each after a 2-byte length; the rest is the second shard) and opened
//! through the registry as a folder and as its index file, so the index checks, the
//! concatenation and the shard readers meet fuzzed data.
use libfuzzer_sys::fuzz_target;
use tensor2npy::source::{open, OpenOptions};

#[path = "common.rs"]
mod common;

/// `data[0..2]` as a length, and the bytes it covers, and the rest.
fn take(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    data[2..].split_at(n)
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (index, rest) = take(rest);
    let (first, second) = take(rest);
    let (index_name, shards) = if kind & 1 == 0 {
        (
            "model.safetensors.index.json",
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
        )
    } else {
        (
            "model.weights.json",
            ["model_00000.weights.h5", "model_00001.weights.h5"],
        )
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(index_name), index).unwrap();
    std::fs::write(dir.path().join(shards[0]), first).unwrap();
    std::fs::write(dir.path().join(shards[1]), second).unwrap();
    let opts = OpenOptions::default();
    for input in [dir.path().to_path_buf(), dir.path().join(index_name)] {
        if let Ok(mut src) = open(&input, &opts) {
            common::drain(src.as_mut());
        }
    }
});
