#!/usr/bin/env python3
"""PyTorch Distributed Checkpoints: tensor2npy against the script a PyTorch user writes today,
on a checkpoint written at run time by torch.distributed.checkpoint (nothing big is committed):
two gloo processes save 8 float32 DTensors [rows, 1024] over a CPU mesh of 2, half placed
`Shard(0)` and half `Shard(1)`, so every tensor is two chunks in two rank files. The peer is
`dcp.load` in one process, no process group, into a template of full-size tensors (as the
fixtures' oracle), then `np.savez`.

Usage (a Python with torch; the release binary built first):
    cargo build --release
    BENCH_BIN=target/release/tensor2npy .venv-torch/bin/python benches/dcp_bench.py

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
WORK = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="t2n-dcp-bench-")

LOAD_SCRIPT = """
import pickle, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch, torch.distributed.checkpoint as dcp
md = dcp.FileSystemReader(sys.argv[1]).read_metadata()
template = {k: torch.empty(tuple(m.size), dtype=m.properties.dtype)
            for k, m in md.state_dict_metadata.items()
            if isinstance(m, dcp.metadata.TensorStorageMetadata)}
dcp.load(template, checkpoint_id=sys.argv[1])
np.savez(sys.argv[2], **{"/".join(str(p) for p in md.planner_data[k]): v.numpy()
                         for k, v in template.items()})
"""


def save_worker(rank, world, ckpt, rows):
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29655")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    g = torch.Generator().manual_seed(0)
    sd = {f"layer{i}": distribute_tensor(torch.randn(rows, 1024, generator=g), mesh,
                                         [Shard(i % 2)]) for i in range(8)}
    dcp.save({"model": sd}, checkpoint_id=ckpt)
    dist.barrier()
    dist.destroy_process_group()


def make_input():
    import torch.multiprocessing as mp
    rows = max(2, MB * (1 << 20) // 8 // 4 // 1024)
    ckpt = os.path.join(WORK, "ckpt")
    mp.start_processes(save_worker, args=(2, ckpt, rows), nprocs=2, start_method="spawn")
    return ckpt


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


def measure():
    src = make_input()
    peer = "`dcp.load` into a template + `np.savez`"
    outs = {"tensor2npy": os.path.join(WORK, "t2n.npz"), peer: os.path.join(WORK, "py.npz")}
    cmds = {
        "tensor2npy": [BIN, "convert", src, "-o", outs["tensor2npy"], "--quiet"],
        peer: [sys.executable, "-c", LOAD_SCRIPT, src, outs[peer]],
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
    assert sorted(a.files) == sorted(b.files), (a.files, b.files)
    for k in b.files:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k
    lines = [f"### PyTorch Distributed Checkpoint, 2 ranks, {MB} MiB of float32 in 8 sharded tensors "
             f"({du(src) / 2**20:.1f} MiB on disk) to .npz\n",
             f"`benches/dcp_bench.py`: the input is written by torch.distributed.checkpoint at run "
             f"time (DTensors `Shard(0)` and `Shard(1)` over two gloo ranks); the peer is {peer}, "
             f"whole process.\n",
             "| contender | median s | min-max s | median CPU s (user+sys) | peak RSS MiB | median vs tensor2npy |",
             "|---|---|---|---|---|---|"]
    base = statistics.median(t for t, _, _ in results["tensor2npy"])
    for k, s in results.items():
        ts = [t for t, _, _ in s]
        med, cpu = statistics.median(ts), statistics.median(c for _, _, c in s)
        lines.append(f"| {k} | {med:.2f} | {min(ts):.2f}-{max(ts):.2f} | {cpu:.2f} | "
                     f"{max(r for _, r, _ in s):.0f} | {med / base:.1f}x |")
    lines.append(f"\n{REPS} rounds, alternating; outputs checked identical, byte for byte.\n")
    p = statistics.median(t for t, _, _ in results[peer])
    emit("66-dcp", lines, [
        ratio_row("Distributed Checkpoint (sharded): ≥ 10x faster than dcp.load + np.savez", p, base),
    ])


def main():
    try:
        measure()
    finally:
        if not KEEP:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
