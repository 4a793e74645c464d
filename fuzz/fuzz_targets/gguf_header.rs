#![no_main]
//! GGUF: the header (counts, strings, metadata arrays, tensor infos, alignment), the data
//! ranges, and every dequantizer on whatever blocks follow; both with and without --quant raw.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::gguf::GgufSource;
use tensor2npy::tensor::Source;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    for raw in [false, true] {
        if let Ok(mut src) = GgufSource::open("fuzz", vec![], FileRange::from_vec(data.to_vec()), raw) {
            let _ = src.metadata();
            common::drain(&mut src);
        }
    }
});
