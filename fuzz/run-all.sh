#!/bin/sh
# Runs every fuzz target for SECONDS (default 600) each, one after another, with memory and time
# limits; crashes land in fuzz/artifacts/<target>/, logs in fuzz/logs/. cargo-fuzz needs nightly
# flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -u
cd "$(dirname "$0")"
secs=${1:-600}
export RUSTC_BOOTSTRAP=1
./seed.sh
for t in safetensors_header tensorproto tfrecord tfrecord_compressed bundle_index bundle_entries sparse_ragged example gguf_header graphdef onnx torch_pickle hdf5 hdf5_lzf flax_msgpack tflite tfevents folders ocdbt zarr_metadata npy_header dcp_metadata deepspeed_plan; do
  echo "== $t $(date -u +%FT%TZ)"
  cargo fuzz run -O "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=262144 \
    > "logs/$t.log" 2>&1
  echo "   exit $? $(date -u +%FT%TZ): $(grep -E '^#[0-9]+.*(DONE|pulse)' "logs/$t.log" | tail -1)"
done
