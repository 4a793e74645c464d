#!/usr/bin/env python3
"""DeepSpeed ZeRO checkpoints: tensor2npy against what a DeepSpeed user runs today, DeepSpeed's
`zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint` + `np.savez`, on checkpoints written at
run time by DeepSpeed itself (nothing big is committed): a stack of float32 [1024, 1024] linear
layers trained one bf16 step by two CPU ranks (gloo, `DS_ACCELERATOR=cpu`, torch AdamW), saved
with ZeRO stage 2 and stage 3.

Usage (a Python with torch and deepspeed; the release binary built first):
    cargo build --release
    BENCH_BIN=target/release/tensor2npy .venv-deepspeed/bin/python benches/deepspeed_bench.py

BENCH_REPS (default 3) rounds, contenders alternating; BENCH_SCALE (default 1 = 512 MiB of fp32
masters; 0.05 for a quick run) or BENCH_MB sets the size. Both outputs are checked identical,
byte for byte, before the table is printed.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, ratio_row, tensor2npy  # noqa: E402

BIN = tensor2npy()
REPS = int(os.environ.get("BENCH_REPS", "3"))
MB = int(os.environ.get("BENCH_MB") or max(8, 512 * float(os.environ.get("BENCH_SCALE", "1"))))
KEEP = bool(os.environ.get("BENCH_DIR"))
# Made in main(), not at import: the ranks (torch.multiprocessing spawn) import this module too.
WORK = os.environ.get("BENCH_DIR")

PEER_SCRIPT = """
import sys, numpy as np, torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
sd = get_fp32_state_dict_from_zero_checkpoint(sys.argv[1])
np.savez(sys.argv[2], **{k: (v.float() if v.dtype == torch.bfloat16 else v).detach().numpy() for k, v in sd.items()})
"""


def worker(rank, port, save_dir, stage, layers):
    import torch
    import deepspeed

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(layers)])
    config = {"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": stage},
              "zero_allow_untested_optimizer": True, "bf16": {"enabled": True},
              "steps_per_print": 1000}
    engine, _, _, _ = deepspeed.initialize(model=model, config=config,
                                           optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))
    x = torch.randn(2, 1024, dtype=torch.bfloat16)
    engine.backward(engine(x).float().pow(2).mean())
    engine.step()
    engine.save_checkpoint(save_dir, tag="global_step1")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def make_input(stage):
    import torch.multiprocessing as mp

    layers = max(1, MB * (1 << 20) // (4 * 1024 * 1025))
    save_dir = os.path.join(WORK, f"zero{stage}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(port, save_dir, stage, layers), nprocs=2, join=True)
    return save_dir, layers


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


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


def bench(title, src):
    peer = "`get_fp32_state_dict_from_zero_checkpoint` + `np.savez`"
    outs = {"tensor2npy": os.path.join(WORK, "t2n.npz"), peer: os.path.join(WORK, "py.npz")}
    cmds = {
        "tensor2npy": [BIN, "convert", src, "-o", outs["tensor2npy"], "--quiet"],
        peer: [sys.executable, "-c", PEER_SCRIPT, src, outs[peer]],
    }
    results = {k: [] for k in cmds}
    for _ in range(REPS):
        for k, cmd in cmds.items():
            for o in outs.values():
                if os.path.exists(o):
                    os.remove(o)
            os.sync()
            results[k].append(run(cmd))
    run(cmds["tensor2npy"])
    a, b = np.load(outs["tensor2npy"]), np.load(outs[peer])
    assert list(a.files) == list(b.files), (a.files, b.files)
    for k in b.files:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k
    lines = [f"### {title} ({du(src) / 2**20:.1f} MiB on disk, {len(b.files)} arrays) to .npz\n",
             f"`benches/deepspeed_bench.py`: written by DeepSpeed at run time; the peer is {peer}, "
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


def main():
    global WORK
    WORK = WORK or tempfile.mkdtemp(prefix="t2n-ds-bench-")
    try:
        lines, rows = [], []
        for stage in (2, 3):
            src, layers = make_input(stage)
            title = f"DeepSpeed ZeRO-{stage}, 2 ranks, bf16, {layers} x [1024, 1024] fp32 masters"
            l, p, b = bench(title, src)
            lines += l
            rows.append(ratio_row(f"DeepSpeed ZeRO-{stage}: ≥ 10x faster than zero_to_fp32 + np.savez", p, b))
            shutil.rmtree(src)
        emit("67-deepspeed", lines, rows)
    finally:
        if not KEEP:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
