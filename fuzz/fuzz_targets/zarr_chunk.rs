#![no_main]
//! One stored zarr chunk through a codec chain (zstd, gzip, zlib, blosc, crc32c; the first
//! byte picks the chain, the next two the decoded size): it decodes to exactly that size or
//! fails cleanly, never allocating past it.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::zarr::chunks;
use tensor2npy::source::zarr::meta::Codec;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let all = [
        Codec::Zstd,
        Codec::Gzip,
        Codec::Zlib,
        Codec::Blosc,
        Codec::Crc32c,
    ];
    // two codecs at most: bits 0-2 the first, bits 3-5 the second (5 and up: none)
    let codecs: Vec<Codec> = [data[0] & 7, (data[0] >> 3) & 7]
        .iter()
        .filter_map(|&k| all.get(k as usize).cloned())
        .collect();
    let expect = u16::from_le_bytes([data[1], data[2]]) as u64;
    let _ = chunks::decode(&FileRange::from_vec(data[3..].to_vec()), &codecs, expect);
});
