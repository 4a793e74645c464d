
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
            cand verify 'Check every checksum the inputs carry without writing anything (like gzip -t)'
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
            cand --max-fill-bytes 'TensorProto: the most bytes TensorFlow''s fill rule may expand a short typed field to'
            cand --max-decompressed 'Compressed TFRecord: refuse streams that decompress to more than BYTES'
            cand --features 'tf.train.Example datasets: only these feature keys (comma-separated, repeatable)'
            cand --ragged-features 'tf.train.Example datasets: write these features ragged even when every record has the same length'
            cand --dense-features 'tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary'
            cand --quant 'GGUF: dequantize block-quantized tensors to float32 like gguf-py, or keep their blocks as |u1 bytes'
            cand -o 'Output: X.npz, X.npy, a directory, or - for standard output (default: IN.npz beside IN)'
            cand --output 'Output: X.npz, X.npy, a directory, or - for standard output (default: IN.npz beside IN)'
            cand --to 'Output kind where -o does not say: npz (an archive) or npy (.npy files)'
            cand --bf16 'bfloat16: widen to float32 (<f4), or keep the raw bits as <u2'
            cand --f8 'float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1'
            cand --cast 'Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16'
            cand --sparse 'Sparse tensors: COO components X/indices, X/values, X/dense_shape, or X densified'
            cand --ragged 'Ragged tensors: X/flat_values + X/row_splits_K, the flat values alone, or X padded like rt.to_tensor()'
            cand --fill 'The value written where a densified sparse or padded ragged tensor has none (default 0, or b"" for strings)'
            cand --sparse-duplicates 'Sparse indices given more than once: an error, or their values summed, or the last one kept'
            cand --max-dense-bytes 'Refuse to densify or pad a tensor into more than BYTES'
            cand --device 'Where dense conversions run: the host, a GPU through wgpu, or a GPU when there is one'
            cand --adapter 'The GPU adapter to use, by its index in `tensor2npy devices`'
            cand --stats 'Print bytes moved host-to-device and device-to-host, kernel and readback time per tensor and in total, to stderr (--stats for text, --stats=json for JSON)'
            cand --manifest 'Append one JSON line per output to FILE: input, output, status (written or up-to-date), tensors, bytes and the sha256 of the output file (of a directory''s files, in path order)'
            cand --chunk-size 'Bytes read and converted at a time; bounds memory use'
            cand -j 'Threads converting at once (default: the number of cores, at most 8): the large tensors of a stored .npz, and the outputs of a batch; 1 does everything in turn. The output is byte for byte the same whatever N, and memory stays bounded'
            cand --jobs 'Threads converting at once (default: the number of cores, at most 8): the large tensors of a stored .npz, and the outputs of a batch; 1 does everything in turn. The output is byte for byte the same whatever N, and memory stays bounded'
            cand --include-internal 'Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH'
            cand --stack 'TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>'
            cand --constants 'SavedModel directories: add the Const nodes of saved_model.pb''s graphs to the variables'
            cand --no-verify 'Checkpoints: do not verify the CRC32C of each entry'
            cand --strict 'Treat skipped entries (variants such as tf.data iterator state) as errors'
            cand --concat 'tf.train.Example datasets: read all inputs as one dataset (shards), records in input order'
            cand --compress 'Deflate .npz members, like np.savez_compressed'
            cand --skip-unsupported 'Skip tensors whose dtype has no NumPy form (resource handles) instead of failing'
            cand -q 'Silence notes, warnings, the progress bar and the summary line (errors are still printed)'
            cand --quiet 'Silence notes, warnings, the progress bar and the summary line (errors are still printed)'
            cand --update 'Leave an output alone when it is newer than all its inputs (like `cp -u`), so that a rerun of a killed batch does only what is left'
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
            cand --max-fill-bytes 'TensorProto: the most bytes TensorFlow''s fill rule may expand a short typed field to'
            cand --max-decompressed 'Compressed TFRecord: refuse streams that decompress to more than BYTES'
            cand --features 'tf.train.Example datasets: only these feature keys (comma-separated, repeatable)'
            cand --ragged-features 'tf.train.Example datasets: write these features ragged even when every record has the same length'
            cand --dense-features 'tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary'
            cand --quant 'GGUF: dequantize block-quantized tensors to float32 like gguf-py, or keep their blocks as |u1 bytes'
            cand --bf16 'bfloat16: widen to float32 (<f4), or keep the raw bits as <u2'
            cand --f8 'float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1'
            cand --cast 'Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16'
            cand --include-internal 'Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH'
            cand --stack 'TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>'
            cand --constants 'SavedModel directories: add the Const nodes of saved_model.pb''s graphs to the variables'
            cand --no-verify 'Checkpoints: do not verify the CRC32C of each entry'
            cand --strict 'Treat skipped entries (variants such as tf.data iterator state) as errors'
            cand --concat 'tf.train.Example datasets: read all inputs as one dataset (shards), records in input order'
            cand --json 'Print one JSON document (an array of objects) instead of a table'
            cand --metadata 'With --json: print {"metadata": {INPUT: ...}, "tensors": [...]}, with each input''s own metadata (GGUF key/values)'
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
            cand --max-decompressed 'Compressed TFRecord: refuse streams that decompress to more than BYTES'
            cand -q 'Print nothing on success'
            cand --quiet 'Print nothing on success'
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
            cand verify 'Check every checksum the inputs carry without writing anything (like gzip -t)'
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
