//! NumPy files as input beyond the fixture manifest: an .npz split into a directory and
//! re-packed stored or compressed (values as np.load returns them), stored little-endian C-order
//! members offered for a kernel copy and no others, a flipped byte in a member caught by its
//! CRC-32 (convert and verify), and deflated members bounded by --max-decompressed.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tensor2npy::source::{open, OpenOptions};

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/numpy").join(name)
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn methods(path: &Path) -> Vec<zip::CompressionMethod> {
    let mut z = zip::ZipArchive::new(fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| z.by_index_raw(i).unwrap().compression())
        .collect()
}

#[test]
fn an_npz_splits_into_a_directory_and_repacks_stored_or_compressed() {
    let want = read_npz(&fixture("arrays_compressed.npz.expected.npz"));
    let dir = tempdir();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let input = s(&fixture("arrays_compressed.npz"));
    // split: one .npy per array ('/' in a key makes a subdirectory)
    let split = dir.path().join("split");
    ok(&run(&["convert", &input, "-o", &format!("{}/", s(&split))]));
    assert_same_arrays(&read_npy_dir(&split), &want, "split");
    assert!(split.join("layer/0/kernel.npy").is_file());
    // decompress: a stored archive whose members can be memory-mapped
    let stored = dir.path().join("stored.npz");
    ok(&run(&["convert", &input, "-o", &s(&stored)]));
    assert_same_arrays(&read_npz(&stored), &want, "stored");
    assert!(methods(&stored)
        .iter()
        .all(|m| *m == zip::CompressionMethod::Stored));
    // re-compress, and back: the same values every way, and a stored archive of little-endian
    // C-order arrays converts to itself byte for byte
    let packed = dir.path().join("packed.npz");
    ok(&run(&[
        "convert",
        &s(&stored),
        "--compress",
        "-o",
        &s(&packed),
    ]));
    assert!(methods(&packed).contains(&zip::CompressionMethod::Deflated));
    assert_same_arrays(&read_npz(&packed), &want, "re-compressed");
    let again = dir.path().join("again.npz");
    ok(&run(&["convert", &s(&packed), "-o", &s(&again)]));
    assert_eq!(fs::read(&again).unwrap(), fs::read(&stored).unwrap());
    // merge: two inputs into one archive, each under its stem
    let merged = dir.path().join("merged.npz");
    ok(&run(&[
        "convert",
        &s(&fixture("float32.npy")),
        &s(&fixture("v2.npy")),
        "-o",
        &s(&merged),
    ]));
    let m = read_npz(&merged);
    assert_eq!(m.keys().collect::<Vec<_>>(), ["float32/float32", "v2/v2"]);
}

#[test]
fn only_stored_little_endian_c_order_arrays_are_copied_straight() {
    let opts = OpenOptions::default();
    let src = open(&fixture("arrays.npz"), &opts).unwrap();
    let mut straight = Vec::new();
    for i in 0..src.len() {
        if src.raw_range(i).is_some() {
            straight.push(src.meta(i).unwrap().name);
        }
    }
    for name in ["float32", "int8", "complex128", "scalar", "layer/0/kernel"] {
        assert!(straight.iter().any(|n| n == name), "{name}: {straight:?}");
    }
    for name in ["be/float32", "fortran/f4", "fortran/i2", "bytes"] {
        assert!(!straight.iter().any(|n| n == name), "{name}: {straight:?}");
    }
    let src = open(
        &fixture("arrays_compressed.npz"),
        &OpenOptions {
            max_decompressed: 1 << 30,
            ..Default::default()
        },
    )
    .unwrap();
    assert!((0..src.len()).all(|i| src.raw_range(i).is_none()));
    // a plain .npy is a range of its file
    let src = open(&fixture("float32.npy"), &opts).unwrap();
    assert_eq!(src.raw_range(0).unwrap().len(), 60);
}

#[test]
fn a_flipped_byte_in_a_member_fails_convert_and_verify() {
    for (name, member) in [
        ("arrays.npz", "float32.npy"),
        ("arrays_compressed.npz", "float32.npy"),
    ] {
        let original = fs::read(fixture(name)).unwrap();
        let (start, len) = {
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(&original)).unwrap();
            let m = z.by_name(member).unwrap();
            (
                m.data_start().unwrap() as usize,
                m.compressed_size() as usize,
            )
        };
        let mut bad = original.clone();
        bad[start + len - 3] ^= 0x01;
        let dir = tempdir();
        let path = dir.path().join(name);
        fs::write(&path, &bad).unwrap();
        let out = dir.path().join("out.npz");
        let o = convert(&path, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(name) && err.contains(member), "{name}: {err}");
        assert!(!out.exists());
        let o = run(&["verify", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}: verify");
        if name == "arrays.npz" {
            assert!(String::from_utf8_lossy(&o.stderr).contains("Bad CRC-32"));
        }
    }
    ok(&run(&["verify", fixture("arrays.npz").to_str().unwrap()]));
}

#[test]
fn deflated_members_are_bounded_by_max_decompressed() {
    let input = fixture("fortran_only.npz");
    let dir = tempdir();
    let out = dir.path().join("out.npz");
    let o = run(&[
        "convert",
        input.to_str().unwrap(),
        "--max-decompressed",
        "4K",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("big.npy") && err.contains("--max-decompressed"),
        "{err}"
    );
    assert!(!out.exists());
}

/// A small deterministic generator for the mutation sweep.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mutated_and_truncated_numpy_files_are_errors_or_values_never_panics() {
    use tensor2npy::input::FileRange;
    use tensor2npy::source::numpy::NumpySource;
    use tensor2npy::tensor::Source;
    let drain = |bytes: Vec<u8>| {
        let range = FileRange::from_vec(bytes);
        if let Ok(mut src) = NumpySource::open("m", vec![], &range, "m", 1 << 20) {
            for i in 0..src.len() {
                let meta = src.meta(i).unwrap();
                let _ = if meta.dtype.item_size().is_some() {
                    src.read_dense(i, 64, &mut |_: &[u8]| Ok(()))
                } else {
                    src.read_strings(i, &mut |_: &[u8]| Ok(()))
                };
            }
        }
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for name in [
        "arrays.npz",
        "arrays_compressed.npz",
        "fortran_f4.npy",
        "bytes.npy",
        "v3.npy",
    ] {
        let original = fs::read(fixture(name)).unwrap();
        for len in (0..original.len()).step_by(7) {
            drain(original[..len].to_vec());
        }
        for _ in 0..300 {
            let mut m = original.clone();
            for _ in 0..1 + xorshift(&mut seed) % 3 {
                let at = (xorshift(&mut seed) % m.len() as u64) as usize;
                m[at] = xorshift(&mut seed) as u8;
            }
            drain(m);
        }
    }
}

#[test]
fn numpy_more_fixtures_match_np_load() {
    // member names that are paths, positional savez, many members; a structured dtype (3.0
    // header, non-ASCII fields), a header over np.load's limit and an np.memmap raw file refused
    let ran = cases::run_manifest(
        "numpy_more",
        &[&["--chunk-size", "64"]],
        &cases::nothing_else,
    );
    assert!(ran.good >= 3 && ran.bad >= 3, "{ran:?}");
}
