#![no_main]
//! A whole HDF5 file: the crate's structure parsing under our storage adapter, the type mapping,
//! contiguous ranges, the block walk over chunked data, the chunk-by-chunk path for chunks of
//! whole rows (`rows.rs`: the index walk, inflate, Fletcher-32, unshuffle), strings and the
//! global heap.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::hdf5::Hdf5Source;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let range = FileRange::from_vec(data.to_vec());
    if let Ok(mut src) = Hdf5Source::open("fuzz", vec![], range) {
        common::drain(&mut src);
    }
});
