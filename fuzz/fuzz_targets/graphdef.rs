#![no_main]
//! A frozen GraphDef or saved_model.pb: graph and library walking, Const nodes, and each
//! constant's TensorProto scanned and streamed in place.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::graphdef::{self, GraphDefSource};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let range = FileRange::from_vec(data.to_vec());
    let _ = graphdef::sniff(&range);
    let _ = graphdef::sniff_saved_model(&range);
    for saved_model in [false, true] {
        if let Ok(mut src) = GraphDefSource::open("fuzz", vec![], range.clone(), saved_model, 1 << 20) {
            common::drain(&mut src);
        }
    }
});
