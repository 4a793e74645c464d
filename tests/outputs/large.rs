//! Slow, disk-hungry checks, run by `cargo test -- --ignored` (and by the benchmark script):
//! an .npz member over 4 GiB needs zip64, and NumPy must load it.

use crate::common;

use std::fs;
use std::process::Command;

use common::*;

#[test]
#[ignore = "writes 2 x 4 GiB to disk; run with --ignored"]
fn an_npz_member_over_4_gib_is_zip64_and_loads_in_numpy() {
    let dir = tempdir();
    let input = dir.path().join("big.safetensors");
    let n: u64 = (4 << 30) + 4096 + 3;
    let data_start = write_sparse_safetensors(&input, "big", "U8", n, n);
    let f = fs::OpenOptions::new().write(true).open(&input).unwrap();
    // a recognisable byte past the 4 GiB mark
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0xab], data_start + n - 1).unwrap();
    drop(f);

    let out = dir.path().join("big.npz");
    let o = convert(&input, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::remove_file(&input).unwrap();

    let python = python();
    let script = "import numpy as np, sys\nz = np.load(sys.argv[1])\na = z['big']\nassert a.shape == (int(sys.argv[2]),) and a.dtype == np.uint8\nassert a[-1] == 0xab and a[:1000].sum() == 0\nprint('ok')";
    let o = Command::new(python)
        .args(["-c", script])
        .arg(&out)
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
