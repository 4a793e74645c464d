#![no_main]
//! NumPy input: the .npy header parser (magic, version, length, the dict literal, the descr)
//! on its own, then the whole reader on the same bytes, as a .npy or, when they are a ZIP, as an
//! .npz (members, headers, Fortran-order transposition, CRC-32s).
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::numpy::{parse_header, NumpySource};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data);
    let range = FileRange::from_vec(data.to_vec());
    if let Ok(mut src) = NumpySource::open("fuzz", vec![], &range, "fuzz", 64 << 20) {
        common::drain(&mut src);
    }
});
