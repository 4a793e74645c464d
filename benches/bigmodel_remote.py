#!/usr/bin/env python3
"""Big models and a remote input: tensor2npy against `cp` of the same bytes and the script a user
writes today, with peak memory. Inputs are generated at run time in BENCH_DIR or a temporary
directory and deleted at the end (nothing big is committed):
  * hf/: a Hugging Face folder of bfloat16 safetensors shards (8 GiB at scale 1, shards of at
    most 2 GiB, 4096 x 4096 tensors and a norm per layer, model.safetensors.index.json),
    converted to one .npz widened to float32 and with `--bf16 bits`; the peer is
    `safetensors.torch.load_file` per shard, `.float()` (or `.view(torch.int16)`), then
    `np.savez`, run only where the whole model fits in half the memory;
  * model.gguf: 4 GiB of Q4_K blocks at scale 1 (the tool dequantizes to 7.1x as many bytes of
    float32), written by hand (GGUF v3); the peer is gguf-py's `GGUFReader` +
    `gguf.quants.dequantize` + `np.savez` (BENCH_GGUF_PYTHON or .venv-gguf), run where its
    output fits in half the memory;
  * remote.safetensors (256 MiB at scale 1, at least 64 MiB) served by
    tests/support/range_server.py on loopback with 20 ms added to every request:
    `--jobs 1` against `--jobs 2`, beside the same conversion from the local file.
`cp` copies the tool's own output file, the bytes it writes: the physical write limit.
Sizes: BENCH_BIG_SCALE (default BENCH_SCALE, default 1); keep input + output under the free
disk (at 0.05: 410 MiB of bf16 in, 820 MiB out; 205 MiB of Q4_K in, 1.4 GiB out).

    BENCH_BIG_SCALE=0.05 .venv-torch/bin/python benches/bigmodel_remote.py
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit, tensor2npy  # noqa: E402

BIN = tensor2npy()
PY = sys.executable
REPS = int(os.environ.get("BENCH_REPS", "3"))
SCALE = float(os.environ.get("BENCH_BIG_SCALE") or os.environ.get("BENCH_SCALE", "1"))
GGUF_PY = os.environ.get("BENCH_GGUF_PYTHON") or os.path.join(ROOT, ".venv-gguf/bin/python")
WORK = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="t2n-bench-big-")
GIB = 1 << 30
DIM = 4096
PEAK_GOAL_MIB = 64

HF_SCRIPT = """
import glob, os, sys, numpy as np, torch
from safetensors.torch import load_file
bits = sys.argv[3] == "bits"
arrays = {}
for shard in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))):
    for k, v in load_file(shard).items():
        arrays[k] = v.view(torch.int16).numpy().view(np.uint16) if bits else v.float().numpy()
np.savez(sys.argv[2], **arrays)
"""

GGUF_SCRIPT = """
import sys, numpy as np, gguf
from gguf.quants import dequantize
r = gguf.GGUFReader(sys.argv[1])
np.savez(sys.argv[2], **{t.name: dequantize(t.data, t.tensor_type) for t in r.tensors})
"""


def memory_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def run(cmd):
    """Seconds, peak RSS MiB and CPU seconds of one whole process."""
    rss_file = os.path.join(WORK, ".rss")
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file, *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{p.stderr.decode(errors='replace')}")
    rss, user, system = open(rss_file).read().split()[-3:]
    return dt, int(rss) / 1024, float(user) + float(system)


def rm(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def alternate(contenders, outs):
    """REPS rounds, contenders alternating, each output removed before its run."""
    res = {n: [] for n in contenders}
    for _ in range(REPS):
        for n, cmd in contenders.items():
            rm(outs[n])
            os.sync()
            res[n].append(run(cmd))
    return res


def write_safetensors(path, tensors, rng):
    """`tensors`: (name, shape); bfloat16 values with the exponent's top bit clear (no inf/NaN)."""
    header, offset = {}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for _, shape in tensors:
            f.write((rng.integers(0, 1 << 16, size=shape, dtype=np.uint16) & 0xBFFF).tobytes())
    return offset


