#!/usr/bin/env python3
"""Orbax checkpoints and zarr arrays: tensor2npy against the script a JAX user writes today,
on inputs written at run time by the real libraries (nothing big is committed):

* an Orbax `StandardCheckpointer` save (the default OCDBT layout, TensorStore's zarr inside) of
  a PyTree of 8 Dense-like layers (a float32 kernel [n, 1024] and a bias each), against
  `StandardCheckpointer().restore` + the tree flattened with '/' + `np.savez`;
* a zarr v3 array of the same bytes (one float32 [rows, 1024] array, 1 MiB chunks of whole rows,
  zstd), against zarr-python `zarr.open(...)[...]` + `np.savez`.

Usage (a Python with jax, orbax-checkpoint and zarr 3; the release binary built first):
    cargo build --release
    BENCH_BIN=target/release/tensor2npy .venv-orbax/bin/python benches/orbax_zarr.py

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

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, ratio_row, tensor2npy  # noqa: E402

BIN = tensor2npy()
REPS = int(os.environ.get("BENCH_REPS", "3"))
MB = int(os.environ.get("BENCH_MB") or max(8, 1024 * float(os.environ.get("BENCH_SCALE", "1"))))
KEEP = bool(os.environ.get("BENCH_DIR"))
WORK = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="t2n-orbax-bench-")
ENV = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")

ORBAX_SCRIPT = """
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, jax, orbax.checkpoint as ocp
tree = ocp.StandardCheckpointer().restore(sys.argv[1])
out = {}
for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
    out[name] = np.asarray(leaf)
np.savez(sys.argv[2], **out)
"""

ZARR_SCRIPT = """
import os, sys, numpy as np, zarr
a = zarr.open(sys.argv[1], mode="r")[...]
np.savez(sys.argv[2], **{os.path.basename(sys.argv[1].rstrip("/")).split(".")[0]: a})
"""


def make_inputs():
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    import zarr
    import zarr.codecs as zc

    rng = np.random.default_rng(0)
    rows = MB * (1 << 20) // 8 // 4 // 1024
    tree = {"params": {f"dense_{i}": {"kernel": jnp.asarray(rng.standard_normal((rows, 1024), dtype=np.float32)),
                                      "bias": jnp.asarray(rng.standard_normal(1024, dtype=np.float32))}
                       for i in range(8)}}
    ckpt = os.path.join(WORK, "ckpt")
    with ocp.StandardCheckpointer() as ck:
        ck.save(ckpt, tree)
    del tree

    path = os.path.join(WORK, "weights.zarr")
    total_rows = rows * 8
    z = zarr.create_array(store=path, shape=(total_rows, 1024), chunks=(256, 1024), dtype=np.float32,
                          compressors=zc.ZstdCodec(level=3), zarr_format=3)
    for start in range(0, total_rows, 4096):
        stop = min(total_rows, start + 4096)
        z[start:stop] = rng.standard_normal((stop - start, 1024), dtype=np.float32)
    return ckpt, path


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run(cmd):
    rss_file = os.path.join(WORK, ".rss")
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file, *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
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
    # the last round's outputs: the tool's is removed before the peer runs, so convert once more
    run(cmds["tensor2npy"])
    a, b = np.load(outs["tensor2npy"]), np.load(outs[peer])
    assert sorted(a.files) == sorted(b.files), (a.files, b.files)
    for k in b.files:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k
    lines = [f"### {title} ({du(src) / 2**20:.1f} MiB on disk, {len(b.files)} arrays) to .npz\n",
             f"`benches/orbax_zarr.py`: the input is written by the library at run time; the peer is "
             f"{peer}, whole process.\n",
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


def main():
    try:
        measure()
    finally:
        if not KEEP:
            shutil.rmtree(WORK, ignore_errors=True)


def measure():
    ckpt, arr = make_inputs()
    l1, p1, b1 = bench(f"Orbax StandardCheckpointer (OCDBT), {MB} MiB of float32 in 16 arrays", ckpt,
                       ORBAX_SCRIPT, "`StandardCheckpointer().restore` + `np.savez`")
    l2, p2, b2 = bench(f"zarr v3 array, zstd, 1 MiB chunks, {MB} MiB of float32", arr, ZARR_SCRIPT,
                       "zarr-python `zarr.open(...)[...]` + `np.savez`")
    emit("65-orbax-zarr", l1 + l2, [
        ratio_row("Orbax (OCDBT): ≥ 10x faster than StandardCheckpointer.restore + np.savez", p1, b1),
        ratio_row("zarr v3 (zstd): ≥ 10x faster than zarr-python + np.savez", p2, b2),
    ])


if __name__ == "__main__":
    main()
