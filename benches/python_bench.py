"""The Python module against what a Python user would otherwise call, in one process: the same
safetensors file read by `tensor2npy.load`, by `safetensors.numpy.load_file`, and (after the
command converted it) by `np.load` of the `.npz` with every array read; plus a bfloat16 file,
which `safetensors.numpy` cannot read and tensor2npy widens to float32. Medians of alternating
rounds, page cache warm. Needs a Python with the wheel installed (`import tensor2npy`),
`safetensors` and NumPy: $BENCH_PY_PYTHON in benches/run.sh. BENCH_SCALE=1 is 256 MiB."""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensor2npy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, tensor2npy as command  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
ROUNDS = 5


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    from safetensors.numpy import load_file, save_file

    total = max(1 << 20, int(SCALE * (256 << 20)))
    rng = np.random.default_rng(0)
    n = 16
    per = total // n // 4
    tensors = {f"layer{i}/w": rng.standard_normal(per, dtype=np.float32) for i in range(n)}
    with tempfile.TemporaryDirectory() as d:
        st = os.path.join(d, "f32.safetensors")
        save_file(tensors, st)
        npz = os.path.join(d, "f32.npz")
        subprocess.run([command(), "convert", st, "-o", npz, "--quiet"], check=True)

        def npz_load():
            with np.load(npz) as z:
                return {k: z[k] for k in z.files}

        peers = {
            "tensor2npy.load": lambda: tensor2npy.load(st),
            "safetensors.numpy.load_file": lambda: load_file(st),
            "np.load of the converted .npz": npz_load,
        }
        times = {k: [] for k in peers}
        for _ in range(ROUNDS):
            for name, fn in peers.items():
                t, out = timed(fn)
                assert sorted(out) == sorted(tensors), name
                times[name].append(t)
        # bfloat16: the top half of each float32 (what torch and JAX store); only tensor2npy reads it.
        bf = os.path.join(d, "bf16.safetensors")
        import json
        import struct
        header, off = {}, 0
        for k, v in tensors.items():
            header[k] = {"dtype": "BF16", "shape": [per], "data_offsets": [off, off + 2 * per]}
            off += 2 * per
        head = json.dumps(header).encode()
        head += b" " * (-len(head) % 8)
        with open(bf, "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head)
            for v in tensors.values():
                f.write((v.view("<u4") >> 16).astype("<u2").tobytes())
        bf_times = [timed(lambda: tensor2npy.load(bf))[0] for _ in range(ROUNDS)]

    mib = total / (1 << 20)
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        "## Python module (`tensor2npy.load`)",
        "",
        f"One process, page cache warm, median of {ROUNDS} alternating rounds; a {mib:.0f} MiB "
        f"float32 safetensors file of {n} tensors.",
        "",
        "| reader | time | MiB/s |",
        "|---|---:|---:|",
    ]
    for k, t in med.items():
        lines.append(f"| {k} | {t * 1000:.1f} ms | {mib / t:.0f} |")
    bft = statistics.median(bf_times)
    lines.append(f"| tensor2npy.load, bfloat16 widened to float32 ({mib / 2:.0f} MiB in) | "
                 f"{bft * 1000:.1f} ms | {mib / 2 / bft:.0f} |")
    lines.append("")
    lines.append("safetensors.numpy cannot read bfloat16 (no NumPy dtype); gguf-py, h5py and "
                 "torch.load rows are in the per-format tables above.")
    t2n, st_t = med["tensor2npy.load"], med["safetensors.numpy.load_file"]
    targets = [("python: load within 1.5x of safetensors.numpy.load_file",
                f"{t2n / st_t:.2f}x ({t2n * 1000:.1f} ms against {st_t * 1000:.1f} ms)",
                t2n <= 1.5 * st_t)]
    emit("python", lines, targets)


if __name__ == "__main__":
    main()
