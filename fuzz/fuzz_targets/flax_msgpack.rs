#![no_main]
//! A Flax msgpack file: the marker walk, extension payloads, chunked arrays, key joining.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::flax::FlaxSource;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let range = FileRange::from_vec(data.to_vec());
    if let Ok(mut src) = FlaxSource::open("fuzz", vec![], range, "t") {
        common::drain(&mut src);
    }
});
