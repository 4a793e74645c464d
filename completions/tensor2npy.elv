
use builtin;
use str;

set edit:completion:arg-completer[tensor2npy] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'tensor2npy'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'tensor2npy'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand convert 'Convert tensors to .npy / .npz'
            cand list 'List tensors (name, dtype, shape, bytes in the input, kind) without converting them'
            cand verify 'Read every input whole and check the checksums it carries, saying what was checked (like gzip -t)'
            cand devices 'List the GPU adapters the device stage can use (name, backend, type, limits)'
            cand man 'Print the manual page (roff), for `man -l -` or a man1 directory'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tensor2npy;convert'= {
            cand --from 'Read the inputs as this format instead of sniffing their content'
            cand --select 'Keep only tensors whose name matches GLOB (repeatable; ''*'' also matches ''/'')'
            cand --exclude 'Drop tensors whose name matches GLOB (repeatable)'
            cand --request-timeout 'Remote inputs and outputs: give up on one request (connecting included) after SECS seconds, then retry it; a failure that outlasts the retries exits 75'
            cand --step 'Orbax CheckpointManager root or Flax `save_checkpoint` folder (`checkpoint_<N>` files): read this step instead of the latest; DeepSpeed checkpoint folder: read tag global_stepN instead of the one `latest` names'
            cand --max-fill-bytes 'TensorProto: the most bytes TensorFlow''s fill rule may expand a short typed field to'
            cand --max-decompressed 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz, data.pkl), that decompresses to more than BYTES; pickles: refuse tensors adding up to more than BYTES'
            cand --features 'tf.train.Example datasets: only these feature keys (comma-separated, repeatable)'
            cand --ragged-features 'tf.train.Example datasets: write these features ragged even when every record has the same length'
            cand --dense-features 'tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary'
            cand --quant 'Quantized tensors. GGUF (default dequant): dequantize block-quantized tensors to float32 like gguf-py, or keep their blocks as |u1 bytes (raw). TFLite (default raw): keep them as stored like the interpreter''s get_tensor, add <name>/scale and <name>/zero_point arrays (params), or dequantize them to float32 (dequant)'
            cand -o 'Output: X.npz, X.npy, a directory, or - for standard output (default: IN.npz beside IN)'
            cand --output 'Output: X.npz, X.npy, a directory, or - for standard output (default: IN.npz beside IN)'
            cand --to 'Output kind where -o does not say: npz (an archive) or npy (.npy files)'
            cand --bf16 'bfloat16: widen to float32 (<f4), or keep the raw bits as <u2'
            cand --f8 'float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1'
            cand --cast 'Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16'
            cand --sparse 'Sparse tensors: COO components X/indices, X/values, X/dense_shape, or X densified'
            cand --ragged 'Ragged tensors: X/flat_values + X/row_splits_K, the flat values alone, or X padded like rt.to_tensor()'
            cand --fill 'The value written where a densified sparse or padded ragged tensor has none (default 0, or b"" for strings). A number fills numeric tensors only (strings still pad with b""); a bytes literal such as "b''N/A''" fills string tensors only'
            cand --sparse-duplicates 'Sparse indices given more than once: an error, or their values summed, or the last one kept'
            cand --max-dense-bytes 'Refuse to densify or pad a tensor into more than BYTES'
            cand --max-output 'Refuse a run that would write more than BYTES in all (every output together, .npy headers and data before --compress), before anything is written'
            cand --device 'Where dense conversions run: the host, a GPU through wgpu, or a GPU when there is one'
            cand --adapter 'The GPU adapter to use, by its index in `tensor2npy devices`'
            cand --stats 'Print, per tensor and in total, to stderr: the time the host spent reading, converting and writing, the bytes read and written and the throughput; with a GPU also the bytes moved host-to-device and device-to-host and the kernel and readback times (--stats for text, --stats=json for JSON, which always has every field)'
            cand --manifest 'Append one JSON line per output to FILE: input, output, status (written or up-to-date), tensors, bytes and the sha256 of the output file, hashed as it is written (for a directory: of the files this run wrote, the sha256 of their `sha256sum` lines in path order)'
            cand --chunk-size 'Bytes read and converted at a time; bounds memory use'
            cand -j 'Threads converting at once (default: the number of cores, at most 8): the large tensors of a stored .npz, and the outputs of a batch; 1 does everything in turn. The output is byte for byte the same whatever N, and memory stays bounded'
            cand --jobs 'Threads converting at once (default: the number of cores, at most 8): the large tensors of a stored .npz, and the outputs of a batch; 1 does everything in turn. The output is byte for byte the same whatever N, and memory stays bounded'
            cand --include-internal 'Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH'
            cand --stack 'TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>. TensorBoard event files: stack each tag''s values over its steps into <tag>, beside <tag>/step and <tag>/wall_time'
            cand --constants 'SavedModel directories: add the Const nodes of saved_model.pb''s graphs to the variables'
            cand --no-verify 'Checkpoints and SavedModels: do not verify the CRC32C of each entry, the object graph included (faster on large checkpoints); the CRCs of TFRecords and of PyTorch archives are always checked'
            cand --strict 'Treat skipped entries (variants such as tf.data iterator state) as errors'
            cand --weights-only 'Pickles (PyTorch, NumPy, Paddle): allow only the globals torch.load(weights_only=True) allows, refusing classes (whole modules, TorchScript) instead of reading them as data'
            cand --concat 'Read all inputs as one: tf.train.Example shards as one dataset (records in input order); other inputs'' tensors merged under their own names, a name in two inputs an error'
            cand --compress 'Deflate .npz members, like np.savez_compressed'
            cand --skip-unsupported 'Skip tensors whose dtype has no NumPy form (resource handles) instead of failing; when that leaves nothing to write, it is an error (exit 1)'
            cand -q 'Silence notes, warnings, the progress bar and the summary line (errors are still printed)'
            cand --quiet 'Silence notes, warnings, the progress bar and the summary line (errors are still printed)'
            cand --update 'Leave an output alone when it is newer than all its inputs (like `cp -u`), so that a rerun of a killed batch does only what is left'
            cand --keep-going 'Go on after an input or output fails: write every output that can be written, report each failure as it happens and again in the count at the end, and exit with status 1 (without it, the first failure stops the run). An input that fails on its way into an output it shares with other inputs still stops the run'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tensor2npy;list'= {
            cand --from 'Read the inputs as this format instead of sniffing their content'
            cand --select 'Keep only tensors whose name matches GLOB (repeatable; ''*'' also matches ''/'')'
            cand --exclude 'Drop tensors whose name matches GLOB (repeatable)'
            cand --request-timeout 'Remote inputs and outputs: give up on one request (connecting included) after SECS seconds, then retry it; a failure that outlasts the retries exits 75'
            cand --step 'Orbax CheckpointManager root or Flax `save_checkpoint` folder (`checkpoint_<N>` files): read this step instead of the latest; DeepSpeed checkpoint folder: read tag global_stepN instead of the one `latest` names'
            cand --max-fill-bytes 'TensorProto: the most bytes TensorFlow''s fill rule may expand a short typed field to'
            cand --max-decompressed 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz, data.pkl), that decompresses to more than BYTES; pickles: refuse tensors adding up to more than BYTES'
            cand --features 'tf.train.Example datasets: only these feature keys (comma-separated, repeatable)'
            cand --ragged-features 'tf.train.Example datasets: write these features ragged even when every record has the same length'
            cand --dense-features 'tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary'
            cand --quant 'Quantized tensors. GGUF (default dequant): dequantize block-quantized tensors to float32 like gguf-py, or keep their blocks as |u1 bytes (raw). TFLite (default raw): keep them as stored like the interpreter''s get_tensor, add <name>/scale and <name>/zero_point arrays (params), or dequantize them to float32 (dequant)'
            cand --bf16 'bfloat16: widen to float32 (<f4), or keep the raw bits as <u2'
            cand --f8 'float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1'
            cand --cast 'Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16'
            cand --include-internal 'Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH'
            cand --stack 'TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>. TensorBoard event files: stack each tag''s values over its steps into <tag>, beside <tag>/step and <tag>/wall_time'
            cand --constants 'SavedModel directories: add the Const nodes of saved_model.pb''s graphs to the variables'
            cand --no-verify 'Checkpoints and SavedModels: do not verify the CRC32C of each entry, the object graph included (faster on large checkpoints); the CRCs of TFRecords and of PyTorch archives are always checked'
            cand --strict 'Treat skipped entries (variants such as tf.data iterator state) as errors'
            cand --weights-only 'Pickles (PyTorch, NumPy, Paddle): allow only the globals torch.load(weights_only=True) allows, refusing classes (whole modules, TorchScript) instead of reading them as data'
            cand --concat 'Read all inputs as one: tf.train.Example shards as one dataset (records in input order); other inputs'' tensors merged under their own names, a name in two inputs an error'
            cand --json 'Print one JSON document (an array of objects) instead of a table'
            cand --metadata 'With --json: print {"metadata": {INPUT: ...}, "tensors": [...]}, with each input''s own metadata (GGUF key/values, safetensors __metadata__, ONNX metadata_props and producer, a .keras archive''s config.json and metadata.json; null where the format has none)'
            cand -q 'Silence notes (the listing itself is still printed)'
            cand --quiet 'Silence notes (the listing itself is still printed)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tensor2npy;verify'= {
            cand --from 'Read the inputs as this format instead of sniffing their content'
            cand --max-fill-bytes 'TensorProto: the most bytes TensorFlow''s fill rule may expand a short typed field to'
            cand --max-decompressed 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz), that decompresses to more than BYTES'
            cand -q 'Print nothing for inputs that pass (failures are still reported on stderr)'
            cand --quiet 'Print nothing for inputs that pass (failures are still reported on stderr)'
            cand --require-checksums 'Fail an input that carries no checksums (only its structure could be checked)'
            cand --json 'Print one JSON document: an array of {input, ok, tensors, checksums, checked} or {input, ok: false, error}, one object per input'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tensor2npy;devices'= {
            cand --json 'Print one JSON document instead of a table'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tensor2npy;man'= {
            cand --write 'Write every page (tensor2npy.1, tensor2npy-<subcommand>.1) into DIR instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tensor2npy;completions'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tensor2npy;help'= {
            cand convert 'Convert tensors to .npy / .npz'
            cand list 'List tensors (name, dtype, shape, bytes in the input, kind) without converting them'
            cand verify 'Read every input whole and check the checksums it carries, saying what was checked (like gzip -t)'
            cand devices 'List the GPU adapters the device stage can use (name, backend, type, limits)'
            cand man 'Print the manual page (roff), for `man -l -` or a man1 directory'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tensor2npy;help;convert'= {
        }
        &'tensor2npy;help;list'= {
        }
        &'tensor2npy;help;verify'= {
        }
        &'tensor2npy;help;devices'= {
        }
        &'tensor2npy;help;man'= {
        }
        &'tensor2npy;help;completions'= {
        }
        &'tensor2npy;help;help'= {
        }
    ]
    $completions[$command]
}
