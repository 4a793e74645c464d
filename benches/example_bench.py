#!/usr/bin/env python3
"""Benchmark: a TFRecord dataset of tf.train.Example records to .npz.

Contenders, each timed as a whole process (what a user waits for), with peak RSS from
/usr/bin/time:

- tensor2npy convert data.tfrecord -o out.npz
- tf.data.TFRecordDataset + tf.io.parse_example (a RaggedFeature per key, batched) + np.savez:
  the script a TensorFlow user writes;
- a pure-Python protobuf loop: TFRecord framing read in Python, tf.train.Example.FromString per
  record, lists gathered per feature, np.savez.

Both Python scripts write the same arrays as tensor2npy (dense [N] / [N, k], ragged
flat_values + row_splits_0), and the outputs are compared before anything is timed.

    BENCH_RECORDS=200000 BENCH_REPS=3 .venv-tf/bin/python benches/example_bench.py target/release/tensor2npy

Prints a Markdown table: medians of wall time (min-max) and of CPU time (user + sys, steadier
on a shared machine), peak RSS, and ratios of medians to tensor2npy's.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np

N = int(os.environ.get("BENCH_RECORDS") or max(2000, 200000 * float(os.environ.get("BENCH_SCALE", "1"))))
REPS = int(os.environ.get("BENCH_REPS", "3"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, ratio_row, tensor2npy  # noqa: E402

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else tensor2npy()

GEN = r'''
import sys, numpy as np, tensorflow as tf
path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
with tf.io.TFRecordWriter(path) as w:
    for i in range(n):
        f = {
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 10])),
            "score": tf.train.Feature(float_list=tf.train.FloatList(value=[i * 0.5])),
            "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=rng.random(16, dtype=np.float32))),
            "tokens": tf.train.Feature(int64_list=tf.train.Int64List(value=list(range(i % 21)))),
            "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"example-%08d" % i])),
        }
        w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
'''

TF_SCRIPT = r'''
import sys, numpy as np, tensorflow as tf
src, out = sys.argv[1], sys.argv[2]
spec = {"label": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
        "score": tf.io.RaggedFeature(tf.float32, row_splits_dtype=tf.int64),
        "embedding": tf.io.RaggedFeature(tf.float32, row_splits_dtype=tf.int64),
        "tokens": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
        "id": tf.io.RaggedFeature(tf.string, row_splits_dtype=tf.int64)}
parts = {k: [] for k in spec}
for batch in tf.data.TFRecordDataset(src).batch(4096):
    parsed = tf.io.parse_example(batch, spec)
    for k, rt in parsed.items():
        parts[k].append(rt)
arrays = {}
for k, rts in parts.items():
    rt = tf.concat(rts, axis=0)
    if k == "tokens":
        arrays["tokens/flat_values"] = rt.flat_values.numpy()
        arrays["tokens/row_splits_0"] = rt.row_splits.numpy()
    elif k in ("embedding",):
        arrays[k] = rt.to_tensor().numpy()
    elif k == "id":
        arrays[k] = np.array(list(rt.flat_values.numpy()))
    else:
        arrays[k] = rt.flat_values.numpy()
np.savez(out, **arrays)
'''

PY_SCRIPT = r'''
import struct, sys, numpy as np
from tensorflow.core.example import example_pb2
src, out = sys.argv[1], sys.argv[2]
label, score, emb, tokens, splits, ids = [], [], [], [], [0], []
with open(src, "rb") as f:
    data = f.read()
pos = 0
while pos < len(data):
    (n,) = struct.unpack_from("<Q", data, pos)
    ex = example_pb2.Example.FromString(data[pos + 12:pos + 12 + n])
    pos += 16 + n
    feat = ex.features.feature
    label.extend(feat["label"].int64_list.value)
    score.extend(feat["score"].float_list.value)
    emb.append(list(feat["embedding"].float_list.value))
    t = feat["tokens"].int64_list.value
    tokens.extend(t)
    splits.append(splits[-1] + len(t))
    ids.extend(feat["id"].bytes_list.value)
np.savez(out, label=np.array(label, np.int64), score=np.array(score, np.float32),
         embedding=np.array(emb, np.float32), **{"tokens/flat_values": np.array(tokens, np.int64),
         "tokens/row_splits_0": np.array(splits, np.int64)}, id=np.array(ids))
'''


def timed(cmd):
    r = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{cmd} failed: {r.stderr}")
    secs, user, system, kb = r.stderr.strip().splitlines()[-1].split()
    return float(secs), float(user) + float(system), int(kb) / 1024


def main():
    tmp = tempfile.mkdtemp(prefix="t2n-example-bench")
    data = os.path.join(tmp, "data.tfrecord")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", GEN, data, str(N)], check=True, env=env)
    scripts = {}
    for name, text in [("tf", TF_SCRIPT), ("py", PY_SCRIPT)]:
        scripts[name] = os.path.join(tmp, name + ".py")
        with open(scripts[name], "w") as f:
            f.write(text)
    contenders = [
        ("tensor2npy", lambda out: [BIN, "convert", data, "-o", out, "--quiet"]),
        ("tf.data + tf.io.parse_example + np.savez", lambda out: [sys.executable, scripts["tf"], data, out]),
        ("Python protobuf loop (Example.FromString) + np.savez", lambda out: [sys.executable, scripts["py"], data, out]),
    ]
    # Same arrays from everyone, before timing.
    outs = []
    for i, (_, cmd) in enumerate(contenders):
        out = os.path.join(tmp, f"check{i}.npz")
        subprocess.run(cmd(out), check=True, env=env, capture_output=True)
        outs.append(np.load(out))
    for other in outs[1:]:
        assert sorted(other.files) == sorted(outs[0].files), (other.files, outs[0].files)
        for k in outs[0].files:
            a, b = outs[0][k], other[k]
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), k
    times = {name: [] for name, _ in contenders}
    cpu = {name: [] for name, _ in contenders}
    rss = {name: 0.0 for name, _ in contenders}
    for _ in range(REPS):
        for name, cmd in contenders:
            out = os.path.join(tmp, "out.npz")
            s, c, m = timed(cmd(out))
            times[name].append(s)
            cpu[name].append(c)
            rss[name] = max(rss[name], m)
            os.remove(out)
    size = os.path.getsize(data)
    shutil.rmtree(tmp)
    base = statistics.median(times["tensor2npy"])
    cpu_base = statistics.median(cpu["tensor2npy"])
    lines = [f"### TFRecord of {N:,} tf.train.Example records ({size / 2**20:.1f} MiB; 5 features: "
             "int64 and float scalars, float [16], variable-length int64, bytes) to .npz\n",
             "`benches/example_bench.py`: all three write the same arrays, checked before timing; whole "
             "processes, `import tensorflow` included.\n",
             "| contender | median wall s | min–max s | median CPU s (user+sys) | peak RSS MiB | wall vs tensor2npy | CPU vs tensor2npy |",
             "|---|---|---|---|---|---|---|"]
    for name, _ in contenders:
        t = times[name]
        med = statistics.median(t)
        c = statistics.median(cpu[name])
        lines.append(f"| {name} | {med:.3f} | {min(t):.3f}–{max(t):.3f} | {c:.2f} | {rss[name]:.0f} | "
                     f"{med / base:.2f}x | {c / cpu_base:.2f}x |")
    tf_med = statistics.median(times["tf.data + tf.io.parse_example + np.savez"])
    emit("20-example", lines, [ratio_row("tf.train.Example TFRecords: ≥ 10x faster than tf.data + parse_example + np.savez", tf_med, base)])


if __name__ == "__main__":
    main()
