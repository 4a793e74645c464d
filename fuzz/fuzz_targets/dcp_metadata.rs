#![no_main]
//! Distributed Checkpoints: the `.metadata` parser (the pickle read as inert records, the
//! dataclasses interpreted, the chunks' tiling checked) on any byte string; then the input
//! split in two (a 2-byte length, the metadata, the rest) and written as a checkpoint folder,
//! `.metadata` and `__0_0.distcp`, opened through the registry and every tensor drained, so
//! the offset checks, the torch.save items and the assembly of chunks meet fuzzed data.
use libfuzzer_sys::fuzz_target;
use tensor2npy::source::dcp::meta;
use tensor2npy::source::{open, OpenOptions};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let _ = meta::parse(&mut &data[..]);
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (md, distcp) = data[2..].split_at(n);
    if meta::parse(&mut &md[..]).is_err() {
        return;
    }
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::write(dir.path().join(".metadata"), md).is_err()
        || std::fs::write(dir.path().join("__0_0.distcp"), distcp).is_err()
    {
        return;
    }
    let opts = OpenOptions {
        from: Some("dcp".into()),
        ..Default::default()
    };
    if let Ok(mut src) = open(dir.path(), &opts) {
        common::drain(src.as_mut());
    }
});
