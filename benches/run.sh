#!/usr/bin/env bash
# Every benchmark in one run, written to BENCHMARKS.md: builds the release binary and the
# widening micro-benchmark, then runs each script with the Python of its peers, each filing its
# results and targets in $BENCH_OUT (benches/emit.py), and assembles them (benches/report.py):
#   bench.py          safetensors, checkpoints, TFRecords of tensors, .npy, list, device stage
#   example_bench.py  TFRecords of tf.train.Example        graph.py     frozen GraphDefs, ONNX
#   bench_torch.py    PyTorch (zip and legacy)             gguf_bench.py GGUF dequantization
#   bench_pickle.py   TorchScript, .pt2, whole modules, pickles of NumPy arrays
#   bench_paddle.py   PaddlePaddle .pdparams (paddle.load + np.savez)
#   hdf5_flax.py      HDF5, Flax msgpack                   memory.sh    peak memory by input shape
#   tflite_events.py  TFLite models, TensorBoard event files
#   orbax_zarr.py     Orbax checkpoints (OCDBT), zarr v3   numpy_bench.py .npz and .npy inputs
#   dcp_bench.py      PyTorch Distributed Checkpoints (two gloo ranks, sharded DTensors)
#   deepspeed_bench.py DeepSpeed ZeRO-2/3 checkpoints (zero_to_fp32 + np.savez; .venv-deepspeed
#                     or BENCH_DS_PYTHON)
#   bigmodel_remote.py an HF folder of bf16 shards and a Q4_K GGUF at real size (8 and 4 GiB at
#                     scale 1; BENCH_BIG_SCALE overrides), a remote input at 20 ms a request
# The Pythons are the fixture generators' venvs (fixtures/setup-venvs.sh makes them when
# .venv-tf is missing), or BENCH_TF_PYTHON, BENCH_TORCH_PYTHON, BENCH_JAX_PYTHON,
# BENCH_GGUF_PYTHON, BENCH_ORBAX_PYTHON and BENCH_PADDLE_PYTHON (.venv-paddle); NumPy's bench runs under the test venv .venv (or
# BENCH_NUMPY_PYTHON); a script whose Python is missing is reported as not run.
# BENCH_SCALE (default 1: ~1 GiB inputs; 0.1 for a quick run of a few minutes) and BENCH_REPS
# (alternating rounds, default 5 for the core, 3 for the others; 1 when BENCH_SCALE is under 1)
# tune it.
# BENCH_ONLY (a comma list of step names or groups) runs only those steps and writes their rows
# into the existing BENCHMARKS.md as one section, "## Partial run: BENCH_ONLY=...", leaving the
# other sections as they are. Groups: npz (core: bench.py, whose float32 row is the stored .npz
# against cp), hdf5 (hdf5-flax), example, bigmodel (bigmodel-remote), newreaders (pickle, paddle,
# tflite-events, orbax-zarr, dcp, numpy, deepspeed), memory (memory.sh). Issue 32's full run:
#   BENCH_ONLY=hdf5,example,npz,bigmodel,newreaders benches/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked
cargo build --release --locked --bench widen
cp "$(ls -t "$target"/release/deps/widen-* | grep -v '\.d$' | head -1)" "$target/release/widen"
BENCH_BIN="$(cd "$target/release" && pwd)/tensor2npy"
export BENCH_BIN
BENCH_OUT="$(mktemp -d "${TMPDIR:-/tmp}/t2n-bench-out.XXXXXX")"
export BENCH_OUT
trap 'rm -rf "$BENCH_OUT"' EXIT
[ -n "${BENCH_TF_PYTHON:-}" ] || [ -x .venv-tf/bin/python ] || fixtures/setup-venvs.sh
TF="${BENCH_TF_PYTHON:-.venv-tf/bin/python}"
TORCH="${BENCH_TORCH_PYTHON:-.venv-torch/bin/python}"
JAX="${BENCH_JAX_PYTHON:-.venv-jax/bin/python}"
GGUF="${BENCH_GGUF_PYTHON:-.venv-gguf/bin/python}"
ORBAX="${BENCH_ORBAX_PYTHON:-.venv-orbax/bin/python}"
PADDLE="${BENCH_PADDLE_PYTHON:-.venv-paddle/bin/python}"
NUMPY="${BENCH_NUMPY_PYTHON:-.venv/bin/python}"
DS="${BENCH_DS_PYTHON:-.venv-deepspeed/bin/python}"
started=$(date +%s)
# A quick run (BENCH_SCALE under 1) times each contender once unless BENCH_REPS says otherwise:
# at 0.1 the peers' start-up (TensorFlow, torch, Paddle imports), repeated 3 to 5 times per row,
# was most of its time (issue 32, round 7). At scale 1 every script keeps its own default.
if [ -z "${BENCH_REPS:-}" ] && awk -v s="${BENCH_SCALE:-1}" 'BEGIN { exit !(s < 1) }'; then
  export BENCH_REPS=1
