#![no_main]
//! TensorBoard event files: TFRecord framing, Event / Summary / HistogramProto walking, the
//! TensorProtos of summary values; also --stack.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::tfevents::TfEventsSource;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    for stack in [false, true] {
        let range = FileRange::from_vec(data.to_vec());
        if let Ok(mut src) = TfEventsSource::open("fuzz", vec![], range, stack, 1 << 20) {
            common::drain(&mut src);
        }
    }
});
