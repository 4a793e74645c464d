//! Real NumPy loads what the tool wrote: an .npz, a directory of .npy files, and both stdout
//! forms; values equal the oracles and every .npy file is byte-identical to what `np.save` writes
//! for the same array. Runs `python3` (or $T2N_PYTHON) with numpy, which .ci/run installs; set
//! T2N_SKIP_NUMPY=1 to skip on a machine without numpy.

mod common;

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
