//! Rough edges of batches and bounds: memory bounded by the input's metadata (a large Hugging
//! Face index, many Flax leaves), the manifest and budget under `--keep-going` and `--update`,
//! `.keras` member CRCs in convert and verify, remote error messages, and `list` BYTES as
//! stored for HDF5.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// Runs the binary under a 256 MiB address-space limit (`prlimit --as`), with a deadline.
fn within_256_mib(args: &[&OsStr]) -> Output {
    within_mib(256, args)
}

fn err_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Hugging Face folder whose one shard holds tensor `a` (float32 [2]: 1.5, -2), and whose
/// index `model.safetensors.index.json` is written by `index` (about 120 MB in the tests).
fn hf_folder(index: impl FnOnce(&mut dyn Write)) -> tempfile::TempDir {
    let dir = tempdir();
    let shard = "model-00001-of-00001.safetensors";
    let data = [1.5f32.to_le_bytes(), (-2f32).to_le_bytes()].concat();
    fs::write(
        dir.path().join(shard),
        safetensors_bytes(&[("a", "F32", vec![2], data)]),
    )
    .unwrap();
    let f = fs::File::create(dir.path().join("model.safetensors.index.json")).unwrap();
    let mut w = std::io::BufWriter::new(f);
    index(&mut w);
    w.flush().unwrap();
    dir
}

const SHARD: &str = "model-00001-of-00001.safetensors";

