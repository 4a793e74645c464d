#!/usr/bin/env python3
"""Pickles read as data: TorchScript (`torch.jit.save`), torch.export `.pt2`, a whole pickled
module (`torch.save(model)`) and a `pickle.dump` of NumPy arrays, each converted by tensor2npy
against the script a user writes today with the library's own loader (`torch.jit.load(f)
.state_dict()`, `torch.export.load(f).state_dict`, `torch.load(weights_only=False)
.state_dict()`, `pickle.load`) followed by `np.savez`. Uses the harness of bench.py; run it with
a Python that has torch and numpy:

    cargo build --release
    BENCH_BIN=target/release/tensor2npy /path/to/torch-venv/bin/python benches/bench_pickle.py

BENCH_SCALE (default 1 = a model of about 1 GiB) and BENCH_REPS (default 5) as in bench.py.
Prints a Markdown section for BENCHMARKS.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

from emit import emit, ratio_row  # noqa: E402

MAKE = r'''
import pickle, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
kind, path, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
width = 256
layers = max(1, total // (width * width * 4))
model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).eval()
x = torch.randn(2, width)
if kind == "jit":
    torch.jit.save(torch.jit.script(model), path)
elif kind == "pt2":
    torch.export.save(torch.export.export(model, (x,)), path)
elif kind == "module":
    torch.save(model, path)
else:
    with open(path, "wb") as f:
        pickle.dump({k: v.numpy() for k, v in model.state_dict().items()}, f, protocol=4)
'''

LOAD = r'''
import pickle, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
kind, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
if kind != "pkl":  # a pickle of arrays needs no torch
    import torch
if kind == "jit":
    sd = torch.jit.load(src).state_dict()
elif kind == "pt2":
    sd = torch.export.load(src).state_dict
elif kind == "module":
    sd = torch.load(src, weights_only=False).state_dict()
else:
    with open(src, "rb") as f:
        sd = pickle.load(f)
np.savez(dst, **{k: (v if isinstance(v, np.ndarray) else v.detach().contiguous().numpy()) for k, v in sd.items()})
'''

KINDS = [
    ("jit", "scripted.pt", "TorchScript (torch.jit.save)", "torch.jit.load(f).state_dict()"),
    ("pt2", "exported.pt2", "torch.export .pt2", "torch.export.load(f).state_dict"),
    ("module", "module.pt", "whole module (torch.save(model))", "torch.load(weights_only=False).state_dict()"),
    ("pkl", "arrays.pkl", "pickle.dump of NumPy arrays", "pickle.load"),
]


def main():
    os.makedirs(bench.WORK, exist_ok=True)
    gib = 1 << 30
    lines = [f"`benches/bench_pickle.py`, {bench.REPS} alternating rounds, inputs scaled by {bench.SCALE}; "
             "each peer is the library's own loader followed by `np.savez`, whole process.\n"]
    targets = []
    out_npz = os.path.join(bench.WORK, "p.npz")
    bench.OUTPUTS.append(out_npz)
    for kind, name, what, loader in KINDS:
        path = os.path.join(bench.WORK, name)
        print("making", path, flush=True)
        bench.run(bench.py(MAKE, kind, path, str(int(gib * bench.SCALE))))
        r = bench.alternate({
            "tensor2npy": [bench.BIN, "convert", path, "-o", out_npz, "--quiet"],
            f"{loader} + np.savez": bench.py(LOAD, kind, path, out_npz),
        })
        size = os.path.getsize(path)
        lines.append(f"\n### {what} ({size / 2**20:.1f} MiB) to .npz\n")
        lines.append("| contender | median s | min–max s | peak RSS MiB | vs tensor2npy |")
        lines.append("|---|---|---|---|---|")
        base = bench.summary(r["tensor2npy"])[0]
        for contender, samples in r.items():
            med, lo, hi, rss = bench.summary(samples)
            lines.append(f"| {contender} | {med:.3f} | {lo:.3f}–{hi:.3f} | {rss:.0f} | {med / base:.2f}x |")
        os.remove(path)
        targets.append(ratio_row(f"{what}: ≥ 10x faster than {loader} + np.savez",
                                 bench.summary(r[f"{loader} + np.savez"])[0], base))
    emit("45-pickle", lines, targets)


if __name__ == "__main__":
    main()
