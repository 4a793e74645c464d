"""The Python module against the command, as a user gets both from the wheel: run with the
wheel installed in a fresh virtual environment (packaging/check-wheel.sh), never against the
source tree. Every fixture of fixtures/**/manifest.json: `load` gives the arrays of the
command's `.npz` and of the library's own reader (the `.expected.npz` oracles), and fails with
the command's message where the command fails. Also: `open` reads one tensor without the rest
(peak memory), each exception class, Ctrl-C, and that the interpreter lock is released."""

import json
import os
import signal
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tensor2npy

ROOT = Path(__file__).resolve().parents[2]
# The command installed beside the module, by the same wheel.
COMMAND = Path(sysconfig.get_path("scripts")) / "tensor2npy"

# The command line's flags that take no value, for turning a manifest's args into keywords.
FLAGS = {"--skip-unsupported", "--quiet", "--stack", "--include-internal", "--constants",
         "--concat", "--strict", "--no-verify", "--weights-only"}
REPEATED = {"--cast", "--features", "--ragged-features", "--dense-features", "--select",
            "--exclude"}


def manifest_cases():
    files = [ROOT / "fixtures/manifest.json"] + sorted(ROOT.glob("fixtures/*/manifest.json"))
    cases = []
    for f in files:
        for c in json.loads(f.read_text()):
            cases.append(pytest.param(c, id=f"{c['input']} {' '.join(c['args'])}".strip()))
    assert len(cases) > 100, "the fixture manifests were not found"
    return cases


def keywords(args):
    """A manifest's command-line args as keyword arguments of load()."""
    kw, i = {}, 0
    while i < len(args):
        flag = args[i]
        assert flag.startswith("--"), args
        key = flag[2:].replace("-", "_")
        key = "from_" if key == "from" else key
        if flag in FLAGS:
            kw[key] = True
            i += 1
            continue
        value = args[i + 1]
        if flag in REPEATED:
            kw.setdefault(key, []).append(value)
        else:
            kw[key] = value
        i += 2
    return kw


def run_command(*args):
    return subprocess.run([str(COMMAND), *map(str, args)], capture_output=True, text=True)


def assert_same(got, want, what, ordered=True):
    if ordered:
        assert list(got) == list(want), (what, list(got), list(want))
    assert sorted(got) == sorted(want), (what, sorted(got), sorted(want))
    for k in want:
        a, b = got[k], want[k]
        assert isinstance(a, np.ndarray), (what, k)
        assert a.dtype == b.dtype and a.shape == b.shape, (what, k, a.dtype, b.dtype, a.shape, b.shape)
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata, (what, k)
        assert a.tobytes() == b.tobytes(), (what, k)


def npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_the_module_and_the_command_come_from_the_installed_wheel():
    assert "site-packages" in tensor2npy.__file__, tensor2npy.__file__
    # The command is the native executable, not a Python launcher script: it starts as fast as
    # a binary installed any other way.
    assert COMMAND.read_bytes()[:4] == b"\x7fELF"
    out = run_command("--version")
    assert out.returncode == 0 and tensor2npy.__version__ in out.stdout


@pytest.mark.parametrize("case", manifest_cases())
def test_load_gives_what_convert_writes(case, tmp_path):
    src = ROOT / case["input"]
    kw = keywords(case["args"])
    out = tmp_path / "cmd.npz"
    quiet = [] if "--quiet" in case["args"] else ["--quiet"]
    ran = run_command("convert", src, "-o", out, *quiet, *case["args"])
    if "error" in case:
        assert ran.returncode == 1, ran.stderr
        message = ran.stderr.strip().splitlines()[-1]
        assert message.startswith("tensor2npy: error: "), message
        with pytest.raises(tensor2npy.Tensor2NpyError) as e:
            tensor2npy.load(src, **kw)
        # Exit status 1: damaged, unsupported, or a file it names is missing.
        assert type(e.value) in (tensor2npy.CorruptInputError, tensor2npy.UnsupportedInputError,
                                 tensor2npy.InputNotFoundError), type(e.value)
        assert str(e.value) == message[len("tensor2npy: error: "):]
        assert case["error"] in str(e.value)
        return
    assert ran.returncode == 0, ran.stderr
    got = tensor2npy.load(src, **kw)
    assert_same(got, npz(out), "the command's .npz")
    if case.get("oracle"):
        oracle = npz(ROOT / case["oracle"])
        # The oracles' order is their generator's.
        assert_same(got, oracle, "the oracle", ordered=False)
    # open() gives the same, one tensor at a time.
    with tensor2npy.open(src, **kw) as f:
        assert list(f) == list(got)
        for name in f:
            assert_same({name: f[name]}, {name: got[name]}, "open()")