#[test]
fn a_120_mb_hugging_face_index_converts_within_256_mib() {
    // A valid index whose `metadata` carries 120 MB of other members, beside a one-entry map.
    let dir = hf_folder(|w| {
        write!(w, "{{\"metadata\": {{\"total_size\": 8, \"notes\": [").unwrap();
        for i in 0..2_200_000u32 {
            let sep = if i == 0 { "" } else { "," };
            write!(
                w,
                "{sep}\"model.layers.{i}.self_attn.q_proj.weight: padding\""
            )
            .unwrap();
        }
        write!(w, "]}}, \"weight_map\": {{\"a\": \"{SHARD}\"}}}}").unwrap();
    });
    let index = dir.path().join("model.safetensors.index.json");
    assert!(fs::metadata(&index).unwrap().len() > 100 << 20);
    let out = dir.path().join("out.npz");
    let o = within_256_mib(&[
        OsStr::new("convert"),
        dir.path().as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", err_of(&o));
    let got = read_npz(&out);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(
        got["a"].data,
        [1.5f32.to_le_bytes(), (-2f32).to_le_bytes()].concat()
    );
}

#[test]
fn a_120_mb_weight_map_is_checked_within_256_mib() {
    // 1.6M entries, all in the one shard, which holds only `a`: the first missing one is named.
    let dir = hf_folder(|w| {
        write!(
            w,
            "{{\"metadata\": {{\"total_size\": 8}}, \"weight_map\": {{\"a\": \"{SHARD}\""
        )
        .unwrap();
        for i in 0..1_600_000u32 {
            write!(
                w,
                ",\"model.layers.{i}.self_attn.q_proj.weight\": \"{SHARD}\""
            )
            .unwrap();
        }
        write!(w, "}}}}").unwrap();
    });
    let out = dir.path().join("out.npz");
    let o = within_256_mib(&[
        OsStr::new("convert"),
        dir.path().as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err_of(&o));
    let err = err_of(&o);
    assert!(
        err.contains("tensor 'model.layers.0.self_attn.q_proj.weight' is not in")
            && err.contains(SHARD),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_flax_file_of_a_million_scalar_leaves_opens_within_160_mib() {
    // {"0": 0, "1": 1, ..., "mkpr": ...}: 2^20 keys (base 36) of positive fixints, 6 MB. The
    // tree is walked into compact leaves with their names in one buffer: about 64 bytes a leaf
    // (it held the parsed tree beside the leaves: 199 MiB).
    let dir = tempdir();
    let input = flax_million_leaves(dir.path());
    let out = dir.path().join("one.npy");
    // The leaf "zz" is number 36 * 35 + 35 = 1295: msgpack_restore gives np.asarray(1295 % 128).
    let o = within_mib(
        160,
        &[
            OsStr::new("convert"),
            input.as_os_str(),
            OsStr::new("--select"),
            OsStr::new("zz"),
            OsStr::new("-o"),
            out.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{}", err_of(&o));
    let a = read_npy(&out);
    assert_eq!((a.descr.as_str(), a.shape.clone()), ("<i8", vec![]));
    assert_eq!(
        i64::from_le_bytes(a.data[..8].try_into().unwrap()),
        1295 % 128
    );
}

// ---------------------------------------------------------------------------------------------
// Review leftovers: --keep-going and the manifest, --max-output and --update, .keras config.

fn f32_safetensors(name: &str, n: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
    safetensors_bytes(&[(name, "F32", vec![n as u64], data)])
}

fn manifest_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn inputs_dropped_by_keep_going_get_a_failed_manifest_line() {
    let dir = tempdir();
    let good = dir.path().join("good.safetensors");
    let broken = dir.path().join("broken.safetensors");
    let big = dir.path().join("big.safetensors");
    fs::write(&good, f32_safetensors("w", 4)).unwrap();
    // Cannot be opened: a header length past the end of the file.
    fs::write(&broken, [0xffu8; 16]).unwrap();
    // Opens, but its 4000 bytes pass --max-output in the first pass.
    fs::write(&big, f32_safetensors("w", 1000)).unwrap();
    let out = dir.path().join("out");
    let manifest = dir.path().join("m.jsonl");
    let o = Command::new(bin())
        .arg("convert")
        .args([&good, &broken, &big])
        .arg("-o")
        .arg(&out)
        .args([
            "--to",
            "npz",
            "--keep-going",
            "--max-output",
            "1000",
            "--manifest",
        ])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", err_of(&o));
    assert!(out.join("good.npz").exists());
    let lines = manifest_lines(&manifest);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let line_of = |p: &std::path::Path| {
        lines
            .iter()
            .find(|l| l["input"] == p.display().to_string())
            .unwrap_or_else(|| panic!("no line for {}: {lines:?}", p.display()))
            .clone()
    };
    assert_eq!(line_of(&good)["status"], "written");
    for (p, why) in [(&broken, "broken.safetensors"), (&big, "--max-output")] {
        let l = line_of(p);
        assert_eq!(l["status"], "failed", "{l}");
        assert!(l["error"].as_str().unwrap().contains(why), "{l}");
        let stem = p.file_stem().unwrap().to_str().unwrap();
        assert_eq!(
            l["output"],
            out.join(format!("{stem}.npz")).display().to_string(),
            "{l}"
        );
        assert!(l["identity"][0]["size"].is_u64(), "{l}");
    }
}

#[test]
fn max_output_charges_only_what_update_writes() {
    let dir = tempdir();
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    fs::write(&a, f32_safetensors("w", 200)).unwrap(); // 800 bytes of data
    fs::write(&b, f32_safetensors("w", 4)).unwrap();
    let out = dir.path().join("out");
    let run = |inputs: &[&std::path::Path], extra: &[&str]| {
        Command::new(bin())
            .arg("convert")
            .args(inputs)
            .arg("-o")
            .arg(&out)
            .args(["--to", "npz"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[&a], &[]);
    assert!(o.status.success(), "{}", err_of(&o));
    let before = fs::read(out.join("a.npz")).unwrap();
    // a.npz is up to date, so only b's 16 bytes (and its header) are charged.
    std::thread::sleep(Duration::from_millis(20));
    let o = run(&[&a, &b], &["--update", "--max-output", "500"]);
    assert!(o.status.success(), "{}", err_of(&o));
    assert_eq!(fs::read(out.join("a.npz")).unwrap(), before);
    assert!(out.join("b.npz").exists());
    // Still refused, before anything is written, when what is to be written passes it.
    fs::remove_file(out.join("a.npz")).unwrap();
    fs::remove_file(out.join("b.npz")).unwrap();
    let o = run(&[&a, &b], &["--update", "--max-output", "500"]);
    assert_eq!(o.status.code(), Some(1), "{}", err_of(&o));
    assert!(err_of(&o).contains("--max-output"), "{}", err_of(&o));
    assert!(files_in(&out).is_empty(), "{:?}", files_in(&out));
}

/// `fixtures/hdf5/k3.keras` with the CRC-32 recorded for `config.json` changed (in its local
/// header and its central directory entry), as a damaged archive has it.
fn keras_with_bad_config_crc() -> Vec<u8> {
    let mut z = fs::read(root().join("fixtures/hdf5/k3.keras")).unwrap();
    let name = b"config.json";
    let mut changed = 0;
    for at in 0..z.len().saturating_sub(46) {
        let (name_at, crc_at) = match &z[at..at + 4] {
            b"PK\x03\x04" => (30, 14),
            b"PK\x01\x02" => (46, 16),
            _ => continue,
        };
        if z.get(at + name_at..at + name_at + name.len()) == Some(name) {
            z[at + crc_at] ^= 0x55;
            changed += 1;
        }
    }
    assert_eq!(changed, 2, "config.json's two headers");
    z
}

#[test]
fn a_bad_crc_in_a_keras_config_fails_convert_and_verify() {
    let dir = tempdir();
    let path = dir.path().join("badconfig.keras");
    fs::write(&path, keras_with_bad_config_crc()).unwrap();
    let out = dir.path().join("out.npz");
    let o = convert(&path, &out);
    let err = err_of(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Bad CRC-32")
            && err.contains("config.json")
            && err.contains("badconfig.keras"),
        "{err}"
    );
    assert!(!out.exists());
    let o = Command::new(bin())
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = err_of(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Bad CRC-32") && err.contains("config.json"),
        "{err}"
    );
    // `list` still lists, and `list --metadata` shows why the config is unreadable.
    let o = Command::new(bin())
        .args(["list", "--json", "--metadata"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_of(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Bad CRC-32"));
}

// ---------------------------------------------------------------------------------------------
// Remote errors (issue 29): the URL once, each cause once, and where credentials come from.

/// The binary with no cloud credentials in its environment (nor a profile to read).
fn without_credentials(home: &std::path::Path) -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_") {
            c.env_remove(&k);
        }
    }
    c.env("HOME", home);
    c
}

#[test]
fn a_refused_connection_is_said_once_naming_the_url_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = tempdir();
    let o = without_credentials(home.path())
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .args([
            "list",
            "s3://bucket/x.safetensors",
            "--request-timeout",
            "2",
        ])
        .output()
        .unwrap();
    let err = err_of(&o);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert_eq!(err.matches("s3://bucket/x.safetensors").count(), 1, "{err}");
    assert!(!err.contains("http://127.0.0.1"), "{err}");
    assert_eq!(err.matches("error sending request").count(), 1, "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    // credentials were set: no hint about them
    assert!(!err.contains("credentials were found"), "{err}");
}

#[test]
fn missing_credentials_are_named_with_where_they_come_from() {
    let home = tempdir();
    let o = without_credentials(home.path())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .args([
            "list",
            "s3://bucket/x.safetensors",
            "--request-timeout",
            "2",
        ])
        .output()
        .unwrap();
    let err = err_of(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("no S3 credentials were found")
            && err.contains("AWS_ACCESS_KEY_ID")
            && err.contains("AWS_PROFILE"),
        "{err}"
    );
    assert_eq!(err.matches("s3://bucket/x.safetensors").count(), 1, "{err}");
}

// ---------------------------------------------------------------------------------------------
// The Dask recipe (issue 29), run for real in local mode against moto's loopback S3 server,
// writing to s3://. Skipped when no Python with Dask is found (T2N_DASK_PYTHON names one;
// CI does not install Dask) or moto is missing (as tests/remote.rs skips).

#[cfg(feature = "remote")]
#[test]
fn the_dask_recipe_converts_from_a_bucket_into_a_bucket() {
    use std::io::{BufRead, BufReader};
    let dask = std::env::var("T2N_DASK_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = |py: &str, module: &str| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has(&dask, "dask.bag") {
        eprintln!("skipped: {dask} has no Dask (set T2N_DASK_PYTHON to a Python with dask)");
        return;
    }
    let venv = root().join(".venv/bin/python");
    let py = match venv.exists() {
        true => venv.display().to_string(),
        false => "python3".into(),
    };
    if !has(&py, "moto.server, boto3") {
        eprintln!("skipped: {py} has no moto[server]");
        return;
    }
    let dir = tempdir();
    let shards = ["a", "b", "c"];
    let mut uploads = Vec::new();
    for (i, s) in shards.iter().enumerate() {
        let p = dir.path().join(format!("{s}.safetensors"));
        fs::write(&p, f32_safetensors("w", 10 + i)).unwrap();
        uploads.push(format!("in/{s}.safetensors={}", p.display()));
    }
    let mut server = Command::new(&py)
        .arg(root().join("tests/support/s3_server.py"))
        .args(&uploads)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("moto prints its port");
    let env = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ];
    let urls: Vec<String> = shards
        .iter()
        .map(|s| format!("s3://t2n/in/{s}.safetensors"))
        .collect();
    let o = Command::new(&dask)
        .arg(root().join("tests/support/dask_recipe.py"))
        .arg(bin())
        .arg("s3://t2n/out/")
        .args(&urls)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{report}{}", err_of(&o));
    for u in &urls {
        assert!(report.contains(&format!("{u} 0")), "{report}");
    }
    // Each object is byte for byte the local conversion of its shard.
    for s in shards {
        let local = dir.path().join(format!("{s}.npz"));
        let o = convert(dir.path().join(format!("{s}.safetensors")), &local);
        assert!(o.status.success(), "{}", err_of(&o));
        let fetched = dir.path().join(format!("{s}.fetched.npz"));
        let o = Command::new(&py)
            .args([
                "-c",
                "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1').download_file('t2n', sys.argv[2], sys.argv[3])",
            ])
            .arg(&env[0].1)
            .arg(format!("out/{s}.npz"))
            .arg(&fetched)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err_of(&o));
        assert_eq!(
            fs::read(&fetched).unwrap(),
            fs::read(&local).unwrap(),
            "{s}"
        );
    }
    drop(server.stdin.take());
    server.kill().ok();
    server.wait().ok();
}

// ---------------------------------------------------------------------------------------------
// `list` BYTES for HDF5 (issue 31 item 9): a chunked dataset's chunks as stored, as h5py's
// `ds.id.get_storage_size()` gives it (fixtures/gen_hdf5_storage.py), for every chunk index.

#[test]
fn list_bytes_of_chunked_hdf5_datasets_are_their_stored_size() {
    let oracle: serde_json::Value =
        serde_json::from_slice(&fs::read(root().join("fixtures/hdf5/storage_sizes.json")).unwrap())
            .unwrap();
    let mut compared = 0;
    for (file, sizes) in oracle.as_object().unwrap() {
        let o = Command::new(bin())
            .args(["list", "--json"])
            .arg(root().join("fixtures/hdf5").join(file))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err_of(&o));
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for (name, want) in sizes.as_object().unwrap() {
            let row = rows
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == *name)
                .unwrap_or_else(|| panic!("{file}: no row for {name}"));
            assert_eq!(row["bytes"], *want, "{file}: {name}");
            compared += 1;
        }
    }
    assert!(compared >= 10, "{compared}");
}

#[test]
fn update_without_a_manifest_says_it_judges_by_time_only() {
    let dir = tempdir();
    let a = dir.path().join("a.safetensors");
    fs::write(&a, f32_safetensors("w", 4)).unwrap();
    let out = dir.path().join("a.npz");
    let o = convert(&a, &out);
    assert!(o.status.success(), "{}", err_of(&o));
    std::thread::sleep(Duration::from_millis(20));
    // Other options, no manifest: left alone by time, and the note says what was not compared.
    let o = Command::new(bin())
        .arg("convert")
        .arg(&a)
        .arg("-o")
        .arg(&out)
        .args(["--update", "--select", "w", "--cast", "f32=f64"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_of(&o));
    let err = err_of(&o);
    assert!(
        err.contains("up to date")
            && err.contains("without --manifest a change of options is not noticed"),
        "{err}"
    );
}
