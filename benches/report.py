#!/usr/bin/env python3
"""Assembles BENCHMARKS.md from what the benchmark scripts filed in BENCH_OUT (see emit.py):
a header saying where and how it ran, one table of every target (met or not), each script's
results in name order, then benches/NOTES.md, the hand-written record of what each change
bought and where the remaining gaps are. Usage: report.py BENCH_OUT > BENCHMARKS.md"""

import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    out = sys.argv[1]
    rows, fragments = [], []
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(path) as f:
            rows.extend(json.load(f))
    for path in sorted(glob.glob(os.path.join(out, "*.md"))):
        with open(path) as f:
            fragments.append(f.read().strip())
    host = subprocess.run(["sh", "-c", "nproc; free -g | awk '/Mem/{print $2}'; uname -m"],
                          capture_output=True, text=True).stdout.split()
    load = os.getloadavg()[0]
    version = subprocess.run([os.environ.get("BENCH_BIN", "tensor2npy"), "--version"], capture_output=True,
                             text=True).stdout.strip().splitlines()
    met = sum(1 for r in rows if r["met"])
    lines = [
        "# Benchmarks",
        "",
        f"Written by `benches/run.sh` on {time.strftime('%Y-%m-%d')} ({host[0]} cores, {host[1]} GiB, {host[2]}; "
        f"load average {load:.1f} at the end), {version[0] if version else 'tensor2npy'}, "
        f"BENCH_SCALE={os.environ.get('BENCH_SCALE', '1')}, BENCH_REPS={os.environ.get('BENCH_REPS', 'default')}. "
        "Every contender is a whole process (interpreter and imports included for the Python scripts), "
        "timed in alternating rounds in one session; medians, with the min–max range, since these "
        "shared VMs are noisy. Outputs go to the page cache (no fsync for anyone). tensor2npy runs with "
        "its defaults (`--jobs` = the number of cores) unless a row says otherwise.",
        "",
        f"## Targets ({met} of {len(rows)} met)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['target']} | {r['measured']} | {'yes' if r['met'] else '**no**'} |")
    lines += ["", "## Results", ""]
    lines += ["\n\n".join(fragments), ""]
    notes = os.path.join(ROOT, "benches", "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            lines += [f.read().strip(), ""]
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
