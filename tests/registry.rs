//! The reader registry: sniffing picks the right reader, `--from` takes every registered name,
//! and inputs no reader claims get a plain-words error naming the input (exit 1, no output).

mod common;

use std::fs;
use std::process::Command;

use common::*;

fn convert(input: &std::path::Path, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempdir();
    let o = Command::new(bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(dir.path().join("out.npz"))
        .args(extra)
        .output()
        .unwrap();
    (o, dir)
}

fn assert_refused(input: &std::path::Path, wanted: &str) {
    let (o, dir) = convert(input, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&input.display().to_string()),
        "names the input: {stderr}"
    );
    assert!(stderr.contains(wanted), "wanted '{wanted}' in: {stderr}");
    assert!(!stderr.contains("TensorProto"), "{stderr}");
    assert!(!stderr.contains("wire type"), "{stderr}");
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn a_zip_that_is_no_known_format_a_text_file_and_an_empty_file_are_named_as_such() {
    let dir = tempdir();
    // A real ZIP archive (an .npz) holding something no reader knows.
    let zip = dir.path().join("notes.zip");
    let mut z = zip::ZipWriter::new(fs::File::create(&zip).unwrap());
    z.start_file("readme.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut z, b"hello").unwrap();
    z.finish().unwrap();
    assert_refused(&zip, "a ZIP archive that is no known format");

    let text = dir.path().join("notes.txt");
    fs::write(&text, "Hello, these are my notes.\nNot a tensor.\n").unwrap();
    assert_refused(&text, "a text file");

    let empty = dir.path().join("empty.bin");
    fs::write(&empty, b"").unwrap();
    assert_refused(&empty, "empty");
}

#[test]
fn a_directory_that_is_no_model_says_what_was_looked_for() {
    let dir = tempdir();
    let sub = dir.path().join("just_a_dir");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("x.txt"), "x").unwrap();
    let (o, out) = convert(&sub, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    for what in [
        "SavedModel",
        "`checkpoint` file",
        ".index",
        "pass the files",
    ] {
        assert!(stderr.contains(what), "wanted '{what}' in: {stderr}");
    }
    assert!(files_in(out.path()).is_empty());
}

#[test]
fn from_accepts_every_registered_format_and_rejects_others_as_usage_errors() {
    let input = root().join("fixtures/safetensors/numeric.safetensors");
    let (o, _d) = convert(&input, &["--from", "safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, _d) = convert(&input, &["--from", "nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    for name in [
        "safetensors",
        "checkpoint",
        "savedmodel",
        "tfrecord",
        "tensorproto",
    ] {
        assert!(stderr.contains(name), "{name} listed in: {stderr}");
    }
    // Forcing a format that does not fit is that reader's error, exit 1.
    let (o, _d) = convert(&input, &["--from", "tfrecord"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_pipe_is_read_like_standard_input() {
    let input = root().join("fixtures/safetensors/numeric.safetensors");
    let dir = tempdir();
    let out = dir.path().join("out.npz");
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} convert <(cat {}) -o {}",
            bin().display(),
            input.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let want = read_npz(&root().join("fixtures/safetensors/numeric.expected.npz"));
    assert_same_arrays(&read_npz(&out), &want, "from a pipe");
}
