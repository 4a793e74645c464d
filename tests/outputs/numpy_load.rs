//! Real NumPy loads what the tool wrote: an .npz, a directory of .npy files, and both stdout
//! forms; values equal the oracles and every .npy file is byte-identical to what `np.save` writes
//! for the same array. Runs `python3` (or $T2N_PYTHON) with numpy, which .ci/run installs; set
//! T2N_SKIP_NUMPY=1 to skip on a machine without numpy.

use crate::common;

use std::fs;
use std::process::Command;

use common::*;

const CHECK: &str = r#"
import io, os, sys, zipfile
import numpy as np

out, fixtures = sys.argv[1], sys.argv[2]

def same(a, b, what):
    assert a.dtype == b.dtype, (what, a.dtype, b.dtype)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    assert a.tobytes() == b.tobytes(), what
    if a.dtype.kind in "fc":
        assert np.array_equal(a, b, equal_nan=True), what

def check_npz(path, oracle):
    got, want = np.load(path), np.load(oracle)
    assert sorted(got.files) == sorted(want.files), (path, got.files, want.files)
    for k in want.files:
        same(got[k], want[k], f"{path}:{k}")
    return len(want.files)

n = 0
n += check_npz(os.path.join(out, "numeric.npz"), os.path.join(fixtures, "safetensors/numeric.expected.npz"))
n += check_npz(os.path.join(out, "stdout.npz"), os.path.join(fixtures, "safetensors/numeric.expected.npz"))
n += check_npz(os.path.join(out, "tf2.npz"), os.path.join(fixtures, "ckpt/tf2.expected.npz"))
n += check_npz(os.path.join(out, "strings.npz"), os.path.join(fixtures, "tensorproto/st_string_2x3.expected.npz"))
slash = np.load(os.path.join(out, "slash.npz"))
assert "/abs/w" in slash.files, slash.files

# a directory of .npy files: values, and the exact bytes np.save writes
want = np.load(os.path.join(fixtures, "safetensors/numeric.expected.npz"))
for k in want.files:
    path = os.path.join(out, "dir", k + ".npy")
    arr = np.load(path)
    same(arr, want[k], path)
    buf = io.BytesIO()
    np.save(buf, want[k])
    assert open(path, "rb").read() == buf.getvalue(), f"{path} differs from np.save's bytes"
    n += 1

one = np.load(os.path.join(out, "stdout.npy"))
same(one, np.load(os.path.join(fixtures, "safetensors/single.expected.npz"))["weight"], "stdout.npy")
print(f"numpy {np.__version__} checked {n + 1} arrays")
"#;

#[test]
fn numpy_loads_every_output_kind_with_the_expected_values() {
    if std::env::var_os("T2N_SKIP_NUMPY").is_some() {
        eprintln!("T2N_SKIP_NUMPY is set: skipping the NumPy check");
        return;
    }
    let python = python();
    let has_numpy = Command::new(&python)
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_numpy,
        "{python} cannot import numpy: install it (`.ci/run` does), or set T2N_SKIP_NUMPY=1"
    );

    let dir = tempdir();
    let out = dir.path();
    let fx = root().join("fixtures");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(bin())
            .arg("convert")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let numeric = fx.join("safetensors/numeric.safetensors");
    run(&[
        numeric.as_os_str(),
        "-o".as_ref(),
        out.join("numeric.npz").as_os_str(),
    ]);
    run(&[
        numeric.as_os_str(),
        "-o".as_ref(),
        out.join("dir").as_os_str(),
    ]);
    fs::write(
        out.join("stdout.npz"),
        run(&[
            numeric.as_os_str(),
            "-o".as_ref(),
            "-".as_ref(),
            "--to".as_ref(),
            "npz".as_ref(),
        ]),
    )
    .unwrap();
    let single = fx.join("safetensors/single.safetensors");
    fs::write(
        out.join("stdout.npy"),
        run(&[single.as_os_str(), "-o".as_ref(), "-".as_ref()]),
    )
    .unwrap();
    let slash = fx.join("safetensors/slash.safetensors");
    run(&[
        slash.as_os_str(),
        "-o".as_ref(),
        out.join("slash.npz").as_os_str(),
    ]);
    let tf2 = fx.join("ckpt/tf2/ckpt-1");
    run(&[
        tf2.as_os_str(),
        "-o".as_ref(),
        out.join("tf2.npz").as_os_str(),
    ]);
    let strings = fx.join("tensorproto/st_string_2x3.pb");
    run(&[
        strings.as_os_str(),
        "-o".as_ref(),
        out.join("strings.npz").as_os_str(),
    ]);

    let o = Command::new(&python)
        .args(["-c", CHECK])
        .arg(out)
        .arg(&fx)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "NumPy check failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("checked"));
}

/// Tensors copied unchanged from the input, larger than the zip writer's buffer and smaller,
/// at offsets that are not page-aligned, load in NumPy with their exact bytes from an .npz (to a
/// file and to standard output) and from an .npy.
#[test]
fn numpy_loads_tensors_copied_unchanged_at_any_size_and_offset() {
    if std::env::var_os("T2N_SKIP_NUMPY").is_some() {
        return;
    }
    let python = python();
    let dir = tempdir();
    let input = dir.path().join("big.safetensors");
    // 3 tensors: 3 MiB + 5 bytes of u8, 4 KiB of f32, 2 MiB of f32; their offsets in the file
    // are not page-aligned
    let sizes = [(3 << 20) + 5, 4096, 2 << 20];
    let mut meta = serde_json::Map::new();
    let mut at = 0u64;
    for (i, n) in sizes.iter().enumerate() {
        let (dtype, shape) = if i == 0 { ("U8", *n) } else { ("F32", n / 4) };
        meta.insert(
            format!("t{i}"),
            serde_json::json!({"dtype": dtype, "shape": [shape], "data_offsets": [at, at + n]}),
        );
        at += n;
    }
    let header = serde_json::to_vec(&meta).unwrap();
    let data: Vec<u8> = (0..at).map(|i| (i * 7 % 251) as u8).collect();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file.extend_from_slice(&data);
    fs::write(&input, &file).unwrap();
    fs::write(dir.path().join("data.bin"), &data).unwrap();

    let npz = dir.path().join("big.npz");
    assert!(convert(&input, &npz).status.success());
    let stdout = Command::new(bin())
        .args(["convert", "--to", "npz", "-o", "-"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(stdout.status.success());
    fs::write(dir.path().join("stdout.npz"), &stdout.stdout).unwrap();
    let npy = dir.path().join("t0.npy");
    let o = Command::new(bin())
        .args(["convert", "--select", "t0", "-o"])
        .arg(&npy)
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let script = r#"
import sys, os, zipfile, numpy as np
d = sys.argv[1]
data = open(os.path.join(d, "data.bin"), "rb").read()
sizes = [(3 << 20) + 5, 4096, 2 << 20]
want, at = {}, 0
for i, n in enumerate(sizes):
    want[f"t{i}"] = data[at:at + n]
    at += n
for name in ["big.npz", "stdout.npz"]:
    p = os.path.join(d, name)
    assert zipfile.ZipFile(p).testzip() is None, p
    z = np.load(p)
    assert sorted(z.files) == ["t0", "t1", "t2"], z.files
    for k, v in want.items():
        assert z[k].tobytes() == v, (name, k)
    assert z["t0"].dtype == np.uint8 and z["t2"].dtype == np.float32
a = np.load(os.path.join(d, "t0.npy"))
assert a.dtype == np.uint8 and a.tobytes() == want["t0"]
print("ok")
"#;
    let o = Command::new(python)
        .args(["-c", script])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
