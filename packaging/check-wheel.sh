#!/usr/bin/env bash
# Builds the pip wheel with maturin (reusing cargo's release build) and checks it the way a user
# gets it: installed into a fresh venv with no Rust toolchain on PATH, `tensor2npy --version`,
# the manual page in the venv, and one real conversion loaded back with NumPy.
# Usage: packaging/check-wheel.sh [PYTHON]   (PYTHON: an interpreter that can pip install)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$py" -m venv "$work/build"
"$work/build/bin/pip" install --quiet --disable-pip-version-check maturin
"$work/build/bin/maturin" build --release --locked --out "$work/wheels" --quiet 2>&1 | grep -v '^\s*$' || true
wheel="$(ls "$work"/wheels/tensor2npy-*.whl)"
echo "built $(basename "$wheel")"

# The user's side: a fresh venv, and a PATH with no cargo or rustc on it.
"$py" -m venv "$work/user"
clean_path="$work/user/bin:/usr/local/bin:/usr/bin:/bin"
env -i HOME="$HOME" PATH="$clean_path" "$work/user/bin/pip" install --quiet --disable-pip-version-check "$wheel" numpy
env -i HOME="$HOME" PATH="$clean_path" bash -c '
  set -euo pipefail
  if command -v cargo >/dev/null || command -v rustc >/dev/null; then echo "Rust is on PATH"; exit 1; fi
  command -v tensor2npy
  tensor2npy --version
  test -s "$(dirname "$(command -v tensor2npy)")/../share/man/man1/tensor2npy.1"
  tensor2npy convert fixtures/safetensors/numeric.safetensors -o "'"$work"'/out.npz" --quiet
  python - "'"$work"'/out.npz" fixtures/safetensors/numeric.expected.npz <<PY
import sys, numpy as np
got, want = np.load(sys.argv[1]), np.load(sys.argv[2])
assert sorted(got.files) == sorted(want.files), (got.files, want.files)
for k in want.files:
    a, b = got[k], want[k]
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), k
print(f"wheel OK: {len(want.files)} arrays identical to the oracle")
PY
'
