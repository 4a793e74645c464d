//! zarr and Orbax inputs: every case of fixtures/zarr/manifest.json and
//! fixtures/orbax/manifest.json converted by the binary and compared bit for bit with what
//! zarr-python / Orbax returned (written by fixtures/gen_orbax.py), with the default chunk size
//! and with 64-byte chunks; every broken case exits 1 naming the file, leaving nothing behind.

mod common;

use std::process::Command;

use common::*;

fn cases(dir: &str) -> Vec<Case> {
    let v: Vec<Case> = manifest()
        .into_iter()
        .filter(|c| c.input.to_string_lossy().contains(&format!("/fixtures/{dir}/")))
        .collect();
    assert!(v.len() >= 3, "too few {dir} fixtures");
    v
}

fn run(case: &Case, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("convert")
        .arg(&case.input)
        .arg("-o")
        .arg(out)
        .args(&case.args)
        .args(extra)
        .output()
        .unwrap()
}

fn check(dir: &str) {
    let mut good = 0;
    let mut bad = 0;
    for case in cases(dir) {
        let what = format!("{} {:?}", case.input.display(), case.args);
        let tmp = tempdir();
        let out = tmp.path().join("out.npz");
        if let Some(oracle) = &case.oracle {
            let want = read_npz(oracle);
            for extra in [&[][..], &["--chunk-size", "64"][..]] {
                let o = run(&case, &out, extra);
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(o.status.success(), "{what} {extra:?}: {err}");
                assert_same_arrays(&read_npz(&out), &want, &what);
                std::fs::remove_file(&out).unwrap();
            }
            good += 1;
        } else {
            let o = run(&case, &out, &[]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{what}: {err}");
            let expected = case.error.as_deref().unwrap();
            assert!(err.contains(expected), "{what}: '{expected}' not in: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
            assert!(files_in(tmp.path()).is_empty(), "{what}: output left behind");
            bad += 1;
        }
    }
    assert!(good > 0 && bad > 0, "{dir}: {good} good and {bad} bad cases");
}

#[test]
fn zarr_fixtures_match_zarr_python() {
    check("zarr");
}

#[test]
fn zarr_list_reads_metadata_only() {
    // A group whose chunks are all gone still lists: `list` touches only metadata.
    let work = tempdir();
    let src = root().join("fixtures/zarr/group_v2.zarr");
    let dst = work.path().join("g.zarr");
    copy_tree(&src, &dst, &|name| name.starts_with('.'));
    let o = Command::new(bin())
        .args(["list", "--json"])
        .arg(&dst)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for name in ["sub/w", "dtypes/complex128", "scalar", "empty"] {
        assert!(text.contains(&format!("\"{name}\"")), "{name} not in {text}");
    }
    // converting it reads the (now absent) chunks as the fill value, as zarr does
    let out = work.path().join("o.npz");
    let o = convert(&dst, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_npz(&out);
    assert!(got["sub/w"].data.iter().all(|b| *b == 0));
}

/// Copies a folder tree, keeping only the files `keep` accepts.
fn copy_tree(src: &std::path::Path, dst: &std::path::Path, keep: &dyn Fn(&str) -> bool) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            copy_tree(&e.path(), &dst.join(&name), keep);
        } else if keep(&name) {
            std::fs::copy(e.path(), dst.join(&name)).unwrap();
        }
    }
}
