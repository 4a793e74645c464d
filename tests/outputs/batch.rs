//! Batches that survive: `--update` skips finished outputs (an interrupted batch resumes with
//! what is left), `--manifest` records what was written, and the README's xargs, make and Slurm
//! recipes work as written.

use crate::common;

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

fn manifest_lines(p: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn update_rebuilds_when_the_options_or_the_input_changed_not_by_times_alone() {
    let (dir, inputs) = shards();
    let out = dir.path().join("o.npz");
    let manifest = dir.path().join("m.jsonl");
    let run = |extra: &[&str]| {
        let o = Command::new(bin())
            .arg("convert")
            .arg(&inputs[0])
            .args(["-o", out.to_str().unwrap(), "--quiet"])
            .args(["--manifest", manifest.to_str().unwrap(), "--update"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let all = read_npz(&root().join("fixtures/safetensors/numeric.expected.npz"));
    let first = all.keys().next().unwrap().clone();
    run(&[]);
    run(&[]);
    // Other options: the output is newer than its input, but it is rebuilt.
    run(&["--select", &first]);
    assert_eq!(read_npz(&out).len(), 1);
    run(&["--select", &first]);
    // The input replaced by another of the same time: rebuilt.
    let t = mtime(&inputs[0]);
    fs::copy(&inputs[1], &inputs[0]).unwrap();
    set_mtime(&inputs[0], t);
    set_mtime(&out, SystemTime::now());
    run(&[]);
    let statuses: Vec<String> = manifest_lines(&manifest)
        .iter()
        .map(|l| l["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        ["written", "up-to-date", "written", "up-to-date", "written"]
    );
    let lines = manifest_lines(&manifest);
    assert_ne!(lines[0]["options"], lines[2]["options"]);
    assert_ne!(lines[0]["identity"], lines[4]["identity"]);
    assert_eq!(lines[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        lines[0]["identity"][0]["size"],
        fs::metadata(root().join("fixtures/safetensors/numeric.safetensors"))
            .unwrap()
            .len()
    );
}

#[test]
fn the_manifest_records_each_output_as_it_completes_failures_included_and_dash_is_stdout() {
    for jobs in ["1", "2"] {
        let (dir, inputs) = shards();
        // The second input opens, then fails its CRC-32 while its output is being written.
        let broken = dir.path().join("broken.pt");
        let mut bytes = fs::read(root().join("fixtures/torch/state_dict.pt")).unwrap();
        let at = {
            let f = fs::File::open(root().join("fixtures/torch/state_dict.pt")).unwrap();
            let mut z = zip::ZipArchive::new(f).unwrap();
            let m = z.by_name("state_dict/data/0").unwrap();
            m.data_start().unwrap() as usize
        };
        bytes[at + 1] ^= 0x40;
        fs::write(&broken, &bytes).unwrap();
        let manifest = dir.path().join("m.jsonl");
        let o = Command::new(bin())
            .arg("convert")
            .arg(&inputs[0])
            .arg(&broken)
            .args([
                "-o",
                dir.path().join("npz").to_str().unwrap(),
                "--to",
                "npz",
            ])
            .args([
                "--manifest",
                manifest.to_str().unwrap(),
                "--jobs",
                jobs,
                "--quiet",
            ])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let lines = manifest_lines(&manifest);
        let failed: Vec<_> = lines.iter().filter(|l| l["status"] == "failed").collect();
        assert_eq!(failed.len(), 1, "--jobs {jobs}: {lines:?}");
        assert!(failed[0]["input"].as_str().unwrap().ends_with("broken.pt"));
        assert!(failed[0]["error"].as_str().unwrap().contains("CRC"));
        if jobs == "1" {
            // In turn: the first output was recorded as soon as it was complete.
            assert_eq!(lines[0]["status"], "written", "{lines:?}");
        }
    }
    // `--manifest -`: the lines go to standard output; no file named `-`.
    let (dir, inputs) = shards();
    let o = Command::new(bin())
        .current_dir(dir.path())
        .arg("convert")
        .arg(&inputs[0])
        .args(["-o", "x.npz", "--manifest", "-", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!dir.path().join("-").exists());
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(line["status"], "written");
    assert_eq!(line["output"], "x.npz");
}

/// The sha256 of a file, by `sha256sum` (not by tensor2npy).
fn sha256sum(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    text.split_whitespace().next().unwrap().to_string()
}

/// A safetensors input of little-endian f32 tensors `(name, count)`, counting up from `seed`.
fn f32_input(path: &Path, tensors: &[(&str, usize)], seed: u32) {
    let spec: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = tensors
        .iter()
        .enumerate()
        .map(|(t, (name, n))| {
            let bytes = (0..*n as u32)
                .flat_map(|i| (seed + i * 7 + t as u32).to_le_bytes())
                .collect();
            (*name, "F32", vec![*n as u64], bytes)
        })
        .collect();
    fs::write(path, safetensors_bytes(&spec)).unwrap();
}

fn convert_with_manifest(args: &[&str], manifest: &Path, env: &[(&str, &str)]) {
    let o = Command::new(bin())
        .arg("convert")
        .args(args)
        .arg("--quiet")
        .arg("--manifest")
        .arg(manifest)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_recorded_sha256_is_the_outputs_own_for_npy_stored_and_deflated_npz_and_jobs() {
    let dir = tempdir();
    let d = dir.path();
    // One member over the zip writer's 1 MiB buffer (its local header is completed after its
    // data left the buffer), small ones around it.
    let input = d.join("in.safetensors");
    f32_input(&input, &[("a", 5), ("big", 700_000), ("z/c", 3)], 1);
    let one = d.join("one.safetensors");
    f32_input(&one, &[("w", 400_000)], 9);
    let m = d.join("m.jsonl");
    let stored = d.join("stored.npz");
    let deflated = d.join("deflated.npz");
    let npy = d.join("w.npy");
    let workers = d.join("workers.npz");
    let i = input.to_str().unwrap();
    convert_with_manifest(&[i, "-o", stored.to_str().unwrap()], &m, &[]);
    convert_with_manifest(
        &[i, "-o", deflated.to_str().unwrap(), "--compress"],
        &m,
        &[],
    );
    convert_with_manifest(
        &[one.to_str().unwrap(), "-o", npy.to_str().unwrap()],
        &m,
        &[],
    );
    // Members filled in place by two workers (read back for the manifest).
    let w = workers.to_str().unwrap();
    let small = [("T2N_JOBS_MIN_BYTES", "1000")];
    convert_with_manifest(&[i, "-o", w, "--jobs", "2"], &m, &small);
    // A batch: each output written in turn by one of two workers.
    let batch = d.join("batch");
    convert_with_manifest(
        &[
            i,
            one.to_str().unwrap(),
            "-o",
            batch.to_str().unwrap(),
            "--to",
            "npz",
            "--jobs",
            "2",
        ],
        &m,
        &[],
    );
    let lines = manifest_lines(&m);
    let mut outputs = vec![stored, deflated, npy, workers];
    outputs.extend([batch.join("in.npz"), batch.join("one.npz")]);
    assert_eq!(lines.len(), outputs.len());
    for out in &outputs {
        let line = lines
            .iter()
            .find(|l| l["output"] == out.display().to_string())
            .unwrap_or_else(|| panic!("no line for {}", out.display()));
        assert_eq!(line["status"], "written");
        assert_eq!(line["sha256"], sha256sum(out), "{}", out.display());
        assert_eq!(line["bytes"], fs::metadata(out).unwrap().len());
    }
}

#[test]
fn a_directory_output_records_only_the_files_this_run_wrote_as_sha256sum_lists_them() {
    let dir = tempdir();
    let d = dir.path();
    let input = d.join("in.safetensors");
    f32_input(&input, &[("b", 300_000), ("a/x", 4), ("c", 2)], 3);
    let out = d.join("out");
    fs::create_dir_all(out.join("a")).unwrap();
    // Files this run does not write: not hashed, not counted.
    fs::write(out.join("unrelated.txt"), b"not ours").unwrap();
    fs::write(out.join("a/old.npy"), b"an earlier run's").unwrap();
    let m = d.join("m.jsonl");
    convert_with_manifest(
        &[input.to_str().unwrap(), "-o", out.to_str().unwrap()],
        &m,
        &[],
    );
    let lines = manifest_lines(&m);
    assert_eq!(lines.len(), 1);
    // `sha256sum` of the written files in byte order of their paths, hashed again.
    let o = Command::new("bash")
        .current_dir(&out)
        .args([
            "-c",
            "printf '%s\\n' a/x.npy b.npy c.npy | LC_ALL=C sort | xargs sha256sum | sha256sum",
        ])
        .output()
        .unwrap();
    let want = String::from_utf8(o.stdout).unwrap();
    assert_eq!(lines[0]["sha256"], want.split_whitespace().next().unwrap());
    let total: u64 = ["a/x.npy", "b.npy", "c.npy"]
        .iter()
        .map(|f| fs::metadata(out.join(f)).unwrap().len())
        .sum();
    assert_eq!(lines[0]["bytes"], total);
    assert_eq!(fs::read(out.join("unrelated.txt")).unwrap(), b"not ours");
}

/// Bytes this thread has read through `read`-like calls (`rchar` in /proc/thread-self/io).
fn thread_rchar() -> u64 {
    let io = fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn outputs_written_in_order_are_hashed_without_reading_them_back() {
    use clap::Parser;
    use tensor2npy::cli::{Cli, Command as Sub};
    let dir = tempdir();
    let d = dir.path();
    let input = d.join("in.safetensors");
    // 8 MiB in one tensor (.npy, and a directory) and in 2,048 small ones (.npz).
    f32_input(&input, &[("w", 2 << 20)], 5);
    let many = d.join("many.safetensors");
    let names: Vec<String> = (0..2048).map(|k| format!("t{k}")).collect();
    let spec: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 1024)).collect();
    f32_input(&many, &spec, 5);
    for (from, out) in [(&input, "w.npy"), (&input, "dir"), (&many, "many.npz")] {
        let out = d.join(out);
        let m = d.join(format!("{}.jsonl", out.display()));
        let cli = Cli::try_parse_from([
            "tensor2npy".as_ref(),
            "convert".as_ref(),
            from.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--jobs".as_ref(),
            "1".as_ref(),
            "--quiet".as_ref(),
            "--manifest".as_ref(),
            m.as_os_str(),
        ])
        .unwrap();
        let Sub::Convert(args) = cli.command else {
            unreachable!()
        };
        let before = thread_rchar();
        tensor2npy::cmd::convert::run(args).unwrap();
        let read = thread_rchar() - before;
        let (input_len, written) = (
            fs::metadata(from).unwrap().len(),
            manifest_lines(&m)[0]["bytes"].as_u64().unwrap(),
        );
        // The input is read once; reading the output back would add `written` again.
        assert!(
            read < input_len + written / 4,
            "{}: read {read} bytes for an input of {input_len} and an output of {written}",
            out.display()
        );
    }
}
