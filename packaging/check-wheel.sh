#!/usr/bin/env bash
# Builds the pip wheel (packaging/build-wheel.sh, reusing cargo's release build) and checks it
# the way a user gets it: installed into a fresh venv with no Rust toolchain on PATH,
# `tensor2npy --version` (the native binary, not a Python launcher), the manual page in the
# venv, one real conversion loaded back with NumPy, and the Python module's tests
# (python/tests, pytest) against the installed `import tensor2npy`.
# Usage: packaging/check-wheel.sh [PYTHON]   (PYTHON: an interpreter that can pip install;
# T2N_WHEEL=path checks that wheel instead of building one; T2N_WHEEL_PROFILE=ci, passed on to
# build-wheel.sh, builds it from CI's [profile.ci] build instead of the release one)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -n "${T2N_WHEEL:-}" ]; then
  wheel="$T2N_WHEEL"   # a wheel built already (by packaging/build-wheel.sh)
else
  "$py" -m venv "$work/build"
  "$work/build/bin/pip" install --quiet --disable-pip-version-check maturin
  packaging/build-wheel.sh "$work/build/bin/maturin" "$work/wheels" >/dev/null
  wheel="$(ls "$work"/wheels/tensor2npy-*.whl)"
fi
echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

# The user's side: a fresh venv, and a PATH with no cargo or rustc on it.
"$py" -m venv "$work/user"
clean_path="$work/user/bin:/usr/local/bin:/usr/bin:/bin"
env -i HOME="$HOME" PATH="$clean_path" "$work/user/bin/pip" install --quiet --disable-pip-version-check "$wheel" numpy pytest
env -i HOME="$HOME" PATH="$clean_path" bash -c '
  set -euo pipefail
  if command -v cargo >/dev/null || command -v rustc >/dev/null; then echo "Rust is on PATH"; exit 1; fi
  command -v tensor2npy
  tensor2npy --version
  # The command is the native binary: no Python starts with it.
  test "$(head -c 4 "$(command -v tensor2npy)" | od -An -c | tr -d " ")" = "177ELF"
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

# The Python module, from the same wheel: every fixture against the command and the oracles,
# exceptions, Ctrl-C, lazy reads. Run from the checkout's root for the fixtures; the tests
# check that they import the installed package. Zero tests collected (exit 5) or too few run
# is a failure, not a pass.
env -i HOME="$HOME" PATH="$clean_path" "$work/user/bin/python" -m pytest -q -p no:cacheprovider --durations=10 \
  python/tests | tee "$work/pytest.log"
passed="$(grep -Eo '[0-9]+ passed' "$work/pytest.log" | grep -Eo '[0-9]+' || echo 0)"
if [ "$passed" -lt 300 ]; then
  echo "only $passed Python tests passed (expected every fixture and more)"; exit 1
fi
