#![no_main]
//! h5py's LZF filter (32000) on arbitrary bytes: never a panic, never more than the limit out.
use libfuzzer_sys::fuzz_target;
use tensor2npy::source::hdf5::lzf_decompress;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the output limit, so that short and long limits are both tried.
    let Some((&k, data)) = data.split_first() else {
        return;
    };
    let limit = usize::from(k) * 97;
    if let Ok(out) = lzf_decompress(data, limit) {
        assert!(out.len() <= limit);
    }
});
