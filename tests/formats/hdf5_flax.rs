//! Damaged HDF5 and Flax msgpack inputs, read in-process through the library: a dense sweep of
//! flipped bytes and truncations over the fixtures, where every open and every read must
//! return (an error or data) without panicking. The binary-level sweep of safety/hardening.rs
//! covers a few offsets per file; this one covers about eight hundred per file, which only an
//! in-process loop makes affordable.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tensor2npy::input::FileRange;
use tensor2npy::source::flax::FlaxSource;
use tensor2npy::source::hdf5::Hdf5Source;
use tensor2npy::tensor::Source;

use crate::common;

/// Reads every tensor, stopping each after 1 MiB: a damaged shape can legitimately describe
/// a huge dataset of fill values, which the tool would write out but a sweep need not.
fn drain(src: &mut dyn Source) -> usize {
    let mut bytes = 0;
    for i in 0..src.len() {
        let Ok(meta) = src.meta(i) else { continue };
        let mut budget = 1usize << 20;
        let mut sink = |c: &[u8]| {
            bytes += c.len();
            budget = budget.saturating_sub(c.len() + 1);
            if budget == 0 {
                anyhow::bail!("budget")
            }
            Ok(())
        };
        let _ = if meta.dtype.item_size().is_some() {
            src.read_dense(i, 4096, &mut sink)
        } else {
            src.read_strings(i, &mut sink)
        };
    }
    bytes
}

fn sweep(file: &str, open: &dyn Fn(FileRange) -> anyhow::Result<Box<dyn Source>>) {
    let clean = std::fs::read(common::root().join(file)).unwrap();
    let n = clean.len();
    // the clean file reads in full
    let mut src = open(FileRange::from_vec(clean.clone())).unwrap();
    assert!(drain(src.as_mut()) > 0, "{file}");
    let step = (n / 400).max(1);
    // damaged inputs that still open: the sweep reaches past the header checks into the reader
    let mut opened = 0;
    for at in (0..n).step_by(step) {
        for (kind, bad) in [
            ("flipped", {
                let mut b = clean.clone();
                b[at] ^= 0x5a;
                b
            }),
            ("truncated", clean[..at].to_vec()),
        ] {
            let r = catch_unwind(AssertUnwindSafe(|| {
                if let Ok(mut src) = open(FileRange::from_vec(bad)) {
                    drain(src.as_mut());
                    return true;
                }
                false
            }));
            assert!(r.is_ok(), "{file}: byte {at} {kind}: panicked");
            opened += usize::from(r.unwrap_or(false));
        }
    }
    assert!(opened > 0, "{file}: no damaged input got past opening");
}

fn hdf5(data: FileRange) -> anyhow::Result<Box<dyn Source>> {
    Ok(Box::new(Hdf5Source::open("t", vec![], data)?))
}

fn flax(data: FileRange) -> anyhow::Result<Box<dyn Source>> {
    Ok(Box::new(FlaxSource::open("t", vec![], data, "t")?))
}

#[test]
fn damaged_hdf5_files_never_panic() {
    for f in ["types.h5", "layouts.h5", "latest.h5", "k3_bf16.weights.h5"] {
        sweep(&format!("fixtures/hdf5/{f}"), &hdf5);
    }
}

#[test]
fn damaged_flax_files_never_panic() {
    for f in ["linen.msgpack", "misc.msgpack", "chunked.msgpack"] {
        sweep(&format!("fixtures/flax/{f}"), &flax);
    }
}

/// Where `model.weights.h5` lies inside a `.keras` archive: (data start, length).
fn weights_span(bytes: &[u8]) -> (usize, usize) {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let m = z.by_name("model.weights.h5").unwrap();
    (
        m.data_start().unwrap() as usize,
        m.compressed_size() as usize,
    )
}

#[test]
fn a_flipped_byte_inside_a_keras_weights_member_fails_convert_and_verify() {
    let original = std::fs::read(common::root().join("fixtures/hdf5/k3.keras")).unwrap();
    let (start, len) = weights_span(&original);
    // In-process, a byte every 97 through the whole member: each is caught, none panics.
    let mut caught = 0;
    for pos in (start..start + len).step_by(97) {
        let mut bad = original.clone();
        bad[pos] ^= 0x10;
        let dir = common::tempdir();
        let path = dir.path().join("m.keras");
        std::fs::write(&path, &bad).unwrap();
        let opts = tensor2npy::source::OpenOptions::default();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut src = tensor2npy::source::open(&path, &opts)?;
            for i in 0..src.len() {
                let meta = src.meta(i)?;
                if meta.dtype.item_size().is_some() {
                    src.read_dense(i, 4096, &mut |_| Ok(()))?;
                } else {
                    src.read_strings(i, &mut |_| Ok(()))?;
                }
            }
            anyhow::Ok(())
        }))
        .unwrap_or_else(|_| panic!("a flipped byte at {pos} panicked"));
        assert!(r.is_err(), "a flipped byte at {pos} went unnoticed");
        caught += 1;
    }
    assert!(caught > 50, "{caught}");

    // Through the binary: a byte in the middle of the data (a value, not the structure) fails
    // `convert` (exit 1, "Bad CRC-32", nothing written) and `verify`, as zipfile reports it.
    let mut bad = original.clone();
    bad[start + len - 64] ^= 0x01;
    let dir = common::tempdir();
    let path = dir.path().join("flipped.keras");
    std::fs::write(&path, &bad).unwrap();
    let out = dir.path().join("out.npz");
    let o = common::convert(&path, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Bad CRC-32") && err.contains("flipped.keras"),
        "{err}"
    );
    assert!(!out.exists());
    let o = std::process::Command::new(common::bin())
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Bad CRC-32"), "{err}");
    // and the untouched archive still verifies
    let o = std::process::Command::new(common::bin())
        .arg("verify")
        .arg(common::root().join("fixtures/hdf5/k3.keras"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn verify_counts_the_fletcher32_checksums_of_an_h5py_file() {
    // filters.h5 (gen_hdf5.py): `fletcher32` is 6x5 in 4x2 chunks (2x3 = 6 chunks) and
    // `gzip9_shuffle_fletcher` 9x9 in 4x4 chunks (3x3 = 9), each chunk with its Fletcher-32
    let o = std::process::Command::new(common::bin())
        .arg("verify")
        .arg(common::root().join("fixtures/hdf5/filters.h5"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("ok: 15 checksums verified, 6 tensors read"),
        "{out}"
    );
}
