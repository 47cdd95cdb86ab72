"""Batch throughput, in images per minute.

First, seed batching (issue 24): a 16-seed sweep of the default workflow (the demo model,
20 steps) rendered by `studio render --sweep` with `--seed-batch 1` (each job's sampler call
on a batch of one) and with automatic seed batching (jobs that differ only in the seed
sampled together), in one run; the figures count the renders' own time (the graph, from
--json) and the whole process.

With --workers, also `studio batch` on the film-grain workflow (load, enlarge, grain, save)
as N seed jobs with 1 and 2 local worker processes and on Ray in local mode (2 actors), each
figure including starting the workers.

    .venv/bin/python bench/batch_bench.py [--seeds 16] [--workers] [--jobs 24]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def seed_sweep(label: str, seeds: int, extra: list[str]) -> float | None:
    out = Path(tempfile.mkdtemp(prefix="seed-batch-bench-"))
    command = [sys.executable, "-m", "studio", "render", str(ROOT / "workflows" / "default.json"), "--out", str(out),
               "--sweep", f"4.seed=1..{seeds}", "--json", *extra]
    began = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        print(f"{label}: failed\n{result.stderr[-2000:]}")
        return None
    report = json.loads(result.stdout)
    graph = sum(run["total_seconds"] for run in report["runs"])
    images = len(list(out.rglob("*.png")))
    rate = images / graph * 60
    print(f"{label:<28} {images} images: renders {graph:5.1f} s = {rate:6.1f} images/min; "
          f"whole process {seconds:5.1f} s = {images / seconds * 60:6.1f} images/min")
    return rate


def run(label: str, jobs: int, extra: list[str]) -> None:
    out = Path(tempfile.mkdtemp(prefix="seed-batch-bench-"))
    command = [sys.executable, "-m", "studio", "batch", str(ROOT / "workflows" / "film_grain.json"), "--out", str(out),
               "--sweep", f"Film grain.seed=1..{jobs}", *extra]
    began = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        print(f"{label}: failed\n{result.stderr[-2000:]}")
        return
    images = len(list(out.rglob("*.png")))
    print(f"{label:<22} {images} images in {seconds:5.1f} s = {images / seconds * 60:6.1f} images/min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--workers", action="store_true", help="also studio batch with local workers and Ray")
    parser.add_argument("--jobs", type=int, default=24)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")
    alone = seed_sweep("--seed-batch 1", args.seeds, ["--seed-batch", "1"])
    batched = seed_sweep("automatic seed batches", args.seeds, [])
    if alone and batched:
        print(f"automatic seed batching: {batched / alone:.2f} × the images per minute of --seed-batch 1 "
              "(goal ≥ 2×)")
    if args.workers:
        run("1 process", args.jobs, [])
        run("2 local workers", args.jobs, ["--workers", "2"])
        run("Ray local, 2 actors", args.jobs, ["--ray", "local", "--workers", "2"])


if __name__ == "__main__":
    main()
