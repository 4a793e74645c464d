#![no_main]
//! zarr array metadata (v2 `.zarray` and v3 `zarr.json`): every document parses or fails
//! cleanly; a parsed one computes its chunk grid, keys and tensor
//! size without overflow.
use libfuzzer_sys::fuzz_target;
use tensor2npy::source::zarr::meta;

fuzz_target!(|data: &[u8]| {
    for m in [meta::parse_v2(data), meta::parse_v3(data)].into_iter().flatten() {
        let grid = m.grid();
        let last: Vec<u64> = grid.iter().map(|g| g.saturating_sub(1)).collect();
        let _ = m.chunk_key(&last);
        let _ = m.chunk_bytes();
        let _ = tensor2npy::source::zarr::Array {
            name: String::new(),
            prefix: String::new(),
            meta: m,
        }
        .tensor_meta();
    }
});
