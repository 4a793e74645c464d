#![no_main]
//! tf.train.Example / SequenceExample datasets: the protobuf walk, the schema inference and every
//! output mode. The input's TFRecord framing is read loosely (lengths only) and re-framed with
//! valid CRCs, so that mutations reach the record decoder instead of stopping at a checksum.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::example::{ExampleOptions, ExampleSource, Part, RaggedChoice};
use tensor2npy::structure::RaggedMode;

#[path = "common.rs"]
mod common;

/// CRC-32C (Castagnoli), bitwise: the fuzz crate keeps no CRC dependency of its own.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Re-frames the records the input's length fields delimit, with correct CRCs.
fn reframe(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while data.len() >= 12 {
        let len = u64::from_le_bytes(data[..8].try_into().unwrap()).min((data.len() - 12) as u64);
        let payload = &data[12..12 + len as usize];
        let header = (payload.len() as u64).to_le_bytes();
        out.extend_from_slice(&header);
        out.extend_from_slice(&mask(crc32c(&header)).to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&mask(crc32c(payload)).to_le_bytes());
        data = &data[(12 + len as usize + 4).min(data.len())..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let framed = reframe(data);
    let modes = [RaggedMode::Components, RaggedMode::Flat, RaggedMode::Pad];
    let opts = ExampleOptions {
        ragged: RaggedChoice {
            mode: modes[data.len() % 3],
            fill: None,
            max_dense_bytes: Some(1 << 24),
            list: data.len() % 5 == 0,
        },
        ..ExampleOptions::default()
    };
    for bytes in [framed, data.to_vec()] {
        let parts = vec![Part {
            display: "fuzz".into(),
            data: FileRange::from_vec(bytes),
        }];
        if let Ok(mut src) = ExampleSource::open("fuzz", vec![], parts, &opts) {
            common::drain(&mut src);
        }
    }
});
