//! Whatever bytes it is given, tensor2npy writes exactly the right arrays or exits 1 with a
//! message: corruption sweeps over every fixture, hostile metadata, decompression bombs, names
//! that try to leave the output directory, a full disk, and interrupted conversions.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

use crate::freeze;

/// Runs the binary with a deadline, so a hang fails the test instead of stalling it.
fn run_with_deadline(args: &[&std::ffi::OsStr], deadline: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            child.kill().ok();
            panic!("tensor2npy {args:?} ran past {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The files an input consists of (a checkpoint is an index and its shards).
fn input_files(input: &Path) -> Vec<PathBuf> {
    let s = input.to_string_lossy();
    let prefix = s
        .strip_suffix(".index")
        .map(str::to_string)
        .or_else(|| (!input.exists()).then(|| s.to_string()));
    if let Some(prefix) = prefix {
        let dir = input.parent().unwrap();
        let stem = Path::new(&prefix)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{stem}."))
            })
            .collect();
        v.sort();
        return v;
    }
    if input.is_dir() {
        // a SavedModel or checkpoint directory: its bundle files
        let mut v: Vec<PathBuf> = files_in(input)
            .into_iter()
            .filter(|p| {
                let s = p.to_string_lossy();
                p.is_file() && (s.ends_with(".index") || s.contains(".data-"))
            })
            .collect();
        v.sort();
        return v;
    }
    vec![input.to_path_buf()]
}

fn checksummed(input: &Path) -> bool {
    let s = input.to_string_lossy();
    // ZIP members carry CRC-32s: a damaged .npz or .keras converts to the same values or fails
    s.contains("/ckpt/") || s.contains(".tfrecord") || s.ends_with(".npz") || s.ends_with(".keras")
}

/// Copies an input's files into `dir`, keeping their names; returns the new input path.
fn copy_input(input: &Path, dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let files = input_files(input);
    let base = if input.is_dir() {
        input.to_path_buf()
    } else {
        input.parent().unwrap().to_path_buf()
    };
    let mut copies = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&base).unwrap();
        let to = dir.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(f, &to).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        copies.push(to);
    }
    if input.is_dir() {
        for extra in ["saved_model.pb", "checkpoint"] {
            if input.join(extra).exists() {
                fs::copy(input.join(extra), dir.join(extra)).unwrap();
            }
        }
        (dir.to_path_buf(), copies)
    } else {
        (dir.join(input.file_name().unwrap()), copies)
    }
}

