#!/usr/bin/env python3
"""HDF5 / Keras and Flax msgpack: tensor2npy against the script a user writes today.

Generates at run time (nothing big is committed), in BENCH_DIR or a temporary directory:
  * weights.h5: a Keras-like weights file, contiguous float32 datasets (BENCH_MB MiB in all; default
    1 GiB times BENCH_SCALE, so that the work, not the start-up, dominates)
  * chunked.h5: the same data chunked (64 KiB chunks) with shuffle + deflate level 1
  * params.msgpack: flax.serialization.to_bytes of the same arrays
and times, alternating contenders, BENCH_REPS rounds (default 3):
  * tensor2npy convert IN -o out.npz (release build, BENCH_BIN)
  * h5py: every dataset's ds[()] into np.savez
  * flax: msgpack_restore, flattened with '/', into np.savez
Peak RSS is /usr/bin/time's maximum resident set size. Prints a Markdown table.

    KERAS_BACKEND=jax BENCH_BIN=target/release/tensor2npy .venv-jax/bin/python benches/hdf5_flax.py
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, ratio_row, tensor2npy  # noqa: E402

BIN = tensor2npy()
PY = sys.executable
REPS = int(os.environ.get("BENCH_REPS", "3"))
MB = int(os.environ.get("BENCH_MB") or max(8, 1024 * float(os.environ.get("BENCH_SCALE", "1"))))
WORK = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="t2n-bench-h5-")

H5PY_SCRIPT = """
import sys, h5py, numpy as np
arrays = {}
with h5py.File(sys.argv[1], "r") as f:
    f.visititems(lambda n, o: arrays.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
np.savez(sys.argv[2], **arrays)
"""

FLAX_SCRIPT = """
import sys, numpy as np
from flax import serialization
tree = serialization.msgpack_restore(open(sys.argv[1], "rb").read())
arrays = {}
def walk(t, p):
    if isinstance(t, dict):
        for k, v in t.items():
            walk(v, f"{p}/{k}" if p else k)
    else:
        arrays[p] = np.asarray(t)
walk(tree, "")
np.savez(sys.argv[2], **arrays)
"""


def run(cmd):
    rss_file = os.path.join(WORK, ".rss")
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{p.stderr.decode(errors='replace')}")
    return dt, int(open(rss_file).read().split()[-1]) / 1024


def arrays():
    rng = np.random.default_rng(0)
    per = MB * (1 << 20) // 8  # eight layers, each a kernel [n, 1024] and a bias
    rows = per // 4 // 1024
    return {f"layers/dense_{i}/vars/{j}": (rng.standard_normal((rows, 1024), dtype=np.float32)
                                          if j == 0 else rng.standard_normal(1024, dtype=np.float32))
            for i in range(8) for j in range(2)}


def main():
    import h5py
    from flax import serialization

    data = arrays()
    h5 = os.path.join(WORK, "weights.h5")
    chunked = os.path.join(WORK, "chunked.h5")
    mp = os.path.join(WORK, "params.msgpack")
    with h5py.File(h5, "w") as f:
        for k, v in data.items():
            f[k] = v
    with h5py.File(chunked, "w") as f:
        for k, v in data.items():
            if v.ndim == 2:
                f.create_dataset(k, data=v, chunks=(16, 1024), shuffle=True, compression="gzip",
                                 compression_opts=1)
            else:
                f[k] = v
    tree = {}
    for k, v in data.items():
        node = tree
        parts = k.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    with open(mp, "wb") as f:
        f.write(serialization.to_bytes(tree))
    out = os.path.join(WORK, "out.npz")
    cases = [
        ("contiguous .h5", h5, [PY, "-c", H5PY_SCRIPT, h5, out], "h5py + np.savez"),
        ("chunked, shuffle + deflate .h5", chunked, [PY, "-c", H5PY_SCRIPT, chunked, out], "h5py + np.savez"),
        ("Flax .msgpack", mp, [PY, "-c", FLAX_SCRIPT, mp, out], "flax msgpack_restore + np.savez"),
    ]
    lines = [f"### HDF5 / Keras and Flax msgpack ({MB} MiB of float32 in 16 tensors) to .npz\n",
             f"`benches/hdf5_flax.py`: the same 8 Keras-style layers as a contiguous `.h5`, a chunked `.h5` "
             "(shuffle + deflate level 1) and a Flax `to_bytes` file; the peers are h5py `ds[()]` and "
             "`flax.serialization.msgpack_restore`, then `np.savez`, whole process. "
             f"Median of {REPS} alternating runs (min–max), peak RSS.\n",
             "| input | contender | seconds | min–max | peak RSS MiB | ratio |",
             "|---|---|---|---|---|---|"]
    targets = []
    for title, inp, peer, peer_name in cases:
        contenders = {"tensor2npy": [BIN, "convert", inp, "-o", out, "--quiet"], peer_name: peer}
        res = {n: [] for n in contenders}
        for _ in range(REPS):
            for n, cmd in contenders.items():
                if os.path.exists(out):
                    os.remove(out)
                os.sync()
                res[n].append(run(cmd))
        med = {n: statistics.median(s for s, _ in r) for n, r in res.items()}
        for n, r in res.items():
            ts = [s for s, _ in r]
            ratio = med[peer_name] / med[n] if n == "tensor2npy" else 1.0
            lines.append(f"| {title} | {n} | {med[n]:.2f} | {min(ts):.2f}–{max(ts):.2f} | "
                         f"{max(m for _, m in r):.0f} | {ratio:.1f}× |")
        targets.append(ratio_row(f"{title}: ≥ 10x faster than {peer_name}", med[peer_name], med["tensor2npy"]))
    emit("60-hdf5-flax", lines, targets)


if __name__ == "__main__":
    main()
