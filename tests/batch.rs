//! Batches that survive: `--update` skips finished outputs (an interrupted batch resumes with
//! what is left), `--manifest` records what was written, and the README's xargs, make and Slurm
//! recipes work as written.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::*;

/// A folder of shards (real fixture inputs) and an empty output folder.
fn shards() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempdir();
    fs::create_dir(dir.path().join("shards")).unwrap();
    let mut v = Vec::new();
    for name in ["numeric", "slash", "single", "extended"] {
        let src = root().join(format!("fixtures/safetensors/{name}.safetensors"));
        let dst = dir.path().join(format!("shards/{name}.safetensors"));
        fs::copy(&src, &dst).unwrap();
        v.push(dst);
    }
    (dir, v)
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn check_outputs(dir: &Path) {
    for name in ["numeric", "slash", "single", "extended"] {
        let want = read_npz(&root().join(format!("fixtures/safetensors/{name}.expected.npz")));
        assert_same_arrays(&read_npz(&dir.join(format!("npz/{name}.npz"))), &want, name);
    }
}

#[test]
fn update_skips_finished_outputs_so_an_interrupted_batch_resumes_with_what_is_left() {
    let (dir, inputs) = shards();
    let out = dir.path().join("npz");
    let run = |extra: &[&str]| {
        let o = Command::new(bin())
            .arg("convert")
            .args(&inputs)
            .args(["-o", out.to_str().unwrap(), "--to", "npz"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    run(&[]);
    check_outputs(dir.path());
    // The batch "died" before two outputs were written.
    fs::remove_file(out.join("slash.npz")).unwrap();
    fs::remove_file(out.join("single.npz")).unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    for p in &inputs {
        set_mtime(p, old - Duration::from_secs(60));
    }
    for name in ["numeric", "extended"] {
        set_mtime(&out.join(format!("{name}.npz")), old);
    }
    let stderr = run(&["--update"]);
    check_outputs(dir.path());
    assert_eq!(mtime(&out.join("numeric.npz")), old, "left alone");
    assert_eq!(mtime(&out.join("extended.npz")), old, "left alone");
    assert!(mtime(&out.join("slash.npz")) > old, "written");
    assert!(stderr.contains("up to date"), "{stderr}");
    // An input newer than its output is converted again.
    set_mtime(&inputs[0], SystemTime::now());
    run(&["--update", "--quiet"]);
    assert!(mtime(&out.join("numeric.npz")) > old);
    assert_eq!(mtime(&out.join("extended.npz")), old);
}

#[test]
fn manifest_lines_name_input_output_tensors_bytes_and_the_sha256_of_the_file() {
    let (dir, inputs) = shards();
    let manifest = dir.path().join("m/manifest.jsonl");
    let out = dir.path().join("one.npz");
    let o = Command::new(bin())
        .arg("convert")
        .arg(&inputs[0])
        .args([
            "-o",
            out.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Again with --update: a second line says it was up to date.
    let o = Command::new(bin())
        .arg("convert")
        .arg(&inputs[0])
        .args(["-o", out.to_str().unwrap(), "--update", "--quiet"])
        .args(["--manifest", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = fs::read_to_string(&manifest).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let sha = Command::new("sha256sum").arg(&out).output().unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap();
    let sha = sha.split_whitespace().next().unwrap();
    let want_tensors = read_npz(&root().join("fixtures/safetensors/numeric.expected.npz")).len();
    for (line, status) in lines.iter().zip(["written", "up-to-date"]) {
        assert_eq!(line["status"], status);
        assert_eq!(line["input"], inputs[0].display().to_string());
        assert_eq!(line["output"], out.display().to_string());
        assert_eq!(line["tensors"], want_tensors as u64);
        assert_eq!(line["bytes"], fs::metadata(&out).unwrap().len());
        assert_eq!(line["sha256"], sha);
    }
}

fn sh(dir: &Path, script: &str) {
    let o = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin().parent().unwrap().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_readme_recipes_for_xargs_make_and_a_slurm_array_work_as_written() {
    // xargs -P, run twice (the second run finds everything up to date).
    let (dir, _) = shards();
    let line = "ls shards/*.safetensors | xargs -P 2 -I{} tensor2npy convert {} -o npz/ --to npz --update --quiet";
    sh(dir.path(), line);
    check_outputs(dir.path());
    sh(dir.path(), line);
    check_outputs(dir.path());

    // make -j with a pattern rule and a manifest.
    let (dir, _) = shards();
    fs::write(
        dir.path().join("Makefile"),
        "SHARDS := $(wildcard shards/*.safetensors)\n\
         all: $(patsubst shards/%.safetensors,npz/%.npz,$(SHARDS))\n\
         npz/%.npz: shards/%.safetensors\n\
         \ttensor2npy convert $< -o $@ --quiet --manifest manifest.jsonl\n",
    )
    .unwrap();
    sh(dir.path(), "make -j2 --no-print-directory");
    check_outputs(dir.path());
    let manifest = fs::read_to_string(dir.path().join("manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 4, "{manifest}");
    sh(dir.path(), "make -q");

    // A Slurm array task: line $SLURM_ARRAY_TASK_ID of a list.
    let (dir, _) = shards();
    sh(dir.path(), "ls shards/*.safetensors > shards.txt");
    for task in 1..=4 {
        sh(
            dir.path(),
            &format!(
                "export SLURM_ARRAY_TASK_ID={task}; in=\"$(sed -n \"${{SLURM_ARRAY_TASK_ID}}p\" shards.txt)\"; \
                 tensor2npy convert \"$in\" -o npz/ --to npz --update --quiet --manifest manifest.jsonl"
            ),
        );
    }
    check_outputs(dir.path());
}
