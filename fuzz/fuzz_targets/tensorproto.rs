#![no_main]
//! A bare TensorProto: field walking, shapes, tensor_content, typed fields and the fill rule.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::tensorproto::TensorProtoSource;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let range = FileRange::from_vec(data.to_vec());
    if let Ok(mut src) = TensorProtoSource::open("fuzz", vec![], range, "t".into(), 1 << 20) {
        common::drain(&mut src);
    }
});