/// One damaged run: exit 0 with the oracle's arrays (any arrays for formats without a
/// checksum), or exit 1 with a message and nothing written; never a panic or a hang.
fn check_damaged(
    input: &Path,
    args: &[String],
    oracle: &BTreeMap<String, Array>,
    strict: bool,
    truncated_records: bool,
    what: &str,
    out_dir: &Path,
) {
    let out = out_dir.join("o.npz");
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        "convert".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    argv.extend(args.iter().map(|a| std::ffi::OsStr::new(a.as_str())));
    let o = run_with_deadline(&argv, Duration::from_secs(20));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{what}: {err}");
    match o.status.code() {
        Some(0) => {
            let got = read_npz(&out);
            if strict && truncated_records {
                // A TFRecord cut at a record boundary is a valid shorter file: its records must
                // be the first ones, unchanged.
                let prefix: BTreeMap<String, Array> = oracle
                    .iter()
                    .filter(|(k, _)| got.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_same_arrays(&got, &prefix, what);
                let n = got.len();
                assert!(
                    got.keys()
                        .all(|k| k.rsplit('/').next().unwrap().parse::<usize>().unwrap() < n),
                    "{what}"
                );
            } else if strict {
                assert_same_arrays(&got, oracle, what);
            }
            fs::remove_file(&out).unwrap();
        }
        Some(1) => {
            // Notes about the input (classes read as records, values left out) may come first.
            let first = err
                .lines()
                .find(|l| !l.starts_with("tensor2npy: note: "))
                .unwrap_or_default();
            assert!(
                first.starts_with("tensor2npy: error: ") && first.len() > 25,
                "{what}: {err}"
            );
            assert!(!out.exists(), "{what}: output left behind");
        }
        other => panic!("{what}: exit {other:?}: {err}"),
    }
    let stray: Vec<_> = files_in(out_dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tensor2npy-"))
        .collect();
    assert!(stray.is_empty(), "{what}: temporaries left: {stray:?}");
}

#[test]
fn corruption_sweep_over_every_fixture_input() {
    let mut seen = std::collections::HashSet::new();
    let mut runs = 0;
    for case in manifest().into_iter().filter(|c| c.oracle.is_some()) {
        if !seen.insert((case.input.clone(), case.args.clone())) || !case.args.is_empty() {
            continue; // one sweep per input, with its default options
        }
        let oracle = read_npz(case.oracle.as_ref().unwrap());
        let strict = checksummed(&case.input);
        let work = tempdir();
        let (input, copies) = copy_input(&case.input, work.path());
        for file in &copies {
            let clean = fs::read(file).unwrap();
            let n = clean.len();
            if n == 0 {
                continue; // an empty input has no byte to flip
            }
            let mut offsets: Vec<usize> = (0..8)
                .map(|k| k * n / 8)
                .chain([n.saturating_sub(1), n / 2 + 1])
                .collect();
            offsets.sort();
            offsets.dedup();
            for &at in &offsets {
                // a flipped byte
                let mut bad = clean.clone();
                if at < n {
                    bad[at] ^= 0x5a;
                    fs::write(file, &bad).unwrap();
                    let what = format!("{} byte {at} flipped", file.display());
                    check_damaged(
                        &input,
                        &case.args,
                        &oracle,
                        strict,
                        false,
                        &what,
                        work.path(),
                    );
                    runs += 1;
                }
                // a truncation
                fs::write(file, &clean[..at]).unwrap();
                let what = format!("{} truncated to {at} bytes", file.display());
                let records = input.to_string_lossy().contains(".tfrecord");
                check_damaged(
                    &input,
                    &case.args,
                    &oracle,
                    strict && at < n,
                    records,
                    &what,
                    work.path(),
                );
                runs += 1;
            }
            fs::write(file, &clean).unwrap();
        }
    }
    assert!(runs > 500, "only {runs} damaged runs");
}

#[test]
fn hostile_names_never_leave_the_output_directory() {
    let work = tempdir();
    let names = [
        "../../escape",
        "/etc/absolute",
        "a/./b",
        "x/../../y",
        "..",
        "ctrl\u{7}bell",
        "nul\u{0}byte",
        "%2E%2E",
    ];
    let entries: Vec<(&str, &str, Vec<u64>, Vec<u8>)> =
        names.iter().map(|n| (*n, "U8", vec![1], vec![7])).collect();
    let input = work.path().join("in/hostile.safetensors");
    fs::create_dir_all(input.parent().unwrap()).unwrap();
    fs::write(&input, safetensors_bytes(&entries)).unwrap();
    let out = work.path().join("in/out");
    let o = convert(&input, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // everything stays under `out`, and the escaping is reversible: the names come back
    let written = read_npy_dir(&out);
    assert_eq!(written.len(), names.len());
    for f in files_in(work.path()) {
        let allowed = f.starts_with(&out) || f == input || f == work.path().join("in");
        assert!(allowed, "{f:?} escaped");
    }
    // into an .npz, names with control characters are refused, naming the tensor
    let o = Command::new(bin())
        .arg("convert")
        .arg(&input)
        .arg("-o")
        .arg(work.path().join("h.npz"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("control character"));
    assert!(!work.path().join("h.npz").exists());
    // a name component over 255 bytes cannot be a file name
    let long = "x".repeat(300);
    fs::write(
        &input,
        safetensors_bytes(&[(&long, "U8", vec![1], vec![1])]),
    )
    .unwrap();
    let o = Command::new(bin())
        .arg("convert")
        .arg(&input)
        .arg("-o")
        .arg(work.path().join("long"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("255"));
    assert!(!work.path().join("long").exists());
}

#[test]
fn a_link_already_in_the_output_directory_is_never_written_through_out_of_it() {
    let work = tempdir();
    let input = work.path().join("in.safetensors");
    fs::write(
        &input,
        safetensors_bytes(&[
            ("first", "U8", vec![1], vec![1]),
            ("layers/w", "U8", vec![1], vec![2]),
        ]),
    )
    .unwrap();
    let (out, elsewhere) = (work.path().join("out"), work.path().join("elsewhere"));
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("layers")).unwrap();
    let o = convert(&input, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("symbolic link") && stderr.contains("layers"),
        "{stderr}"
    );
    // Nothing written anywhere: not outside, and not the other tensor either.
    assert!(files_in(&elsewhere).is_empty());
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        1,
        "only the link is left in {out:?}"
    );
    // A link that stays inside the directory is followed.
    fs::remove_file(out.join("layers")).unwrap();
    fs::create_dir_all(out.join("real")).unwrap();
    std::os::unix::fs::symlink("real", out.join("layers")).unwrap();
    let o = convert(&input, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(out.join("real/w.npy")).unwrap().last(), Some(&2));
}

#[test]
fn hostile_metadata_is_refused_before_anything_is_allocated() {
    let work = tempdir();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // element counts that overflow u64
        (
            "overflow.safetensors",
            safetensors_bytes(&[("x", "F32", vec![1 << 40, 1 << 40], vec![])]),
            "safetensors",
        ),
        // a shape far beyond the bytes present
        (
            "huge.safetensors",
            safetensors_bytes(&[("x", "F32", vec![1 << 30], vec![0; 16])]),
            "safetensors",
        ),
        // a header length of 2^63
        (
            "hlen.safetensors",
            {
                let mut v = (1u64 << 63).to_le_bytes().to_vec();
                v.extend_from_slice(b"{}");
                v
            },
            "header",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = work.path().join(name);
        fs::write(&p, bytes).unwrap();
        let out = work.path().join("o.npz");
        let o = convert(&p, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{name}: {err}"
        );
        assert!(!out.exists());
    }
}

/// A gzip stream of zeros that expands 1000-fold: refused past --max-decompressed, and a
/// record claiming more bytes than follow is refused without allocating them.
#[test]
fn gzip_bombs_are_bounded_by_max_decompressed() {
    let work = tempdir();
    let bomb = work.path().join("bomb.tfrecord.gz");
    let mut gz = flate2::write::GzEncoder::new(
        fs::File::create(&bomb).unwrap(),
        flate2::Compression::best(),
    );
    let mut header = (u64::MAX / 2).to_le_bytes().to_vec(); // an absurd record length...
    let crc = crc32c::crc32c(&header);
    header.extend_from_slice(&(crc.rotate_right(15).wrapping_add(0xa282_ead8)).to_le_bytes()); // ...with a valid CRC
    gz.write_all(&header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap();
    assert!(fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let out = work.path().join("o.npz");
    let o = Command::new(bin())
        .arg("convert")
        .arg(&bomb)
        .args(["--max-decompressed", "1000000", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--max-decompressed"), "{err}");
    let o = convert(&bomb, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("record 0") && err.contains("truncated"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_full_disk_is_a_clear_error() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let input = root().join("fixtures/safetensors/numeric.safetensors");
    for to in [&["--to", "npz"][..], &["--select", "f32"][..]] {
        let o = Command::new(bin())
            .arg("convert")
            .arg(&input)
            .args(["-o", "/dev/full"])
            .args(to)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("no space left on the device"), "{err}");
    }
}

/// A 512 MiB bfloat16 tensor (a sparse file) widened and deflated: slow enough to interrupt.
fn big_input(dir: &Path) -> PathBuf {
    let p = dir.join("big.safetensors");
    let n: u64 = 256 << 20;
    write_sparse_safetensors(&p, "w", "BF16", n, 2 * n);
    p
}

/// Starts converting `big_input` (512 MiB of bfloat16, widened and deflated) and freezes the
/// run once it has read 32 MiB (`freeze`), with its temporary output under way.
fn start_big(dir: &Path, out: &Path) -> Child {
    let input = big_input(dir);
    let mut child = Command::new(bin())
        .arg("convert")
        .arg(&input)
        .args(["--compress", "-o"])
        .arg(out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = freeze::stop_after_reading(&mut child, 32 << 20);
    assert!(
        read < 512 << 20,
        "the conversion had ended ({read} bytes read)"
    );
    assert!(
        files_in(dir)
            .iter()
            .any(|p| p.to_string_lossy().contains(".tensor2npy-")),
        "no temporary output: {:?}",
        files_in(dir)
    );
    child
}

#[test]
fn sigkill_mid_conversion_leaves_nothing_at_the_output_and_the_next_run_cleans_up() {
    let work = tempdir();
    let out = work.path().join("big.npz");
    let mut child = start_big(work.path(), &out);
    child.kill().unwrap(); // SIGKILL (stopped or not): no cleanup can run
    child.wait().unwrap();
    assert!(!out.exists());
    let stray: Vec<_> = files_in(work.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tensor2npy-"))
        .collect();
    assert!(!stray.is_empty(), "expected the killed run's temporary");
    // the next run into the same directory removes it
    let o = Command::new(bin())
        .arg("convert")
        .arg(root().join("fixtures/safetensors/single.safetensors"))
        .arg("-o")
        .arg(work.path().join("small.npz"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let stray: Vec<_> = files_in(work.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tensor2npy-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn sigint_mid_conversion_removes_the_partial_output_and_exits_130() {
    let work = tempdir();
    let out = work.path().join("big.npz");
    let child = start_big(work.path(), &out);
    freeze::signal_and_continue(&child, libc::SIGINT);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("interrupted"));
    assert!(!out.exists());
    let stray: Vec<_> = files_in(work.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tensor2npy-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// Every input a fuzzer found a crash with (fixtures/fuzz_regressions/) now ends in exit 0 or
/// a clean exit 1, in every sparse and ragged mode.
#[test]
fn fuzz_regressions_fail_cleanly() {
    let dir = root().join("fixtures/fuzz_regressions");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let input = e.unwrap().path();
        for mode in [
            &[][..],
            &["--sparse", "dense", "--ragged", "pad"],
            &["--ragged", "flat"],
        ] {
            let work = tempdir();
            let out = work.path().join("o.npz");
            let mut argv: Vec<&std::ffi::OsStr> = vec![
                "convert".as_ref(),
                input.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
            ];
            argv.extend(mode.iter().map(std::ffi::OsStr::new));
            let o = run_with_deadline(&argv, Duration::from_secs(20));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                matches!(o.status.code(), Some(0 | 1)),
                "{}: {err}",
                input.display()
            );
            assert!(!err.contains("panicked"), "{}: {err}", input.display());
        }
        n += 1;
    }
    assert!(n >= 1);
}
