#![no_main]
//! An ONNX ModelProto: graph, subgraph and sparse-initializer walking, every encoding of
//! initializer data, and external data resolved inside a scratch folder (where side files named
//! `a` and `b` exist, so that offsets and lengths are checked against real files).
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::onnx::{self, OnnxSource};

#[path = "common.rs"]
mod common;

fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), [7u8; 64]).unwrap();
        std::fs::write(d.path().join("b"), [1u8; 3]).unwrap();
        d
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let range = FileRange::from_vec(data.to_vec());
    let _ = onnx::sniff(&range);
    if let Ok(mut src) = OnnxSource::open("fuzz", vec![], range, Some(scratch())) {
        common::drain(&mut src);
    }
});