def make_hf(folder, total):
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    per_tensor = DIM * DIM * 2
    layers = max(1, total // (4 * per_tensor))
    names = []
    for i in range(layers):
        names += [(f"model.layers.{i}.{p}.weight", (DIM, DIM))
                  for p in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")]
        names.append((f"model.layers.{i}.input_layernorm.weight", (DIM,)))
    shard_tensors = max(1, (2 * GIB) // per_tensor)
    shards = [names[i:i + shard_tensors] for i in range(0, len(names), shard_tensors)]
    weight_map, size = {}, 0
    for s, group in enumerate(shards):
        fname = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        size += write_safetensors(os.path.join(folder, fname), group, rng)
        weight_map.update({name: fname for name, _ in group})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": size}, "weight_map": weight_map}, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"}, f)
    return size, len(names)


def gguf_string(s):
    b = s.encode()
    return len(b).to_bytes(8, "little") + b


def make_gguf(path, total):
    """GGUF v3 of Q4_K tensors [DIM, DIM] (144-byte blocks of 256 values, the two float16
    scales small and finite), written by hand so that no tensor is held in memory."""
    rng = np.random.default_rng(1)
    block, q4k = 144, 12
    per_tensor = DIM * DIM // 256 * block
    count = max(1, total // per_tensor)
    infos = b""
    for i in range(count):
        infos += gguf_string(f"blk.{i}.ffn_up.weight") + (2).to_bytes(4, "little")
        infos += DIM.to_bytes(8, "little") * 2 + q4k.to_bytes(4, "little")
        infos += (i * per_tensor).to_bytes(8, "little")
    kv = gguf_string("general.architecture") + (8).to_bytes(4, "little") + gguf_string("llama")
    head = b"GGUF" + (3).to_bytes(4, "little") + count.to_bytes(8, "little") + (1).to_bytes(8, "little")
    head += kv + infos
    head += b"\0" * (-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head)
        for _ in range(count):
            b = rng.integers(0, 256, size=(DIM * DIM // 256, block), dtype=np.uint8)
            for off in (0, 2):
                b[:, off:off + 2] = rng.uniform(-0.01, 0.01, len(b)).astype(np.float16).view(np.uint8).reshape(-1, 2)
            f.write(b.tobytes())
    return count * per_tensor, count


def med(samples, i=0):
    return statistics.median(s[i] for s in samples)


def rows(title, res, base="tensor2npy"):
    """Table lines: median seconds, min–max, CPU, peak RSS and each against tensor2npy."""
    out = []
    b = med(res[base])
    for n, s in res.items():
        ts = [x[0] for x in s]
        out.append(f"| {title} | {n} | {med(s):.2f} | {min(ts):.2f}–{max(ts):.2f} | {med(s, 2):.2f} | "
                   f"{max(x[1] for x in s):.0f} | {med(s) / b:.2f}x |")
    return out


def remote(lines, targets):
    """The remote row: a safetensors file of 16 float32 tensors over loopback HTTP, 20 ms a request."""
    folder = os.path.join(WORK, "remote")
    os.makedirs(folder, exist_ok=True)
    total = max(64 << 20, int(256 * SCALE) << 20)
    per = total // 16
    rows_ = per // 4 // 1024
    header, offset = {}, 0
    for i in range(16):
        header[f"t{i}"] = {"dtype": "F32", "shape": [rows_, 1024], "data_offsets": [offset, offset + rows_ * 4096]}
        offset += rows_ * 4096
    head = json.dumps(header).encode()
    src = os.path.join(folder, "remote.safetensors")
    with open(src, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head)
        f.write(np.random.default_rng(2).standard_normal(offset // 4, dtype=np.float32).tobytes())
    server = subprocess.Popen([PY, os.path.join(ROOT, "tests/support/range_server.py"), folder,
                               "--delay-ms", "20"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/remote.safetensors"
        out = os.path.join(WORK, "remote.npz")
        outs = {k: out for k in ("--jobs 1", "--jobs 2", "local file, --jobs 2")}
        cmds = {"--jobs 1": [BIN, "convert", url, "-o", out, "--quiet", "--jobs", "1"],
                "--jobs 2": [BIN, "convert", url, "-o", out, "--quiet", "--jobs", "2"],
                "local file, --jobs 2": [BIN, "convert", src, "-o", out, "--quiet", "--jobs", "2"]}
        res = alternate(cmds, outs)
        import urllib.request
        requests = int(urllib.request.urlopen(f"http://127.0.0.1:{port}/__stats").read().split()[0])
    finally:
        server.stdin.close()
        server.wait()
    one, two, local = med(res["--jobs 1"]), med(res["--jobs 2"]), med(res["local file, --jobs 2"])
    lines += ["", f"### Remote input ({offset >> 20} MiB of float32 safetensors over loopback HTTP, 20 ms a request)\n",
              "`benches/bigmodel_remote.py`: tests/support/range_server.py (Python's http.server) with "
              "`--delay-ms 20`, one input read by ranged GETs; the same file converted locally is the limit "
              f"without the latency. {requests} requests in all ({REPS} rounds of the two remote runs, "
              "plus HEADs and the stats request).\n",
              "| input | contender | seconds | min–max | CPU s | peak RSS MiB | time vs `--jobs 1` |",
              "|---|---|---|---|---|---|---|"]
    lines += rows("remote safetensors", res, base="--jobs 1")
    targets.append(("remote (20 ms a request): --jobs 2 ≥ 1.5x faster than --jobs 1",
                    f"{one / two:.2f}x ({two:.2f} s against {one:.2f} s; the local file: {local:.2f} s)",
                    one / two >= 1.5))
    rm(folder)
    rm(out)


def main():
    mem = memory_bytes()
    lines, targets = [], []
    hf = os.path.join(WORK, "hf")
    size, count = make_hf(hf, int(8 * GIB * SCALE))
    out = os.path.join(WORK, "hf.npz")
    peer_fits = 2 * size + 2 * size <= mem // 2  # bf16 in memory, float32 out, np.savez's copy
    lines += [f"### A Hugging Face folder of bfloat16 shards ({size / GIB:.2f} GiB, {count} tensors) to one .npz\n",
              "`benches/bigmodel_remote.py`: the folder (shards of at most 2 GiB and their index) is "
              "generated at run time; widened to float32 (default) and kept as bits (`--bf16 bits`). "
              "`cp` copies the tool's output (the bytes written). The peer is "
              "`safetensors.torch.load_file` per shard, `.float()` or `.view(torch.int16)`, then "
              f"`np.savez`, whole process{'' if peer_fits else ' (not run: the model does not fit in half the memory)'}. "
              f"Median of {REPS} alternating runs.\n",
              "| input | contender | seconds | min–max | CPU s | peak RSS MiB | time vs tensor2npy |",
              "|---|---|---|---|---|---|---|"]
    for mode, flags in (("widened to float32", []), ("--bf16 bits", ["--bf16", "bits"])):
        # the tool's output first, for cp to copy
        run([BIN, "convert", hf, "-o", out, "--quiet", *flags])
        copy = os.path.join(WORK, "copy.npz")
        peer_out = os.path.join(WORK, "peer.npz")
        cmds = {"tensor2npy": [BIN, "convert", hf, "-o", out, "--quiet", *flags],
                "cp of the output": ["cp", out, copy]}
        outs = {"tensor2npy": out, "cp of the output": copy}
        if peer_fits:
            cmds["safetensors.torch + np.savez"] = [PY, "-c", HF_SCRIPT, hf, peer_out,
                                                    "bits" if flags else "float"]
            outs["safetensors.torch + np.savez"] = peer_out
        # cp copies the tool's output, so that one is kept: tensor2npy writes it again last
        order = {k: cmds[k] for k in list(cmds)[1:] + ["tensor2npy"]}
        res = alternate(order, {**outs, "tensor2npy": out})
        lines += rows(f"HF bf16 → .npz, {mode}", {k: res[k] for k in cmds})
        t2n, cp = med(res["tensor2npy"]), med(res["cp of the output"])
        rss = max(x[1] for x in res["tensor2npy"])
        measured = f"{cp / t2n:.2f}x cp ({t2n:.2f} s against {cp:.2f} s), peak {rss:.0f} MiB"
        if peer_fits:
            p = med(res["safetensors.torch + np.savez"])
            measured += f"; {p / t2n:.1f}x the safetensors.torch script"
        targets.append((f"HF bf16 folder → .npz ({mode}): peak RSS ≤ {PEAK_GOAL_MIB} MiB "
                        "(time against cp beside it)", measured, rss <= PEAK_GOAL_MIB))
        for p in (copy, peer_out, out):
            rm(p)
    rm(hf)

    gguf = os.path.join(WORK, "model.gguf")
    size, count = make_gguf(gguf, int(4 * GIB * SCALE))
    out_bytes = count * DIM * DIM * 4
    run_peer = os.path.exists(GGUF_PY) and 2 * out_bytes <= mem // 2
    why = ("" if run_peer else " (not run: " + ("no gguf-py at " + GGUF_PY if not os.path.exists(GGUF_PY)
                                                 else "its float32 output does not fit in half the memory") + ")")
    lines += ["", f"### A Q4_K GGUF ({size / GIB:.2f} GiB, {count} tensors) dequantized to .npz "
              f"({out_bytes / GIB:.2f} GiB of float32)\n",
              "`benches/bigmodel_remote.py`: the file is written at run time; `cp` copies the tool's "
              "output. The peer is gguf-py's `GGUFReader` + `dequantize` + `np.savez`, whole "
              f"process{why}. Median of {REPS} alternating runs.\n",
              "| input | contender | seconds | min–max | CPU s | peak RSS MiB | time vs tensor2npy |",
              "|---|---|---|---|---|---|---|"]
    out = os.path.join(WORK, "gguf.npz")
    copy = os.path.join(WORK, "copy.npz")
    peer_out = os.path.join(WORK, "peer.npz")
    run([BIN, "convert", gguf, "-o", out, "--quiet"])
    # where a second copy of the output does not fit on the disk (28 GiB at scale 1), both sides
    # write into a pipe to a byte counter instead: tensor2npy `-o -` against `cat` of its output
    piped = os.path.getsize(out) * 1.1 > shutil.disk_usage(WORK).free
    cp_name = "cat of the output | wc -c" if piped else "cp of the output"
    cmds = {cp_name: ["sh", "-c", f'cat "{out}" | wc -c'] if piped else ["cp", out, copy]}
    outs = {cp_name: copy, "tensor2npy": copy if piped else out}
    if run_peer:
        cmds["gguf-py + np.savez"] = [GGUF_PY, "-c", GGUF_SCRIPT, gguf, peer_out]
        outs["gguf-py + np.savez"] = peer_out
    cmds["tensor2npy"] = (["sh", "-c", f'"{BIN}" convert "{gguf}" -o - --to npz --quiet | wc -c'] if piped
                          else [BIN, "convert", gguf, "-o", out, "--quiet"])
    res = alternate(cmds, outs)
    if piped:
        lines.append(f"\nThe output ({os.path.getsize(out) / GIB:.1f} GiB) fits on the disk only once: "
                     "tensor2npy wrote to standard output (`-o - --to npz`, a streamed .npz) and `cat` its stored "
                     "output, each into `wc -c`; peak RSS is the largest process of the pipe.\n")
    if run_peer:
        a, b = np.load(out), np.load(peer_out)
        for k in b.files:
            assert a[k].tobytes() == b[k].tobytes(), k
    lines += rows("Q4_K GGUF → .npz", {k: res[k] for k in ["tensor2npy", *[c for c in cmds if c != "tensor2npy"]]})
    t2n, cp = med(res["tensor2npy"]), med(res[cp_name])
    rss = max(x[1] for x in res["tensor2npy"])
    measured = (f"{cp / t2n:.2f}x {'cat into a pipe' if piped else 'cp'} ({t2n:.2f} s against {cp:.2f} s), "
                f"peak {rss:.0f} MiB")
    if run_peer:
        measured += f"; {med(res['gguf-py + np.savez']) / t2n:.1f}x gguf-py"
    targets.append((f"Q4_K GGUF dequantized → .npz: peak RSS ≤ {PEAK_GOAL_MIB} MiB (time against cp beside it)",
                    measured, rss <= PEAK_GOAL_MIB))
    for p in (copy, peer_out, out, gguf):
        rm(p)

    remote(lines, targets)
    lines.append(f"\nScale {SCALE:g} (BENCH_BIG_SCALE); the generated inputs were deleted after the runs.")
    emit("75-bigmodel-remote", lines, targets)
    if not os.environ.get("BENCH_DIR"):
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
