#![no_main]
//! TFLite flatbuffers: the verifier, buffer offsets and sizes against the bytes present, and
//! every quantization option (parameters checked against the shape, dequantization per axis).
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::tflite::{QuantOutput, TfliteSource};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    for mode in [QuantOutput::Stored, QuantOutput::Params, QuantOutput::Dequant] {
        let range = FileRange::from_vec(data.to_vec());
        if let Ok(mut src) = TfliteSource::open("fuzz", vec![], range, mode) {
            common::drain(&mut src);
        }
    }
});
