//! Test helpers: an independent `.npy` / `.npz` reader (so that outputs are compared with the
//! NumPy-written oracles by content, not by trusting the tool's own writer), the fixture
//! manifest, and running the binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

pub mod cases;
pub mod s3;

/// One array as stored in a `.npy`: its descr, shape and raw data bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub descr: String,
    pub fortran: bool,
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: the one cargo built with the tests, or `$T2N_BIN` (to run the tests
/// against another build of it, such as the release binary the wheel ships).
pub fn bin() -> PathBuf {
    std::env::var_os("T2N_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tensor2npy")))
}

/// Parses a `.npy` byte string (versions 1, 2 and 3).
pub fn parse_npy(bytes: &[u8]) -> Array {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an .npy file");
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => panic!("unknown .npy version {v}"),
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(header.ends_with('\n'));
    assert_eq!(
        (start + hlen) % 64,
        0,
        "data offset not 64-aligned: {header:?}"
    );
    let field = |key: &str| -> &str {
        let at = header
            .find(&format!("'{key}': "))
            .unwrap_or_else(|| panic!("no {key} in {header}"));
        &header[at + key.len() + 4..]
    };
    let descr_rest = field("descr");
    let descr = descr_rest[1..].split('\'').next().unwrap().to_string();
    let fortran = field("fortran_order").starts_with("True");
    let shape_rest = field("shape");
    let shape_txt = &shape_rest[1..shape_rest.find(')').unwrap()];
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().unwrap())
        .collect();
    Array {
        descr,
        fortran,
        shape,
        data: bytes[start + hlen..].to_vec(),
    }
}

pub fn read_npy(path: &Path) -> Array {
    parse_npy(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Every member of an `.npz`, keyed as `np.load(...).files` gives them.
pub fn read_npz(path: &Path) -> BTreeMap<String, Array> {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    read_npz_from(f)
}

pub fn read_npz_from<R: Read + std::io::Seek>(r: R) -> BTreeMap<String, Array> {
    let mut zip = zip::ZipArchive::new(r).expect("a valid zip archive");
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut m = zip.by_index(i).unwrap();
        let name = m.name().unwrap().to_string();
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        let mut bytes = Vec::new();
        m.read_to_end(&mut bytes).unwrap();
        out.insert(key, parse_npy(&bytes));
    }
    out
}

/// Every `.npy` under a directory, keyed by relative path without `.npy`.
pub fn read_npy_dir(dir: &Path) -> BTreeMap<String, Array> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel.strip_suffix(".npy").unwrap().to_string(), read_npy(&p));
            }
        }
    }
    out
}

/// Compares two archives member by member: same keys, descr, shape and bytes.
pub fn assert_same_arrays(
    got: &BTreeMap<String, Array>,
    want: &BTreeMap<String, Array>,
    what: &str,
) {
    let gk: Vec<_> = got.keys().collect();
    let wk: Vec<_> = want.keys().collect();
    assert_eq!(gk, wk, "{what}: member names differ");
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g.descr, w.descr, "{what}: '{k}' dtype");
        assert_eq!(g.shape, w.shape, "{what}: '{k}' shape");
        assert!(!g.fortran);
        if g.data != w.data {
            let at = g.data.iter().zip(&w.data).position(|(a, b)| a != b);
            panic!(
                "{what}: '{k}' data differs ({} vs {} bytes, first difference at byte {at:?})",
                g.data.len(),
                w.data.len()
            );
        }
    }
}

#[derive(Debug, Clone)]
pub struct Case {
    pub input: PathBuf,
    pub oracle: Option<PathBuf>,
    pub error: Option<String>,
    pub args: Vec<String>,
}

