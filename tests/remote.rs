//! Remote inputs against real servers on loopback: a Range-honouring HTTP server
//! (tests/support/range_server.py, standard library only) and an S3-compatible server (moto's
//! server mode, tests/support/s3_server.py; skipped when moto is missing unless
//! T2N_REQUIRE_REMOTE=1, as CI sets). No test reaches beyond 127.0.0.1.
#![cfg(feature = "remote")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;

fn python() -> String {
    std::env::var("T2N_PYTHON").unwrap_or_else(|_| {
        let venv = root().join(".venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    })
}

/// A server process that prints its port and stops when its standard input closes.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(python: &str, script: &str, args: &[String]) -> Option<Server> {
        let mut child = Command::new(python)
            .arg(root().join("tests/support").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .ok()?;
        match line.trim().parse() {
            Ok(port) => Some(Server { child, port }),
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                eprintln!("{script} did not start: {err}");
                None
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_server(extra: &[&str]) -> Server {
    let mut args = vec![root().join("fixtures").display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start("python3", "range_server.py", &args).expect("the loopback HTTP server starts")
}

fn t2n(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn convert_to(input: &str, out: &Path, env: &[(&str, String)]) -> std::process::Output {
    t2n(
        &["convert", input, "-o", out.to_str().unwrap(), "--quiet"],
        env,
    )
}

fn check_same(input: &str, oracle: &str, env: &[(&str, String)]) {
    let dir = tempdir();
    let out = dir.path().join("out.npz");
    let o = convert_to(input, &out, env);
    assert!(
        o.status.success(),
        "{input}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let want = read_npz(&root().join(oracle));
    assert_same_arrays(&read_npz(&out), &want, input);
}

#[test]
fn http_inputs_of_every_single_file_format_and_a_checkpoint_convert_like_local_copies() {
    let s = http_server(&[]);
    check_same(
        &s.url("safetensors/numeric.safetensors"),
        "fixtures/safetensors/numeric.expected.npz",
        &[],
    );
    check_same(
        &s.url("ckpt/tf2/ckpt-1"),
        "fixtures/ckpt/tf2.expected.npz",
        &[],
    );
    check_same(
        &s.url("ckpt/tf2/ckpt-1.index"),
        "fixtures/ckpt/tf2.expected.npz",
        &[],
    );
    // Every fixture case of the single-file formats, converted from the server.
    let fixtures = root().join("fixtures");
    let mut n = 0;
    for case in manifest() {
        let (Some(oracle), true) = (&case.oracle, case.args.is_empty()) else {
            continue;
        };
        let rel = case
            .input
            .strip_prefix(&fixtures)
            .unwrap()
            .display()
            .to_string();
        // Index files (Hugging Face, Keras) read their shards from the server too; folders
        // cannot be listed over HTTP.
        if !case.input.is_file() || rel.starts_with("ckpt/") {
            continue;
        }
        check_same(&s.url(&rel), &oracle.display().to_string(), &[]);
        n += 1;
    }
    assert!(n >= 10, "only {n} remote cases");
}

/// A float32 safetensors file of `shape`, all zeros: a small header before a sparse file.
fn zero_safetensors(path: &Path, shape: [u64; 2]) {
    let bytes = shape[0] * shape[1] * 4;
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{},{}],"data_offsets":[0,{bytes}]}}}}"#,
        shape[0], shape[1]
    );
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.set_len(8 + header.len() as u64 + bytes).unwrap();
}

fn stats(s: &Server) -> (u64, u64) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import urllib.request; print(urllib.request.urlopen('{}').read().decode())",
            s.url("__stats")
        ))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn list_of_a_large_remote_file_fetches_kilobytes_not_the_data() {
    // 64 MiB of data behind a small header.
    let dir = tempdir();
    zero_safetensors(&dir.path().join("big.safetensors"), [4096, 4096]);
    let s = Server::start(
        "python3",
        "range_server.py",
        &[dir.path().display().to_string()],
    )
    .unwrap();
    let o = t2n(&["list", "--json", &s.url("big.safetensors")], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("[4096,4096]"));
    let (_, bytes) = stats(&s);
    assert!(bytes < 256 << 10, "list fetched {bytes} bytes");
    // A conversion streams all of it, in bounded pieces.
    let out = dir.path().join("o.npy");
    let o = convert_to(&s.url("big.safetensors"), &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), (64 << 20) + 128);
}

