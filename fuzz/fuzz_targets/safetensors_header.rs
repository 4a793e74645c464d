#![no_main]
//! The safetensors header and data ranges.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::safetensors::SafetensorsSource;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut src) = SafetensorsSource::open("fuzz", vec![], FileRange::from_vec(data.to_vec())) {
        common::drain(&mut src);
    }
});
