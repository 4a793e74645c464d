//! Issue 31, the rough edges a newcomer hit: an honest `verify` that says what it checked and
//! checks every input, batches that keep going, FIFOs as outputs, the summary after `--update`,
//! string padding, `--stats` on the CPU, outputs refused before work, `list --metadata`, and
//! the messages and docs. Numbered by the issue's items.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn fixture(p: &str) -> PathBuf {
    root().join("fixtures").join(p)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn t2n(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(bin());
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

/// A copy of `fixtures/<from>` at `dir/<name>` with the byte at `at` (from the end when
/// negative) flipped.
fn damaged(dir: &Path, from: &str, name: &str, at: i64) -> PathBuf {
    let mut bytes = fs::read(fixture(from)).unwrap();
    let i = if at < 0 {
        bytes.len() - (-at) as usize
    } else {
        at as usize
    };
    bytes[i] ^= 0x01;
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

// 1 ------------------------------------------------------------------------------------------

#[test]
fn verify_says_a_format_without_checksums_was_only_read_and_can_fail_it() {
    let work = tempdir();
    // One flipped data byte (the last byte of the file is tensor data) goes unnoticed, and
    // verify must not claim otherwise.
    let st = damaged(
        work.path(),
        "safetensors/numeric.safetensors",
        "st.safetensors",
        -1,
    );
    let o = t2n(&[&"verify", &st]);
    assert!(o.status.success(), "{}", err(&o));
    let line = out(&o);
    assert!(line.contains("carries no checksums"), "{line}");
    assert!(line.contains("structure checked"), "{line}");
    assert!(
        !line.contains("matched") && !line.contains("verified"),
        "{line}"
    );
    let o = t2n(&[&"verify", &"--require-checksums", &st]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("no checksum"), "{}", err(&o));

    // A checkpoint carries a CRC32C per entry: 6 entries (the object graph included).
    let ck = fixture("ckpt/tf2/ckpt-1");
    let o = t2n(&[&"verify", &"--require-checksums", &ck]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("checksums verified"), "{}", out(&o));

    let o = t2n(&[&"verify", &"--json", &ck, &st]);
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["checked"], "checksums");
    assert!(v[0]["checksums"].as_u64().unwrap() >= 6, "{v:?}");
    assert_eq!(v[1]["checked"], "structure");
    assert_eq!(v[1]["checksums"], 0);
    assert_eq!(v[1]["ok"], true);
}

// 2 ------------------------------------------------------------------------------------------

#[test]
fn verify_checks_every_input_and_reports_each_like_gzip_t() {
    let work = tempdir();
    let bad1 = damaged(work.path(), "tfrecord/stackable.tfrecord", "a.tfrecord", -6);
    let bad2 = damaged(work.path(), "tfrecord/stackable.tfrecord", "b.tfrecord", -6);
    let good = fixture("ckpt/tf2/ckpt-1");
    let o = t2n(&[&"verify", &bad1, &good, &bad2]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("a.tfrecord"), "{}", err(&o));
    assert!(err(&o).contains("b.tfrecord"), "{}", err(&o));
    assert!(err(&o).contains("2 of 3 inputs failed"), "{}", err(&o));
    assert!(out(&o).contains("ckpt-1: ok"), "{}", out(&o));
}

#[test]
fn keep_going_writes_every_output_it_can_and_reports_every_failure() {
    let work = tempdir();
    let dir = work.path();
    let mut inputs = Vec::new();
    for name in ["numeric", "single"] {
        let p = dir.join(format!("{name}.safetensors"));
        fs::copy(fixture(&format!("safetensors/{name}.safetensors")), &p).unwrap();
        inputs.push(p);
    }
    // Two damaged inputs between the good ones: a truncated header, a truncated data block.
    let whole = fs::read(fixture("safetensors/slash.safetensors")).unwrap();
    fs::write(dir.join("cut.safetensors"), &whole[..100]).unwrap();
    fs::write(dir.join("short.safetensors"), &whole[..whole.len() - 1]).unwrap();
    inputs.insert(1, dir.join("cut.safetensors"));
    inputs.push(dir.join("short.safetensors"));
    let out_dir = dir.join("out");
    let run = |extra: &[&str], jobs: &str| {
        Command::new(bin())
            .arg("convert")
            .args(&inputs)
            .args(["-o", out_dir.to_str().unwrap(), "--to", "npz", "-j", jobs])
            .args(extra)
            .output()
            .unwrap()
    };
    // Without --keep-going the first failure stops everything, and nothing is written.
    let o = run(&[], "1");
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(!out_dir.exists());
    for jobs in ["1", "3"] {
        let o = run(&["--keep-going"], jobs);
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        let e = err(&o);
        assert!(
            e.contains("cut.safetensors") && e.contains("short.safetensors"),
            "{e}"
        );
        assert!(e.contains("2 inputs or outputs failed"), "{e}");
        for name in ["numeric", "single"] {
            let want = read_npz(&fixture(&format!("safetensors/{name}.expected.npz")));
            assert_same_arrays(&read_npz(&out_dir.join(format!("{name}.npz"))), &want, name);
        }
        assert!(!out_dir.join("cut.npz").exists() && !out_dir.join("short.npz").exists());
        assert_eq!(files_in(&out_dir).len(), 2, "{:?}", files_in(&out_dir));
        fs::remove_dir_all(&out_dir).unwrap();
    }
}

// 3 ------------------------------------------------------------------------------------------

#[test]
fn a_fifo_as_output_is_written_as_a_stream_and_waiting_for_a_reader_ends_with_ctrl_c() {
    use std::io::Read;
    let work = tempdir();
    let fifo = work.path().join("f.npy");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let input = fixture("safetensors/single.safetensors");
    // With a reader: the .npy arrives through the FIFO.
    let mut child = Command::new(bin())
        .arg("convert")
        .arg(&input)
        .arg("-o")
        .arg(&fifo)
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    fs::File::open(&fifo)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let want = read_npz(&fixture("safetensors/single.expected.npz"));
    let (_, want) = want.into_iter().next().unwrap();
    assert_eq!(parse_npy(&got), want);
    // Without a reader: it waits, and SIGINT ends the wait (130), leaving the FIFO alone.
    let mut child = Command::new(bin())
        .arg("convert")
        .arg(&input)
        .arg("-o")
        .arg(&fifo)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it should wait for a reader"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(130));
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(5) {
            child.kill().unwrap();
            panic!("still waiting 5 s after SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

// 8 ------------------------------------------------------------------------------------------

#[test]
fn outputs_that_cannot_be_what_they_say_are_refused_before_work_or_noted() {
    let work = tempdir();
    let input = fixture("safetensors/numeric.safetensors");
    // A directory where -o names an .npz: refused at once (usage, exit 2), left alone.
    let isdir = work.path().join("isdir.npz");
    fs::create_dir(&isdir).unwrap();
    fs::write(isdir.join("keep"), b"x").unwrap();
    let o = t2n(&[&"convert", &input, &"-o", &isdir]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("is a directory"), "{}", err(&o));
    assert_eq!(files_in(&isdir), vec![isdir.join("keep")]);
    // -o x.npy.gz becomes a directory of .npy files, and a note says so.
    let gz = work.path().join("x.npy.gz");
    let o = t2n(&[&"convert", &input, &"-o", &gz]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(gz.is_dir());
    assert!(err(&o).contains("will be a directory"), "{}", err(&o));
    let o = t2n(&[&"convert", &"-q", &input, &"-o", &work.path().join("w.zip")]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", err(&o));
}

#[test]
fn an_input_name_that_is_not_utf8_gives_an_escaped_output_name() {
    use std::os::unix::ffi::OsStrExt;
    let work = tempdir();
    let name = std::ffi::OsStr::from_bytes(b"w\xe9ights.safetensors");
    let input = work.path().join(name);
    fs::copy(fixture("safetensors/single.safetensors"), &input).unwrap();
    let o = t2n(&[&"convert", &input]);
    assert!(o.status.success(), "{}", err(&o));
    let want = work.path().join("w%E9ights.npz");
    assert!(want.is_file(), "{:?}", files_in(work.path()));
    assert_same_arrays(
        &read_npz(&want),
        &read_npz(&fixture("safetensors/single.expected.npz")),
        "single",
    );
}

// 10 -----------------------------------------------------------------------------------------

#[test]
fn messages_name_what_the_user_needs_once() {
    let work = tempdir();
    // The path once, not twice.
    let missing = work.path().join("foo.safetensors");
    let o = t2n(&[&"convert", &missing]);
    assert_eq!(o.status.code(), Some(1));
    let shown = missing.display().to_string();
    assert_eq!(err(&o).matches(&shown).count(), 1, "{}", err(&o));
    // A hard-linked output names the input it is.
    let input = work.path().join("in.safetensors");
    fs::copy(fixture("safetensors/single.safetensors"), &input).unwrap();
    let link = work.path().join("link.npz");
    fs::hard_link(&input, &link).unwrap();
    let o = t2n(&[&"convert", &input, &"-o", &link]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("in.safetensors"), "{}", err(&o));
    // Two inputs of one stem: both named.
    for d in ["a", "b"] {
        fs::create_dir(work.path().join(d)).unwrap();
        fs::copy(&input, work.path().join(d).join("m.safetensors")).unwrap();
    }
    let (a, b) = (
        work.path().join("a/m.safetensors"),
        work.path().join("b/m.safetensors"),
    );
    let o = t2n(&[
        &"convert",
        &a,
        &b,
        &"-o",
        &work.path().join("o"),
        &"--to",
        &"npz",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("a/m.safetensors") && err(&o).contains("b/m.safetensors"),
        "{}",
        err(&o)
    );
}

#[test]
fn messages_say_what_is_wrong_and_what_to_type() {
    let work = tempdir();
    let st = fixture("safetensors/single.safetensors");
    let o = t2n(&[
        &"convert",
        &"--chunk-size",
        &"1.5G",
        &st,
        &"-o",
        &work.path().join("a.npz"),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = t2n(&[&"convert", &"--chunk-size", &"1.5.5G", &st]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!err(&o).contains("unknown size suffix"), "{}", err(&o));
    let o = t2n(&[
        &"convert",
        &"--from",
        &"tfrecord",
        &fixture("torch/checkpoint.pt"),
        &"-o",
        &work.path().join("b.npz"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not a TFRecord"), "{}", err(&o));
    let o = t2n(&[&"convert", &"--cast", &"f99=f32", &st]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("valid names: f16 bf16 f32"), "{}", err(&o));
    let o = t2n(&[&st]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains(&format!("tensor2npy convert {}", st.display())),
        "{}",
        err(&o)
    );
}

// 11 -----------------------------------------------------------------------------------------

#[test]
fn help_lists_every_registered_format_and_man_pages_have_proper_sections() {
    for sub in ["convert", "list"] {
        let o = t2n(&[&sub, &"--help"]);
        let help = out(&o);
        let input = &help[help.find("<INPUT>").unwrap()..help.find("Options:").unwrap()];
        let names = tensor2npy::source::names();
        assert!(
            input.contains(&format!("{} formats", names.len())),
            "{input}"
        );
        for name in names {
            assert!(
                input.contains(name),
                "{name} missing from {sub}'s INPUT: {input}"
            );
        }
    }
    let o = t2n(&[&"convert", &"--help"]);
    assert!(
        out(&o).contains("--no-verify")
            && out(&o).contains("Checkpoints and SavedModels: do not verify")
    );
    for (page, sections) in [
        ("", &["EXIT STATUS", "EXAMPLES", "INPUT FORMATS"][..]),
        ("convert", &["OUTPUT", "DATA TYPES"][..]),
        ("verify", &["EXIT STATUS"][..]),
    ] {
        let o = if page.is_empty() {
            t2n(&[&"man"])
        } else {
            t2n(&[&"man", &page])
        };
        let roff = out(&o);
        assert!(!roff.contains(".SH EXTRA"), "{page}");
        for s in sections {
            assert!(roff.contains(&format!(".SH {s}\n")), "{page}: {s}");
        }
    }
    let roff = out(&t2n(&[&"man", &"convert"]));
    let synopsis = roff
        .split(".SH SYNOPSIS\n")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap();
    assert!(
        synopsis.contains("[\\fB\\-\\-select\\fR \\fIGLOB\\fR]"),
        "{synopsis}"
    );
    assert!(
        synopsis.contains("[\\fB\\-o\\fR|\\fB\\-\\-output\\fR \\fIPATH\\fR]"),
        "{synopsis}"
    );
    assert!(
        synopsis.contains("[\\fB\\-\\-stats\\fR[=\\fIFORMAT\\fR]]"),
        "{synopsis}"
    );
}

#[test]
fn the_readme_first_command_writes_under_target_and_names_every_ci_step() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let first = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- convert"))
        .unwrap();
    assert!(first.contains("-o target/"), "{first}");
    let ci = fs::read_to_string(root().join(".ci/run")).unwrap();
    // Every command .ci/run runs is described.
    for step in [
        "cargo fmt --check",
        "cargo clippy",
        "--no-default-features",
        "--profile ci",
        "T2N_WHEEL_PROFILE=ci",
        "packaging/check-wheel.sh",
        "moto",
    ] {
        assert!(ci.contains(step), "{step} is not in .ci/run any more");
        assert!(readme.contains(step), "the README does not describe {step}");
    }
}

#[test]
fn every_readme_heading_has_a_blank_line_before_it() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let mut in_code = false;
    let mut prev = "";
    for (i, line) in readme.lines().enumerate() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') && i > 0 {
            assert!(
                prev.is_empty(),
                "README.md line {}: '{line}' follows '{prev}'",
                i + 1
            );
        }
        prev = line;
    }
}

// 9 ------------------------------------------------------------------------------------------

#[test]
fn list_metadata_shows_each_formats_own_metadata() {
    let onnx = fixture("metadata/props.onnx");
    let st = fixture("safetensors/numeric.safetensors");
    let keras = fixture("hdf5/k3.keras");
    let o = t2n(&[&"list", &"--json", &"--metadata", &onnx, &st, &keras]);
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &v["metadata"];
    // ONNX: what onnx.load gives (written by gen_metadata.py).
    let want: serde_json::Value =
        serde_json::from_slice(&fs::read(fixture("metadata/props.expected.json")).unwrap())
            .unwrap();
    assert_eq!(m[onnx.to_str().unwrap()], want);
    // safetensors: the header's __metadata__, as the safetensors package wrote it.
    let bytes = fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert!(header["__metadata__"].is_object());
    assert_eq!(m[st.to_str().unwrap()], header["__metadata__"]);
    // Keras: the archive's config.json and metadata.json, as Keras wrote them.
    let mut zip = zip::ZipArchive::new(fs::File::open(&keras).unwrap()).unwrap();
    for (key, member) in [("config", "config.json"), ("metadata", "metadata.json")] {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut zip.by_name(member).unwrap(), &mut text).unwrap();
        let want: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(m[keras.to_str().unwrap()][key], want, "{member}");
    }
}

// 7 ------------------------------------------------------------------------------------------

#[test]
fn stats_on_the_cpu_report_read_convert_and_write_without_device_zeros() {
    let work = tempdir();
    let input = fixture("safetensors/numeric.safetensors");
    let want = read_npz(&fixture("safetensors/numeric.expected.npz"));
    let data: u64 = want.values().map(|a| a.data.len() as u64).sum();
    let o = t2n(&[
        &"convert",
        &"--stats",
        &"-j",
        &"1",
        &input,
        &"-o",
        &work.path().join("a.npz"),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let e = err(&o);
    assert!(!e.contains("host-to-device"), "{e}");
    let total = e.lines().find(|l| l.starts_with("total: ")).unwrap();
    assert!(
        total.contains(&format!("write {data} B in")),
        "{total} (want {data} B)"
    );
    assert!(total.contains("MB/s") && total.contains("read ") && total.contains("convert "));
    for name in want.keys() {
        assert!(
            e.lines().any(|l| l.starts_with(&format!("{name}: "))),
            "{name}: {e}"
        );
    }
    let o = t2n(&[
        &"convert",
        &"--stats=json",
        &input,
        &"-o",
        &work.path().join("b.npz"),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(v["total"]["written_bytes"], data);
    assert_eq!(v["tensors"].as_array().unwrap().len(), want.len());
}

// 4 ------------------------------------------------------------------------------------------

/// Runs a shell command line under a pseudo-terminal (`script`), returning what it printed.
fn on_a_terminal(cmdline: &str) -> Option<String> {
    let o = Command::new("script")
        .args(["-qec", cmdline, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn the_summary_after_update_counts_what_was_written_and_what_was_up_to_date() {
    let work = tempdir();
    let mut inputs = Vec::new();
    for name in ["numeric", "single", "slash"] {
        let p = work.path().join(format!("{name}.safetensors"));
        fs::copy(fixture(&format!("safetensors/{name}.safetensors")), &p).unwrap();
        inputs.push(p.display().to_string());
    }
    let out_dir = work.path().join("npz");
    let cmd = format!(
        "{} convert {} -o {} --to npz --update -j 1",
        bin().display(),
        inputs.join(" "),
        out_dir.display()
    );
    let Some(first) = on_a_terminal(&cmd) else {
        eprintln!("skipped: no script(1)");
        return;
    };
    assert!(first.contains("wrote "), "{first}");
    // One output goes away: the rerun writes it alone and says the other two were up to date.
    fs::remove_file(out_dir.join("single.npz")).unwrap();
    let text = on_a_terminal(&cmd).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("tensor2npy: wrote"))
        .unwrap();
    let single = read_npz(&fixture("safetensors/single.expected.npz")).len();
    let want = format!(
        "wrote {single} tensor{} (",
        if single == 1 { "" } else { "s" }
    );
    assert!(line.contains(&want), "{line}");
    assert!(line.contains("single.npz;"), "{line}");
    assert!(
        !line.contains("numeric.npz") && !line.contains("slash.npz"),
        "{line}"
    );
    assert!(line.contains("2 outputs up to date (--update)"), "{line}");
}

#[test]
fn keep_going_never_writes_an_output_shared_with_an_input_that_failed() {
    let dir = tempdir();
    let bad = dir.path().join("b.safetensors");
    fs::write(&bad, b"\x08\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let good = root().join("fixtures/safetensors/numeric.safetensors");
    // One output for both inputs: written whole or not at all.
    let out = dir.path().join("ab.npz");
    let o = Command::new(bin())
        .arg("convert")
        .arg(&good)
        .arg(&bad)
        .arg("-o")
        .arg(&out)
        .arg("--keep-going")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("b.safetensors"));
    assert!(!out.exists());
    // Each input with an output of its own: the good one is written.
    let o = Command::new(bin())
        .arg("convert")
        .arg(&good)
        .arg(&bad)
        .arg("-o")
        .arg(dir.path().join("each"))
        .args(["--to", "npz", "--keep-going"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(dir.path().join("each/numeric.npz").exists());
    assert!(!dir.path().join("each/b.npz").exists());
}