/// Every fixture case: `fixtures/manifest.json` (the TensorFlow and safetensors step of
/// `fixtures/generate.py`) and each `fixtures/<format>/manifest.json` written by the other
/// generator steps, in a fixed order.
pub fn manifest() -> Vec<Case> {
    let mut files = vec![root().join("fixtures/manifest.json")];
    let mut per_format: Vec<PathBuf> = fs::read_dir(root().join("fixtures"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("manifest.json"))
        .filter(|p| p.is_file())
        .collect();
    per_format.sort();
    files.extend(per_format);
    files.iter().flat_map(|f| read_manifest(f)).collect()
}

fn read_manifest(file: &Path) -> Vec<Case> {
    let text = fs::read_to_string(file).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            input: root().join(c["input"].as_str().unwrap()),
            oracle: c["oracle"].as_str().map(|p| root().join(p)),
            error: c["error"].as_str().map(String::from),
            args: c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

/// The Python with NumPy the tests run: $T2N_PYTHON, else the `.venv` that `.ci/run` makes,
/// else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("T2N_PYTHON") {
        return p;
    }
    let venv = root().join(".venv/bin/python");
    if venv.is_file() {
        return venv.display().to_string();
    }
    "python3".into()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("t2n-test")
        .tempdir()
        .unwrap()
}

/// Files left in a directory (recursively), for "nothing was written" checks.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_in(&p));
                out.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Writes a safetensors file with one tensor whose data is a hole of zeros (a sparse file, so
/// that multi-GiB inputs cost no disk); returns the offset where the data starts.
pub fn write_sparse_safetensors(
    path: &Path,
    name: &str,
    dtype: &str,
    elements: u64,
    data_bytes: u64,
) -> u64 {
    use std::io::Write;
    let header = serde_json::json!({ name: {"dtype": dtype, "shape": [elements], "data_offsets": [0, data_bytes]} });
    let header = serde_json::to_vec(&header).unwrap();
    let mut f = fs::File::create(path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(&header).unwrap();
    let start = 8 + header.len() as u64;
    f.set_len(start + data_bytes).unwrap();
    start
}

/// Runs `tensor2npy convert INPUT -o OUTPUT` and returns what it did.
pub fn convert(
    input: impl AsRef<std::ffi::OsStr>,
    output: impl AsRef<std::ffi::OsStr>,
) -> std::process::Output {
    std::process::Command::new(bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(output)
        .output()
        .unwrap()
}

/// A safetensors file holding `(name, dtype, shape, bytes)` tensors, laid out in order (for
/// hand-made hostile inputs; real fixtures come from the safetensors package).
pub fn safetensors_bytes(tensors: &[(&str, &str, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend_from_slice(bytes);
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

/// Runs the binary under an address-space limit of `mib` MiB, with a deadline (120 s), failing
/// on an allocation failure or a panic. Standard output and error go to files, so that a large
/// output cannot fill a pipe nobody reads while the deadline is watched.
pub fn within_mib(mib: u64, args: &[&std::ffi::OsStr]) -> std::process::Output {
    assert!(
        std::process::Command::new("prlimit")
            .arg("--version")
            .output()
            .is_ok(),
        "prlimit (util-linux) is needed for the memory tests"
    );
    let logs = tempdir();
    let (out_path, err_path) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--as={}", mib << 20))
        .arg(bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let o = std::process::Output {
                status,
                stdout: fs::read(&out_path).unwrap(),
                stderr: fs::read(&err_path).unwrap(),
            };
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                !err.contains("memory allocation") && !err.contains("panicked"),
                "{args:?}: {err}"
            );
            return o;
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            child.kill().ok();
            child.wait().ok();
            panic!("tensor2npy {args:?} ran past 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A Flax msgpack file of 2^20 scalar leaves, {"0": 0, "1": 1, ..., "mkpr": ...}: keys in base
/// 36, values `i % 128` as positive fixints (6 MB), written into `dir`.
pub fn flax_million_leaves(dir: &Path) -> PathBuf {
    let n: u32 = 1 << 20;
    let key = |mut i: u32| {
        let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut k = Vec::new();
        loop {
            k.insert(0, digits[(i % 36) as usize]);
            i /= 36;
            if i == 0 {
                return k;
            }
        }
    };
    let mut f = vec![0xdf];
    f.extend(n.to_be_bytes());
    for i in 0..n {
        let k = key(i);
        f.push(0xa0 | k.len() as u8);
        f.extend(&k);
        f.push((i % 128) as u8);
    }
    let input = dir.join("leaves.msgpack");
    fs::write(&input, &f).unwrap();
    input
}
