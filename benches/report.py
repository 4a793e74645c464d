#!/usr/bin/env python3
"""Assembles BENCHMARKS.md from what the benchmark scripts filed in BENCH_OUT (see emit.py):
a header saying where and how it ran, one table of every target (met or not), each script's
results in name order, then benches/NOTES.md, the hand-written record of what each change
bought and where the remaining gaps are. Usage: report.py BENCH_OUT > BENCHMARKS.md

A partial run (run.sh with BENCH_ONLY) is written as one section instead, "## Partial run:
BENCH_ONLY=...", into an existing BENCHMARKS.md: report.py --splice BENCHMARKS.md BENCH_OUT
replaces the section of the same BENCH_ONLY, or puts it before "## What each change bought",
and leaves every other section as it was."""

import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    if sys.argv[1] == "--splice":
        return splice(sys.argv[2], sys.argv[3])
    out = sys.argv[1]
    rows, fragments = collect(out)
    lines = header(rows)
    lines += ["", "## Results", ""]
    lines += ["\n\n".join(fragments), ""]
    notes = os.path.join(ROOT, "benches", "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            lines += [f.read().strip(), ""]
    sys.stdout.write("\n".join(lines))


def collect(out):
    """The target rows and Markdown fragments the scripts filed in `out`, in name order."""
    rows, fragments = [], []
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(path) as f:
            rows.extend(json.load(f))
    for path in sorted(glob.glob(os.path.join(out, "*.md"))):
        with open(path) as f:
            fragments.append(f.read().strip())
    return rows, fragments


def header(rows, title="# Benchmarks", targets="## Targets"):
    """The title, where and how the run was made, and the table of targets."""
    host = subprocess.run(["sh", "-c", "nproc; free -g | awk '/Mem/{print $2}'; uname -m"],
                          capture_output=True, text=True).stdout.split()
    load = os.getloadavg()[0]
    version = subprocess.run([os.environ.get("BENCH_BIN", "tensor2npy"), "--version"], capture_output=True,
                             text=True).stdout.strip().splitlines()
    met = sum(1 for r in rows if r["met"])
    lines = [
        title,
        "",
        f"Written by `benches/run.sh` on {time.strftime('%Y-%m-%d')} ({host[0]} cores, {host[1]} GiB, {host[2]}; "
        f"load average {load:.1f} at the end), {version[0] if version else 'tensor2npy'}, "
        f"BENCH_SCALE={os.environ.get('BENCH_SCALE', '1')}, BENCH_REPS={os.environ.get('BENCH_REPS', 'default')}. "
        "Every contender is a whole process (interpreter and imports included for the Python scripts), "
        "timed in alternating rounds in one session; medians, with the min–max range, since these "
        "shared VMs are noisy. Outputs go to the page cache (no fsync for anyone). tensor2npy runs with "
        "its defaults (`--jobs` = the number of cores) unless a row says otherwise.",
        "",
        f"{targets} ({met} of {len(rows)} met)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['target']} | {r['measured']} | {'yes' if r['met'] else '**no**'} |")
    return lines


def splice(md_path, out):
    """Writes the rows of a partial run into `md_path` as one section (see the module doc)."""
    only = os.environ.get("BENCH_ONLY", "")
    title = f"## Partial run: BENCH_ONLY={only}"
    rows, fragments = collect(out)
    lines = header(rows, title, "### Targets")
    # the fragments' headings, one level down, inside this section
    lines += [("\n" + "\n\n".join(fragments)).replace("\n#", "\n##"), ""]
    body = "\n".join(lines)
    with open(md_path) as f:
        old = f.read().split("\n")
    # drop the section a previous run of the same BENCH_ONLY wrote
    kept, skipping = [], False
    for line in old:
        if line.startswith("## "):
            skipping = line == title
        if not skipping:
            kept.append(line)
    at = next((i for i, line in enumerate(kept) if line.startswith("## What each change bought")), len(kept))
    kept[at:at] = body.split("\n") + [""]
    with open(md_path, "w") as f:
        f.write("\n".join(kept))


if __name__ == "__main__":
    main()
