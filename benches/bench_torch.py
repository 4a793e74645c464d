#!/usr/bin/env python3
"""PyTorch checkpoints: tensor2npy against the script a PyTorch user writes today
(`torch.load(f, weights_only=True)` then `np.savez` of `t.contiguous().numpy()`, bfloat16 through
`.float()`), and against `cp` of the bytes tensor2npy writes. Uses the harness of bench.py
(alternating contenders, medians, /usr/bin/time peak RSS); run it with a Python that has torch
and numpy (torch and TensorFlow never share a process, so this is a script of its own):

    cargo build --release
    BENCH_BIN=target/release/tensor2npy /path/to/torch-venv/bin/python benches/bench_torch.py

BENCH_SCALE (default 1 = a 1 GiB state dict) and BENCH_REPS (default 5) as in bench.py. Prints a
Markdown section for BENCHMARKS.md.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

from emit import emit, ratio_row  # noqa: E402

MAKE = r'''
import sys, torch
path, total, legacy = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
g = torch.Generator().manual_seed(0)
sd = {}
small = 500
big_each = (total - small * 4096) // 16
kinds = [torch.float32, torch.bfloat16, torch.float16]
for i in range(16):
    dt = kinds[i % 3]
    n = big_each // torch.tensor([], dtype=dt).element_size() // 256
    sd[f"layers.{i}.weight"] = torch.randn(n, 256, generator=g).to(dt)
for i in range(small):
    sd[f"layers.{i % 16}.small.{i}"] = torch.randn(1024, generator=g)
torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
'''

TORCH_TO_NPZ = r'''
import sys, numpy as np, torch
sd = torch.load(sys.argv[1], weights_only=True)
arrays = {}
for k, t in sd.items():
    t = t.contiguous()
    arrays[k] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
np.savez(sys.argv[2], **arrays)
'''


def main():
    os.makedirs(bench.WORK, exist_ok=True)
    gib = 1 << 30
    lines = [f"`benches/bench_torch.py`, {bench.REPS} alternating rounds, inputs scaled by {bench.SCALE}; the peer "
             "is `torch.load(weights_only=True)` and `np.savez` of every `t.contiguous().numpy()` (bfloat16 "
             "through `.float()`), whole process.\n"]
    targets = []
    out_npz, cp_dst = os.path.join(bench.WORK, "t.npz"), os.path.join(bench.WORK, "t.copy")
    bench.OUTPUTS.extend([out_npz, cp_dst])
    for legacy in (False, True):
        pt = os.path.join(bench.WORK, "legacy.pt" if legacy else "model.pt")
        print("making", pt, flush=True)
        bench.run(bench.py(MAKE, pt, str(int(gib * bench.SCALE)), "1" if legacy else "0"))
        bench.run([bench.BIN, "convert", pt, "-o", out_npz])
        npz_bytes = os.path.getsize(out_npz)
        shutil.copy(out_npz, out_npz + ".ref")
        r = bench.alternate({
            "tensor2npy": [bench.BIN, "convert", pt, "-o", out_npz, "--quiet"],
            "torch.load(weights_only=True) + np.savez": bench.py(TORCH_TO_NPZ, pt, out_npz),
            "cp (same bytes as the .npz)": ["cp", out_npz + ".ref", cp_dst],
        }, cleanup=[cp_dst])
        os.remove(out_npz + ".ref")
        fmt = "legacy pickle stream" if legacy else "zip format"
        lines.append(f"\n### torch.save state dict, {fmt} ({os.path.getsize(pt) / gib:.2f} GiB, "
                     "16 large f32/bf16/f16 + 500 small tensors) to .npz\n")
        lines.append("| contender | median s | min–max s | peak RSS MiB | GB/s | vs tensor2npy |")
        lines.append("|---|---|---|---|---|---|")
        base = bench.summary(r["tensor2npy"])[0]
        for name, samples in r.items():
            med, lo, hi, rss = bench.summary(samples)
            lines.append(f"| {name} | {med:.3f} | {lo:.3f}–{hi:.3f} | {rss:.0f} | "
                         f"{npz_bytes / med / 1e9:.2f} | {med / base:.2f}x |")
        os.remove(pt)
        targets.append(ratio_row(f"PyTorch {fmt}: ≥ 10x faster than torch.load + np.savez",
                                 bench.summary(r["torch.load(weights_only=True) + np.savez"])[0], base))
    emit("40-torch", lines, targets)


if __name__ == "__main__":
    main()