def safetensors_file(path, tensors):
    """Writes a safetensors file by its specification: an 8-byte header length, the JSON
    header, the data. `tensors`: name -> (dtype, shape, nbytes, data or None for zeros)."""
    header, offset = {}, 0
    for name, (dtype, shape, nbytes, _) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        start = f.tell()
        for name, (_, _, nbytes, data) in tensors.items():
            if data is None:
                f.seek(nbytes, os.SEEK_CUR)  # a hole: the file costs no disk
            else:
                f.write(data)
        f.truncate(start + offset)
    return path


PEAK = """
import resource, sys, tensor2npy
with tensor2npy.open(sys.argv[1]) as f:
    if sys.argv[2] != "-":
        a = f[sys.argv[2]]
        assert a.shape == (4,) and a.tolist() == [1.0, 2.0, 3.0, 4.0], a
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_open_reads_one_tensor_without_the_others(tmp_path):
    big = 512 << 20
    path = safetensors_file(tmp_path / "big.safetensors", {
        "huge": ("F32", [big // 4], big, None),
        "small": ("F32", [4], 16, np.arange(1, 5, dtype="<f4").tobytes()),
    })
    with tensor2npy.open(path) as f:
        assert list(f) == ["huge", "small"]
        info = f.info("huge")
        assert (info.descr, info.shape, info.kind, info.bytes) == ("<f4", (big // 4,), "dense", big)

    def peak_mib(name):
        out = subprocess.run([sys.executable, "-c", PEAK, str(path), name],
                             capture_output=True, text=True, check=True)
        return int(out.stdout)

    opened, read = peak_mib("-"), peak_mib("small")
    # Reading the small tensor costs a chunk at most, not the 512 MiB beside it.
    assert read - opened < 32, (opened, read)


def test_each_exception_class(tmp_path):
    good = ROOT / "fixtures/safetensors/numeric.safetensors"
    with pytest.raises(tensor2npy.CorruptInputError, match="st_truncated.safetensors"):
        tensor2npy.load(ROOT / "fixtures/bad/st_truncated.safetensors")
    text = tmp_path / "notes.txt"
    text.write_text("just some text\n")
    with pytest.raises(tensor2npy.UnsupportedInputError, match="unrecognised input: a text file"):
        tensor2npy.load(text)
    with pytest.raises(tensor2npy.InputNotFoundError) as e:
        tensor2npy.open(tmp_path / "missing.safetensors")
    assert isinstance(e.value, FileNotFoundError) and "missing.safetensors" in str(e.value)
    # A refused connection is worth retrying: the command's exit status 75.
    with pytest.raises(tensor2npy.TransientError) as e:
        tensor2npy.load("http://127.0.0.1:9/model.safetensors")
    assert e.value.exit_status == 75 and "Connection refused" in str(e.value)
    # Usage errors, each with the command's words.
    with pytest.raises(tensor2npy.UsageError, match=r"invalid value 'f16' for '--bf16"):
        tensor2npy.load(good, bf16="f16")
    with pytest.raises(tensor2npy.UsageError, match="unexpected keyword argument 'bogus'"):
        tensor2npy.load(good, bogus=1)
    with pytest.raises(tensor2npy.UsageError, match="unexpected keyword argument 'compress'"):
        tensor2npy.load(good, compress=True)
    with pytest.raises(tensor2npy.UsageError, match="--fill is used only with"):
        tensor2npy.load(good, fill=1)
    with pytest.raises(ValueError):  # UsageError is a ValueError too
        tensor2npy.load(good, skip_unsupported="yes")
    # A --select that matches nothing fails as on the command line.
    with pytest.raises(tensor2npy.CorruptInputError, match="nothing*"):
        tensor2npy.load(good, select="nothing*")
    for cls in (tensor2npy.CorruptInputError, tensor2npy.UnsupportedInputError,
                tensor2npy.TransientError, tensor2npy.UsageError, tensor2npy.InputNotFoundError):
        assert issubclass(cls, tensor2npy.Tensor2NpyError)


def test_options_are_the_command_lines():
    src = ROOT / "fixtures/safetensors/extended.safetensors"
    bits = tensor2npy.load(src, bf16="bits", f8="bits")
    assert_same(bits, npz(ROOT / "fixtures/safetensors/extended.bits.expected.npz"), "bits",
                ordered=False)
    src = ROOT / "fixtures/safetensors/numeric.safetensors"
    cast = tensor2npy.load(src, cast={"f64": "f32"})
    assert_same(cast, npz(ROOT / "fixtures/safetensors/numeric.cast_f64_f32.expected.npz"), "cast",
                ordered=False)
    assert tensor2npy.load(src, cast=["f64=f32"]).keys() == cast.keys()
    picked = tensor2npy.load(src, select=["f*", "u8"], exclude="f16")
    want = [k for k in npz(src.with_name("numeric.expected.npz"))
            if (k.startswith("f") or k == "u8") and k != "f16"]
    assert sorted(picked) == sorted(want) and want


def test_several_inputs_are_prefixed_by_their_stem_like_one_npz(tmp_path):
    a = ROOT / "fixtures/safetensors/numeric.safetensors"
    b = ROOT / "fixtures/safetensors/single.safetensors"
    out = tmp_path / "both.npz"
    assert run_command("convert", a, b, "-o", out, "--quiet").returncode == 0
    assert_same(tensor2npy.load([a, b]), npz(out), "two inputs")


def test_convert_verify_and_list_are_the_commands(tmp_path):
    src = ROOT / "fixtures/safetensors/numeric.safetensors"
    tensor2npy.convert(src, tmp_path / "py.npz", compress=True, quiet=True)
    assert run_command("convert", src, "-o", tmp_path / "cmd.npz", "--compress").returncode == 0
    assert (tmp_path / "py.npz").read_bytes() == (tmp_path / "cmd.npz").read_bytes()
    with pytest.raises(tensor2npy.UsageError, match="exactly one tensor"):
        tensor2npy.convert(src, tmp_path / "one.npy")
    assert not (tmp_path / "one.npy").exists()

    ckpt = ROOT / "fixtures/ckpt/keras/ckpt-1"
    checked = tensor2npy.verify([src, ckpt])
    assert [c["input"] for c in checked] == [str(src), str(ckpt)]
    assert checked[0]["tensors"] == 18 and checked[0]["bytes"] == 298
    assert all(c["tensors"] > 0 and c["bytes"] > 0 for c in checked)
    with pytest.raises(tensor2npy.CorruptInputError, match="st_truncated"):
        tensor2npy.verify(ROOT / "fixtures/bad/st_truncated.safetensors")

    listed = json.loads(run_command("list", "--json", src).stdout)
    rows = tensor2npy.list_tensors(src)
    assert [dict(r, shape=list(r["shape"])) for r in rows] == listed


def test_open_is_a_read_only_mapping_and_a_context_manager():
    src = ROOT / "fixtures/gguf/plain.gguf"
    whole = tensor2npy.load(src)
    with tensor2npy.open(src) as f:
        assert len(f) == len(whole) and list(f.keys()) == list(whole)
        assert "nope" not in f and list(whole)[0] in f
        with pytest.raises(KeyError):
            f["nope"]
        for name, array in f.items():
            assert_same({name: array}, {name: whole[name]}, "items()")
            info = f.info(name)
            assert np.dtype(info.descr) == array.dtype and info.shape == array.shape
            assert info.nbytes == array.nbytes and info.source == str(src)
        listed = json.loads(run_command("list", "--json", "--metadata", src).stdout)
        assert f.metadata == listed["metadata"][str(src)]
        assert not f.closed
    assert f.closed
    with pytest.raises(ValueError, match="closed"):
        f[list(whole)[0]]


def test_large_tensors_read_on_several_threads_are_the_files_bytes(tmp_path):
    """Unconverted tensors of a local file are read straight into their arrays, 8 MiB pieces
    on several threads: sizes that are not a whole number of pieces, a converted (bfloat16)
    tensor between them, and one tensor read alone by open(), all give the bytes written."""
    rng = np.random.default_rng(7)
    f32 = rng.standard_normal((2 << 20) + 3001, dtype=np.float32)  # 2 pieces and a tail
    i64 = rng.integers(-(1 << 62), 1 << 62, ((3 << 18) + 1, 4), dtype="<i8")  # 3 and a tail
    f16 = rng.standard_normal((5 << 20) + 1, dtype=np.float32).astype("<f2")
    # bfloat16: the top halves of float32s, widened back by tensor2npy.
    bf16 = (rng.standard_normal(1 << 20, dtype=np.float32).view("<u4") >> 16).astype("<u2")
    tiny = np.arange(3, dtype="<f4")
    tensors = {
        "a/f32": ("F32", [f32.size], f32.nbytes, f32.tobytes()),
        "b/bf16": ("BF16", [bf16.size], bf16.nbytes, bf16.tobytes()),
        "c/i64": ("I64", list(i64.shape), i64.nbytes, i64.tobytes()),
        "d/tiny": ("F32", [3], tiny.nbytes, tiny.tobytes()),
        "e/f16": ("F16", [f16.size], f16.nbytes, f16.tobytes()),
    }
    path = safetensors_file(tmp_path / "big.safetensors", tensors)
    want = {"a/f32": f32, "b/bf16": (bf16.astype("<u4") << 16).view("<f4"), "c/i64": i64,
            "d/tiny": tiny, "e/f16": f16}
    got = tensor2npy.load(path)
    assert_same(got, want, "the bytes written")
    with tensor2npy.open(path) as f:
        assert_same({"c/i64": f["c/i64"]}, {"c/i64": i64}, "open()")
        # The input cut short after it was opened: the read fails naming the file and tensor.
        with open(path, "r+b") as cut:
            cut.truncate(os.path.getsize(path) - f16.nbytes // 2)
        with pytest.raises(tensor2npy.CorruptInputError) as e:
            f["e/f16"]
        assert str(path) in str(e.value) and "tensor 'e/f16'" in str(e.value), str(e.value)


def bf16_file(path, mib):
    return safetensors_file(path, {"w": ("BF16", [mib << 19], mib << 20, None)})


@pytest.fixture(scope="module")
def slow_read(tmp_path_factory):
    """A file whose load (64-byte chunks) takes at least half a second here, and that time: the
    fastest of three loads, so that a first load's start-up or a busy moment does not make the
    tests below signal after the read has already ended."""
    tmp_path = tmp_path_factory.mktemp("slow")
    mib = 8
    while True:
        path = bf16_file(tmp_path / f"slow{mib}.safetensors", mib)
        took = float("inf")
        for _ in range(3):
            start = time.monotonic()
            tensor2npy.load(path, chunk_size=64)
            took = min(took, time.monotonic() - start)
        if took >= 0.5:
            return path, took
        assert mib < 1024, f"even {mib} MiB loads in {took:.2f} s"
        mib *= 4 if took < 0.1 else 2


def interrupt_after(seconds):
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.fixture
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt, as in an interactive Python: a process started in the
    background by a non-interactive shell inherits SIGINT ignored, and Python then installs no
    handler of its own."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_interrupts_a_long_read(tmp_path, slow_read, sigint_raises):
    path, took = slow_read
    start = time.monotonic()
    timer = interrupt_after(took / 5)
    with pytest.raises(KeyboardInterrupt):
        tensor2npy.load(path, chunk_size=64)
    timer.join()
    # Stopped within a few checks of the signal, long before the read would have ended.
    assert time.monotonic() - start < took * 0.6, (took, time.monotonic() - start)
    # convert: nothing is left behind.
    out = tmp_path / "out.npz"
    timer = interrupt_after(took / 5)
    with pytest.raises(KeyboardInterrupt):
        tensor2npy.convert(path, out, chunk_size=64, quiet=True)
    timer.join()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_the_interpreter_lock_is_released_while_reading(slow_read):
    path, took = slow_read
    ticks = 0
    done = threading.Event()

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    start = time.monotonic()
    tensor2npy.load(path, chunk_size=64)
    elapsed = time.monotonic() - start
    done.set()
    counter.join()
    # A thread holding the lock for the whole read would leave the counter near zero.
    assert ticks > elapsed * 100, (ticks, elapsed)
