#!/usr/bin/env python3
"""The `--jobs` worker cut (`PARALLEL_MIN`, `T2N_JOBS_MIN_BYTES`) across inputs of many small
tensors (issue 32, round 9). Two steps, each with its own Python:

    BENCH_SCALE=0.25 /work/venvs/tf/bin/python    benches/worker_cut.py make-tf    DIR
    BENCH_SCALE=0.25 /work/venvs/tf-tb/bin/python benches/worker_cut.py make-events DIR
    BENCH_SCALE=0.25 /work/venvs/torch/bin/python benches/worker_cut.py make-torch DIR
    BENCH_BIN=target/release/tensor2npy python3   benches/worker_cut.py time DIR [CUTS] [REPS]

`make-*` writes the inputs with the recipes of bench.py, bench_pickle.py, bench_torch.py and
tflite_events.py; `time` converts each to `.npz` (and the safetensors file to a folder) once per
cut per round, cuts interleaved inside a round, under `nice -n 10` and `/usr/bin/time`, the
output deleted and `sync` run before each; it prints wall and CPU (user + sys) seconds per input
and cut (median, min-max) with the 1-minute load average of each run. Delete DIR afterwards.
"""
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

GIB = 1 << 30


def make_tf(d):
    import bench  # noqa: E402  (its input recipes; needs tensorflow, safetensors, ml_dtypes)
    total = GIB * bench.SCALE
    bench.make_safetensors(os.path.join(d, "mixed.safetensors"), total)
    ck = bench.make_checkpoint(os.path.join(d, "ckpt", "ckpt"), total)
    open(os.path.join(d, "ckpt.prefix"), "w").write(ck)
    bench.make_tfrecord(os.path.join(d, "small.tfrecord"), 100_000)
    bench.run(bench.py('''import sys, numpy as np, safetensors.numpy
safetensors.numpy.save_file({f"t{i}": np.array([i], np.float32) for i in range(20000)}, sys.argv[1])''',
                       os.path.join(d, "tiny20k.safetensors")))


def make_events(d):
    """tflite_events.py's event file (not its TFLite model): needs tensorflow and tensorboard."""
    import bench  # noqa: E402
    import numpy as np
    import tensorflow as tf
    logs, rng = os.path.join(d, "logs"), np.random.default_rng(0)
    w = tf.summary.create_file_writer(logs)
    with w.as_default():
        for step in range(max(10, int(20000 * bench.SCALE))):
            for tag in ("loss", "accuracy", "lr", "grad_norm"):
                tf.summary.scalar(tag, rng.random(), step=step)
            tf.summary.histogram("weights", rng.standard_normal(64), step=step)
    w.close()
    (events,) = os.listdir(logs)
    os.rename(os.path.join(logs, events), os.path.join(d, "events.tfevents"))
    os.rmdir(logs)


def make_torch(d):
    import bench  # noqa: E402
    import bench_pickle
    import bench_torch
    total = str(int(GIB * bench.SCALE))
    for kind, name, _, _ in bench_pickle.KINDS:
        bench.run(bench.py(bench_pickle.MAKE, kind, os.path.join(d, name), total))
    bench.run(bench.py(bench_torch.MAKE, os.path.join(d, "zip.pt"), total, "0"))


def inputs(d):
    ck = os.path.join(d, "ckpt.prefix")
    rows = [
        ("safetensors 16 big + 2,000 small", "mixed.safetensors", "o.npz"),
        ("the same to a folder", "mixed.safetensors", "odir"),
        ("TF checkpoint (16 variables)", open(ck).read().strip() if os.path.exists(ck) else None, "o.npz"),
        ("TFRecord, 100,000 [8] f32", "small.tfrecord", "o.npz"),
        ("safetensors, 20,000 [1] f32", "tiny20k.safetensors", "o.npz"),
        ("TensorBoard events", "events.tfevents", "o.npz"),
        ("TorchScript", "scripted.pt", "o.npz"),
        (".pt2", "exported.pt2", "o.npz"),
        ("whole module", "module.pt", "o.npz"),
        ("pickle of NumPy arrays", "arrays.pkl", "o.npz"),
        ("torch zip, 16 big + 500 small", "zip.pt", "o.npz"),
    ]
    only = os.environ.get("ONLY")  # a comma-separated list of input files to time, else all
    for what, src, out in rows:
        src = src and os.path.join(d, src)
        if src and (os.path.exists(src) or os.path.exists(src + ".index")) and (
                not only or os.path.basename(src) in only.split(",")):
            yield what, src, os.path.join(d, out)


def rm(p):
    subprocess.run(["rm", "-rf", p], check=True)


def one(binary, src, out, cut):
    rm(out)
    os.sync()
    load = open("/proc/loadavg").read().split()[0]
    env = dict(os.environ, T2N_JOBS_MIN_BYTES=str(cut))
    p = subprocess.run(["nice", "-n", "10", "/usr/bin/time", "-f", "%e %U %S", binary, "convert", src,
                        "-o", out, "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode:
        raise SystemExit(p.stderr)
    wall, user, sys_ = map(float, p.stderr.strip().splitlines()[-1].split())
    return wall, user + sys_, float(load)


def timing(d, cuts, reps):
    binary = os.path.abspath(os.environ.get("BENCH_BIN", "target/release/tensor2npy"))
    print("| input | cut | wall s median (min–max) | CPU s median (min–max) | load |")
    print("|---|---|---|---|---|")
    for what, src, out in inputs(d):
        got = {c: [] for c in cuts}
        for _ in range(reps):
            for c in cuts:
                got[c].append(one(binary, src, out, c))
        rm(out)
        for c in cuts:
            w, cpu, load = zip(*got[c])
            print(f"| {what} | {c >> 10} KiB | {statistics.median(w):.3f} ({min(w):.3f}–{max(w):.3f}) | "
                  f"{statistics.median(cpu):.3f} ({min(cpu):.3f}–{max(cpu):.3f}) | "
                  f"{min(load):.1f}–{max(load):.1f} |", flush=True)


if __name__ == "__main__":
    step, d = sys.argv[1], sys.argv[2]
    os.makedirs(d, exist_ok=True)
    if step == "make-tf":
        make_tf(d)
    elif step == "make-events":
        make_events(d)
    elif step == "make-torch":
        make_torch(d)
    else:
        cuts = [int(c) for c in sys.argv[3].split(",")] if len(sys.argv) > 3 else [0, 64 << 10, 256 << 10, 1 << 20]
        timing(d, cuts, int(sys.argv[4]) if len(sys.argv) > 4 else 3)
