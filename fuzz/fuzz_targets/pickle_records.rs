#![no_main]
//! The unpickler in both modes (strict, and classes read as records, NumPy arrays built) on any
//! byte string, then the same bytes as a plain pickle of arrays (`.pkl`, `.pdparams`) and as a
//! torch file (TorchScript and `.pt2` archives included), every tensor drained. Torch tensors
//! pickled by value (`torch.storage._load_from_bytes` of a nested torch.save) are reached both
//! ways: held bytes through `load_with`, spans of the input through `plain::open_pickle`.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::pickle;
use tensor2npy::source::torch::{plain, TorchOptions, TorchSource};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    for strict in [false, true] {
        let opts = pickle::Options { strict, strict_numpy: strict, budget: 8 << 20 };
        let _ = pickle::load_with(&mut &data[..], &opts);
    }
    let opts = TorchOptions {
        pickle: pickle::Options { strict: false, strict_numpy: false, budget: 8 << 20 },
        max_bytes: 1 << 30,
        check_while_streaming: true,
    };
    let range = FileRange::from_vec(data.to_vec());
    if let Ok(mut src) = plain::open_pickle("fuzz", vec![], range.clone(), "fuzz", &opts) {
        common::drain(&mut src);
    }
    if let Ok(mut src) = TorchSource::open_with("fuzz", vec![], range, "fuzz", &opts) {
        common::drain(&mut src);
    }
});
