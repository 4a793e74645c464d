#!/usr/bin/env bash
# Builds the pip wheel into OUTDIR: first the release `tensor2npy` binary, the command the wheel
# installs into bin/ (maturin's data directory holds the link packaging/wheel/scripts/tensor2npy
# -> target/release/tensor2npy), then, with maturin, the abi3 extension `tensor2npy._native`
# (cargo feature `python`) and the Python package python/tensor2npy around it. The binary is
# built without the `python` feature: the command links no Python and starts as before.
# Usage: packaging/build-wheel.sh MATURIN OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
maturin="$1"
out="$2"
cargo build --locked --release --bin tensor2npy
"$maturin" build --release --locked --out "$out" --quiet 2>&1 | grep -v '^\s*$' || true
ls "$out"/tensor2npy-*.whl
