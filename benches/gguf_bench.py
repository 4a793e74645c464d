#!/usr/bin/env python3
"""GGUF benchmark: tensor2npy against the script a gguf-py user writes today
(`GGUFReader` + `gguf.quants.dequantize` per tensor + `np.savez`), on a GGUF file generated at
run time with gguf-py (nothing big is committed): Q4_K, Q6_K and Q8_0 tensors shaped like a
small transformer's, as llama.cpp's Q4_K_M mix stores them, and one F32 norm per layer.

Usage (any Python with `gguf` and numpy; the release binary built first):
    cargo build --release
    .venv-gguf/bin/python benches/gguf_bench.py [BIN]

BENCH_REPS (default 3) rounds, contenders alternating; BENCH_SCALE (default 1 = 8 layers of
4096 x 4096, ~125 MiB of blocks, ~1 GiB of float32 out). Prints a Markdown table: medians,
min-max, CPU time, peak RSS (/usr/bin/time's maximum resident set size) and the ratios of
medians, after
checking that both outputs are identical.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, ratio_row, tensor2npy  # noqa: E402

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else tensor2npy()
REPS = int(os.environ.get("BENCH_REPS", "3"))
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
WORK = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="t2n-gguf-bench-")

PYTHON_SCRIPT = """
import sys, numpy as np, gguf
from gguf.quants import dequantize
r = gguf.GGUFReader(sys.argv[1])
np.savez(sys.argv[2], **{t.name: dequantize(t.data, t.tensor_type) for t in r.tensors})
"""


def random_blocks(rng, qtype, n_blocks):
    _, size = GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    scale_at = {T.Q4_K: [0, 2], T.Q6_K: [size - 2], T.Q8_0: [0]}[qtype]
    for off in scale_at:
        b[:, off:off + 2] = rng.uniform(-0.01, 0.01, n_blocks).astype(np.float16).view(np.uint8).reshape(-1, 2)
    return b


def make_input(path):
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, arch="llama")
    dim = 4096
    layers = max(1, int(8 * SCALE))
    for i in range(layers):
        for name, qt in [("attn_q", T.Q4_K), ("attn_k", T.Q4_K), ("attn_v", T.Q6_K),
                         ("attn_output", T.Q4_K), ("ffn_up", T.Q8_0)]:
            block, size = GGML_QUANT_SIZES[qt]
            blocks = random_blocks(rng, qt, dim * dim // block)
            w.add_tensor(f"blk.{i}.{name}.weight", blocks.reshape(dim, dim // block * size), raw_dtype=qt)
        w.add_tensor(f"blk.{i}.attn_norm.weight", rng.standard_normal(dim).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


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


def main():
    src = os.path.join(WORK, "model.gguf")
    make_input(src)
    outs = {"tensor2npy": os.path.join(WORK, "t2n.npz"), "gguf-py": os.path.join(WORK, "py.npz")}
    cmds = {
        "tensor2npy": [BIN, "convert", src, "-o", outs["tensor2npy"], "--quiet"],
        "gguf-py": [sys.executable, "-c", PYTHON_SCRIPT, src, outs["gguf-py"]],
    }
    results = {k: [] for k in cmds}
    for _ in range(REPS):
        for k, cmd in cmds.items():
            if os.path.exists(outs[k]):
                os.remove(outs[k])
            os.sync()
            results[k].append(run(cmd))
    a, b = np.load(outs["tensor2npy"]), np.load(outs["gguf-py"])
    assert sorted(a.files) == sorted(b.files)
    for k in b.files:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k
    size_in = os.path.getsize(src) / 2**20
    size_out = os.path.getsize(outs["tensor2npy"]) / 2**20
    lines = [f"### GGUF ({size_in:.0f} MiB of Q4_K/Q6_K/Q8_0 blocks) dequantized to .npz ({size_out:.0f} MiB of float32)\n",
             "`benches/gguf_bench.py`: the input is written by gguf-py at run time; the peer is "
             "`GGUFReader` + `gguf.quants.dequantize` + `np.savez`, whole process.\n",
             "| contender | median s | min-max s | median CPU s (user+sys) | peak RSS MiB | median vs tensor2npy | CPU vs tensor2npy |",
             "|---|---|---|---|---|---|---|"]
    base = statistics.median(t for t, _, _ in results["tensor2npy"])
    base_cpu = statistics.median(c for _, _, c in results["tensor2npy"])
    for k, s in results.items():
        ts = [t for t, _, _ in s]
        med, cpu = statistics.median(ts), statistics.median(c for _, _, c in s)
        lines.append(f"| {k} | {med:.2f} | {min(ts):.2f}-{max(ts):.2f} | {cpu:.2f} | {max(r for _, r, _ in s):.0f} | "
                     f"{med / base:.1f}x | {cpu / base_cpu:.1f}x |")
    lines.append(f"\n{REPS} rounds, alternating; outputs checked identical, byte for byte.")
    peer = statistics.median(t for t, _, _ in results["gguf-py"])
    emit("50-gguf", lines, [ratio_row("GGUF: ≥ 10x faster than gguf-py dequantize + np.savez", peer, base)])


if __name__ == "__main__":
    main()
