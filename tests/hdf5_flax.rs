//! Damaged HDF5 and Flax msgpack inputs, read in-process through the library: a dense sweep of
//! flipped bytes and truncations over the fixtures, where every open and every read must
//! return (an error or data) without panicking. The binary-level sweep in hardening.rs covers
//! a few offsets per file; this one covers about eight hundred per file, which only an
//! in-process loop makes affordable.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tensor2npy::input::FileRange;
use tensor2npy::source::flax::FlaxSource;
use tensor2npy::source::hdf5::Hdf5Source;
use tensor2npy::tensor::Source;

mod common;

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
