#![no_main]
//! GZIP / ZLIB TFRecords: the decompression spool with its size limit, then the framing.
use libfuzzer_sys::fuzz_target;
use tensor2npy::container::tfrecord::{self, Compression};
use tensor2npy::input::FileRange;
use tensor2npy::source::tfrecord::TfRecordSource;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if Compression::sniff(data).is_none() {
        return;
    }
    let range = FileRange::from_vec(data.to_vec());
    let Ok(opened) = tfrecord::open(&range, data, 1 << 24) else { return };
    if let Ok(mut src) = TfRecordSource::open("fuzz", vec![], opened.data, "t", false, 1 << 20) {
        common::drain(&mut src);
    }
});
