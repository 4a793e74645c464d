#!/usr/bin/env bash
# One command for the benchmarks: builds the release binary and the micro-benchmark, makes a
# venv with the Python peers (tensorflow-cpu, safetensors, numpy, ml_dtypes) unless BENCH_PYTHON
# names one, then runs benches/bench.py, which writes BENCHMARKS.generated.md (merge the tables
# into BENCHMARKS.md). BENCH_REPS (default 5) and BENCH_SCALE (default 1 = 1 GiB inputs) tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
cargo build --release --locked --bench widen
cp "$(ls -t target/release/deps/widen-* | grep -v '\.d$' | head -1)" target/release/widen
if [ -z "${BENCH_PYTHON:-}" ]; then
  [ -x benches/.venv/bin/python ] || python3 -m venv benches/.venv
  benches/.venv/bin/python -m pip install --quiet --disable-pip-version-check tensorflow-cpu safetensors numpy ml_dtypes
  BENCH_PYTHON=benches/.venv/bin/python
fi
exec "$BENCH_PYTHON" benches/bench.py
