#![no_main]
//! OCDBT (Orbax's TensorStore database): the envelope (magic, length, crc32c, zstd body), the
//! manifest and B+tree node bodies. The first byte picks what the rest is parsed as; bodies
//! are also parsed bare, so that the fuzzer need not forge checksums to reach the parsers.
use libfuzzer_sys::fuzz_target;
use tensor2npy::input::FileRange;
use tensor2npy::source::orbax::ocdbt;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let r = FileRange::from_vec(rest.to_vec());
            for magic in [0x0CDB_3A2A, 0x0CDB_20DE] {
                if let Ok(body) = ocdbt::envelope(&r, magic, 1 << 20) {
                    let _ = ocdbt::parse_manifest(&body);
                    let _ = ocdbt::parse_node(&body);
                }
            }
        }
        1 => {
            let _ = ocdbt::parse_manifest(rest);
        }
        _ => {
            let _ = ocdbt::parse_node(rest);
        }
    }
});
