//! PyTorch Distributed Checkpoints: every case of fixtures/dcp/manifest.json (written by
//! fixtures/gen_dcp.py with torch.distributed.checkpoint) converted by the binary and compared
//! bit for bit with what `dcp.load` restored into full-size templates, with the default chunk
//! size and with 64-byte chunks; every broken case exits 1 naming the file and the tensor,
//! leaving nothing behind. Also: `list` from the metadata, the `.metadata` file as the input,
//! and the folders read from an S3 bucket.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;

fn run(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// What each broken case's error must name besides the manifest's string: the file and the
/// tensor.
fn also_named(case: &Case) -> &'static [&'static str] {
    match case.input.file_name().unwrap().to_str().unwrap() {
        "bad_missing" => &["__1_0.distcp", "is missing", "'layers/"],
        "bad_truncated" => &["__0_0.distcp", "past the end", "'2.bias'"],
        "bad_offset" => &["__0_0.distcp", "past the end", "'0.weight'"],
        "bad_overlap" => &[".metadata", "'layers/rows'", "overlap"],
        "bad_hole" => &[".metadata", "'layers/cols'", "hole"],
        other => panic!("no expectations for {other}"),
    }
}

#[test]
fn dcp_fixtures_match_dcp_load() {
    let extras: &[&[&str]] = &[&["--chunk-size", "64"], &["--chunk-size", "4"]];
    let ran = cases::run_manifest("dcp", extras, &also_named);
    assert!(ran.good >= 5 && ran.bad >= 5, "{ran:?}");
}

#[test]
fn dcp_sharded_tensors_come_out_whole_with_their_dtypes() {
    // The DTensor chunks of two ranks, one output per tensor: the shapes are the global ones.
    let want = read_npz(&root().join("fixtures/dcp/sharded.expected.npz"));
    assert_eq!(want["layers/rows"].shape, vec![5, 3]);
    assert_eq!(want["layers/cols"].shape, vec![2, 12]);
    assert_eq!(want["layers/cube"].shape, vec![2, 3, 4]);
    let o = Command::new(bin())
        .args(["list", "--json"])
        .arg(root().join("fixtures/dcp/sharded"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = v.to_string();
    for (name, dtype, shape) in [
        ("layers/rows", "float32", "[5,3]"),
        ("layers/cols", "int32", "[2,12]"),
        ("layers/half", "bfloat16", "[6,2]"),
        ("layers/rep", "float64", "[4]"),
        ("plain", "float32", "[2]"),
    ] {
        let t = find_tensor(&v, name).unwrap_or_else(|| panic!("{name} not in {text}"));
        assert_eq!(t["dtype"], dtype, "{name}: {t}");
        assert_eq!(t["shape"].to_string(), shape, "{name}: {t}");
    }
}

/// The tensor called `name` anywhere in `list --json` output.
fn find_tensor<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("name").and_then(|n| n.as_str()) == Some(name) && m.contains_key("dtype") {
                return Some(v);
            }
            m.values().find_map(|x| find_tensor(x, name))
        }
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_tensor(x, name)),
        _ => None,
    }
}

#[test]
fn the_metadata_file_itself_is_the_checkpoint() {
    let tmp = tempdir();
    let out = tmp.path().join("o.npz");
    let o = run(&root().join("fixtures/dcp/nested/.metadata"), &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // the bytes items are named in a note, not converted
    assert!(
        err.contains("non-tensor") && err.contains("optim/param_groups/0/lr"),
        "{err}"
    );
    let got = read_npz(&out);
    assert!(!got
        .keys()
        .any(|k| k == "step" || k.contains("param_groups")));
    assert_same_arrays(
        &got,
        &read_npz(&root().join("fixtures/dcp/nested.expected.npz")),
        "nested/.metadata",
    );
}

/// A sharded DCP folder and the safetensors variant read from an S3 bucket (moto's server on
/// loopback, as tests/remote.rs runs it; skipped without moto unless T2N_REQUIRE_REMOTE=1).
#[cfg(feature = "remote")]
#[test]
fn dcp_folders_from_a_bucket_convert_like_local_copies() {
    let f = |p: &str| root().join("fixtures/dcp").join(p);
    let mut args = Vec::new();
    s3::uploads(&f("sharded"), "s", &mut args);
    s3::uploads(&f("hf_sharded"), "h", &mut args);
    let Some(server) = s3::S3::start(&args) else {
        return;
    };
    for (url, oracle) in [
        ("s3://t2n/s", "sharded.expected.npz"),
        ("s3://t2n/h", "hf_sharded.expected.npz"),
    ] {
        server.assert_converts(url, &[], &f(oracle));
    }
}

#[test]
fn dcp_list_reads_the_metadata_only() {
    // Every .distcp byte zeroed (sizes kept): `list` still shows every tensor, since it reads
    // only `.metadata` and the files' sizes; `convert` finds no torch.save archive and says where.
    let work = tempdir();
    let src = root().join("fixtures/dcp/sharded");
    let dst = work.path().join("ckpt");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        if name.to_string_lossy().ends_with(".distcp") {
            let n = std::fs::metadata(&p).unwrap().len() as usize;
            std::fs::write(dst.join(&name), vec![0u8; n]).unwrap();
        } else {
            std::fs::copy(&p, dst.join(&name)).unwrap();
        }
    }
    let o = Command::new(bin())
        .args(["list", "--json"])
        .arg(&dst)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for name in [
        "layers/rows",
        "layers/cols",
        "layers/half",
        "layers/cube",
        "layers/rep",
        "plain",
    ] {
        assert!(find_tensor(&v, name).is_some(), "{name} not listed: {v}");
    }
    let out = work.path().join("o.npz");
    let o = run(&dst, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not a torch.save archive") && err.contains(".distcp"),
        "{err}"
    );
    assert!(!out.exists());
}
