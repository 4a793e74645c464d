//! Regressions from the adversarial mutant sweep (truncations, flipped bytes, length and count
//! fields set to 0, 2^31, 2^63, 2^64 - 1, folder members removed or replaced) over every
//! fixture: each mutant here once panicked, aborted, hung or passed damaged bytes; now
//! `convert`, `list` and `verify` refuse it with exit 1, a message naming the input, and
//! nothing written.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn run_with_deadline(args: &[&OsStr]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().ok();
            child.wait().ok();
            panic!("tensor2npy {args:?} ran past 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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
