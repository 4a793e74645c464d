#![no_main]
//! Sparse and ragged decoding: the input is read as a TensorProto (a serialized sparse string
//! vector or a ragged variant), recognised, validated, and written out in every mode.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::tensorproto::TensorProtoSource;
use tensor2npy::structure::{self, Duplicates, RaggedMode, SparseMode, StructureOptions, View};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    for (sparse, ragged, duplicates) in [
        (SparseMode::Coo, RaggedMode::Components, Duplicates::Error),
        (SparseMode::Dense, RaggedMode::Pad, Duplicates::Sum),
        (SparseMode::Dense, RaggedMode::Flat, Duplicates::Last),
    ] {
        let range = FileRange::from_vec(data.to_vec());
        let Ok(src) = TensorProtoSource::open("fuzz", vec![], range, "t".into(), 1 << 20) else { return };
        let opts = StructureOptions {
            sparse,
            ragged,
            fill: None,
            duplicates,
            max_dense_bytes: 1 << 22,
            strict: false,
            view: View::Convert,
            max_fill_bytes: 1 << 22,
            memory_budget: 1 << 24,
        };
        if let Ok(mut src) = structure::wrap(Box::new(src), &opts) {
            common::drain(src.as_mut());
        }
    }
});