#[test]
fn an_object_that_changes_between_reads_or_is_missing_fails_naming_it_and_leaves_nothing() {
    // 8 MiB behind a small header: read in several GETs, and the object "changes" after the
    // third request.
    let data = tempdir();
    zero_safetensors(&data.path().join("big.safetensors"), [2048, 1024]);
    let s = Server::start(
        "python3",
        "range_server.py",
        &[
            data.path().display().to_string(),
            "--etag-changes-after".into(),
            "3".into(),
        ],
    )
    .unwrap();
    let dir = tempdir();
    let out = dir.path().join("out.npz");
    let o = convert_to(&s.url("big.safetensors"), &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("changed"), "{stderr}");
    assert!(stderr.contains("big.safetensors"), "{stderr}");
    assert!(files_in(dir.path()).is_empty());

    let s = http_server(&[]);
    let url = s.url("safetensors/nothing-here.safetensors");
    let o = convert_to(&url, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing-here.safetensors"), "{stderr}");
    assert!(stderr.contains("no such object"), "{stderr}");
    assert!(files_in(dir.path()).is_empty());
}

fn s3_env(port: u16, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", secret.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("HOME", "/nonexistent".into()),
    ]
}

fn moto_available(python: &str) -> bool {
    let ok = Command::new(python)
        .args(["-c", "import moto.server, boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("T2N_REQUIRE_REMOTE").is_some() {
        panic!("T2N_REQUIRE_REMOTE is set but {python} cannot import moto[server]");
    }
    ok
}

#[test]
fn s3_inputs_convert_like_local_copies_and_never_print_credentials() {
    let py = python();
    if !moto_available(&py) {
        eprintln!("skipped: {py} has no moto[server] (pip install 'moto[server]')");
        return;
    }
    let f = |p: &str| root().join("fixtures").join(p);
    let mut uploads: Vec<String> = vec![format!(
        "numeric.safetensors={}",
        f("safetensors/numeric.safetensors").display()
    )];
    for entry in std::fs::read_dir(f("ckpt/tf2")).unwrap() {
        let p: PathBuf = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        uploads.push(format!("train/{name}={}", p.display()));
    }
    let sm = f("ckpt/saved_model");
    for entry in walk(&sm) {
        let rel = entry.strip_prefix(&sm).unwrap().display().to_string();
        uploads.push(format!("sm/{rel}={}", entry.display()));
    }
    // Composite folders: Hugging Face shards (safetensors, .bin) and Keras sharded weights.
    let folders = [
        ("hf", "torch/hf_sharded_st"),
        ("hfbin", "torch/hf_sharded_bin"),
        ("diffusers", "folders/diffusers_fp16"),
        ("ks", "keras/sharded"),
        ("kz", "keras/unzipped"),
    ];
    for (key, local) in folders {
        for entry in walk(&f(local)) {
            let rel = entry.strip_prefix(f(local)).unwrap().display().to_string();
            uploads.push(format!("{key}/{rel}={}", entry.display()));
        }
    }
    let s = Server::start(&py, "s3_server.py", &uploads).expect("moto starts");
    let env = s3_env(s.port, "test");
    check_same(
        "s3://t2n/numeric.safetensors",
        "fixtures/safetensors/numeric.expected.npz",
        &env,
    );
    check_same(
        "s3://t2n/train/ckpt-1",
        "fixtures/ckpt/tf2.expected.npz",
        &env,
    );
    // A checkpoint directory (its `checkpoint` file names the latest) and a SavedModel.
    check_same("s3://t2n/train", "fixtures/ckpt/tf2.expected.npz", &env);
    check_same(
        "s3://t2n/sm",
        "fixtures/ckpt/saved_model.expected.npz",
        &env,
    );

    // Each folder, and its index file, converts byte-identical to the local folder.
    let index_of = |key: &str| match key {
        "hf" => Some("model.safetensors.index.json"),
        "hfbin" => Some("pytorch_model.bin.index.json"),
        "ks" => Some("model.weights.json"),
        _ => None,
    };
    for (key, local) in folders {
        let dir = tempdir();
        let want = dir.path().join("local.npz");
        let o = convert_to(f(local).to_str().unwrap(), &want, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut remotes = vec![format!("s3://t2n/{key}")];
        remotes.extend(index_of(key).map(|i| format!("s3://t2n/{key}/{i}")));
        for remote in remotes {
            let got = dir.path().join("remote.npz");
            let o = convert_to(&remote, &got, &env);
            assert!(
                o.status.success(),
                "{remote}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                std::fs::read(&got).unwrap() == std::fs::read(&want).unwrap(),
                "{remote} differs from {local}"
            );
            std::fs::remove_file(&got).unwrap();
        }
    }

    // A missing object: exit 1 naming it; the secret never appears.
    let dir = tempdir();
    let secret = "s3cr3t-DO-NOT-PRINT";
    let o = convert_to(
        "s3://t2n/missing.safetensors",
        &dir.path().join("o.npz"),
        &s3_env(s.port, secret),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("s3://t2n/missing.safetensors"), "{stderr}");
    assert!(!stderr.contains(secret), "{stderr}");
    assert!(files_in(dir.path()).is_empty());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
