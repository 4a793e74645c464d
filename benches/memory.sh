#!/usr/bin/env bash
# Peak memory (maximum resident set size, from /usr/bin/time) of tensor2npy on the input shapes
# whose memory used to grow with the number or shape of things inside an input (issue 13), and
# the exit status where the goal is a clean refusal. Prints a Markdown table (and, under
# benches/run.sh, files it in $BENCH_OUT for BENCHMARKS.md).
#   T2N=path/to/tensor2npy  (default: builds the release binary, CPU only)
#   BENCH_PYTHON=python     (needs numpy and safetensors; default python3)
#   BENCH_SCALE=1           (0.1 for a quick run)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${T2N:-}" ] && [ -n "${BENCH_BIN:-}" ]; then
  T2N="$BENCH_BIN"
elif [ -z "${T2N:-}" ]; then
  cargo build --release --locked --no-default-features >&2
  T2N="${CARGO_TARGET_DIR:-target}/release/tensor2npy"
fi
PY="${BENCH_PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/t2n-memory.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
"$PY" benches/memory_inputs.py "$WORK/in" "${BENCH_SCALE:-1}"

# measure LABEL GOAL MAX_MIB EXIT ARGS... : one row of the table; a row over MAX_MIB or with
# another exit status than EXIT counts as missed.
missed=0
rows=0
table="$WORK/table.md"
measure() {
  local label="$1" goal="$2" max="$3" want="$4"
  shift 4
  local out="$WORK/out" status=0
  rm -rf "$out" "$out.npz" "$out.npy"
  /usr/bin/time -f "%M %e" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || status=$?
  kib=$(tail -1 "$WORK/time" | cut -d' ' -f1)
  secs=$(tail -1 "$WORK/time" | cut -d' ' -f2)
  printf '| %s | %d MiB | %s s | %d | %s |\n' "$label" $((kib / 1024)) "$secs" "$status" "$goal" | tee -a "$table"
  if [ "$status" -ne "$want" ]; then
    printf '|   | %s | | | |\n' "$(tail -1 "$WORK/err" | cut -c1-160 | tr '|' '/')" | tee -a "$table"
  fi
  rows=$((rows + 1))
  if [ $((kib / 1024)) -gt "$max" ] || [ "$status" -ne "$want" ]; then missed=$((missed + 1)); fi
  rm -rf "$out" "$out.npz" "$out.npy"
}

in="$WORK/in"
o="$WORK/out"
printf '%s\n' "### Peak memory by input shape (\`benches/memory.sh\`, BENCH_SCALE=${BENCH_SCALE:-1})" "" \
  "The input shapes whose memory used to grow with the number or shape of things inside an input." "" \
  "| input | peak RSS | time | exit | goal |" "|---|---|---|---|---|" | tee "$table"
measure "TFRecord, 1M scalar tensors → .npz" "≤ 64 MiB" 64 0 "$T2N" convert "$in/scalars.tfrecord" -o "$o.npz"
measure "the same → \`--to npz -o -\`" "≤ 64 MiB" 64 0 "$T2N" convert "$in/scalars.tfrecord" --to npz -o -
measure "the same, \`list --json\`" "≤ 64 MiB" 64 0 "$T2N" list --json "$in/scalars.tfrecord"
header_mib=$(( $(od -An -t u8 -N8 "$in/many.safetensors" | tr -d ' ') / 1048576 ))
measure "safetensors, 200k tensors → .npz" "≤ 64 MiB + 2× header" $((64 + 2 * header_mib + 1)) 0 "$T2N" convert "$in/many.safetensors" -o "$o.npz"
measure "TensorProto, 1M unpacked int_val → .npy" "≤ 64 MiB" 64 0 "$T2N" convert "$in/unpacked1m.pb" -o "$o.npy"
measure "TensorProto, 5M unpacked int_val → .npy" "≤ 64 MiB" 64 0 "$T2N" convert "$in/unpacked5m.pb" -o "$o.npy"
measure "sparse group, 8M entries → COO .npz" "≤ 64 MiB" 64 0 "$T2N" convert "$in/sparse.safetensors" -o "$o.npz"
measure "the same → \`--sparse dense\` (64 MiB)" "≤ 128 MiB" 128 0 "$T2N" convert "$in/sparse.safetensors" --sparse dense -o "$o.npz"
measure "serialized sparse, values [2^28] from one float_val, \`convert\`" "≤ 64 MiB, exit 1" 64 1 "$T2N" convert "$in/sparse_fill.pb" -o "$o.npz"
measure "the same, \`list\`" "≤ 64 MiB, exit 1" 64 1 "$T2N" list "$in/sparse_fill.pb"
if [ -n "${BENCH_OUT:-}" ]; then
  mkdir -p "$BENCH_OUT"
  cp "$table" "$BENCH_OUT/90-memory.md"
  printf '[{"target": "memory: every input shape of benches/memory.sh within its goal", "measured": "%d of %d rows", "met": %s}]\n' \
    $((rows - missed)) "$rows" "$([ "$missed" -eq 0 ] && echo true || echo false)" > "$BENCH_OUT/90-memory.json"
fi
