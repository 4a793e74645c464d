//! Data safety and Unix manners (issue 11): outputs that never destroy data, modes, checksums of
//! entries that are not written, `verify`, interrupts, locks on temporaries, concurrent runs,
//! escaped names, closed pipes, parents of outputs, and the smaller command-line manners.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

use crate::freeze;

fn t2n() -> Command {
    Command::new(bin())
}

fn fixture(p: &str) -> PathBuf {
    root().join("fixtures").join(p)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = t2n();
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    files_in(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tensor2npy-"))
        .collect()
}

/// A copy of a checkpoint fixture directory; returns the copy's prefix.
fn copy_ckpt(dir: &Path, name: &str, prefix: &str) -> PathBuf {
    let to = dir.join(name);
    fs::create_dir_all(&to).unwrap();
    for e in fs::read_dir(fixture(&format!("ckpt/{name}"))).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.join(prefix)
}

// 1 ------------------------------------------------------------------------------------------

#[test]
fn directory_output_into_a_project_keeps_everything_else_in_it() {
    let work = tempdir();
    let proj = work.path().join("proj");
    fs::create_dir_all(proj.join(".git/objects")).unwrap();
    fs::create_dir_all(proj.join("src")).unwrap();
    fs::write(proj.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    fs::write(proj.join("src/main.py"), b"print(1)\n").unwrap();
    fs::write(proj.join("weight.npy"), b"old").unwrap();
    let o = run(&[
        &"convert",
        &fixture("safetensors/single.safetensors"),
        &"-o",
        &proj,
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        fs::read(proj.join(".git/HEAD")).unwrap(),
        b"ref: refs/heads/main\n"
    );
    assert_eq!(fs::read(proj.join("src/main.py")).unwrap(), b"print(1)\n");
    assert!(proj.join(".git/objects").is_dir());
    let want = read_npz(&fixture("safetensors/single.expected.npz"));
    assert_eq!(read_npy(&proj.join("weight.npy")), want["weight"]);
    assert!(temporaries(&proj).is_empty());
    // a failed run into it changes nothing (a corrupt checkpoint fails half-way)
    let ck = copy_ckpt(work.path(), "raw", "ckpt");
    let shard = ck.with_file_name("ckpt.data-00000-of-00001");
    let mut bytes = fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&shard, bytes).unwrap();
    let sorted = |d: &Path| {
        let mut v = files_in(d);
        v.sort();
        v
    };
    let before = sorted(&proj);
    let o = run(&[&"convert", &ck, &"-o", &proj]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(sorted(&proj), before);
}

// 2 ------------------------------------------------------------------------------------------

fn under_umask(umask: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(bin());
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn new_outputs_get_0666_minus_the_umask_and_replaced_ones_keep_their_mode() {
    let work = tempdir();
    let input = fixture("safetensors/single.safetensors");
    for (umask, want) in [("022", 0o644), ("002", 0o664), ("077", 0o600)] {
        let npz = work.path().join(format!("m{umask}.npz"));
        let npy = work.path().join(format!("m{umask}.npy"));
        let dir = work.path().join(format!("d{umask}"));
        for out in [&npz, &npy, &dir] {
            let o = under_umask(umask, &[&"convert", &input, &"-o", out]);
            assert!(o.status.success(), "{}", err(&o));
        }
        assert_eq!(mode(&npz), want, "npz under umask {umask}");
        assert_eq!(mode(&npy), want, "npy under umask {umask}");
        assert_eq!(
            mode(&dir.join("weight.npy")),
            want,
            "dir under umask {umask}"
        );
    }
    // replacing keeps the mode the file had, as cp does
    let npz = work.path().join("keep.npz");
    let dir = work.path().join("keepdir");
    fs::create_dir(&dir).unwrap();
    for p in [&npz, &dir.join("weight.npy")] {
        fs::write(p, b"x").unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o640)).unwrap();
    }
    for out in [&npz, &dir] {
        let o = under_umask("022", &[&"convert", &input, &"-o", out]);
        assert!(o.status.success(), "{}", err(&o));
    }
    assert_eq!(mode(&npz), 0o640);
    assert_eq!(mode(&dir.join("weight.npy")), 0o640);
}

// 3 ------------------------------------------------------------------------------------------

#[test]
fn damage_in_the_unwritten_object_graph_fails_the_conversion_and_verify() {
    let work = tempdir();
    let ck = copy_ckpt(work.path(), "tf2", "ckpt-1");
    let shard = ck.with_file_name("ckpt-1.data-00000-of-00001");
    let clean = fs::read(&shard).unwrap();
    let out = work.path().join("o.npz");
    let mut caught_in_graph = 0;
    for i in 0..clean.len() {
        let mut bad = clean.clone();
        bad[i] ^= 0x01;
        fs::write(&shard, &bad).unwrap();
        let o = run(&[&"convert", &ck, &"-o", &out]);
        assert_eq!(o.status.code(), Some(1), "byte {i}: {}", err(&o));
        assert!(err(&o).contains("checksum mismatch"), "{}", err(&o));
        assert!(!out.exists());
        let v = run(&[&"verify", &ck]);
        assert_eq!(v.status.code(), Some(1), "verify, byte {i}: {}", err(&v));
        assert!(err(&v).contains("tensor '"), "{}", err(&v));
        if err(&o).contains("_CHECKPOINTABLE_OBJECT_GRAPH") {
            caught_in_graph += 1;
            // --no-verify still skips the checks
            let o = run(&[&"convert", &"--no-verify", &ck, &"-o", &out]);
            assert!(o.status.success(), "{}", err(&o));
            fs::remove_file(&out).unwrap();
        }
    }
    assert!(caught_in_graph > 400, "{caught_in_graph}");
    fs::write(&shard, &clean).unwrap();
    let v = run(&[&"verify", &ck, &fixture("tfrecord/mixed.tfrecord.gz")]);
    assert!(v.status.success(), "{}", err(&v));
    assert!(String::from_utf8_lossy(&v.stdout).contains("ok"));
    let v = run(&[&"verify", &"-q", &ck]);
    assert!(v.status.success() && v.stdout.is_empty());
}

#[test]
fn verify_names_the_first_bad_tfrecord_record_and_writes_nothing() {
    let work = tempdir();
    let input = work.path().join("s.tfrecord");
    let mut bytes = fs::read(fixture("tfrecord/stackable.tfrecord")).unwrap();
    let at = bytes.len() - 6;
    bytes[at] ^= 0x40;
    fs::write(&input, bytes).unwrap();
    let before = files_in(work.path());
    let o = run(&[&"verify", &input]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("s.tfrecord") && err(&o).contains("record"),
        "{}",
        err(&o)
    );
    assert_eq!(files_in(work.path()), before);
}

// 4, 9 ---------------------------------------------------------------------------------------

/// Starts a conversion of a 1 GiB plain tensor (copied unchanged), freezes it once it has read
/// 32 MiB of it (`freeze`), checks that the copy is under way (a temporary exists, and less
/// than the tensor has been read), then sends SIGTERM: it must stop with 130 leaving nothing.
fn interrupt_a_plain_copy(out_name: &str, extra: &[&str]) {
    let work = tempdir();
    let input = work.path().join("big.safetensors");
    write_sparse_safetensors(&input, "w", "F32", 256 << 20, 1 << 30);
    let out = work.path().join(out_name);
    let mut child = t2n()
        .arg("convert")
        .arg(&input)
        .args(extra)
        .arg("-o")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = freeze::stop_after_reading(&mut child, 32 << 20);
    assert!(read < 1 << 30, "the copy had ended ({read} bytes read)");
    assert!(
        !temporaries(work.path()).is_empty(),
        "no temporary: {:?}",
        files_in(work.path())
    );
    freeze::signal_and_continue(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", err(&o));
    assert!(err(&o).contains("interrupted"));
    assert!(!out.exists());
    assert!(
        temporaries(work.path()).is_empty(),
        "{:?}",
        files_in(work.path())
    );
}

#[test]
fn sigterm_stops_an_in_kernel_copy_into_npy() {
    interrupt_a_plain_copy("big.npy", &[]);
}

#[test]
fn sigterm_stops_a_plain_copy_being_deflated() {
    interrupt_a_plain_copy("big.npz", &["--compress"]);
}

#[test]
fn sigterm_stops_a_directory_output() {
    interrupt_a_plain_copy("bigdir", &[]);
}

// 5 ------------------------------------------------------------------------------------------

#[test]
fn usage_errors_create_nothing_and_a_checkpoint_prefix_is_no_output() {
    let work = tempdir();
    let a = work.path().join("a");
    let b = work.path().join("b");
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    fs::copy(
        fixture("safetensors/single.safetensors"),
        a.join("x.safetensors"),
    )
    .unwrap();
    fs::copy(
        fixture("safetensors/single.safetensors"),
        b.join("x.safetensors"),
    )
    .unwrap();
    let out = work.path().join("out");
    let o = run(&[
        &"convert",
        &a.join("x.safetensors"),
        &b.join("x.safetensors"),
        &"--to",
        &"npz",
        &"-o",
        &out,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("both be written"), "{}", err(&o));
    assert!(!out.exists(), "a refused batch created {}", out.display());

    let ck = copy_ckpt(work.path(), "tf2", "ckpt-1");
    let o = run(&[&"convert", &ck, &"-o", &ck]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("prefix"), "{}", err(&o));
    assert!(!ck.exists());
    assert!(run(&[&"list", &ck]).status.success());
}

// 6 ------------------------------------------------------------------------------------------

#[test]
fn another_path_to_an_input_is_recognised_by_device_and_inode() {
    let work = tempdir();
    let victim = work.path().join("victim.npz");
    fs::copy(fixture("safetensors/single.safetensors"), &victim).unwrap();
    let before = fs::read(&victim).unwrap();
    // a hard link and a symlink name the same file under another path
    let hard = work.path().join("hard.npz");
    fs::hard_link(&victim, &hard).unwrap();
    let sym = work.path().join("sym.npz");
    std::os::unix::fs::symlink(&victim, &sym).unwrap();
    for out in [&hard, &sym] {
        let o = run(&[&"convert", &victim, &"--from", &"safetensors", &"-o", out]);
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(
            err(&o).contains("refusing to write over the input"),
            "{}",
            err(&o)
        );
    }
    assert_eq!(fs::read(&victim).unwrap(), before);
    // a file a directory output would replace
    let dir = work.path().join("d");
    fs::create_dir(&dir).unwrap();
    fs::hard_link(&victim, dir.join("weight.npy")).unwrap();
    let o = run(&[&"convert", &victim, &"--from", &"safetensors", &"-o", &dir]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("weight.npy"), "{}", err(&o));
    assert_eq!(fs::read(dir.join("weight.npy")).unwrap(), before);
    // a bind mount, where this machine allows one
    let bm = work.path().join("bm");
    fs::create_dir(&bm).unwrap();
    let mounted = Command::new("mount")
        .args(["--bind"])
        .arg(work.path())
        .arg(&bm)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let o = run(&[
            &"convert",
            &victim,
            &"--from",
            &"safetensors",
            &"-o",
            &bm.join("victim.npz"),
        ]);
        Command::new("umount").arg(&bm).status().ok();
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert_eq!(fs::read(&victim).unwrap(), before);
    }
}

// 7 ------------------------------------------------------------------------------------------

#[test]
fn only_unlocked_temporaries_are_cleaned_whatever_their_pid() {
    let work = tempdir();
    // a live run's temporary, from a PID this namespace does not know (another container)
    let live = work.path().join(".tensor2npy-999999999-abc.tmp");
    let f = fs::File::create(&live).unwrap();
    f.lock().unwrap();
    // a stale one whose PID now belongs to a live process (PID 1 always exists)
    let stale = work.path().join(".tensor2npy-1-def.tmp");
    fs::write(&stale, b"x").unwrap();
    let stale_dir = work.path().join(".tensor2npy-1-ghi.tmp");
    fs::create_dir(&stale_dir).unwrap();
    fs::write(stale_dir.join("0"), b"x").unwrap();
    let o = run(&[
        &"convert",
        &fixture("safetensors/single.safetensors"),
        &"-o",
        &work.path().join("o.npz"),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(live.exists(), "a live (locked) temporary was removed");
    assert!(
        !stale.exists(),
        "a stale temporary with a reused PID was kept"
    );
    assert!(!stale_dir.exists());
    drop(f);
}

// 8 ------------------------------------------------------------------------------------------

#[test]
fn concurrent_runs_into_one_existing_directory_both_succeed() {
    let work = tempdir();
    let out = work.path().join("o");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep.txt"), b"k").unwrap();
    let input = fixture("ckpt/tf2/ckpt-1");
    for _ in 0..40 {
        let spawn = || {
            t2n()
                .arg("convert")
                .arg(&input)
                .arg("-o")
                .arg(&out)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let watcher = {
            let (out, watching) = (out.clone(), watching.clone());
            std::thread::spawn(move || {
                let mut missing = false;
                while watching.load(std::sync::atomic::Ordering::Relaxed) {
                    missing |= !out.is_dir();
                    std::thread::sleep(Duration::from_micros(50));
                }
                missing
            })
        };
        for c in [a, b] {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", err(&o));
        }
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        let seen_missing = watcher.join().unwrap();
        assert!(!seen_missing);
        assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"k");
        assert!(out
            .join("model/w/%2EATTRIBUTES/VARIABLE_VALUE.npy")
            .is_file());
        assert!(temporaries(&out).is_empty());
    }
}

// 10 -----------------------------------------------------------------------------------------

#[test]
fn control_characters_in_names_never_reach_the_terminal_raw() {
    let work = tempdir();
    let input = work.path().join("evil.safetensors");
    let evil = "x\x1b]0;pwned\x07\x1b[2J";
    fs::write(
        &input,
        safetensors_bytes(&[(evil, "F32", vec![1], vec![0; 4])]),
    )
    .unwrap();
    let o = run(&[&"list", &input]);
    assert!(o.status.success(), "{}", err(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(text.contains("\\u001b]0;pwned"), "{text}");
    // the .npz refuses the name; the message escapes it
    let o = run(&[&"convert", &input, &"-o", &work.path().join("o.npz")]);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(e.contains("\\u001b") && !e.contains('\x1b'), "{e:?}");
}

// 11 -----------------------------------------------------------------------------------------

#[test]
fn a_full_disk_gives_exactly_one_message() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    // Big enough that writes fail inside the archive, not only at the final flush.
    let work = tempdir();
    let big = work.path().join("big.safetensors");
    let start = write_sparse_safetensors(&big, "w", "F32", 1 << 20, 4 << 20);
    // incompressible data, so that --compress fills the disk too
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::os::unix::fs::FileExt::write_all_at(
        &fs::OpenOptions::new().write(true).open(&big).unwrap(),
        &noise,
        start,
    )
    .unwrap();
    // A really full file system, where this machine lets the test mount a small tmpfs (the
    // archive is then a seekable temporary file); /dev/full otherwise (a stream).
    let small = work.path().join("small");
    fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let target = if mounted {
        small.join("o.npz")
    } else {
        PathBuf::from("/dev/full")
    };
    let result = std::panic::catch_unwind(|| check_one_message(&big, &target));
    if mounted {
        assert!(
            fs::read_dir(&small).unwrap().next().is_none(),
            "left behind"
        );
        Command::new("umount").arg(&small).status().ok();
    }
    result.unwrap();
    check_one_message(&big, Path::new("/dev/full"));
}

fn check_one_message(big: &Path, target: &Path) {
    for extra in [&[][..], &["--compress"]] {
        let mut c = t2n();
        c.arg("convert")
            .arg(big)
            .args(["--to", "npz", "-o"])
            .arg(target);
        let o = c.args(extra).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        let e = err(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.contains("no space left on the device") && !e.contains("ZipWriter"),
            "{e}"
        );
    }
}

// 12 -----------------------------------------------------------------------------------------

/// Runs with standard output a pipe whose reader is gone.
fn into_closed_pipe(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = t2n();
    for a in args {
        c.arg(a);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_output_pipe_ends_quietly_with_status_0() {
    let work = tempdir();
    let many: Vec<(String, Vec<u8>)> = (0..4000)
        .map(|i| (format!("t{i:05}"), vec![0; 4]))
        .collect();
    let refs: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = many
        .iter()
        .map(|(n, d)| (n.as_str(), "F32", vec![1], d.clone()))
        .collect();
    let input = work.path().join("many.safetensors");
    fs::write(&input, safetensors_bytes(&refs)).unwrap();
    for args in [
        &[&"list" as &dyn AsRef<std::ffi::OsStr>, &input][..],
        &[&"list", &"--json", &input],
        &[&"convert", &input, &"--to", &"npz", &"-o", &"-"],
        &[&"completions", &"bash"],
    ] {
        let o = into_closed_pipe(args);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        assert!(o.stderr.is_empty(), "{}", err(&o));
    }
    let big = work.path().join("big.safetensors");
    write_sparse_safetensors(&big, "w", "F32", 1 << 20, 4 << 20);
    let o = into_closed_pipe(&[&"convert", &big, &"-o", &"-"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(o.stderr.is_empty(), "{}", err(&o));
}

// 13 -----------------------------------------------------------------------------------------

#[test]
fn missing_parents_of_file_outputs_are_created_and_removed_on_failure() {
    let work = tempdir();
    let input = fixture("safetensors/single.safetensors");
    for out in ["weights/a/x.npz", "w2/b/x.npy"] {
        let out = work.path().join(out);
        let o = run(&[&"convert", &input, &"-o", &out]);
        assert!(o.status.success(), "{}", err(&o));
        assert!(out.is_file());
    }
    // a failure leaves no directory behind
    let bad = work.path().join("bad.safetensors");
    fs::write(&bad, b"\x10\0\0\0\0\0\0\0{\"w\": 1}        ").unwrap();
    let o = run(&[
        &"convert",
        &bad,
        &"--from",
        &"safetensors",
        &"-o",
        &work.path().join("n1/n2/x.npz"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(!work.path().join("n1").exists());
}

// 14 -----------------------------------------------------------------------------------------

#[test]
fn excluding_everything_is_an_error_and_not_an_empty_archive() {
    let work = tempdir();
    let out = work.path().join("o.npz");
    let input = fixture("safetensors/numeric.safetensors");
    let o = run(&[&"convert", &input, &"--exclude", &"*", &"-o", &out]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("numeric.safetensors") && err(&o).contains("no tensor"),
        "{}",
        err(&o)
    );
    assert!(!out.exists());
}

// 15, 16 -------------------------------------------------------------------------------------

#[test]
fn byte_sizes_take_suffixes_and_stats_does_not_swallow_the_input() {
    let work = tempdir();
    let input = fixture("safetensors/numeric.safetensors");
    let out = work.path().join("s.npz");
    let o = run(&[
        &"convert",
        &"--stats",
        &input,
        &"--chunk-size",
        &"1M",
        &"--max-dense-bytes",
        &"4G",
        &"-o",
        &out,
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out.is_file());
    let o = run(&[&"convert", &"--stats=json", &input, &"-o", &out]);
    assert!(o.status.success(), "{}", err(&o));
    let o = run(&[&"convert", &"--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("--chunk-size"), "{help}");
    assert!(help.contains("64 GiB") && help.contains("4 GiB"), "{help}");
    assert!(!help.contains("68719476736"));
}

// 17 -----------------------------------------------------------------------------------------

/// Runs a shell command line under a pseudo-terminal (`script`), returning what it printed.
fn on_a_terminal(cmdline: &str) -> Option<String> {
    let o = Command::new("script")
        .args(["-qec", cmdline, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn a_terminal_gets_a_summary_line_and_never_binary_data() {
    let work = tempdir();
    let input = fixture("safetensors/single.safetensors");
    let out = work.path().join("o.npz");
    let cmd = format!(
        "{} convert {} -o {}; echo rc=$?",
        bin().display(),
        input.display(),
        out.display()
    );
    let Some(text) = on_a_terminal(&cmd) else {
        eprintln!("skipped: no script(1)");
        return;
    };
    assert!(text.contains("wrote 1 tensor"), "{text}");
    assert!(text.contains("rc=0"), "{text}");
    let quiet = on_a_terminal(&format!(
        "{} convert -q {} -o {}",
        bin().display(),
        input.display(),
        out.display()
    ))
    .unwrap();
    assert!(!quiet.contains("wrote"), "{quiet}");
    let raw = on_a_terminal(&format!(
        "{} convert {} -o -; echo rc=$?",
        bin().display(),
        input.display()
    ))
    .unwrap();
    assert!(!raw.contains("NUMPY"), "{raw}");
    assert!(raw.contains("terminal") && raw.contains("rc=2"), "{raw}");
    let tty = on_a_terminal(&format!(
        "{} convert {} -o /dev/tty; echo rc=$?",
        bin().display(),
        input.display()
    ))
    .unwrap();
    assert!(!tty.contains("NUMPY") && tty.contains("rc=2"), "{tty}");
}

// 18 -----------------------------------------------------------------------------------------

#[test]
fn errors_name_the_input() {
    let work = tempdir();
    let input = fixture("safetensors/numeric.safetensors");
    let o = run(&[
        &"convert",
        &input,
        &"--select",
        &"zz*",
        &"-o",
        &work.path().join("o.npz"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("numeric.safetensors") && err(&o).contains("'zz*'"),
        "{}",
        err(&o)
    );
    let o = run(&[&"convert", &input, &"-o", &work.path().join("o.npy")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("numeric.safetensors"), "{}", err(&o));
    // I/O failures name the path in words, without debug formatting (/proc refuses new files,
    // even to root)
    let o = run(&[&"convert", &input, &"-o", &"/proc/t2n-test.npz"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("cannot create a temporary file in /proc") && !e.contains("at path"),
        "{e}"
    );
    // and blame the path the user named
    let file = work.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let o = run(&[&"convert", &input, &"-o", &file.join("x.npz")]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("cannot create the directory {}", file.display())),
        "{}",
        err(&o)
    );
}

// 20 -----------------------------------------------------------------------------------------

#[test]
fn list_shows_ragged_shapes_like_json_and_accepts_quiet() {
    let o = run(&[
        &"list",
        &"-q",
        &fixture("sparse_ragged/ragged_2_batched.pb"),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(", ?"), "{text}");
}

#[test]
fn list_keeps_columns_aligned_for_wide_names() {
    let work = tempdir();
    let input = work.path().join("w.safetensors");
    fs::write(
        &input,
        safetensors_bytes(&[
            ("名前名前", "F32", vec![1], vec![0; 4]),
            ("abcdefgh", "F32", vec![1], vec![0; 4]),
        ]),
    )
    .unwrap();
    let o = run(&[&"list", &input]);
    let text = String::from_utf8(o.stdout).unwrap();
    let col = |line: &str| {
        let at = line.find("float32").unwrap();
        unicode_columns(&line[..at])
    };
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(col(lines[0]), col(lines[1]), "{text}");
}

/// Terminal columns of a string of ASCII and CJK ideographs (two columns each).
fn unicode_columns(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if ('\u{4e00}'..='\u{9fff}').contains(&c) {
                2
            } else {
                1
            }
        })
        .sum()
}

// 21 -----------------------------------------------------------------------------------------

#[test]
fn fill_without_densifying_is_a_usage_error() {
    let work = tempdir();
    let o = run(&[
        &"convert",
        &fixture("sparse_ragged/sparse_f32.pb"),
        &"--fill",
        &"7",
        &"-o",
        &work.path().join("o.npz"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--sparse dense"), "{}", err(&o));
}

#[test]
fn stats_json_ends_with_a_newline_and_names_the_cpu() {
    let work = tempdir();
    let o = run(&[
        &"convert",
        &"--stats=json",
        &fixture("safetensors/numeric.safetensors"),
        &"-o",
        &work.path().join("o.npz"),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let e = err(&o);
    assert!(e.ends_with("}\n"), "{e:?}");
    let v: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert_eq!(v["device"], "cpu", "{e}");
}

// 22 -----------------------------------------------------------------------------------------

#[test]
fn the_readme_states_the_crates_rust_version_and_a_working_stdin_example() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let cargo = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let stated: Vec<&str> = readme
        .split("Rust ")
        .skip(1)
        .map(|rest| rest.trim_start_matches('('))
        .filter(|rest| rest.starts_with("1."))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    assert!(!stated.is_empty(), "the README states no Rust version");
    assert!(
        stated.iter().all(|v| *v == version),
        "README says Rust {stated:?}, Cargo.toml {version}"
    );
    assert!(readme.contains("io.BytesIO(sys.stdin.buffer.read())"));
    assert!(!readme.contains("numpy.load(sys.stdin.buffer)"));
}

// 23 -----------------------------------------------------------------------------------------

#[test]
fn tf2_names_become_visible_files_in_a_directory() {
    let work = tempdir();
    let out = work.path().join("o");
    let o = run(&[&"convert", &fixture("ckpt/tf2/ckpt-1"), &"-o", &out]);
    assert!(o.status.success(), "{}", err(&o));
    let p = out.join("model/w/%2EATTRIBUTES/VARIABLE_VALUE.npy");
    assert!(p.is_file(), "{:?}", files_in(&out));
    let hidden: Vec<_> = files_in(&out)
        .into_iter()
        .filter(|p| {
            p.strip_prefix(&out)
                .unwrap()
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn the_readme_stdin_example_loads_in_numpy() {
    let py = python();
    if std::env::var_os("T2N_SKIP_NUMPY").is_some()
        || !Command::new(&py)
            .args(["-c", "import numpy"])
            .status()
            .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: no numpy");
        return;
    }
    let line = format!(
        "{} convert {} -o - | {py} -c 'import io, numpy, sys; print(numpy.load(io.BytesIO(sys.stdin.buffer.read())).shape)'",
        bin().display(),
        fixture("safetensors/single.safetensors").display()
    );
    let o = Command::new("sh").args(["-c", &line]).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let want = read_npz(&fixture("safetensors/single.expected.npz"))["weight"]
        .shape
        .clone();
    let got = String::from_utf8_lossy(&o.stdout);
    let want_txt = match want.as_slice() {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    assert_eq!(got.trim(), want_txt);
}

#[test]
fn the_readme_makefile_rule_works_on_a_clean_tree() {
    if Command::new("make").arg("--version").output().is_err() {
        eprintln!("skipped: no make");
        return;
    }
    let work = tempdir();
    let ckpt = work.path().join("ckpt");
    fs::create_dir(&ckpt).unwrap();
    for (from, to) in [
        ("ckpt-1.index", "model.index"),
        ("ckpt-1.data-00000-of-00001", "model.data-00000-of-00001"),
    ] {
        fs::copy(fixture("ckpt/tf2").join(from), ckpt.join(to)).unwrap();
    }
    fs::write(
        work.path().join("Makefile"),
        format!(
            "weights/%.npz: ckpt/%.index\n\t{} convert $< -o $@ --quiet\n",
            bin().display()
        ),
    )
    .unwrap();
    let o = Command::new("make")
        .arg("-C")
        .arg(work.path())
        .arg("weights/model.npz")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let got = read_npz(&work.path().join("weights/model.npz"));
    let want = read_npz(&fixture("ckpt/tf2.expected.npz"));
    assert_eq!(got, want);
}
