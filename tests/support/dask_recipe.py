"""The README's Dask recipe, run for real by tests/outputs/edges.rs: each shard is converted by the
tensor2npy binary in a Dask worker process (local mode), from a bucket into a bucket; a shard
whose conversion exits 75 (a transient failure) is retried, any other failure is raised.

    python dask_recipe.py TENSOR2NPY OUT_PREFIX SHARD_URL...

Credentials and the endpoint come from the environment (AWS_*), as for any tensor2npy run.
Prints one line per shard: its URL and the exit status of its last attempt.
"""
import subprocess
import sys
import time

import dask.bag as db

TENSOR2NPY, OUT = sys.argv[1], sys.argv[2]
SHARDS = sys.argv[3:]


def convert(shard, attempts=3):
    for attempt in range(attempts):
        run = subprocess.run(
            [TENSOR2NPY, "convert", shard, "-o", OUT, "--to", "npz", "--update", "--quiet"],
            capture_output=True,
            text=True,
        )
        if run.returncode != 75:  # 75: transient, worth another try
            break
        time.sleep(2**attempt)
    if run.returncode != 0:
        raise RuntimeError(f"{shard}: exit {run.returncode}: {run.stderr}")
    return shard, run.returncode


if __name__ == "__main__":
    done = db.from_sequence(SHARDS, npartitions=len(SHARDS)).map(convert).compute(
        scheduler="processes", num_workers=2
    )
    for shard, status in done:
        print(shard, status)
