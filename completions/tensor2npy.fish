# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tensor2npy_global_optspecs
    string join \n h/help V/version
end

function __fish_tensor2npy_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tensor2npy_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tensor2npy_using_subcommand
    set -l cmd (__fish_tensor2npy_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -s h -l help -d 'Print help'
complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -s V -l version -d 'Print version'
complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -f -a "convert" -d 'Convert tensors to .npy / .npz'
complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -f -a "list" -d 'List tensors (name, dtype, shape, bytes in the input, kind) without converting them'
complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -f -a "verify" -d 'Read every input whole and check the checksums it carries, saying what was checked (like gzip -t)'
complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -f -a "devices" -d 'List the GPU adapters the device stage can use (name, backend, type, limits)'
complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -f -a "man" -d 'Print the manual page (roff), for `man -l -` or a man1 directory'
complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c tensor2npy -n "__fish_tensor2npy_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l from -d 'Read the inputs as this format instead of sniffing their content' -r -f -a "checkpoint\t'a TensorFlow checkpoint: its prefix, its .index file, or a directory with a `checkpoint` file'
savedmodel\t'a SavedModel directory (its variables)'
huggingface\t'a Hugging Face model folder (diffusers pipelines and sentence-transformers part by part) or its *.index.json (safetensors or .bin shards, merged)'
deepspeed\t'DeepSpeed ZeRO 1/2/3 checkpoint folders (latest tag or global_stepN): consolidated fp32 weights'
pytorch\t'a PyTorch file: torch.save (zip or legacy, whole modules too), TorchScript, torch.export .pt2; never executed'
pickle\t'a pickle of NumPy arrays (.pkl, Paddle .pdparams/.pdopt; never executed)'
safetensors\t'safetensors files (Hugging Face)'
example\t'TFRecord datasets of tf.train.Example / SequenceExample records: one array per feature'
gguf\t'GGUF files (llama.cpp), quantized types dequantized like gguf-py'
hdf5\t'HDF5 files: Keras .weights.h5 and .h5, any h5py file'
keras\t'Keras 3 .keras archives (their model.weights.h5)'
numpy\t'NumPy .npy arrays and .npz archives (np.save, np.savez, np.savez_compressed)'
keras-folder\t'Keras 3 sharded weights (*.weights.json and its .weights.h5 shards) or an unzipped .keras folder'
flax\t'Flax msgpack checkpoints (flax.serialization.to_bytes, flax_model.msgpack)'
tflite\t'TFLite / LiteRT models (.tflite flatbuffers)'
tfevents\t'TensorBoard event files (events.out.tfevents.*) of tf.summary values'
orbax\t'Orbax checkpoints: item, step or CheckpointManager directories (OCDBT or zarr)'
dcp\t'a PyTorch Distributed Checkpoint folder (.metadata + .distcp, or its safetensors variant; shards reassembled)'
zarr\t'zarr v2 and v3 arrays and groups (folders with .zarray/.zgroup or zarr.json)'
tfrecord\t'TFRecord files (plain, GZIP or ZLIB) of serialized tensors'
onnx\t'an ONNX model (its graph initializers; external data read beside it)'
graphdef\t'a frozen TensorFlow GraphDef (its Const nodes) or a saved_model.pb (its graphs\' constants)'
tensorproto\t'a serialized TensorProto (tf.io.serialize_tensor, tf.make_tensor_proto)'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l select -d 'Keep only tensors whose name matches GLOB (repeatable; \'*\' also matches \'/\')' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l exclude -d 'Drop tensors whose name matches GLOB (repeatable)' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l request-timeout -d 'Remote inputs and outputs: give up on one request (connecting included) after SECS seconds, then retry it; a failure that outlasts the retries exits 75' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l step -d 'Orbax CheckpointManager root or Flax `save_checkpoint` folder (`checkpoint_<N>` files): read this step instead of the latest; DeepSpeed checkpoint folder: read tag global_stepN instead of the one `latest` names' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l max-fill-bytes -d 'TensorProto: the most bytes TensorFlow\'s fill rule may expand a short typed field to' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l max-decompressed -d 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz, data.pkl), that decompresses to more than BYTES; pickles: refuse tensors adding up to more than BYTES' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l features -d 'tf.train.Example datasets: only these feature keys (comma-separated, repeatable)' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l ragged-features -d 'tf.train.Example datasets: write these features ragged even when every record has the same length' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l dense-features -d 'tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l quant -d 'Quantized tensors. GGUF (default dequant): dequantize block-quantized tensors to float32 like gguf-py, or keep their blocks as |u1 bytes (raw). TFLite (default raw): keep them as stored like the interpreter\'s get_tensor, add <name>/scale and <name>/zero_point arrays (params), or dequantize them to float32 (dequant)' -r -f -a "dequant\t'Dequantize to <f4: GGUF bit for bit what gguf.quants.dequantize returns; TFLite (q - zero_point) * scale in float64, rounded to float32, per axis'
raw\t'As stored: GGUF blocks as |u1 arrays of GGUFReader\'s byte shape [..., bytes_per_row]; TFLite the stored integers'
params\t'TFLite: as stored, plus <name>/scale (float32) and <name>/zero_point (int32) arrays as the interpreter\'s quantization_parameters give them'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -s o -l output -d 'Output: X.npz, X.npy, a directory, or - for standard output (default: IN.npz beside IN)' -r -F
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l to -d 'Output kind where -o does not say: npz (an archive) or npy (.npy files)' -r -f -a "npy\t''
npz\t''"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l bf16 -d 'bfloat16: widen to float32 (<f4), or keep the raw bits as <u2' -r -f -a "f32\t'Widen losslessly to float32 (`<f4`)'
bits\t'Keep the raw bit pattern as an unsigned integer (`<u2` for bf16, `|u1` for float8)'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l f8 -d 'float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1' -r -f -a "f32\t'Widen losslessly to float32 (`<f4`)'
bits\t'Keep the raw bit pattern as an unsigned integer (`<u2` for bf16, `|u1` for float8)'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l cast -d 'Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l sparse -d 'Sparse tensors: COO components X/indices, X/values, X/dense_shape, or X densified' -r -f -a "coo\t'`X/indices`, `X/values`, `X/dense_shape`'
dense\t'`X` as a dense array, like `tf.sparse.to_dense`'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l ragged -d 'Ragged tensors: X/flat_values + X/row_splits_K, the flat values alone, or X padded like rt.to_tensor()' -r -f -a "components\t'`X/flat_values` and `X/row_splits_0`, `X/row_splits_1`, ... (outermost first)'
flat\t'`X` = the flat values alone, like `rt.flat_values`'
pad\t'`X` padded into a dense array, like `rt.to_tensor()`'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l fill -d 'The value written where a densified sparse or padded ragged tensor has none (default 0, or b"" for strings). A number fills numeric tensors only (strings still pad with b""); a bytes literal such as "b\'N/A\'" fills string tensors only' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l sparse-duplicates -d 'Sparse indices given more than once: an error, or their values summed, or the last one kept' -r -f -a "error\t'Repeated indices are an error'
sum\t'Values at repeated indices are added (like `np.add.at`)'
last\t'The last value at a repeated index wins'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l max-dense-bytes -d 'Refuse to densify or pad a tensor into more than BYTES' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l max-output -d 'Refuse a run that would write more than BYTES in all (every output together, .npy headers and data before --compress), before anything is written' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l device -d 'Where dense conversions run: the host, a GPU through wgpu, or a GPU when there is one' -r -f -a "cpu\t'Convert on the host'
gpu\t'Convert on a GPU through wgpu; fail if there is none'
auto\t'Use a GPU when one is found, else the host (and say so)'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l adapter -d 'The GPU adapter to use, by its index in `tensor2npy devices`' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l stats -d 'Print, per tensor and in total, to stderr: the time the host spent reading, converting and writing, the bytes read and written and the throughput; with a GPU also the bytes moved host-to-device and device-to-host and the kernel and readback times (--stats for text, --stats=json for JSON, which always has every field)' -r -f -a "text\t''
json\t''"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l manifest -d 'Append one JSON line per output to FILE: input, output, status (written or up-to-date), tensors, bytes and the sha256 of the output file, hashed as it is written (for a directory: of the files this run wrote, the sha256 of their `sha256sum` lines in path order)' -r -F
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l chunk-size -d 'Bytes read and converted at a time; bounds memory use' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -s j -l jobs -d 'Threads converting at once (default: the number of cores, at most 8): the large tensors of a stored .npz, and the outputs of a batch; 1 does everything in turn. The output is byte for byte the same whatever N, and memory stays bounded' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l include-internal -d 'Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l stack -d 'TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>. TensorBoard event files: stack each tag\'s values over its steps into <tag>, beside <tag>/step and <tag>/wall_time'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l constants -d 'SavedModel directories: add the Const nodes of saved_model.pb\'s graphs to the variables'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l no-verify -d 'Checkpoints and SavedModels: do not verify the CRC32C of each entry, the object graph included (faster on large checkpoints); the CRCs of TFRecords and of PyTorch archives are always checked'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l strict -d 'Treat skipped entries (variants such as tf.data iterator state) as errors'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l weights-only -d 'Pickles (PyTorch, NumPy, Paddle): allow only the globals torch.load(weights_only=True) allows, refusing classes (whole modules, TorchScript) instead of reading them as data'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l concat -d 'Read all inputs as one: tf.train.Example shards as one dataset (records in input order); other inputs\' tensors merged under their own names, a name in two inputs an error'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l compress -d 'Deflate .npz members, like np.savez_compressed'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l skip-unsupported -d 'Skip tensors whose dtype has no NumPy form (resource handles) instead of failing; when that leaves nothing to write, it is an error (exit 1)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -s q -l quiet -d 'Silence notes, warnings, the progress bar and the summary line (errors are still printed)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l update -d 'Leave an output alone when it is newer than all its inputs (like `cp -u`), so that a rerun of a killed batch does only what is left'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -l keep-going -d 'Go on after an input or output fails: write every output that can be written, report each failure as it happens and again in the count at the end, and exit with status 1 (without it, the first failure stops the run). An input that fails on its way into an output it shares with other inputs still stops the run'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand convert" -s V -l version -d 'Print version'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l from -d 'Read the inputs as this format instead of sniffing their content' -r -f -a "checkpoint\t'a TensorFlow checkpoint: its prefix, its .index file, or a directory with a `checkpoint` file'
savedmodel\t'a SavedModel directory (its variables)'
huggingface\t'a Hugging Face model folder (diffusers pipelines and sentence-transformers part by part) or its *.index.json (safetensors or .bin shards, merged)'
deepspeed\t'DeepSpeed ZeRO 1/2/3 checkpoint folders (latest tag or global_stepN): consolidated fp32 weights'
pytorch\t'a PyTorch file: torch.save (zip or legacy, whole modules too), TorchScript, torch.export .pt2; never executed'
pickle\t'a pickle of NumPy arrays (.pkl, Paddle .pdparams/.pdopt; never executed)'
safetensors\t'safetensors files (Hugging Face)'
example\t'TFRecord datasets of tf.train.Example / SequenceExample records: one array per feature'
gguf\t'GGUF files (llama.cpp), quantized types dequantized like gguf-py'
hdf5\t'HDF5 files: Keras .weights.h5 and .h5, any h5py file'
keras\t'Keras 3 .keras archives (their model.weights.h5)'
numpy\t'NumPy .npy arrays and .npz archives (np.save, np.savez, np.savez_compressed)'
keras-folder\t'Keras 3 sharded weights (*.weights.json and its .weights.h5 shards) or an unzipped .keras folder'
flax\t'Flax msgpack checkpoints (flax.serialization.to_bytes, flax_model.msgpack)'
tflite\t'TFLite / LiteRT models (.tflite flatbuffers)'
tfevents\t'TensorBoard event files (events.out.tfevents.*) of tf.summary values'
orbax\t'Orbax checkpoints: item, step or CheckpointManager directories (OCDBT or zarr)'
dcp\t'a PyTorch Distributed Checkpoint folder (.metadata + .distcp, or its safetensors variant; shards reassembled)'
zarr\t'zarr v2 and v3 arrays and groups (folders with .zarray/.zgroup or zarr.json)'
tfrecord\t'TFRecord files (plain, GZIP or ZLIB) of serialized tensors'
onnx\t'an ONNX model (its graph initializers; external data read beside it)'
graphdef\t'a frozen TensorFlow GraphDef (its Const nodes) or a saved_model.pb (its graphs\' constants)'
tensorproto\t'a serialized TensorProto (tf.io.serialize_tensor, tf.make_tensor_proto)'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l select -d 'Keep only tensors whose name matches GLOB (repeatable; \'*\' also matches \'/\')' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l exclude -d 'Drop tensors whose name matches GLOB (repeatable)' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l request-timeout -d 'Remote inputs and outputs: give up on one request (connecting included) after SECS seconds, then retry it; a failure that outlasts the retries exits 75' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l step -d 'Orbax CheckpointManager root or Flax `save_checkpoint` folder (`checkpoint_<N>` files): read this step instead of the latest; DeepSpeed checkpoint folder: read tag global_stepN instead of the one `latest` names' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l max-fill-bytes -d 'TensorProto: the most bytes TensorFlow\'s fill rule may expand a short typed field to' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l max-decompressed -d 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz, data.pkl), that decompresses to more than BYTES; pickles: refuse tensors adding up to more than BYTES' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l features -d 'tf.train.Example datasets: only these feature keys (comma-separated, repeatable)' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l ragged-features -d 'tf.train.Example datasets: write these features ragged even when every record has the same length' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l dense-features -d 'tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l quant -d 'Quantized tensors. GGUF (default dequant): dequantize block-quantized tensors to float32 like gguf-py, or keep their blocks as |u1 bytes (raw). TFLite (default raw): keep them as stored like the interpreter\'s get_tensor, add <name>/scale and <name>/zero_point arrays (params), or dequantize them to float32 (dequant)' -r -f -a "dequant\t'Dequantize to <f4: GGUF bit for bit what gguf.quants.dequantize returns; TFLite (q - zero_point) * scale in float64, rounded to float32, per axis'
raw\t'As stored: GGUF blocks as |u1 arrays of GGUFReader\'s byte shape [..., bytes_per_row]; TFLite the stored integers'
params\t'TFLite: as stored, plus <name>/scale (float32) and <name>/zero_point (int32) arrays as the interpreter\'s quantization_parameters give them'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l bf16 -d 'bfloat16: widen to float32 (<f4), or keep the raw bits as <u2' -r -f -a "f32\t'Widen losslessly to float32 (`<f4`)'
bits\t'Keep the raw bit pattern as an unsigned integer (`<u2` for bf16, `|u1` for float8)'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l f8 -d 'float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1' -r -f -a "f32\t'Widen losslessly to float32 (`<f4`)'
bits\t'Keep the raw bit pattern as an unsigned integer (`<u2` for bf16, `|u1` for float8)'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l cast -d 'Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l include-internal -d 'Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l stack -d 'TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>. TensorBoard event files: stack each tag\'s values over its steps into <tag>, beside <tag>/step and <tag>/wall_time'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l constants -d 'SavedModel directories: add the Const nodes of saved_model.pb\'s graphs to the variables'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l no-verify -d 'Checkpoints and SavedModels: do not verify the CRC32C of each entry, the object graph included (faster on large checkpoints); the CRCs of TFRecords and of PyTorch archives are always checked'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l strict -d 'Treat skipped entries (variants such as tf.data iterator state) as errors'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l weights-only -d 'Pickles (PyTorch, NumPy, Paddle): allow only the globals torch.load(weights_only=True) allows, refusing classes (whole modules, TorchScript) instead of reading them as data'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l concat -d 'Read all inputs as one: tf.train.Example shards as one dataset (records in input order); other inputs\' tensors merged under their own names, a name in two inputs an error'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l json -d 'Print one JSON document (an array of objects) instead of a table'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -l metadata -d 'With --json: print {"metadata": {INPUT: ...}, "tensors": [...]}, with each input\'s own metadata (GGUF key/values, safetensors __metadata__, ONNX metadata_props and producer, a .keras archive\'s config.json and metadata.json; null where the format has none)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -s q -l quiet -d 'Silence notes (the listing itself is still printed)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand list" -s V -l version -d 'Print version'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand verify" -l from -d 'Read the inputs as this format instead of sniffing their content' -r -f -a "checkpoint\t'a TensorFlow checkpoint: its prefix, its .index file, or a directory with a `checkpoint` file'
savedmodel\t'a SavedModel directory (its variables)'
huggingface\t'a Hugging Face model folder (diffusers pipelines and sentence-transformers part by part) or its *.index.json (safetensors or .bin shards, merged)'
deepspeed\t'DeepSpeed ZeRO 1/2/3 checkpoint folders (latest tag or global_stepN): consolidated fp32 weights'
pytorch\t'a PyTorch file: torch.save (zip or legacy, whole modules too), TorchScript, torch.export .pt2; never executed'
pickle\t'a pickle of NumPy arrays (.pkl, Paddle .pdparams/.pdopt; never executed)'
safetensors\t'safetensors files (Hugging Face)'
example\t'TFRecord datasets of tf.train.Example / SequenceExample records: one array per feature'
gguf\t'GGUF files (llama.cpp), quantized types dequantized like gguf-py'
hdf5\t'HDF5 files: Keras .weights.h5 and .h5, any h5py file'
keras\t'Keras 3 .keras archives (their model.weights.h5)'
numpy\t'NumPy .npy arrays and .npz archives (np.save, np.savez, np.savez_compressed)'
keras-folder\t'Keras 3 sharded weights (*.weights.json and its .weights.h5 shards) or an unzipped .keras folder'
flax\t'Flax msgpack checkpoints (flax.serialization.to_bytes, flax_model.msgpack)'
tflite\t'TFLite / LiteRT models (.tflite flatbuffers)'
tfevents\t'TensorBoard event files (events.out.tfevents.*) of tf.summary values'
orbax\t'Orbax checkpoints: item, step or CheckpointManager directories (OCDBT or zarr)'
dcp\t'a PyTorch Distributed Checkpoint folder (.metadata + .distcp, or its safetensors variant; shards reassembled)'
zarr\t'zarr v2 and v3 arrays and groups (folders with .zarray/.zgroup or zarr.json)'
tfrecord\t'TFRecord files (plain, GZIP or ZLIB) of serialized tensors'
onnx\t'an ONNX model (its graph initializers; external data read beside it)'
graphdef\t'a frozen TensorFlow GraphDef (its Const nodes) or a saved_model.pb (its graphs\' constants)'
tensorproto\t'a serialized TensorProto (tf.io.serialize_tensor, tf.make_tensor_proto)'"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand verify" -l max-fill-bytes -d 'TensorProto: the most bytes TensorFlow\'s fill rule may expand a short typed field to' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand verify" -l max-decompressed -d 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz), that decompresses to more than BYTES' -r
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand verify" -s q -l quiet -d 'Print nothing for inputs that pass (failures are still reported on stderr)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand verify" -l require-checksums -d 'Fail an input that carries no checksums (only its structure could be checked)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand verify" -l json -d 'Print one JSON document: an array of {input, ok, tensors, checksums, checked} or {input, ok: false, error}, one object per input'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand verify" -s V -l version -d 'Print version'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand devices" -l json -d 'Print one JSON document instead of a table'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand devices" -s h -l help -d 'Print help'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand devices" -s V -l version -d 'Print version'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand man" -l write -d 'Write every page (tensor2npy.1, tensor2npy-<subcommand>.1) into DIR instead' -r -f -a "(__fish_complete_directories)"
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand man" -s h -l help -d 'Print help'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand man" -s V -l version -d 'Print version'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand completions" -s h -l help -d 'Print help'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand completions" -s V -l version -d 'Print version'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand help; and not __fish_seen_subcommand_from convert list verify devices man completions help" -f -a "convert" -d 'Convert tensors to .npy / .npz'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand help; and not __fish_seen_subcommand_from convert list verify devices man completions help" -f -a "list" -d 'List tensors (name, dtype, shape, bytes in the input, kind) without converting them'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand help; and not __fish_seen_subcommand_from convert list verify devices man completions help" -f -a "verify" -d 'Read every input whole and check the checksums it carries, saying what was checked (like gzip -t)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand help; and not __fish_seen_subcommand_from convert list verify devices man completions help" -f -a "devices" -d 'List the GPU adapters the device stage can use (name, backend, type, limits)'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand help; and not __fish_seen_subcommand_from convert list verify devices man completions help" -f -a "man" -d 'Print the manual page (roff), for `man -l -` or a man1 directory'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand help; and not __fish_seen_subcommand_from convert list verify devices man completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c tensor2npy -n "__fish_tensor2npy_using_subcommand help; and not __fish_seen_subcommand_from convert list verify devices man completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
