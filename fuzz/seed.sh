#!/bin/sh
# Seeds each fuzz target's corpus (fuzz/corpus/<target>, git-ignored) from the fixtures.
set -e
cd "$(dirname "$0")/.."
c=fuzz/corpus
mkdir -p $c/safetensors_header $c/tensorproto $c/tfrecord $c/tfrecord_compressed $c/bundle_index $c/bundle_entries $c/sparse_ragged $c/example $c/gguf_header $c/graphdef $c/onnx $c/torch_pickle $c/hdf5 $c/flax_msgpack $c/tflite $c/tfevents $c/npy_header $c/dcp_metadata
cp fixtures/safetensors/*.safetensors fixtures/bad/st_*.safetensors $c/safetensors_header/
cp fixtures/tensorproto/*.pb fixtures/bad/tp_*.pb $c/tensorproto/
cp fixtures/tfrecord/*.tfrecord fixtures/bad/tfr_*.tfrecord $c/tfrecord/
cp fixtures/tfrecord/*.gz fixtures/tfrecord/*.zz $c/tfrecord_compressed/
cp fixtures/gguf/*.gguf $c/gguf_header/
cp fixtures/hdf5/*.h5 $c/hdf5/
mkdir -p $c/hdf5_lzf
cp fixtures/flax/*.msgpack $c/flax_msgpack/
cp fixtures/numpy/*.npy fixtures/numpy/*.npz $c/npy_header/
cp fixtures/tflite/*.tflite fixtures/tflite/bad/*.tflite $c/tflite/
for e in fixtures/tensorboard/*/events.out.tfevents.*; do cp "$e" "$c/tfevents/$(echo "$e" | tr / _)"; done
cp fixtures/sparse_ragged/*.pb fixtures/bad/sparse_*.pb fixtures/bad/ragged_*.pb $c/sparse_ragged/
cp fixtures/example/*.tfrecord $c/example/
cp fixtures/graph/*.pb fixtures/graph/saved_model/saved_model.pb fixtures/graph/bad/*.pb $c/graphdef/
for m in fixtures/graph/*.onnx fixtures/graph/*/*.onnx; do cp "$m" "$c/onnx/$(echo "$m" | tr / _)"; done
cp fixtures/torch/*.pt fixtures/torch/*.pth $c/torch_pickle/
mkdir -p $c/pickle_records
cp fixtures/pickle/*.pkl fixtures/pickle/*.pickle fixtures/pickle_torch/*.pkl fixtures/pickle_torch/*.pickle $c/pickle_records/
# a DCP checkpoint as the target reads it: a 2-byte length, .metadata, then __0_0.distcp
for d in fixtures/dcp/single fixtures/dcp/nested; do
  name=$(echo "$d" | tr / _)
  python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<H", int(sys.argv[1])))' "$(stat -c %s "$d/.metadata")" > "$c/dcp_metadata/$name"
  cat "$d/.metadata" "$d/__0_0.distcp" >> "$c/dcp_metadata/$name"
done
for f in fixtures/deepspeed/*/global_step*/*.pt; do cp "$f" "$c/torch_pickle/$(echo "$f" | tr / _)"; done
for index in fixtures/ckpt/*/*.index fixtures/ckpt/saved_model/variables/variables.index; do
  name=$(echo "$index" | tr / _)
  cp "$index" "$c/bundle_index/$name"
  size=$(stat -c %s "$index")
  shard="${index%.index}.data-00000-of-00001"
  if [ "$size" -lt 65536 ] && [ -f "$shard" ]; then
    python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<H", int(sys.argv[1])))' "$size" > "$c/bundle_entries/$name"
    cat "$index" "$shard" >> "$c/bundle_entries/$name"
  fi
done
for f in fixtures/torch/*.pt; do
  python3 -c 'import sys, zipfile
try:
    z = zipfile.ZipFile(sys.argv[1]); sys.stdout.buffer.write(z.read(next(n for n in z.namelist() if n.endswith("/data.pkl"))))
except Exception:
    pass' "$f" > "$c/torch_pickle/$(basename "$f").pkl"
done
