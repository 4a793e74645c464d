#!/usr/bin/env bash
# Builds the pip wheel into OUTDIR: first the release `tensor2npy` binary, the command the wheel
# installs into bin/ (maturin's data directory holds the link packaging/wheel/scripts/tensor2npy
# -> target/release/tensor2npy), then, with maturin, the abi3 extension `tensor2npy._native`
# (cargo feature `python`) and the Python package python/tensor2npy around it. The binary is
# built without the `python` feature: the command links no Python and starts as before.
# T2N_WHEEL_PROFILE=ci builds both with Cargo.toml's [profile.ci] instead (CI's one optimised
# build, reused from its tests): a wheel for testing, never one to ship. The ci binary stands at
# the link's target/release/tensor2npy only while maturin packs it; what was there is put back.
# Usage: packaging/build-wheel.sh MATURIN OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
maturin="$1"
out="$2"
profile="${T2N_WHEEL_PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --locked --release --bin tensor2npy
else
  cargo build --locked --profile "$profile" --bin tensor2npy
  bin="target/release/tensor2npy"
  mkdir -p target/release
  if [ -e "$bin" ]; then mv "$bin" "$bin.kept"; fi
  trap 'rm -f "$bin"; if [ -e "$bin.kept" ]; then mv "$bin.kept" "$bin"; else rmdir target/release 2>/dev/null || true; fi' EXIT
  cp "${CARGO_TARGET_DIR:-target}/$profile/tensor2npy" "$bin"
fi
if [ "$profile" = release ]; then set -- --release; else set -- --profile "$profile"; fi
"$maturin" build "$@" --locked --out "$out" --quiet 2>&1 | grep -v '^\s*$' || true
ls "$out"/tensor2npy-*.whl
