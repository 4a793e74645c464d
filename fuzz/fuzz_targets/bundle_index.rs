#![no_main]
//! The checkpoint .index table: footer, block handles, trailers and CRCs, prefix-compressed keys.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::bundle::table;

fuzz_target!(|data: &[u8]| {
    let _ = table::read_all(&FileRange::from_vec(data.to_vec()));
});
