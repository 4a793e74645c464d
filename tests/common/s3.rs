//! moto's S3 server on loopback (`tests/support/s3_server.py`), for the tests that read an input
//! from a bucket: started with the files to upload, pointed at by the environment [`S3::env`]
//! gives the binary, stopped when dropped (also when the test panics).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{assert_same_arrays, bin, files_in, python, read_npz, root, tempdir};

pub struct S3 {
    child: Child,
    pub port: u16,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    /// The server holding `uploads` (`key=path`, bucket `t2n`); `None`, saying the test is
    /// skipped, when the tests' Python has no moto[server] (a failure when
    /// `T2N_REQUIRE_REMOTE` is set, as in CI).
    pub fn start(uploads: &[String]) -> Option<S3> {
        let py = python();
        let moto = Command::new(&py)
            .args(["-c", "import moto.server, boto3"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !moto {
            assert!(
                std::env::var_os("T2N_REQUIRE_REMOTE").is_none(),
                "T2N_REQUIRE_REMOTE is set but {py} cannot import moto[server]"
            );
            eprintln!("skipped: {py} has no moto[server]");
            return None;
        }
        let child = Command::new(&py)
            .arg(root().join("tests/support/s3_server.py"))
            .args(uploads)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Held from here, so that the server stops if its port cannot be read.
        let mut server = S3 { child, port: 0 };
        let mut line = String::new();
        BufReader::new(server.child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        server.port = line.trim().parse().expect("s3_server.py prints its port");
        Some(server)
    }

    /// The environment that points the binary at this server, with test credentials and no
    /// home folder (so no user's AWS configuration is read).
    pub fn env(&self) -> [(&'static str, String); 6] {
        [
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("HOME", "/nonexistent".into()),
        ]
    }

    /// Converts `url` (with `args`) from this server and compares the result bit for bit with
    /// `oracle`, the local copy's.
    pub fn assert_converts(&self, url: &str, args: &[&str], oracle: &Path) {
        let dir = tempdir();
        let out = dir.path().join("o.npz");
        let o = Command::new(bin())
            .args(["convert", url, "-o"])
            .arg(&out)
            .args(args)
            .envs(self.env())
            .output()
            .unwrap();
        let what = format!("{url} {args:?}");
        assert!(
            o.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_arrays(&read_npz(&out), &read_npz(oracle), &what);
    }
}

/// Every file under `dir`, as `prefix/relative=path` upload arguments for [`S3::start`].
pub fn uploads(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for f in files_in(dir).into_iter().filter(|p| p.is_file()) {
        let rel = f.strip_prefix(dir).unwrap().display().to_string();
        out.push(format!("{prefix}/{rel}={}", f.display()));
    }
}
