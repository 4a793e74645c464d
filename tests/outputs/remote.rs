//! Remote inputs against real servers on loopback: a Range-honouring HTTP server
//! (tests/support/range_server.py, standard library only) and an S3-compatible server (moto's
//! server mode, tests/support/s3_server.py; skipped when moto is missing unless
//! T2N_REQUIRE_REMOTE=1, as CI sets). No test reaches beyond 127.0.0.1.
#![cfg(feature = "remote")]

use crate::common;

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
    range_server(&root().join("fixtures"), extra)
}

/// The Range HTTP server (`range_server.py`) serving `dir`, with its options `extra`.
fn range_server(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec![dir.display().to_string()];
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
    let s = range_server(dir.path(), &[]);
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
    let s = range_server(data.path(), &["--etag-changes-after", "3"]);
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

/// The bytes of object `key` of bucket `t2n`, or `None` when there is no such object.
fn s3_get(py: &str, port: u16, key: &str) -> Option<Vec<u8>> {
    let script = format!(
        "import boto3, sys\n\
         s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')\n\
         try:\n    sys.stdout.buffer.write(s3.get_object(Bucket='t2n', Key='{key}')['Body'].read())\n\
         except s3.exceptions.NoSuchKey:\n    sys.exit(3)\n"
    );
    let o = Command::new(py).arg("-c").arg(script).output().unwrap();
    match o.status.code() {
        Some(0) => Some(o.stdout),
        Some(3) => None,
        _ => panic!("boto3 get {key}: {}", String::from_utf8_lossy(&o.stderr)),
    }
}

/// Keys of bucket `t2n` under `prefix`, sorted.
fn s3_keys(py: &str, port: u16, prefix: &str) -> Vec<String> {
    let script = format!(
        "import boto3\n\
         s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')\n\
         for o in s3.list_objects_v2(Bucket='t2n', Prefix='{prefix}').get('Contents', []): print(o['Key'])\n"
    );
    let o = Command::new(py).arg("-c").arg(script).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut keys: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    keys.sort();
    keys
}

/// `tensor2npy ARGS` run in `cwd`.
fn t2n_in(cwd: &Path, args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn an_output_url_of_an_unknown_scheme_is_a_usage_error_and_never_a_local_path() {
    let dir = tempdir();
    let input = root().join("fixtures/safetensors/numeric.safetensors");
    for url in ["foo://bucket/x.npz", "http://127.0.0.1:9/x.npz"] {
        let o = t2n_in(
            dir.path(),
            &["convert", input.to_str().unwrap(), "-o", url],
            &[],
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("://"), "{stderr}");
        assert!(
            files_in(dir.path()).is_empty(),
            "{url} left {:?}",
            files_in(dir.path())
        );
    }
}

#[test]
fn outputs_in_s3_are_the_bytes_of_local_outputs_for_archives_npy_directories_and_batches() {
    let py = python();
    if !moto_available(&py) {
        eprintln!("skipped: {py} has no moto[server] (pip install 'moto[server]')");
        return;
    }
    let s = Server::start(&py, "s3_server.py", &[]).expect("moto starts");
    let env = s3_env(s.port, "test");
    let dir = tempdir();
    let fx = |p: &str| root().join("fixtures").join(p).display().to_string();
    // 16 MiB of data: a multipart upload of several parts.
    zero_safetensors(&dir.path().join("big.safetensors"), [2048, 2048]);
    let big = dir.path().join("big.safetensors").display().to_string();
    let numeric = fx("safetensors/numeric.safetensors");
    let single = fx("safetensors/single.safetensors");
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec![&numeric], "local.npz", "s3://t2n/out/x.npz"),
        (vec![&big, "--jobs", "2"], "big.npz", "s3://t2n/out/big.npz"),
        (vec![&single], "local.npy", "s3://t2n/out/one.npy"),
    ];
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    for (args, local, url) in &cases {
        let run = |o: &str| {
            let mut a = vec!["convert", "--quiet", "-o", o];
            a.extend(args.iter().copied());
            let out = t2n_in(&work, &a, &env);
            assert!(
                out.status.success(),
                "{o}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(local);
        run(url);
        let key = url.strip_prefix("s3://t2n/").unwrap();
        let object = s3_get(&py, s.port, key).expect("the object exists");
        assert!(
            object == std::fs::read(work.join(local)).unwrap(),
            "{url} differs from {local}"
        );
    }
    // Nothing was written under a local `s3:` directory.
    assert!(!work.join("s3:").exists());

    // A directory output: one object per file under the prefix.
    let local_dir = work.join("d");
    for o in [local_dir.to_str().unwrap(), "s3://t2n/dir/"] {
        let out = t2n_in(&work, &["convert", "--quiet", &numeric, "-o", o], &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut local_files: Vec<String> = walk(&local_dir)
        .iter()
        .map(|p| p.strip_prefix(&local_dir).unwrap().display().to_string())
        .collect();
    local_files.sort();
    let keys = s3_keys(&py, s.port, "dir/");
    assert_eq!(
        keys,
        local_files
            .iter()
            .map(|f| format!("dir/{f}"))
            .collect::<Vec<_>>()
    );
    for f in &local_files {
        let object = s3_get(&py, s.port, &format!("dir/{f}")).unwrap();
        assert!(object == std::fs::read(local_dir.join(f)).unwrap(), "{f}");
    }

    // A batch: each input becomes PREFIX/<stem>.npz, with a manifest naming the objects.
    let manifest = work.join("m.jsonl");
    let out = t2n_in(
        &work,
        &[
            "convert",
            "--quiet",
            &numeric,
            &single,
            "--to",
            "npz",
            "-o",
            "s3://t2n/batch",
            "--manifest",
            manifest.to_str().unwrap(),
            "--jobs",
            "2",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s3_keys(&py, s.port, "batch/"),
        ["batch/numeric.npz", "batch/single.npz"]
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"s3://t2n/batch/numeric.npz\""), "{text}");
    // Again with --update: the manifest says both objects are up to date.
    let out = t2n_in(
        &work,
        &[
            "convert",
            "--quiet",
            &numeric,
            &single,
            "--to",
            "npz",
            "-o",
            "s3://t2n/batch",
            "--manifest",
            manifest.to_str().unwrap(),
            "--update",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    let statuses: Vec<&str> = text
        .lines()
        .map(|l| {
            if l.contains("\"up-to-date\"") {
                "up-to-date"
            } else {
                "written"
            }
        })
        .collect();
    assert_eq!(
        statuses,
        ["written", "written", "up-to-date", "up-to-date"],
        "{text}"
    );

    // A failed upload (no such bucket) fails, and leaves nothing behind locally.
    let before = files_in(&work).len();
    let out = t2n_in(
        &work,
        &["convert", &numeric, "-o", "s3://nobucket/x.npz"],
        &env,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_in(&work).len(), before);
}

#[test]
fn presigned_urls_send_their_query_and_no_secret_is_ever_printed() {
    let sig = "X-Amz-Signature=s3cr3tsig";
    let s = http_server(&["--require-query", sig]);
    let port = s.port;
    let url = format!("http://127.0.0.1:{port}/safetensors/numeric.safetensors?{sig}");
    check_same(&url, "fixtures/safetensors/numeric.expected.npz", &[]);
    // With user-info too: list --json, a manifest, and an error keep both secrets out.
    let with_user =
        format!("http://alice:pa55word@127.0.0.1:{port}/safetensors/numeric.safetensors?{sig}");
    let o = t2n(&["list", "--json", &with_user], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("?***"), "{stdout}");
    let dir = tempdir();
    let manifest = dir.path().join("m.jsonl");
    let o = t2n(
        &[
            "convert",
            "--quiet",
            &with_user,
            "-o",
            dir.path().join("o.npz").to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&manifest).unwrap();
    let unsigned =
        format!("http://alice:pa55word@127.0.0.1:{port}/safetensors/numeric.safetensors");
    let failed = t2n(&["list", &unsigned], &[]);
    let wrong = t2n(&["list", &format!("{unsigned}?X-Amz-Signature=wrong")], &[]);
    for (what, out) in [
        ("list --json", stdout.to_string()),
        ("manifest", text),
        (
            "unsigned",
            String::from_utf8_lossy(&failed.stderr).into_owned(),
        ),
        ("wrong", String::from_utf8_lossy(&wrong.stderr).into_owned()),
    ] {
        assert!(
            !out.contains("s3cr3tsig") && !out.contains("pa55word"),
            "{what}: {out}"
        );
        assert!(!out.contains("=wrong"), "{what}: {out}");
        assert!(out.contains("***@127.0.0.1"), "{what}: {out}");
    }
    // Refused without the signature: access denied, a permanent failure.
    assert_eq!(failed.status.code(), Some(1));
}

#[test]
fn transient_failures_exit_75_and_permanent_ones_1() {
    let dir = tempdir();
    let out = dir.path().join("o.npz");
    // Connection refused: a port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = convert_to(&format!("http://127.0.0.1:{port}/x.safetensors"), &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{stderr}");
    // A server error on every request, after the retries.
    let s = http_server(&["--status", "503"]);
    let o = convert_to(&s.url("safetensors/numeric.safetensors"), &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A missing object and a corrupt input are permanent.
    let s = http_server(&[]);
    let o = convert_to(&s.url("safetensors/missing.safetensors"), &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = convert_to(&s.url("ckpt/tf2/checkpoint"), &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn a_stalled_server_times_out_with_75_and_sigterm_ends_a_blocked_read_within_two_seconds() {
    let data = tempdir();
    zero_safetensors(&data.path().join("big.safetensors"), [1024, 1024]);
    // The HEAD and the first GET are answered; then the server stalls.
    let s = range_server(data.path(), &["--stall-after", "2"]);
    let dir = tempdir();
    let out = dir.path().join("o.npz");
    let url = s.url("big.safetensors");
    let started = std::time::Instant::now();
    let o = t2n(
        &[
            "convert",
            &url,
            "-o",
            out.to_str().unwrap(),
            "--request-timeout",
            "1",
        ],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert!(files_in(dir.path()).is_empty());

    let mut child = Command::new(bin())
        .args(["convert", &url, "-o", out.to_str().unwrap(), "--quiet"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the read should be blocked"
    );
    let sent = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            sent.elapsed().as_secs_f64() < 2.0,
            "SIGTERM not honoured in 2 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn memory_is_bounded_per_run_not_per_remote_input() {
    let data = tempdir();
    let names: Vec<String> = (0..8).map(|i| format!("s{i}.safetensors")).collect();
    for n in &names {
        zero_safetensors(&data.path().join(n), [2048, 2048]); // 16 MiB each
    }
    let s = range_server(data.path(), &[]);
    let out = tempdir();
    let peak = |n: usize| -> u64 {
        let urls: Vec<String> = names[..n].iter().map(|f| s.url(f)).collect();
        let o = Command::new("/usr/bin/time")
            .args(["-f", "maxrss_kb=%M"])
            .arg(bin())
            .args(["convert", "--quiet", "--jobs", "1", "--to", "npz", "-o"])
            .arg(out.path())
            .args(&urls)
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
    let (one, eight) = (peak(1), peak(8));
    eprintln!("peak RSS: one remote input {one} KiB, eight {eight} KiB");
    // Each input's 16 MiB of fetched segments used to stay until the end (+112 MiB here).
    assert!(
        eight < one + (64 << 10),
        "8 remote inputs: {eight} KiB, one: {one} KiB"
    );
}

#[test]
fn two_workers_read_one_remote_input_at_least_as_fast_as_one() {
    // Two 32 MiB tensors, served at 20 ms per request.
    let data = tempdir();
    let n = 2048u64 * 4096 * 4;
    let header = format!(
        r#"{{"a":{{"dtype":"F32","shape":[2048,4096],"data_offsets":[0,{n}]}},"b":{{"dtype":"F32","shape":[2048,4096],"data_offsets":[{n},{}]}}}}"#,
        2 * n
    );
    let mut f = std::fs::File::create(data.path().join("big.safetensors")).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.set_len(8 + header.len() as u64 + 2 * n).unwrap();
    let s = range_server(data.path(), &["--delay-ms", "20"]);
    let out = tempdir();
    let time = |jobs: &str| {
        let started = std::time::Instant::now();
        let o = t2n(
            &[
                "convert",
                "--quiet",
                "--jobs",
                jobs,
                "-o",
                out.path().join(format!("o{jobs}.npz")).to_str().unwrap(),
                &s.url("big.safetensors"),
            ],
            &[],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        started.elapsed().as_secs_f64()
    };
    let (one, two) = (time("1"), time("2"));
    eprintln!("--jobs 1: {one:.2} s, --jobs 2: {two:.2} s");
    // Workers used to take turns with small requests: --jobs 2 took over twice as long.
    assert!(
        two < one * 1.5,
        "--jobs 1: {one:.2} s, --jobs 2: {two:.2} s"
    );
    assert!(
        std::fs::read(out.path().join("o1.npz")).unwrap()
            == std::fs::read(out.path().join("o2.npz")).unwrap()
    );
}

#[test]
fn each_worker_fetches_its_tensors_whole_in_requests_in_flight() {
    // Eight 4 MiB tensors: a worker's next tensor never starts where its last read ended, which
    // restarted its read window, so each tensor took four 1 MiB requests one after the other.
    let data = tempdir();
    let each = 1024u64 * 1024 * 4;
    let header: Vec<String> = (0..8u64)
        .map(|i| {
            format!(
                r#""t{i}":{{"dtype":"F32","shape":[1024,1024],"data_offsets":[{},{}]}}"#,
                i * each,
                (i + 1) * each
            )
        })
        .collect();
    let header = format!("{{{}}}", header.join(","));
    let path = data.path().join("eight.safetensors");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.set_len(8 + header.len() as u64 + 8 * each).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let s = range_server(data.path(), &[]);
    let out = tempdir();
    let o = t2n(
        &[
            "convert",
            "--quiet",
            "--jobs",
            "2",
            "-o",
            out.path().join("o.npz").to_str().unwrap(),
            &s.url("eight.safetensors"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (requests, bytes) = stats(&s);
    // Two 2 MiB GETs in flight per tensor, plus the HEAD and the header's reads (and this
    // count's own request); it took 38 before.
    assert!(requests <= 26, "{requests} requests");
    // No byte of one worker's tensor is fetched by the other's window too.
    assert!(
        bytes <= size + (64 << 10),
        "{bytes} bytes fetched of {size}"
    );
}
