#![no_main]
//! GZIP / ZLIB TFRecords: the decompression spool with its size limit, then the framing.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::{spool_decompressed, Compression, FileRange};
use tensor2npy::source::tfrecord::TfRecordSource;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some(kind) = Compression::sniff(data) else { return };
    let range = FileRange::from_vec(data.to_vec());
    let Ok(file) = spool_decompressed(&range, kind, 1 << 24) else { return };
    let Ok(range) = FileRange::whole(file) else { return };
    if let Ok(mut src) = TfRecordSource::open("fuzz", vec![], range, "t", false, 1 << 20) {
        common::drain(&mut src);
    }
});
