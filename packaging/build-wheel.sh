#!/usr/bin/env bash
# Builds the pip wheel into OUTDIR: first the release `tensor2npy` binary, the command the wheel
# installs into bin/ (maturin's data directory holds the link packaging/wheel/scripts/tensor2npy
# -> target/release/tensor2npy), then, with maturin, the abi3 extension `tensor2npy._native`
# (cargo feature `python`) and the Python package python/tensor2npy around it. The binary is
# built without the `python` feature: the command links no Python and starts as before.
# T2N_PROFILE=ci (.ci/run) builds both with Cargo.toml's `ci` profile instead of `release`
# (no LTO, more codegen units: faster to build, for a wheel that is tested, never shipped); its
# binary is copied to target/release/tensor2npy, where the wheel's link points.
# Usage: [T2N_PROFILE=ci] packaging/build-wheel.sh MATURIN OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
maturin="$1"
out="$2"
profile="${T2N_PROFILE:-release}"
cargo build --locked --profile "$profile" --bin tensor2npy
if [ "$profile" != release ]; then
  mkdir -p target/release
  cp "${CARGO_TARGET_DIR:-target}/$profile/tensor2npy" target/release/tensor2npy
fi
"$maturin" build --profile "$profile" --locked --out "$out" --quiet 2>&1 | grep -v '^\s*$' || true
ls "$out"/tensor2npy-*.whl