fi

# wanted NAME: whether BENCH_ONLY (empty: everything) names the step or a group holding it.
wanted() {
  [ -z "${BENCH_ONLY:-}" ] && return 0
  local group
  case "$1" in
    core) group=npz ;;
    hdf5-flax) group=hdf5 ;;
    bigmodel-remote) group=bigmodel ;;
    pickle | paddle | tflite-events | orbax-zarr | dcp | numpy | deepspeed) group=newreaders ;;
    *) group="$1" ;;
  esac
  [[ ",$BENCH_ONLY," == *",$1,"* || ",$BENCH_ONLY," == *",$group,"* ]]
}

# step NAME PYTHON ARGS...: runs one script, or files it as not run when its Python is missing.
step() {
  local name="$1" py="$2"
  shift 2
  wanted "$name" || return 0
  if [ ! -x "$py" ]; then
    printf '[{"target": "%s", "measured": "not run: no Python at %s", "met": false}]\n' "$name" "$py" \
      > "$BENCH_OUT/99-$name.json"
    return
  fi
  echo "== $name ($(( $(date +%s) - started )) s so far)" >&2
  # Each step's temporary directories (its generated inputs: several GiB at scale 1, which
  # bench.py, hdf5_flax.py and gguf_bench.py leave behind) go under one directory, deleted after
  # the step, so that they do not pile up before the big-model step needs the disk.
  local tmp
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/t2n-bench-step.XXXXXX")"
  if ! TMPDIR="$tmp" "$py" "$@"; then
    printf '[{"target": "%s", "measured": "the script failed (see its output)", "met": false}]\n' "$name" \
      > "$BENCH_OUT/99-$name.json"
  fi
  rm -rf "$tmp"
}
step core "$TF" benches/bench.py
step example "$TF" benches/example_bench.py
step graph "$TF" benches/graph.py
step torch "$TORCH" benches/bench_torch.py
step pickle "$TORCH" benches/bench_pickle.py
step paddle "$PADDLE" benches/bench_paddle.py
step gguf "$GGUF" benches/gguf_bench.py
step tflite-events "$TF" benches/tflite_events.py
KERAS_BACKEND=jax step hdf5-flax "$JAX" benches/hdf5_flax.py
step orbax-zarr "$ORBAX" benches/orbax_zarr.py
step dcp "$TORCH" benches/dcp_bench.py
step numpy "$NUMPY" benches/numpy_bench.py
step deepspeed "$DS" benches/deepspeed_bench.py
BENCH_GGUF_PYTHON="$GGUF" step bigmodel-remote "$TORCH" benches/bigmodel_remote.py
# The Python module: a venv with the wheel (packaging/build-wheel.sh), safetensors and NumPy.
step python "${BENCH_PY_PYTHON:-.venv-py/bin/python}" benches/python_bench.py
if wanted memory; then BENCH_PYTHON="$TF" T2N="$BENCH_BIN" benches/memory.sh > /dev/null; fi
if [ -n "${BENCH_ONLY:-}" ]; then
  "$TF" benches/report.py --splice BENCHMARKS.md "$BENCH_OUT"
else
  "$TF" benches/report.py "$BENCH_OUT" > BENCHMARKS.md
fi
echo "wrote BENCHMARKS.md in $(( $(date +%s) - started )) s" >&2
