#!/usr/bin/env python3
"""TFLite and TensorBoard benchmark: tensor2npy against the script a TensorFlow user writes today,
on inputs written at run time by TensorFlow (nothing big is committed):

* a float TFLite model of Dense layers (`tf.lite.TFLiteConverter`), against
  `tf.lite.Interpreter` + `get_tensor` for every tensor with data + `np.savez`;
* a TensorBoard event file of scalars and histograms over many steps (`tf.summary`), against
  `tf.compat.v1.train.summary_iterator` + `tf.make_ndarray` + `np.savez` (`<tag>/<step>`).

Usage (a Python with tensorflow and tensorboard; the release binary built first):
    cargo build --release
    .venv-tf/bin/python benches/tflite_events.py [BIN]

BENCH_REPS (default 3) rounds, contenders alternating; BENCH_SCALE (default 1 = 16 Dense layers
of 2048 x 2048, 256 MiB of float32, and 20000 steps of 4 scalars and a 30-bucket histogram).
Both outputs are checked identical, byte for byte, before the table is printed.
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

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else tensor2npy()
REPS = int(os.environ.get("BENCH_REPS", "3"))
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
WORK = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="t2n-tflite-bench-")

TFLITE_SCRIPT = """
import sys, numpy as np, tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
data = open(sys.argv[1], "rb").read()
m = schema.Model.GetRootAsModel(data, 0)
g = m.Subgraphs(0)
interp = tf.lite.Interpreter(model_path=sys.argv[1])
interp.allocate_tensors()
out = {}
for t in range(g.TensorsLength()):
    tensor = g.Tensors(t)
    b = m.Buffers(tensor.Buffer())
    if b.DataLength() > 0 or b.Offset() > 1:
        out[tensor.Name().decode()] = interp.get_tensor(t)
np.savez(sys.argv[2], **out)
"""

EVENTS_SCRIPT = """
import sys, numpy as np, tensorflow as tf
out = {}
for e in tf.compat.v1.train.summary_iterator(sys.argv[1]):
    for v in e.summary.value:
        if v.HasField("tensor"):
            out[f"{v.tag}/{e.step}"] = tf.make_ndarray(v.tensor)
np.savez(sys.argv[2], **out)
"""


def make_inputs():
    import tensorflow as tf
    layers = max(1, int(16 * SCALE))
    width = 2048 if SCALE >= 0.25 else 256
    inp = tf.keras.Input((width,))
    x = inp
    for i in range(layers):
        x = tf.keras.layers.Dense(width, name=f"d{i}")(x)
    model = tf.keras.Model(inp, x)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    model_path = os.path.join(WORK, "model.tflite")
    with open(model_path, "wb") as f:
        f.write(conv.convert())

    d = os.path.join(WORK, "logs")
    rng = np.random.default_rng(0)
    w = tf.summary.create_file_writer(d)
    with w.as_default():
        for step in range(max(10, int(20000 * SCALE))):
            for tag in ("loss", "accuracy", "lr", "grad_norm"):
                tf.summary.scalar(tag, rng.random(), step=step)
            tf.summary.histogram("weights", rng.standard_normal(64), step=step)
    w.close()
    (events,) = [os.path.join(d, n) for n in os.listdir(d)]
    return model_path, events


def run(cmd):
    rss_file = os.path.join(WORK, ".rss")
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file, *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
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
            if os.path.exists(outs[k]):
                os.remove(outs[k])
            results[k].append(run(cmd))
    a, b = np.load(outs["tensor2npy"]), np.load(outs[peer])
    assert sorted(a.files) == sorted(b.files)
    for k in b.files:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k
    size_in = os.path.getsize(src) / 2**20
    lines = [f"### {title} ({size_in:.1f} MiB, {len(b.files)} tensors) to .npz\n",
             f"`benches/tflite_events.py`: the input is written by TensorFlow at run time; the peer is "
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
    model, events = make_inputs()
    l1, p1, b1 = bench("TFLite float model", model, TFLITE_SCRIPT,
                       "`tf.lite.Interpreter` + `get_tensor` + `np.savez`")
    l2, p2, b2 = bench("TensorBoard event file", events, EVENTS_SCRIPT,
                       "`summary_iterator` + `tf.make_ndarray` + `np.savez`")
    emit("55-tflite-events", l1 + l2, [
        ratio_row("TFLite: ≥ 10x faster than the interpreter + np.savez", p1, b1),
        ratio_row("TensorBoard: ≥ 10x faster than summary_iterator + np.savez", p2, b2),
    ])


if __name__ == "__main__":
    main()
