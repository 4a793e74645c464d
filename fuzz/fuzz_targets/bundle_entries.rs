#![no_main]
//! A whole bundle: the input is split into an .index file and one data shard (the first two
//! bytes give the index length), so entries, strings, variants and slices meet fuzzed data.
use libfuzzer_sys::fuzz_target;
use tensor2npy::source::bundle::{BundleOptions, BundleSource};
use tensor2npy::tensor::Source;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (index, shard) = data[2..].split_at(n);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ckpt.index"), index).unwrap();
    std::fs::write(dir.path().join("ckpt.data-00000-of-00001"), shard).unwrap();
    let prefix = dir.path().join("ckpt");
    for verify in [true, false] {
        let opts = BundleOptions { verify, include_internal: true };
        if let Ok(mut src) = BundleSource::open("fuzz", &prefix, opts) {
            common::drain(&mut src as &mut dyn Source);
        }
    }
});
