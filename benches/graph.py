#!/usr/bin/env python3
"""Benchmark of the model-graph readers: an ONNX model with external data and a frozen
TensorFlow GraphDef, each converted to .npz by tensor2npy and by the Python script a user writes
today (`onnx.load` + `numpy_helper.to_array`; `GraphDef.ParseFromString` + `tf.make_ndarray`),
with `cp` of the same bytes as the copy limit. Inputs are generated at run time; contenders run
alternately BENCH_REPS times; prints a Markdown table of medians, min-max, ratios and peak RSS.

    cargo build --release --no-default-features
    TF_CPP_MIN_LOG_LEVEL=3 .venv-tf/bin/python benches/graph.py   # needs tensorflow, onnx, numpy

BENCH_SCALE (default 1 = 512 MiB of weights per input), BENCH_REPS (default 5), BENCH_BIN
(default target/release/tensor2npy, or $CARGO_TARGET_DIR/release/tensor2npy).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, ratio_row, tensor2npy  # noqa: E402

BIN = tensor2npy()
PY = sys.executable
REPS = int(os.environ.get("BENCH_REPS", "5"))
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
WORK = tempfile.mkdtemp(prefix="t2n-graph-bench-")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TOTAL = max(1, int((512 << 20) * SCALE) // (16 * 4 * 256)) * (16 * 4 * 256)  # whole [n, 256] float32 rows per tensor


def run(cmd):
    rss_file = os.path.join(WORK, ".rss")
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, *cmd], env=ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr.decode(errors='replace')}")
    return dt, int(open(rss_file).read().split()[-1]) / 1024


def alternate(contenders, out):
    results = {n: [] for n in contenders}
    for _ in range(REPS):
        for name, cmd in contenders.items():
            if os.path.exists(out):
                os.remove(out)
            os.sync()
            results[name].append(run(cmd))
    return results


def make_inputs():
    code = r'''
import os, sys, numpy as np, onnx
from onnx import helper, numpy_helper
work, total = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
big = {f"layers.{i}.weight": rng.standard_normal(total // 16 // 4, dtype=np.float32).reshape(-1, 256) for i in range(16)}
small = {f"layers.{i % 16}.norm.{i}": rng.standard_normal(256, dtype=np.float32) for i in range(1000)}
inits = [numpy_helper.from_array(a, n) for n, a in {**big, **small}.items()]
model = helper.make_model(helper.make_graph([], "g", [], [], initializer=inits))
onnx.save_model(model, os.path.join(work, "model.onnx"), save_as_external_data=True,
                all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=4096)
import tensorflow as tf
gd = tf.compat.v1.GraphDef()
for n, a in {**big, **small}.items():
    node = gd.node.add(name=n.replace(".", "_"), op="Const")
    node.attr["dtype"].type = tf.float32.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(a))
with open(os.path.join(work, "frozen.pb"), "wb") as f:
    f.write(gd.SerializeToString())
'''
    subprocess.run([PY, "-c", code, WORK, str(TOTAL)], env=ENV, check=True)


ONNX_PY = r'''
import sys, numpy as np, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
np.savez(sys.argv[2], **{i.name: numpy_helper.to_array(i) for i in m.graph.initializer})
'''

TF_PY = r'''
import sys, numpy as np, tensorflow as tf
gd = tf.compat.v1.GraphDef()
gd.ParseFromString(open(sys.argv[1], "rb").read())
np.savez(sys.argv[2], **{n.name: tf.make_ndarray(n.attr["value"].tensor) for n in gd.node if n.op == "Const"})
'''


LINES = []


def table(title, results, base):
    med = {n: statistics.median(t for t, _ in r) for n, r in results.items()}
    LINES.append(f"\n### {title}\n")
    LINES.append("| contender | median s | min-max s | vs tensor2npy | peak RSS MiB |")
    LINES.append("|---|---:|---:|---:|---:|")
    for n, r in results.items():
        ts = [t for t, _ in r]
        LINES.append(f"| {n} | {med[n]:.2f} | {min(ts):.2f}-{max(ts):.2f} | {med[n] / med[base]:.2f}x | "
                     f"{max(m for _, m in r):.0f} |")
    return med


def main():
    make_inputs()
    out = os.path.join(WORK, "out.npz")
    data = os.path.join(WORK, "model.onnx.data")
    mib = os.path.getsize(data) / (1 << 20)
    r = alternate({
        "tensor2npy": [BIN, "convert", os.path.join(WORK, "model.onnx"), "-o", out, "--quiet"],
        "python (onnx.load + numpy_helper.to_array + np.savez)": [PY, "-c", ONNX_PY, os.path.join(WORK, "model.onnx"), out],
        "cp of the external data": ["cp", data, out],
    }, out)
    onnx_med = table(f"ONNX model, {mib:.0f} MiB of external data (16 large + 1,000 small float32 initializers) to .npz", r, "tensor2npy")
    pb = os.path.join(WORK, "frozen.pb")
    r = alternate({
        "tensor2npy": [BIN, "convert", pb, "-o", out, "--quiet"],
        "python (ParseFromString + tf.make_ndarray + np.savez)": [PY, "-c", TF_PY, pb, out],
        "cp": ["cp", pb, out],
    }, out)
    pb_med = table(f"frozen GraphDef, {os.path.getsize(pb) / (1 << 20):.0f} MiB (1,016 Const nodes) to .npz", r, "tensor2npy")
    shutil.rmtree(WORK)
    LINES.insert(0, "`benches/graph.py`: the ONNX initializers stream from the external-data file; the GraphDef is "
                 "walked on disk and each Const's `tensor_content` streamed, where protobuf parses the whole "
                 "graph first. Peers: `onnx.load` + `numpy_helper.to_array`, `ParseFromString` + "
                 "`tf.make_ndarray`, then `np.savez`, whole process (interpreter and imports included).\n")
    emit("30-graph", LINES, [
        ratio_row("ONNX: ≥ 10x faster than onnx.load + numpy_helper + np.savez", onnx_med[
            "python (onnx.load + numpy_helper.to_array + np.savez)"], onnx_med["tensor2npy"]),
        ratio_row("frozen GraphDef: ≥ 10x faster than TensorFlow (make_ndarray) + np.savez", pb_med[
            "python (ParseFromString + tf.make_ndarray + np.savez)"], pb_med["tensor2npy"]),
    ])


if __name__ == "__main__":
    main()
