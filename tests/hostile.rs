//! Hostile inputs II (issue 30): paths from an input that are named pipes, memory that a small
//! file could make grow with what it declares, `--max-output`, and batches under `--jobs` whose
//! one input fails.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs the binary with a deadline, so a hang fails the test instead of stalling it.
fn run_with_deadline(args: &[&OsStr], deadline: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
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
            child.wait().ok();
            panic!("tensor2npy {args:?} ran past {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 with a message naming `what`, and nothing written into `dir` but the inputs.
fn assert_refused(o: &Output, what: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for w in what {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_onnx_external_data_file_that_is_a_fifo_is_refused_at_once() {
    let dir = tempdir();
    let m = dir.path().join("m");
    fs::create_dir(&m).unwrap();
    fs::copy(
        root().join("fixtures/graph/ext_one/model.onnx"),
        m.join("model.onnx"),
    )
    .unwrap();
    mkfifo(&m.join("weights.data"));
    let model = m.join("model.onnx");
    let out = dir.path().join("w.npz");
    let o = run_with_deadline(
        &[
            OsStr::new("convert"),
            model.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ],
        Duration::from_secs(20),
    );
    assert_refused(&o, &["weights.data", "named pipe"]);
    assert!(!out.exists());
    let o = run_with_deadline(
        &[OsStr::new("list"), model.as_os_str()],
        Duration::from_secs(20),
    );
    assert_refused(&o, &["weights.data", "named pipe"]);
    let o = run_with_deadline(
        &[OsStr::new("verify"), model.as_os_str()],
        Duration::from_secs(20),
    );
    assert_refused(&o, &["weights.data", "named pipe"]);
}

#[test]
fn a_checkpoint_shard_that_is_a_fifo_is_refused_at_once() {
    let dir = tempdir();
    fs::copy(
        root().join("fixtures/ckpt/many/ckpt.index"),
        dir.path().join("ckpt.index"),
    )
    .unwrap();
    mkfifo(&dir.path().join("ckpt.data-00000-of-00001"));
    let prefix = dir.path().join("ckpt");
    let out = dir.path().join("w.npz");
    let o = run_with_deadline(
        &[
            OsStr::new("convert"),
            prefix.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ],
        Duration::from_secs(20),
    );
    assert_refused(&o, &["ckpt.data-00000-of-00001", "named pipe"]);
    assert!(!out.exists());
}

#[test]
fn a_pipe_named_on_the_command_line_is_still_read() {
    // The user's own `<(cat model)` is read once and spooled, as before.
    let src = root().join("fixtures/graph/typed.onnx");
    let o = Command::new("bash")
        .arg("-c")
        .arg("exec \"$0\" list <(cat \"$1\")")
        .arg(bin())
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}
