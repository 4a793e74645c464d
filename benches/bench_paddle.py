#!/usr/bin/env python3
"""PaddlePaddle `.pdparams` (`paddle.save` of a layer's state dict: a pickle of NumPy arrays)
converted by tensor2npy against the script a user writes today, `paddle.load(f,
return_numpy=True)` followed by `np.savez`, whole process. Uses the harness of bench.py; run it
with a Python that has paddlepaddle and numpy (fixtures/setup-venvs.sh makes .venv-paddle):

    cargo build --release
    BENCH_BIN=target/release/tensor2npy .venv-paddle/bin/python benches/bench_paddle.py

BENCH_SCALE (default 1 = a state dict of about 300 MiB) and BENCH_REPS as in bench.py. Prints a
Markdown section for BENCHMARKS.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

from emit import emit, ratio_row  # noqa: E402

MAKE = r'''
import sys, warnings
warnings.filterwarnings("ignore")
import paddle
path, total = sys.argv[1], int(sys.argv[2])
paddle.seed(0)
width = 512
layers = max(1, total // (width * width * 4))
model = paddle.nn.Sequential(*[paddle.nn.Linear(width, width) for _ in range(layers)])
paddle.save(model.state_dict(), path)
'''

LOAD = r'''
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, paddle
src, dst = sys.argv[1], sys.argv[2]
sd = paddle.load(src, return_numpy=True)
np.savez(dst, **sd)
'''


def main():
    os.makedirs(bench.WORK, exist_ok=True)
    total = int(300 * (1 << 20) * bench.SCALE)
    path = os.path.join(bench.WORK, "model.pdparams")
    out_npz = os.path.join(bench.WORK, "pd.npz")
    bench.OUTPUTS.append(out_npz)
    print("making", path, flush=True)
    bench.run(bench.py(MAKE, path, str(total)))
    peer = "paddle.load(f, return_numpy=True) + np.savez"
    r = bench.alternate({
        "tensor2npy": [bench.BIN, "convert", path, "-o", out_npz, "--quiet"],
        peer: bench.py(LOAD, path, out_npz),
        "cp": ["cp", path, out_npz],
    })
    size = os.path.getsize(path)
    lines = [f"`benches/bench_paddle.py`, {bench.REPS} alternating rounds, inputs scaled by {bench.SCALE}; "
             "the peer is Paddle's own loader followed by `np.savez`, whole process.\n",
             f"\n### Paddle `.pdparams` ({size / 2**20:.1f} MiB) to .npz\n",
             "| contender | median s | min–max s | peak RSS MiB | vs tensor2npy |",
             "|---|---|---|---|---|"]
    base = bench.summary(r["tensor2npy"])[0]
    for contender, samples in r.items():
        med, lo, hi, rss = bench.summary(samples)
        lines.append(f"| {contender} | {med:.3f} | {lo:.3f}–{hi:.3f} | {rss:.0f} | {med / base:.2f}x |")
    os.remove(path)
    emit("46-paddle", lines, [ratio_row(f"Paddle .pdparams: ≥ 10x faster than {peer}",
                                        bench.summary(r[peer])[0], base)])


if __name__ == "__main__":
    main()
