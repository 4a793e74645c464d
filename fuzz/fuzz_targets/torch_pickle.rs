#![no_main]
//! The restricted unpickler alone (any byte string as a pickle), then the same bytes as a whole
//! PyTorch file (zip or legacy), every tensor drained.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::pickle;
use tensor2npy::source::torch::TorchSource;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let _ = pickle::load_slice(data);
    if let Ok(mut src) = TorchSource::open("fuzz", vec![], FileRange::from_vec(data.to_vec()), "fuzz") {
        common::drain(&mut src);
    }
});
