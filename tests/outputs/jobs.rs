//! `--jobs`: tensors converted by worker threads (and the outputs of a batch converted in
//! parallel) give the same bytes as one thread, for every fixture of every reader; a worker's
//! failure is reported naming the input and the tensor, with nothing left behind; `--stats`
//! stays in tensor order; memory stays bounded. `T2N_JOBS_MIN_BYTES=0` sends every tensor of
//! the small fixtures to the workers (by default only tensors of 256 KiB and more go).

use crate::common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn run(input: &Path, out: &Path, extra: &[&str], jobs: &str) -> Output {
    Command::new(bin())
        .env("T2N_JOBS_MIN_BYTES", "0")
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .args(["--jobs", jobs])
        .output()
        .unwrap()
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_fixture_gives_the_same_bytes_with_one_job_or_four() {
    let dir = tempdir();
    let mut checked = 0;
    for case in manifest().into_iter().filter(|c| c.oracle.is_some()) {
        let what = format!("{} {:?}", case.input.display(), case.args);
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let one = dir.path().join("one.npz");
        let four = dir.path().join("four.npz");
        ok(&run(&case.input, &one, &args, "1"), &what);
        ok(&run(&case.input, &four, &args, "4"), &what);
        let (a, b) = (fs::read(&one).unwrap(), fs::read(&four).unwrap());
        assert!(a == b, "{what}: --jobs 4 wrote other bytes than --jobs 1");
        assert_same_arrays(
            &read_npz(&four),
            &read_npz(case.oracle.as_ref().unwrap()),
            &what,
        );
        checked += 1;
    }
    assert!(checked > 100, "only {checked} fixtures");
}

/// Large tensors of several dtypes (bf16 widened, f16 and f32 copied, int64, bool) around
/// small ones, at offsets that are not page-aligned: the same bytes whatever the jobs, NumPy
/// loads them, every CRC checks, and each copied member's data sits at its input offset within
/// the page (the alignment that lets the kernel copy at `cp`'s speed).
#[test]
fn large_tensors_converted_by_workers_load_in_numpy_and_copies_are_page_aligned() {
    let dir = tempdir();
    let bytes = |n: usize, seed: u64| -> Vec<u8> {
        (0..n as u64)
            .map(|i| ((i * 2654435761 + seed) >> 7) as u8)
            .collect()
    };
    let bools: Vec<u8> = bytes(1 << 20, 7).iter().map(|b| b & 1).collect();
    let tensors: Vec<(String, &str, Vec<u64>, Vec<u8>)> = vec![
        ("a_small".into(), "F32", vec![3], bytes(12, 1)),
        ("b_bf16".into(), "BF16", vec![1 << 20], bytes(2 << 20, 2)),
        ("c_f32".into(), "F32", vec![3, 1 << 18], bytes(3 << 20, 3)),
        (
            "d_i64".into(),
            "I64",
            vec![(1 << 18) + 1],
            bytes((2 << 20) + 8, 4),
        ),
        ("e_small".into(), "I32", vec![5], bytes(20, 5)),
        (
            "f_f16".into(),
            "F16",
            vec![(3 << 19) + 7],
            bytes((3 << 20) + 14, 6),
        ),
        ("g_bool".into(), "BOOL", vec![1 << 20], bools),
    ];
    let refs: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    let input = dir.path().join("mixed.safetensors");
    fs::write(&input, safetensors_bytes(&refs)).unwrap();
    let mut outs = Vec::new();
    for jobs in ["1", "2", "3"] {
        let out = dir.path().join(format!("j{jobs}.npz"));
        // the default threshold: only the large tensors go to workers
        let o = Command::new(bin())
            .args(["convert", "--jobs", jobs, "-o"])
            .arg(&out)
            .arg(&input)
            .output()
            .unwrap();
        ok(&o, jobs);
        outs.push(fs::read(&out).unwrap());
    }
    assert!(
        outs[0] == outs[1] && outs[1] == outs[2],
        "the bytes depend on --jobs"
    );
    let script = r#"
import sys, zipfile, json, struct
import numpy as np
npz, st = sys.argv[1], sys.argv[2]
raw = open(st, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
base = 8 + n
z = zipfile.ZipFile(npz)
assert z.testzip() is None
data = open(npz, "rb").read()
a = np.load(npz)
assert a["b_bf16"].dtype == np.float32 and a["b_bf16"].shape == (1 << 20,)
bf = np.frombuffer(raw[base + header["b_bf16"]["data_offsets"][0]:base + header["b_bf16"]["data_offsets"][1]], "<u2")
assert (a["b_bf16"].view("<u4") == bf.astype("<u4") << 16).all()
aligned = 0
for name in ["c_f32", "d_i64", "f_f16", "g_bool"]:
    lo, hi = header[name]["data_offsets"]
    arr = a[name]
    assert arr.tobytes() == raw[base + lo:base + hi], name
    info = z.getinfo(name + ".npy")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    payload = info.header_offset + 30 + name_len + extra_len
    hlen = 10 + struct.unpack("<H", data[payload + 8:payload + 10])[0]
    assert (payload + hlen) % 4096 == (base + lo) % 4096, (name, payload + hlen, base + lo)
    aligned += 1
assert a["g_bool"].dtype == np.bool_
print("ok", aligned)
"#;
    let o = Command::new(python())
        .args(["-c", script])
        .arg(dir.path().join("j2.npz"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok 4"),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A checksum failure inside a worker (a flipped byte in a PyTorch storage, whose CRC-32 is
/// checked as it is read): exit 1, the input and the tensor named, no output and no temporary
/// left.
#[test]
fn a_failure_in_a_worker_names_the_input_and_tensor_and_leaves_nothing() {
    let dir = tempdir();
    let src = root().join("fixtures/torch/state_dict.pt");
    let mut bytes = fs::read(&src).unwrap();
    let at = {
        let mut z = zip::ZipArchive::new(fs::File::open(&src).unwrap()).unwrap();
        let m = z.by_name("state_dict/data/0").unwrap();
        m.data_start().unwrap() as usize
    };
    bytes[at + 1] ^= 0x40;
    let input = dir.path().join("bad.pt");
    fs::write(&input, &bytes).unwrap();
    let outdir = dir.path().join("out");
    fs::create_dir(&outdir).unwrap();
    for jobs in ["1", "4"] {
        let o = run(&input, &outdir.join("x.npz"), &[], jobs);
        assert_eq!(o.status.code(), Some(1), "--jobs {jobs}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("bad.pt: tensor '"), "--jobs {jobs}: {err}");
        assert!(err.contains("CRC"), "--jobs {jobs}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            files_in(&outdir).is_empty(),
            "left behind: {:?}",
            files_in(&outdir)
        );
    }
}

/// `--stats=json` lists the tensors in their order whatever the jobs, with the same totals.
#[test]
fn stats_come_out_in_tensor_order_with_workers() {
    let dir = tempdir();
    let input = root().join("fixtures/safetensors/numeric.safetensors");
    let stats = |jobs: &str| -> serde_json::Value {
        let o = run(&input, &dir.path().join("s.npz"), &["--stats=json"], jobs);
        ok(&o, jobs);
        serde_json::from_slice(&o.stderr).unwrap()
    };
    let (one, four) = (stats("1"), stats("4"));
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(&one).len() > 3);
    assert_eq!(names(&one), names(&four));
    assert_eq!(one["total"]["d2h_bytes"], four["total"]["d2h_bytes"]);
}

/// A batch (`-o DIR --to npz`) converts its inputs in parallel: the same files and the same
/// manifest lines as in turn.
#[test]
fn a_batch_gives_the_same_outputs_and_manifest_with_one_job_or_three() {
    let dir = tempdir();
    let inputs = [
        "fixtures/safetensors/numeric.safetensors",
        "fixtures/torch/state_dict.pt",
        "fixtures/gguf/quant.gguf",
        "fixtures/ckpt/tf2",
    ];
    let inputs: Vec<_> = inputs.iter().map(|p| root().join(p)).collect();
    for p in &inputs {
        assert!(p.exists(), "{}", p.display());
    }
    let mut runs = Vec::new();
    for jobs in ["1", "3"] {
        let out = dir.path().join(format!("out{jobs}"));
        let manifest = dir.path().join(format!("m{jobs}.jsonl"));
        let o = Command::new(bin())
            .args(["convert", "--to", "npz", "--jobs", jobs, "--manifest"])
            .arg(&manifest)
            .arg("-o")
            .arg(&out)
            .args(&inputs)
            .output()
            .unwrap();
        ok(&o, jobs);
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&out)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        let lines: Vec<serde_json::Value> = fs::read_to_string(&manifest)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["output"] = v["output"]
                    .as_str()
                    .map(|s| s.replace(&format!("out{jobs}"), "out"))
                    .into();
                v
            })
            .collect();
        // Each line is appended as its output completes: in completion order with workers.
        let mut lines = lines;
        lines.sort_by_key(|v| v["output"].as_str().unwrap_or_default().to_string());
        runs.push((files, lines));
    }
    assert_eq!(runs[0].0.len(), 4);
    // and each output holds what the library that wrote its input returns
    let oracles = [
        ("numeric.npz", "fixtures/safetensors/numeric.expected.npz"),
        (
            "state_dict.npz",
            "fixtures/torch/state_dict.pt.expected.npz",
        ),
        ("quant.npz", "fixtures/gguf/quant.expected.npz"),
        ("tf2.npz", "fixtures/ckpt/tf2.expected.npz"),
    ];
    for (file, oracle) in oracles {
        let got = dir.path().join("out3").join(file);
        assert_same_arrays(&read_npz(&got), &read_npz(&root().join(oracle)), file);
    }
    assert!(runs[0].0 == runs[1].0, "the batch outputs depend on --jobs");
    assert_eq!(runs[0].1, runs[1].1, "the manifests differ");
}

#[test]
fn jobs_zero_is_a_usage_error() {
    let o = Command::new(bin())
        .args(["convert", "--jobs", "0", "x.safetensors"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// An input read from a pipe (`/dev/stdin`, `<(cmd)`) is read once: workers never open it a
/// second time (it is at its end), and the output is the one a file gives.
#[test]
fn a_piped_input_is_converted_without_being_opened_twice() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempdir();
    let input = root().join("fixtures/gguf/quant.gguf");
    let from_file = dir.path().join("file.npz");
    ok(&run(&input, &from_file, &[], "1"), "file");
    let piped = dir.path().join("piped.npz");
    let mut child = Command::new(bin())
        .env("T2N_JOBS_MIN_BYTES", "0")
        .args(["convert", "/dev/stdin", "--jobs", "4", "-o"])
        .arg(&piped)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = fs::read(&input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    ok(&o, "piped");
    assert!(fs::read(&piped).unwrap() == fs::read(&from_file).unwrap());
    assert_same_arrays(
        &read_npz(&piped),
        &read_npz(&root().join("fixtures/gguf/quant.expected.npz")),
        "piped",
    );
}

/// Memory stays bounded whatever `--jobs` says: eight workers widening bf16 (the conversion
/// that doubles its chunk) share one budget instead of taking a full chunk each.
#[test]
fn eight_workers_widening_bf16_stay_within_the_memory_bound() {
    let dir = tempdir();
    let tensors: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("w{i}"), vec![(i * 17) as u8; 8 << 20]))
        .collect();
    let refs: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, b)| (n.as_str(), "BF16", vec![4 << 20], b.clone()))
        .collect();
    let input = dir.path().join("wide.safetensors");
    fs::write(&input, safetensors_bytes(&refs)).unwrap();
    drop(refs);
    let out = dir.path().join("wide.npz");
    let peak = |jobs: &str| -> u64 {
        let o = Command::new("/usr/bin/time")
            .args(["-f", "maxrss_kb=%M"])
            .arg(bin())
            .args(["convert", "--jobs", jobs, "-o"])
            .arg(&out)
            .arg(&input)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        stderr
            .rsplit("maxrss_kb=")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // against one thread, so that the binary's own size (a debug build's is large) cancels out
    let (one, eight) = (peak("1"), peak("8"));
    let got = read_npz(&out);
    assert_eq!(got.len(), 8);
    // every bf16 word 0x3333 (bytes 3 * 17) widens to the float32 bits 0x33330000
    assert_eq!(got["w3"].data.len(), 16 << 20);
    assert!(got["w3"].data.chunks(4).all(|w| w == [0, 0, 0x33, 0x33]));
    // 64 MiB of bf16 in, 128 MiB of float32 out: the workers' share is 32 MiB. Before they
    // shared one budget, eight took 95 MiB more than one.
    assert!(
        eight < one + 48 * 1024,
        "peak RSS {eight} kB with eight workers, {one} kB with one"
    );
}
