#![no_main]
//! TFRecord framing (length and data CRCs), then each record as a TensorProto; also --stack.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::tfrecord::TfRecordSource;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    for stack in [false, true] {
        let range = FileRange::from_vec(data.to_vec());
        if let Ok(mut src) = TfRecordSource::open("fuzz", vec![], range, "t", stack, 1 << 20) {
            common::drain(&mut src);
        }
    }
});
