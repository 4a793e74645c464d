"""Where each benchmark script's results go. `benches/run.sh` sets BENCH_OUT, a folder that
collects one Markdown fragment (NAME.md) and one list of target rows (NAME.json) per script;
`benches/report.py` assembles them, in name order, into BENCHMARKS.md. Without BENCH_OUT a
script only prints its fragment. Standard library only: every benchmark venv can import it."""

import json
import os
import sys

BIN_DEFAULT = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target"), "release", "tensor2npy")


def tensor2npy():
    """The binary under test: $BENCH_BIN, else the release build."""
    return os.path.abspath(os.environ.get("BENCH_BIN") or BIN_DEFAULT)


def emit(name, lines, targets):
    """Prints the fragment and, under run.sh, files it with its targets: (what, measured, met)."""
    md = "\n".join(lines).strip() + "\n"
    print(md, flush=True)
    out = os.environ.get("BENCH_OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, name + ".md"), "w") as f:
            f.write(md)
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump([{"target": t, "measured": m, "met": bool(ok)} for t, m, ok in targets], f)


def ratio_row(what, peer_s, t2n_s, goal=10.0):
    """A target row for "at least GOAL times faster than the peer", whole process."""
    r = peer_s / t2n_s
    return (what, f"{r:.1f}x ({t2n_s:.2f} s against {peer_s:.2f} s)", r >= goal)


if __name__ == "__main__":
    sys.exit("a module for the benchmark scripts")
