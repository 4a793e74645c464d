//! The command-line contract: output kinds, naming, selection, exit codes, atomic writes,
//! refusing to clobber inputs, determinism, and the .npz container details NumPy relies on.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use std::process::{Command, Output};

use common::*;

fn t2n() -> Command {
    Command::new(bin())
}

/// `t2n()....assert().success()` (or `.code(n)`): runs the command and checks how it ended,
/// showing its standard error when that is not as expected.
trait Assert {
    fn assert(&mut self) -> Ran;
}

impl Assert for Command {
    fn assert(&mut self) -> Ran {
        Ran(self.output().unwrap())
    }
}

struct Ran(Output);

impl Ran {
    fn success(self) -> Ran {
        self.code(0)
    }

    fn code(self, want: i32) -> Ran {
        assert_eq!(self.0.status.code(), Some(want), "{}", stderr_of(&self.0));
        self
    }
}

fn fixture(p: &str) -> PathBuf {
    root().join("fixtures").join(p)
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn directory_output_holds_one_npy_per_tensor_with_slashes_as_subdirectories() {
    let dir = tempdir();
    let out = dir.path().join("weights");
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let want = read_npz(&fixture("safetensors/numeric.expected.npz"));
    assert_same_arrays(&read_npy_dir(&out), &want, "directory output");
    assert!(out.join("nested/dir/weight.npy").is_file());
    assert!(out.join("ünïcödé/名前.npy").is_file());
    assert_eq!(
        files_in(dir.path())
            .iter()
            .filter(|p| p.to_string_lossy().contains(".tensor2npy-"))
            .count(),
        0
    );
}

#[test]
fn a_leading_slash_survives_in_npz_and_is_escaped_in_directories() {
    let dir = tempdir();
    let npz = dir.path().join("s.npz");
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/slash.safetensors"))
        .arg("-o")
        .arg(&npz)
        .assert()
        .success();
    let got = read_npz(&npz);
    assert!(got.contains_key("/abs/w"), "{:?}", got.keys());
    let d = dir.path().join("d");
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/slash.safetensors"))
        .arg("-o")
        .arg(&d)
        .assert()
        .success();
    assert!(d.join("%2Fabs/w.npy").is_file());
    assert!(d.join("plain.npy").is_file());
}

#[test]
fn single_npy_output_needs_exactly_one_tensor() {
    let dir = tempdir();
    let npy = dir.path().join("w.npy");
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .args(["--select", "f32", "-o"])
        .arg(&npy)
        .assert()
        .success();
    let want = read_npz(&fixture("safetensors/numeric.expected.npz"));
    assert_eq!(read_npy(&npy), want["f32"]);

    let o = t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .arg("-o")
        .arg(dir.path().join("x.npy"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("exactly one tensor"));
    assert!(!dir.path().join("x.npy").exists());
}

#[test]
fn stdout_streams_one_npy_or_an_npz_with_to_npz() {
    let o = t2n()
        .arg("convert")
        .arg(fixture("safetensors/single.safetensors"))
        .args(["-o", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let want = read_npz(&fixture("safetensors/single.expected.npz"));
    assert_eq!(parse_npy(&o.stdout), want["weight"]);

    let o = t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .args(["-o", "-", "--to", "npz"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let got = read_npz_from(std::io::Cursor::new(o.stdout));
    assert_same_arrays(
        &got,
        &read_npz(&fixture("safetensors/numeric.expected.npz")),
        "stdout npz",
    );

    let o = t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .args(["-o", "-"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

#[test]
fn standard_input_is_sniffed_like_a_file() {
    // Standard input is a pipe, as from `cat FILE |`.
    let mut child = t2n()
        .args(["convert", "-", "-o", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = fs::read(fixture("tensorproto/st_float16_2x3.pb")).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let want = read_npz(&fixture("tensorproto/st_float16_2x3.expected.npz"));
    assert_eq!(parse_npy(&o.stdout), want["st_float16_2x3"]);
}

fn copy_to(dir: &Path, from: &str, name: &str) -> PathBuf {
    let p = dir.join(name);
    fs::copy(fixture(from), &p).unwrap();
    p
}

#[test]
fn without_o_each_input_becomes_stem_npz_beside_it_or_a_directory_with_to_npy() {
    let dir = tempdir();
    let a = copy_to(
        dir.path(),
        "safetensors/single.safetensors",
        "model.safetensors",
    );
    let b = copy_to(dir.path(), "tfrecord/mixed.tfrecord.gz", "data.tfrecord.gz");
    t2n().arg("convert").arg(&a).arg(&b).assert().success();
    assert_same_arrays(
        &read_npz(&dir.path().join("model.npz")),
        &read_npz(&fixture("safetensors/single.expected.npz")),
        "model.npz",
    );
    let got = read_npz(&dir.path().join("data.npz"));
    let want: std::collections::BTreeMap<_, _> =
        read_npz(&fixture("tfrecord/mixed_tfrecord_gz.expected.npz"))
            .into_iter()
            .map(|(k, v)| (k.replacen("mixed/", "data/", 1), v))
            .collect();
    assert_same_arrays(&got, &want, "data.npz");

    t2n()
        .arg("convert")
        .arg(&a)
        .args(["--to", "npy"])
        .assert()
        .success();
    assert!(dir.path().join("model/weight.npy").is_file());
}

#[test]
fn several_inputs_share_one_npz_with_stem_prefixes_or_batch_into_a_directory() {
    let dir = tempdir();
    let out = dir.path().join("all.npz");
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/single.safetensors"))
        .arg(fixture("tensorproto/mtp_uint16.pb"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let got = read_npz(&out);
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        ["mtp_uint16/mtp_uint16", "single/weight"]
    );

    let batch = dir.path().join("batch");
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/single.safetensors"))
        .arg(fixture("tensorproto/mtp_uint16.pb"))
        .arg("-o")
        .arg(&batch)
        .args(["--to", "npz"])
        .assert()
        .success();
    assert_eq!(
        read_npz(&batch.join("single.npz"))
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["weight"]
    );
    assert_eq!(
        read_npz(&batch.join("mtp_uint16.npz"))
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["mtp_uint16"]
    );
}

#[test]
fn select_and_exclude_globs_and_a_select_matching_nothing_is_an_error() {
    let dir = tempdir();
    let out = dir.path().join("o.npz");
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .args([
            "--select",
            "f*",
            "--select",
            "nested/*",
            "--exclude",
            "f16",
            "-o",
        ])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(
        read_npz(&out).keys().cloned().collect::<Vec<_>>(),
        ["f32", "f64", "nested/dir/weight"]
    );

    let out2 = dir.path().join("none.npz");
    let o = t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .args(["--select", "nope*", "-o"])
        .arg(&out2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr_of(&o).contains("--select 'nope*' matches no tensor"));
    assert!(!out2.exists());
}

#[test]
fn a_failed_conversion_leaves_an_existing_output_untouched_and_no_temporary_files() {
    let dir = tempdir();
    let out = dir.path().join("o.npz");
    fs::write(&out, b"previous contents").unwrap();
    let o = t2n()
        .arg("convert")
        .arg(fixture("bad/st_truncated.safetensors"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fs::read(&out).unwrap(), b"previous contents");
    assert_eq!(files_in(dir.path()), vec![out.clone()]);

    // a failure in the middle of writing (a corrupt checkpoint shard) too
    let ck = dir.path().join("ck");
    fs::create_dir(&ck).unwrap();
    fs::copy(fixture("ckpt/raw/ckpt.index"), ck.join("ckpt.index")).unwrap();
    let mut data = fs::read(fixture("ckpt/raw/ckpt.data-00000-of-00001")).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x55;
    fs::write(ck.join("ckpt.data-00000-of-00001"), data).unwrap();
    let outdir = dir.path().join("out_dir");
    let o = t2n()
        .arg("convert")
        .arg(ck.join("ckpt"))
        .arg("-o")
        .arg(&outdir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert!(!outdir.exists());
    let leftovers: Vec<_> = files_in(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tensor2npy-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_existing_output_directory_gains_and_replaces_only_the_files_written() {
    let dir = tempdir();
    let out = dir.path().join("w");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("other.npy"), b"x").unwrap();
    fs::write(out.join("weight.npy"), b"old").unwrap();
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/single.safetensors"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(fs::read(out.join("other.npy")).unwrap(), b"x");
    assert_ne!(fs::read(out.join("weight.npy")).unwrap(), b"old");
    assert!(out.join("weight.npy").is_file());
}

#[test]
fn refuses_to_write_over_an_input() {
    let dir = tempdir();
    let input = copy_to(dir.path(), "safetensors/single.safetensors", "m.npz");
    let before = fs::read(&input).unwrap();
    let o = t2n()
        .arg("convert")
        .arg(&input)
        .arg("-o")
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("refusing to write over the input"));
    assert_eq!(fs::read(&input).unwrap(), before);
    // a directory output into the input's own directory adds its files beside the input
    let o = t2n()
        .arg("convert")
        .arg(&input)
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_eq!(fs::read(&input).unwrap(), before);
    assert!(dir.path().join("weight.npy").is_file());
}

#[test]
fn the_same_input_gives_byte_identical_output() {
    let dir = tempdir();
    for (i, extra) in [[""; 0].as_slice(), &["--compress"]].iter().enumerate() {
        let a = dir.path().join(format!("a{i}.npz"));
        let b = dir.path().join(format!("b{i}.npz"));
        for p in [&a, &b] {
            t2n()
                .arg("convert")
                .arg(fixture("ckpt/tf2/ckpt-1.index"))
                .args(*extra)
                .arg("-o")
                .arg(p)
                .assert()
                .success();
        }
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    }
}

/// Walks the zip's local headers and central directory: every member is stored (or deflated
/// with --compress), carries a zip64 extra field, and is dated 1980-01-01 00:00.
fn zip_members(bytes: &[u8]) -> Vec<(String, u16, bool, u16, u16)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p + 30 <= bytes.len() && bytes[p..p + 4] == [0x50, 0x4b, 0x03, 0x04] {
        let u16at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let method = u16at(p + 8);
        let (time, date) = (u16at(p + 10), u16at(p + 12));
        let name_len = u16at(p + 26) as usize;
        let extra_len = u16at(p + 28) as usize;
        let name = String::from_utf8(bytes[p + 30..p + 30 + name_len].to_vec()).unwrap();
        let extra = &bytes[p + 30 + name_len..p + 30 + name_len + extra_len];
        let mut zip64 = false;
        let mut e = 0;
        let mut data_size = None;
        while e + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[e], extra[e + 1]]);
            let len = u16::from_le_bytes([extra[e + 2], extra[e + 3]]) as usize;
            if id == 1 {
                zip64 = true;
                data_size = Some(u64::from_le_bytes(
                    extra[e + 12..e + 20].try_into().unwrap(),
                ));
            }
            e += 4 + len;
        }
        assert_eq!(
            u32at(p + 18),
            0xffff_ffff,
            "{name}: 32-bit size field defers to zip64"
        );
        out.push((name, method, zip64, time, date));
        p += 30 + name_len + extra_len + data_size.expect("zip64 extra carries the size") as usize;
    }
    assert!(!out.is_empty());
    out
}

#[test]
fn npz_members_are_zip64_stored_with_fixed_timestamps_and_deflated_with_compress() {
    let dir = tempdir();
    let plain = dir.path().join("p.npz");
    let packed = dir.path().join("c.npz");
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .arg("-o")
        .arg(&plain)
        .assert()
        .success();
    t2n()
        .arg("convert")
        .arg(fixture("safetensors/numeric.safetensors"))
        .arg("--compress")
        .arg("-o")
        .arg(&packed)
        .assert()
        .success();
    for (path, method) in [(&plain, 0), (&packed, 8)] {
        let members = zip_members(&fs::read(path).unwrap());
        assert_eq!(members.len(), 18);
        for (name, m, zip64, time, date) in members {
            assert!(name.ends_with(".npy"));
            assert_eq!(m, method, "{name}");
            assert!(zip64, "{name} has no zip64 extra field");
            assert_eq!((time, date), (0, 0x21), "{name}: 1980-01-01 00:00:00");
        }
    }
    assert_same_arrays(&read_npz(&packed), &read_npz(&plain), "compressed");
}

#[test]
fn exit_status_2_for_usage_errors_and_0_for_help() {
    t2n().arg("convert").arg("--bogus").assert().code(2);
    t2n()
        .args(["convert", "x", "--cast", "c64=f32"])
        .assert()
        .code(2);
    t2n().arg("convert").assert().code(2);
    t2n().arg("--help").assert().code(0);
    t2n().args(["convert", "--help"]).assert().code(0);
    let o = t2n()
        .args(["convert", "/nonexistent/file.safetensors"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr_of(&o).contains("/nonexistent/file.safetensors"));
}

#[test]
fn list_json_follows_the_contract_schema() {
    let o = t2n()
        .args(["list", "--json"])
        .arg(fixture("safetensors/extended.safetensors"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    let want = read_npz(&fixture("safetensors/extended.expected.npz"));
    assert_eq!(rows.len(), want.len());
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let w = &want[name];
        assert_eq!(row["npy_dtype"], w.descr.as_str(), "{name}");
        let shape: Vec<u64> = row["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(shape, w.shape);
        assert_eq!(row["kind"], "dense");
        assert!(row["source"]
            .as_str()
            .unwrap()
            .ends_with("extended.safetensors"));
        assert!(row["bytes"].is_u64());
    }
    let bf16 = rows.iter().find(|r| r["name"] == "bf16").unwrap();
    assert_eq!(bf16["dtype"], "bfloat16");
    assert_eq!(bf16["bytes"], 14);
}

#[test]
fn list_reads_checkpoints_and_hides_the_object_graph_unless_asked() {
    let o = t2n()
        .args(["list", "--json"])
        .arg(fixture("ckpt/tf2/ckpt-1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let want = read_npz(&fixture("ckpt/tf2.expected.npz"));
    assert_eq!(names, want.keys().map(String::as_str).collect::<Vec<_>>());
    let s = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "model/s/.ATTRIBUTES/VARIABLE_VALUE")
        .unwrap();
    assert_eq!(s["kind"], "string");
    assert_eq!(s["npy_dtype"], "|S2");

    let o = t2n()
        .args(["list", "--include-internal"])
        .arg(fixture("ckpt/tf2/ckpt-1.index"))
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("_CHECKPOINTABLE_OBJECT_GRAPH"), "{text}");
    assert!(text.lines().next().unwrap().starts_with("NAME"));
}

#[test]
fn strings_ending_in_nul_warn_unless_quiet() {
    let dir = tempdir();
    let o = t2n()
        .arg("convert")
        .arg(fixture("tensorproto/st_string_trailing_nul.pb"))
        .arg("-o")
        .arg(dir.path().join("a.npz"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        stderr_of(&o).contains("warning") && stderr_of(&o).contains("NUL"),
        "{}",
        stderr_of(&o)
    );
    let o = t2n()
        .arg("convert")
        .arg("-q")
        .arg(fixture("tensorproto/st_string_trailing_nul.pb"))
        .arg("-o")
        .arg(dir.path().join("b.npz"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(stderr_of(&o), "");
}

#[test]
fn unsupported_dtypes_fail_naming_the_tensor_unless_skipped() {
    let dir = tempdir();
    let o = t2n()
        .arg("convert")
        .arg(fixture("bad/tp_resource.pb"))
        .arg("-o")
        .arg(dir.path().join("a.npz"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr_of(&o).contains("tensor 'tp_resource'") && stderr_of(&o).contains("resource"));
    let o = t2n()
        .arg("convert")
        .arg("--skip-unsupported")
        .arg(fixture("bad/tp_resource.pb"))
        .arg("-o")
        .arg(dir.path().join("b.npz"))
        .output()
        .unwrap();
    // Skipping every tensor leaves nothing to write: an error, as `--exclude '*'` is (issue 31).
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert!(!dir.path().join("b.npz").exists());
    assert!(stderr_of(&o).contains("--skip-unsupported skipped every tensor (1)"));
}

#[test]
fn checkpoint_variant_entries_are_skipped_with_a_note_or_refused_under_strict() {
    let dir = tempdir();
    let o = t2n()
        .arg("convert")
        .arg(fixture("ckpt/iterator/ckpt-1"))
        .arg("-o")
        .arg(dir.path().join("a.npz"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("skipped 1 variant entry")
            && stderr_of(&o).contains("'it/.ATTRIBUTES/ITERATOR_STATE'"),
        "{}",
        stderr_of(&o)
    );
    let o = t2n()
        .arg("convert")
        .arg("--strict")
        .arg(fixture("ckpt/iterator/ckpt-1"))
        .arg("-o")
        .arg(dir.path().join("b.npz"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!dir.path().join("b.npz").exists());
}

/// Copies a checkpoint directory so that a test can damage it.
fn copy_ckpt(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let src = fixture(&format!("ckpt/{name}"));
    for e in fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let index = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "index"))
        .unwrap();
    let prefix = index.with_extension("");
    (dir, prefix)
}

fn convert_fails(prefix: &Path, want: &str) -> String {
    let out = prefix.parent().unwrap().join("out.npz");
    let o = t2n()
        .arg("convert")
        .arg(prefix)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(want), "wanted '{want}' in: {err}");
    assert!(!err.contains("panicked"));
    assert!(!out.exists());
    err
}

#[test]
fn every_flipped_data_byte_of_a_checkpoint_is_caught_naming_the_tensor() {
    let (dir, prefix) = copy_ckpt("raw");
    let data_path = dir.path().join("ckpt.data-00000-of-00001");
    let clean = fs::read(&data_path).unwrap();
    for i in 0..clean.len() {
        let mut bad = clean.clone();
        bad[i] ^= 0x01;
        fs::write(&data_path, &bad).unwrap();
        let err = convert_fails(&prefix, "checksum mismatch");
        assert!(err.contains("tensor '"), "{err}");
    }
    // --no-verify reads the damaged bytes without complaint
    let mut bad = clean.clone();
    bad[0] ^= 0x01;
    fs::write(&data_path, &bad).unwrap();
    t2n()
        .arg("convert")
        .arg("--no-verify")
        .arg(&prefix)
        .arg("-o")
        .arg(dir.path().join("nv.npz"))
        .assert()
        .success();
}

#[test]
fn damaged_checkpoint_indexes_and_shards_give_clear_errors() {
    let (dir, prefix) = copy_ckpt("tf1_sharded");
    let index = prefix.with_extension("ckpt.index");
    let clean = fs::read(&index).unwrap();
    // wrong magic / truncated
    fs::write(&index, &clean[..clean.len() - 3]).unwrap();
    convert_fails(&prefix, "magic");
    // a flipped byte anywhere in the index: a block checksum or the footer catches it
    for i in 0..clean.len() {
        let mut bad = clean.clone();
        bad[i] ^= 0x20;
        fs::write(&index, &bad).unwrap();
        let out = dir.path().join("o.npz");
        let o = t2n()
            .arg("convert")
            .arg(&prefix)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "byte {i}: {}", stderr_of(&o));
        assert!(!stderr_of(&o).contains("panicked"));
        assert!(!out.exists());
    }
    fs::write(&index, &clean).unwrap();
    // a missing shard, named
    let shard = dir.path().join("model.ckpt.data-00001-of-00002");
    let saved = fs::read(&shard).unwrap();
    fs::remove_file(&shard).unwrap();
    convert_fails(&prefix, "model.ckpt.data-00001-of-00002");
    // an entry reaching past its shard's end
    fs::write(&shard, &saved[..saved.len() - 1]).unwrap();
    convert_fails(&prefix, "reaches past the end");
}

#[test]
fn a_checkpoint_is_accepted_as_prefix_index_path_or_savedmodel_directory() {
    let want = read_npz(&fixture("ckpt/tf1_partitioned.expected.npz"));
    for arg in [
        "ckpt/tf1_partitioned/model.ckpt",
        "ckpt/tf1_partitioned/model.ckpt.index",
    ] {
        let dir = tempdir();
        let out = dir.path().join("o.npz");
        t2n()
            .arg("convert")
            .arg(fixture(arg))
            .arg("-o")
            .arg(&out)
            .assert()
            .success();
        assert_same_arrays(&read_npz(&out), &want, arg);
    }
    let dir = tempdir();
    let out = dir.path().join("o.npz");
    t2n()
        .args(["convert", "--from", "savedmodel"])
        .arg(fixture("ckpt/saved_model"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_same_arrays(
        &read_npz(&out),
        &read_npz(&fixture("ckpt/saved_model.expected.npz")),
        "savedmodel",
    );
}

#[test]
fn a_copied_tf1_checkpoint_directory_whose_checkpoint_file_names_an_absolute_path_is_read() {
    // TF1's Saver writes absolute paths into `checkpoint`; after the directory is copied
    // elsewhere the path names the old place, and the prefix of that name in the directory is
    // read.
    let (dir, _prefix) = copy_ckpt("tf1_sharded");
    fs::write(
        dir.path().join("checkpoint"),
        "model_checkpoint_path: \"/nonexistent/train_dir/model.ckpt\"\n\
         all_model_checkpoint_paths: \"/nonexistent/train_dir/model.ckpt\"\n",
    )
    .unwrap();
    let out = tempdir();
    let o = out.path().join("o.npz");
    t2n()
        .arg("convert")
        .arg(dir.path())
        .arg("-o")
        .arg(&o)
        .assert()
        .success();
    assert_same_arrays(
        &read_npz(&o),
        &read_npz(&fixture("ckpt/tf1_sharded.expected.npz")),
        "copied checkpoint directory",
    );
}

#[test]
fn tfrecord_checksum_errors_name_the_record_and_its_byte_offset() {
    let dir = tempdir();
    let o = t2n()
        .arg("convert")
        .arg(fixture("bad/tfr_bad_data_crc.tfrecord"))
        .arg("-o")
        .arg(dir.path().join("x.npz"))
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("record 4 at byte offset") && err.contains("checksum mismatch"),
        "{err}"
    );
}

#[test]
fn every_flipped_byte_of_a_tfrecord_is_caught() {
    let dir = tempdir();
    let clean = fs::read(fixture("tfrecord/mixed.tfrecord")).unwrap();
    let path = dir.path().join("m.tfrecord");
    for i in 0..clean.len() {
        let mut bad = clean.clone();
        bad[i] ^= 0x04;
        fs::write(&path, &bad).unwrap();
        let out = dir.path().join("o.npz");
        let o = t2n()
            .args(["convert", "--from", "tfrecord"])
            .arg(&path)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "byte {i} flipped went unnoticed");
        assert!(!out.exists());
    }
}

#[test]
fn completions_are_generated_for_every_shell_and_the_committed_ones_are_current() {
    for (shell, file) in [
        ("bash", "tensor2npy.bash"),
        ("zsh", "_tensor2npy"),
        ("fish", "tensor2npy.fish"),
        ("powershell", "_tensor2npy.ps1"),
        ("elvish", "tensor2npy.elv"),
    ] {
        let o = t2n().args(["completions", shell]).output().unwrap();
        assert!(o.status.success());
        let generated = String::from_utf8(o.stdout).unwrap();
        assert!(
            generated.contains("convert")
                && generated.contains("select")
                && generated.contains("bf16"),
            "{shell}"
        );
        let committed =
            fs::read_to_string(root().join("completions").join(file)).unwrap_or_else(|_| {
                panic!("completions/{file} is missing: run completions/regenerate.sh")
            });
        assert!(
            committed == generated,
            "completions/{file} is stale: run completions/regenerate.sh"
        );
    }
}

#[test]
fn list_reports_sparse_and_ragged_tensors_whole_with_ragged_dimensions_as_null() {
    let o = t2n()
        .args(["list", "--json"])
        .arg(fixture("sparse_ragged/sparse_f32.pb"))
        .arg(fixture("sparse_ragged/ragged_2_batched.pb"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let dense = &read_npz(&fixture("sparse_ragged/sparse_f32.dense.expected.npz"))["sparse_f32"];
    assert_eq!(rows[0]["kind"], "sparse");
    assert_eq!(rows[0]["dtype"], "float32");
    assert_eq!(rows[0]["shape"], serde_json::json!(dense.shape));
    let padded =
        &read_npz(&fixture("sparse_ragged/ragged_2_batched.pad.expected.npz"))["ragged_2_batched"];
    assert_eq!(rows[1]["kind"], "ragged");
    assert_eq!(
        rows[1]["shape"],
        serde_json::json!([padded.shape[0], null, null])
    );
}

#[test]
fn densifying_beyond_max_dense_bytes_is_refused_before_writing() {
    let dir = tempdir();
    let out = dir.path().join("d.npz");
    let o = t2n()
        .arg("convert")
        .arg(fixture("sparse_ragged/sparse_f32.pb"))
        .args(["--sparse", "dense", "--max-dense-bytes", "40", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr_of(&o).contains("--max-dense-bytes"),
        "{}",
        stderr_of(&o)
    );
    assert!(!out.exists());
    let o = t2n()
        .arg("convert")
        .arg(fixture("sparse_ragged/sparse_f32.pb"))
        .args(["--sparse", "dense", "--fill", "abc", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr_of(&o).contains("--fill 'abc' is not a valid float32 value"),
        "{}",
        stderr_of(&o)
    );
}
