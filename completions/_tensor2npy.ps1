
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'tensor2npy' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'tensor2npy'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'tensor2npy' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('convert', 'convert', [CompletionResultType]::ParameterValue, 'Convert tensors to .npy / .npz')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List tensors (name, dtype, shape, bytes in the input, kind) without converting them')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Read every input whole and check the checksums it carries, saying what was checked (like gzip -t)')
            [CompletionResult]::new('devices', 'devices', [CompletionResultType]::ParameterValue, 'List the GPU adapters the device stage can use (name, backend, type, limits)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (roff), for `man -l -` or a man1 directory')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tensor2npy;convert' {
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Read the inputs as this format instead of sniffing their content')
            [CompletionResult]::new('--select', '--select', [CompletionResultType]::ParameterName, 'Keep only tensors whose name matches GLOB (repeatable; ''*'' also matches ''/'')')
            [CompletionResult]::new('--exclude', '--exclude', [CompletionResultType]::ParameterName, 'Drop tensors whose name matches GLOB (repeatable)')
            [CompletionResult]::new('--request-timeout', '--request-timeout', [CompletionResultType]::ParameterName, 'Remote inputs and outputs: give up on one request (connecting included) after SECS seconds, then retry it; a failure that outlasts the retries exits 75')
            [CompletionResult]::new('--step', '--step', [CompletionResultType]::ParameterName, 'Orbax CheckpointManager root or Flax `save_checkpoint` folder (`checkpoint_<N>` files): read this step instead of the latest; DeepSpeed checkpoint folder: read tag global_stepN instead of the one `latest` names')
            [CompletionResult]::new('--max-fill-bytes', '--max-fill-bytes', [CompletionResultType]::ParameterName, 'TensorProto: the most bytes TensorFlow''s fill rule may expand a short typed field to')
            [CompletionResult]::new('--max-decompressed', '--max-decompressed', [CompletionResultType]::ParameterName, 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz, data.pkl), that decompresses to more than BYTES; pickles: refuse tensors adding up to more than BYTES')
            [CompletionResult]::new('--features', '--features', [CompletionResultType]::ParameterName, 'tf.train.Example datasets: only these feature keys (comma-separated, repeatable)')
            [CompletionResult]::new('--ragged-features', '--ragged-features', [CompletionResultType]::ParameterName, 'tf.train.Example datasets: write these features ragged even when every record has the same length')
            [CompletionResult]::new('--dense-features', '--dense-features', [CompletionResultType]::ParameterName, 'tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary')
            [CompletionResult]::new('--quant', '--quant', [CompletionResultType]::ParameterName, 'Quantized tensors. GGUF (default dequant): dequantize block-quantized tensors to float32 like gguf-py, or keep their blocks as |u1 bytes (raw). TFLite (default raw): keep them as stored like the interpreter''s get_tensor, add <name>/scale and <name>/zero_point arrays (params), or dequantize them to float32 (dequant)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output: X.npz, X.npy, a directory, or - for standard output (default: IN.npz beside IN)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output: X.npz, X.npy, a directory, or - for standard output (default: IN.npz beside IN)')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Output kind where -o does not say: npz (an archive) or npy (.npy files)')
            [CompletionResult]::new('--bf16', '--bf16', [CompletionResultType]::ParameterName, 'bfloat16: widen to float32 (<f4), or keep the raw bits as <u2')
            [CompletionResult]::new('--f8', '--f8', [CompletionResultType]::ParameterName, 'float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1')
            [CompletionResult]::new('--cast', '--cast', [CompletionResultType]::ParameterName, 'Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16')
            [CompletionResult]::new('--sparse', '--sparse', [CompletionResultType]::ParameterName, 'Sparse tensors: COO components X/indices, X/values, X/dense_shape, or X densified')
            [CompletionResult]::new('--ragged', '--ragged', [CompletionResultType]::ParameterName, 'Ragged tensors: X/flat_values + X/row_splits_K, the flat values alone, or X padded like rt.to_tensor()')
            [CompletionResult]::new('--fill', '--fill', [CompletionResultType]::ParameterName, 'The value written where a densified sparse or padded ragged tensor has none (default 0, or b"" for strings). A number fills numeric tensors only (strings still pad with b""); a bytes literal such as "b''N/A''" fills string tensors only')
            [CompletionResult]::new('--sparse-duplicates', '--sparse-duplicates', [CompletionResultType]::ParameterName, 'Sparse indices given more than once: an error, or their values summed, or the last one kept')
            [CompletionResult]::new('--max-dense-bytes', '--max-dense-bytes', [CompletionResultType]::ParameterName, 'Refuse to densify or pad a tensor into more than BYTES')
            [CompletionResult]::new('--max-output', '--max-output', [CompletionResultType]::ParameterName, 'Refuse a run that would write more than BYTES in all (every output together, .npy headers and data before --compress), before anything is written')
            [CompletionResult]::new('--device', '--device', [CompletionResultType]::ParameterName, 'Where dense conversions run: the host, a GPU through wgpu, or a GPU when there is one')
            [CompletionResult]::new('--adapter', '--adapter', [CompletionResultType]::ParameterName, 'The GPU adapter to use, by its index in `tensor2npy devices`')
            [CompletionResult]::new('--stats', '--stats', [CompletionResultType]::ParameterName, 'Print, per tensor and in total, to stderr: the time the host spent reading, converting and writing, the bytes read and written and the throughput; with a GPU also the bytes moved host-to-device and device-to-host and the kernel and readback times (--stats for text, --stats=json for JSON, which always has every field)')
            [CompletionResult]::new('--manifest', '--manifest', [CompletionResultType]::ParameterName, 'Append one JSON line per output to FILE: input, output, status (written or up-to-date), tensors, bytes and the sha256 of the output file, hashed as it is written (for a directory: of the files this run wrote, the sha256 of their `sha256sum` lines in path order)')
            [CompletionResult]::new('--chunk-size', '--chunk-size', [CompletionResultType]::ParameterName, 'Bytes read and converted at a time; bounds memory use')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'Threads converting at once (default: the number of cores, at most 8): the large tensors of a stored .npz, and the outputs of a batch; 1 does everything in turn. The output is byte for byte the same whatever N, and memory stays bounded')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Threads converting at once (default: the number of cores, at most 8): the large tensors of a stored .npz, and the outputs of a batch; 1 does everything in turn. The output is byte for byte the same whatever N, and memory stays bounded')
            [CompletionResult]::new('--include-internal', '--include-internal', [CompletionResultType]::ParameterName, 'Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH')
            [CompletionResult]::new('--stack', '--stack', [CompletionResultType]::ParameterName, 'TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>. TensorBoard event files: stack each tag''s values over its steps into <tag>, beside <tag>/step and <tag>/wall_time')
            [CompletionResult]::new('--constants', '--constants', [CompletionResultType]::ParameterName, 'SavedModel directories: add the Const nodes of saved_model.pb''s graphs to the variables')
            [CompletionResult]::new('--no-verify', '--no-verify', [CompletionResultType]::ParameterName, 'Checkpoints and SavedModels: do not verify the CRC32C of each entry, the object graph included (faster on large checkpoints); the CRCs of TFRecords and of PyTorch archives are always checked')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Treat skipped entries (variants such as tf.data iterator state) as errors')
            [CompletionResult]::new('--weights-only', '--weights-only', [CompletionResultType]::ParameterName, 'Pickles (PyTorch, NumPy, Paddle): allow only the globals torch.load(weights_only=True) allows, refusing classes (whole modules, TorchScript) instead of reading them as data')
            [CompletionResult]::new('--concat', '--concat', [CompletionResultType]::ParameterName, 'Read all inputs as one: tf.train.Example shards as one dataset (records in input order); other inputs'' tensors merged under their own names, a name in two inputs an error')
            [CompletionResult]::new('--compress', '--compress', [CompletionResultType]::ParameterName, 'Deflate .npz members, like np.savez_compressed')
            [CompletionResult]::new('--skip-unsupported', '--skip-unsupported', [CompletionResultType]::ParameterName, 'Skip tensors whose dtype has no NumPy form (resource handles) instead of failing; when that leaves nothing to write, it is an error (exit 1)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Silence notes, warnings, the progress bar and the summary line (errors are still printed)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Silence notes, warnings, the progress bar and the summary line (errors are still printed)')
            [CompletionResult]::new('--update', '--update', [CompletionResultType]::ParameterName, 'Leave an output alone when it is newer than all its inputs (like `cp -u`), so that a rerun of a killed batch does only what is left')
            [CompletionResult]::new('--keep-going', '--keep-going', [CompletionResultType]::ParameterName, 'Go on after an input or output fails: write every output that can be written, report each failure as it happens and again in the count at the end, and exit with status 1 (without it, the first failure stops the run). An input that fails on its way into an output it shares with other inputs still stops the run')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tensor2npy;list' {
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Read the inputs as this format instead of sniffing their content')
            [CompletionResult]::new('--select', '--select', [CompletionResultType]::ParameterName, 'Keep only tensors whose name matches GLOB (repeatable; ''*'' also matches ''/'')')
            [CompletionResult]::new('--exclude', '--exclude', [CompletionResultType]::ParameterName, 'Drop tensors whose name matches GLOB (repeatable)')
            [CompletionResult]::new('--request-timeout', '--request-timeout', [CompletionResultType]::ParameterName, 'Remote inputs and outputs: give up on one request (connecting included) after SECS seconds, then retry it; a failure that outlasts the retries exits 75')
            [CompletionResult]::new('--step', '--step', [CompletionResultType]::ParameterName, 'Orbax CheckpointManager root or Flax `save_checkpoint` folder (`checkpoint_<N>` files): read this step instead of the latest; DeepSpeed checkpoint folder: read tag global_stepN instead of the one `latest` names')
            [CompletionResult]::new('--max-fill-bytes', '--max-fill-bytes', [CompletionResultType]::ParameterName, 'TensorProto: the most bytes TensorFlow''s fill rule may expand a short typed field to')
            [CompletionResult]::new('--max-decompressed', '--max-decompressed', [CompletionResultType]::ParameterName, 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz, data.pkl), that decompresses to more than BYTES; pickles: refuse tensors adding up to more than BYTES')
            [CompletionResult]::new('--features', '--features', [CompletionResultType]::ParameterName, 'tf.train.Example datasets: only these feature keys (comma-separated, repeatable)')
            [CompletionResult]::new('--ragged-features', '--ragged-features', [CompletionResultType]::ParameterName, 'tf.train.Example datasets: write these features ragged even when every record has the same length')
            [CompletionResult]::new('--dense-features', '--dense-features', [CompletionResultType]::ParameterName, 'tf.train.Example datasets: write these features as [N, k] (also for k = 1); an error when lengths vary')
            [CompletionResult]::new('--quant', '--quant', [CompletionResultType]::ParameterName, 'Quantized tensors. GGUF (default dequant): dequantize block-quantized tensors to float32 like gguf-py, or keep their blocks as |u1 bytes (raw). TFLite (default raw): keep them as stored like the interpreter''s get_tensor, add <name>/scale and <name>/zero_point arrays (params), or dequantize them to float32 (dequant)')
            [CompletionResult]::new('--bf16', '--bf16', [CompletionResultType]::ParameterName, 'bfloat16: widen to float32 (<f4), or keep the raw bits as <u2')
            [CompletionResult]::new('--f8', '--f8', [CompletionResultType]::ParameterName, 'float8 (e4m3, e5m2, fnuz variants, e8m0) and float4: widen to float32, or keep the bits as |u1')
            [CompletionResult]::new('--cast', '--cast', [CompletionResultType]::ParameterName, 'Convert a dtype explicitly, numpy astype style (repeatable), e.g. --cast f64=f32 --cast bf16=f16')
            [CompletionResult]::new('--include-internal', '--include-internal', [CompletionResultType]::ParameterName, 'Include internal checkpoint entries such as _CHECKPOINTABLE_OBJECT_GRAPH')
            [CompletionResult]::new('--stack', '--stack', [CompletionResultType]::ParameterName, 'TFRecord: stack records of one dtype and shape into a single [N, ...] array named <stem>. TensorBoard event files: stack each tag''s values over its steps into <tag>, beside <tag>/step and <tag>/wall_time')
            [CompletionResult]::new('--constants', '--constants', [CompletionResultType]::ParameterName, 'SavedModel directories: add the Const nodes of saved_model.pb''s graphs to the variables')
            [CompletionResult]::new('--no-verify', '--no-verify', [CompletionResultType]::ParameterName, 'Checkpoints and SavedModels: do not verify the CRC32C of each entry, the object graph included (faster on large checkpoints); the CRCs of TFRecords and of PyTorch archives are always checked')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Treat skipped entries (variants such as tf.data iterator state) as errors')
            [CompletionResult]::new('--weights-only', '--weights-only', [CompletionResultType]::ParameterName, 'Pickles (PyTorch, NumPy, Paddle): allow only the globals torch.load(weights_only=True) allows, refusing classes (whole modules, TorchScript) instead of reading them as data')
            [CompletionResult]::new('--concat', '--concat', [CompletionResultType]::ParameterName, 'Read all inputs as one: tf.train.Example shards as one dataset (records in input order); other inputs'' tensors merged under their own names, a name in two inputs an error')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document (an array of objects) instead of a table')
            [CompletionResult]::new('--metadata', '--metadata', [CompletionResultType]::ParameterName, 'With --json: print {"metadata": {INPUT: ...}, "tensors": [...]}, with each input''s own metadata (GGUF key/values, safetensors __metadata__, ONNX metadata_props and producer, a .keras archive''s config.json and metadata.json; null where the format has none)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Silence notes (the listing itself is still printed)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Silence notes (the listing itself is still printed)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tensor2npy;verify' {
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Read the inputs as this format instead of sniffing their content')
            [CompletionResult]::new('--max-fill-bytes', '--max-fill-bytes', [CompletionResultType]::ParameterName, 'TensorProto: the most bytes TensorFlow''s fill rule may expand a short typed field to')
            [CompletionResult]::new('--max-decompressed', '--max-decompressed', [CompletionResultType]::ParameterName, 'Compressed inputs: refuse a TFRecord stream, or a deflated ZIP member (.pt, .keras, .npz), that decompresses to more than BYTES')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing for inputs that pass (failures are still reported on stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing for inputs that pass (failures are still reported on stderr)')
            [CompletionResult]::new('--require-checksums', '--require-checksums', [CompletionResultType]::ParameterName, 'Fail an input that carries no checksums (only its structure could be checked)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document: an array of {input, ok, tensors, checksums, checked} or {input, ok: false, error}, one object per input')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tensor2npy;devices' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tensor2npy;man' {
            [CompletionResult]::new('--write', '--write', [CompletionResultType]::ParameterName, 'Write every page (tensor2npy.1, tensor2npy-<subcommand>.1) into DIR instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tensor2npy;completions' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tensor2npy;help' {
            [CompletionResult]::new('convert', 'convert', [CompletionResultType]::ParameterValue, 'Convert tensors to .npy / .npz')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List tensors (name, dtype, shape, bytes in the input, kind) without converting them')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Read every input whole and check the checksums it carries, saying what was checked (like gzip -t)')
            [CompletionResult]::new('devices', 'devices', [CompletionResultType]::ParameterValue, 'List the GPU adapters the device stage can use (name, backend, type, limits)')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (roff), for `man -l -` or a man1 directory')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tensor2npy;help;convert' {
            break
        }
        'tensor2npy;help;list' {
            break
        }
        'tensor2npy;help;verify' {
            break
        }
        'tensor2npy;help;devices' {
            break
        }
        'tensor2npy;help;man' {
            break
        }
        'tensor2npy;help;completions' {
            break
        }
        'tensor2npy;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
