#!/usr/bin/env python3
"""NumPy files as input: tensor2npy against the script a NumPy user writes today, `np.load` +
`np.savez` (whole process, interpreter and import included), on inputs NumPy writes at run time
(nothing big is committed):

* a stored `.npz` (`np.savez`) of 16 large float32 arrays and 200 small ones, to a stored `.npz`
  (what `convert` does to select, rename or merge; the large members are copied in the kernel);
* the same arrays as `np.savez_compressed`, to a stored `.npz` (decompressing);
* one large `.npy` (`np.save`), to an `.npz` (named by its stem, as the tool names it).

The peer is NumPy's own C copy loop, so the target is the one the safetensors + NumPy peer has
(≥ 3x), not 10x: both sides move the same bytes, and tensor2npy's lead is the start-up, the
kernel copy and its second core.

Usage (a Python with NumPy; the release binary built first, with the NumPy input reader):
    cargo build --release
    BENCH_BIN=target/release/tensor2npy .venv/bin/python benches/numpy_bench.py

BENCH_REPS (default 3) rounds, contenders alternating; BENCH_SCALE (default 1 = 1 GiB of float32;
0.05-0.1 for a quick run) or BENCH_MB sets the size. Both outputs are checked identical, byte for
byte, before the table is printed.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, ratio_row, tensor2npy  # noqa: E402

BIN = tensor2npy()
REPS = int(os.environ.get("BENCH_REPS", "3"))
MB = int(os.environ.get("BENCH_MB") or max(8, 1024 * float(os.environ.get("BENCH_SCALE", "1"))))
KEEP = bool(os.environ.get("BENCH_DIR"))
WORK = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="t2n-numpy-bench-")

NPZ_SCRIPT = """
import sys, numpy as np
z = np.load(sys.argv[1])
np.savez(sys.argv[2], **{k: z[k] for k in z.files})
"""

NPY_SCRIPT = """
import os, sys, numpy as np
np.savez(sys.argv[2], **{os.path.basename(sys.argv[1])[:-4]: np.load(sys.argv[1])})
"""


def make_inputs():
    rng = np.random.default_rng(0)
    rows = MB * (1 << 20) // 16 // 4 // 1024
    arrays = {f"layers.{i}.weight": rng.standard_normal((rows, 1024), dtype=np.float32) for i in range(16)}
    arrays.update({f"layers.{i % 16}.small.{i}": rng.standard_normal(1024, dtype=np.float32) for i in range(200)})
    stored, compressed = os.path.join(WORK, "stored.npz"), os.path.join(WORK, "compressed.npz")
    np.savez(stored, **arrays)
    np.savez_compressed(compressed, **arrays)
    big = os.path.join(WORK, "weights.npy")
    np.save(big, rng.standard_normal((rows * 16, 1024), dtype=np.float32))
    return stored, compressed, big


def run(cmd):
    rss_file = os.path.join(WORK, ".rss")
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file, *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{p.stderr.decode(errors='replace')}")
    rss, user, system = open(rss_file).read().split()[-3:]
    return dt, int(rss) / 1024, float(user) + float(system)


def bench(title, src, script, peer):
    outs = {"tensor2npy": os.path.join(WORK, "t2n.npz"), peer: os.path.join(WORK, "py.npz")}
    cmds = {
        "tensor2npy": [BIN, "convert", src, "-o", outs["tensor2npy"], "--quiet"],
        peer: [sys.executable, "-c", script, src, outs[peer]],
    }
    results = {k: [] for k in cmds}
    for _ in range(REPS):
        for k, cmd in cmds.items():
            for o in outs.values():
                if os.path.exists(o):
                    os.remove(o)
            os.sync()
            results[k].append(run(cmd))
    run(cmds["tensor2npy"])  # the tool's last output was removed before the peer's last run
    a, b = np.load(outs["tensor2npy"]), np.load(outs[peer])
    assert sorted(a.files) == sorted(b.files), (a.files[:5], b.files[:5])
    for k in b.files:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k
    lines = [f"### {title} ({os.path.getsize(src) / 2**20:.1f} MiB, {len(b.files)} arrays) to a stored .npz\n",
             f"`benches/numpy_bench.py`: the input is written by NumPy at run time; the peer is {peer}, "
             "whole process.\n",
             "| contender | median s | min-max s | median CPU s (user+sys) | peak RSS MiB | median vs tensor2npy |",
             "|---|---|---|---|---|---|"]
    base = statistics.median(t for t, _, _ in results["tensor2npy"])
    for k, s in results.items():
        ts = [t for t, _, _ in s]
        med, cpu = statistics.median(ts), statistics.median(c for _, _, c in s)
        lines.append(f"| {k} | {med:.2f} | {min(ts):.2f}-{max(ts):.2f} | {cpu:.2f} | "
                     f"{max(r for _, r, _ in s):.0f} | {med / base:.1f}x |")
    lines.append(f"\n{REPS} rounds, alternating; outputs checked identical, byte for byte.\n")
    return lines, statistics.median(t for t, _, _ in results[peer]), base


def measure():
    stored, compressed, big = make_inputs()
    peer = "`np.load` + `np.savez`"
    l1, p1, b1 = bench("stored .npz (np.savez)", stored, NPZ_SCRIPT, peer)
    l2, p2, b2 = bench("compressed .npz (np.savez_compressed)", compressed, NPZ_SCRIPT, peer)
    l3, p3, b3 = bench("one large .npy (np.save)", big, NPY_SCRIPT, peer)
    emit("70-numpy", l1 + l2 + l3, [
        ratio_row("stored .npz → .npz: ≥ 3x faster than np.load + np.savez", p1, b1, goal=3.0),
        ratio_row("compressed .npz → stored .npz: ≥ 3x faster than np.load + np.savez", p2, b2, goal=3.0),
        ratio_row(".npy → .npz: ≥ 3x faster than np.load + np.savez", p3, b3, goal=3.0),
    ])


def main():
    try:
        measure()
    finally:
        if not KEEP:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
