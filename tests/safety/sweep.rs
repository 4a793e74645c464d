//! Regressions from the adversarial mutant sweep (truncations, flipped bytes, length and count
//! fields set to 0, 2^31, 2^63, 2^64 - 1, folder members removed or replaced) over every
//! fixture: each mutant here once panicked, aborted, hung or passed damaged bytes; now
//! `convert`, `list` and `verify` refuse it with exit 1, a message naming the input, and
//! nothing written.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;

/// [`hostile::run_with_deadline`] with 20 s.
fn run_with_deadline(args: &[&OsStr]) -> Output {
    super::hostile::run_with_deadline(args, Duration::from_secs(20))
}

/// `convert`, `list` and `verify` of `input` all exit 1 naming the input and each of `what`,
/// and `convert` leaves nothing in its output folder.
fn refused_everywhere(input: &Path, what: &[&str]) {
    let out_dir = tempdir();
    let out = out_dir.path().join("o.npz");
    let name = input.file_name().unwrap().to_string_lossy().into_owned();
    for cmd in ["convert", "list", "verify"] {
        let mut argv: Vec<&OsStr> = vec![OsStr::new(cmd), input.as_os_str()];
        if cmd == "convert" {
            argv.extend([OsStr::new("-o"), out.as_os_str()]);
        }
        let o = run_with_deadline(&argv);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(!err.contains("panicked"), "{cmd}: {err}");
        assert!(err.contains(&name), "{cmd}: {name} not in: {err}");
        for w in what {
            assert!(err.contains(w), "{cmd}: {w:?} not in: {err}");
        }
    }
    assert!(files_in(out_dir.path()).is_empty(), "left behind");
}

/// Copies a fixture folder into `to`.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let t = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &t);
        } else {
            fs::copy(&p, &t).unwrap();
        }
    }
}

/// A fixture file with `edit` applied to its text.
fn edited(dir: &Path, rel: &str, edit: impl Fn(&str) -> String) {
    let p = dir.join(rel);
    let text = fs::read_to_string(&p).unwrap();
    let new = edit(&text);
    assert_ne!(new, text, "{rel}: the edit changed nothing");
    fs::write(&p, new).unwrap();
}

#[test]
fn a_zarr_shape_whose_bytes_pass_64_bits_is_refused() {
    // 2^61 x 5 elements of 4 bytes: the element count fits in 64 bits, the byte count does not.
    let dir = tempdir();
    let z = dir.path().join("big.zarr");
    copy_tree(&root().join("fixtures/zarr/v2_raw.zarr"), &z);
    edited(&z, ".zarray", |t| {
        t.replacen("    7,", "    2305843009213693952,", 1)
    });
    refused_everywhere(&z, &[".zarray", "64 bits"]);
}

/// A copy of the zarr group fixture whose `dtypes/uint8` and `dtypes/int8` arrays (one byte an
/// element) each claim 2^63 elements: each fits in 64 bits, their bytes together do not.
fn zarr_group_of_two_2_63_byte_arrays(dir: &Path, name: &str) -> std::path::PathBuf {
    let z = dir.join(name);
    copy_tree(&root().join("fixtures/zarr/group_v2.zarr"), &z);
    for a in ["dtypes/uint8/.zarray", "dtypes/int8/.zarray"] {
        edited(&z, a, |t| {
            let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
            v["shape"] = serde_json::json!([1u64 << 63]);
            v.to_string()
        });
    }
    z
}

/// Exit 1 naming each of `what`, no panic, nothing in `out_dir`.
fn convert_refused(args: &[&OsStr], out_dir: &Path, what: &[&str]) {
    let o = run_with_deadline(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in what {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert!(files_in(out_dir).is_empty(), "left behind");
}

#[test]
fn tensors_whose_bytes_add_up_past_64_bits_are_refused_before_anything_is_written() {
    // One input: the sum over its tensors overflowed in `convert`'s survey (a panic in debug
    // builds). `list` reads metadata only and shows them.
    let dir = tempdir();
    let z = zarr_group_of_two_2_63_byte_arrays(dir.path(), "big.zarr");
    let out_dir = tempdir();
    let out = out_dir.path().join("o.npz");
    let args = [
        OsStr::new("convert"),
        z.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ];
    convert_refused(&args, out_dir.path(), &["big.zarr", "2^64 bytes"]);
    let o = run_with_deadline(&[OsStr::new("list"), z.as_os_str()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Two inputs of one 2^63-byte array each: the total over the inputs overflowed too (before
    // the output is created; here its folder is a file, so nothing is written either way).
    let (a, b) = (dir.path().join("a.zarr"), dir.path().join("b.zarr"));
    for (p, drop) in [(&a, "dtypes/int8"), (&b, "dtypes/uint8")] {
        copy_tree(&z, p);
        fs::remove_dir_all(p.join(drop)).unwrap();
    }
    let not_dir = out_dir.path().join("file");
    fs::write(&not_dir, b"").unwrap();
    let out = not_dir.join("o.npz");
    let args = [
        OsStr::new("convert"),
        a.as_os_str(),
        b.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ];
    let o = run_with_deadline(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // It fails where the output is made, past the totals (which overflowed before).
    assert!(err.contains("o.npz") && !err.contains("2^64"), "{err}");
    assert_eq!(files_in(out_dir.path()), vec![not_dir]);
}

#[test]
fn an_hdf5_dimension_past_its_maximum_is_refused() {
    // One flipped byte in the dataspace of filters.h5's `lzf` dataset (20 x 15, chunked, most
    // chunks then unallocated) made it 2.5e16 x 15 rows of fill value: `convert` and `verify`
    // ran for hours. h5py refuses it ("greater than maxdim size").
    let mut bytes = fs::read(root().join("fixtures/hdf5/filters.h5")).unwrap();
    let mut dataspace = vec![1u8, 2, 1, 0, 0, 0, 0, 0]; // version 1, rank 2, max dims present
    for d in [20u64, 15, 20, 15] {
        dataspace.extend(d.to_le_bytes());
    }
    let at = bytes
        .windows(dataspace.len())
        .position(|w| w == dataspace)
        .expect("the lzf dataset's dataspace");
    bytes[at + 14] ^= 0x5a;
    let dir = tempdir();
    let bad = dir.path().join("filters.h5");
    fs::write(&bad, &bytes).unwrap();
    refused_everywhere(&bad, &["'lzf'", "past its maximum 20"]);
}
