"""Batch throughput: images per minute for the default workflow (load, enlarge, grain, save)
rendered as N seed jobs by `studio batch` with 1 and 2 local worker processes and on Ray in
local mode (2 actors). Each figure includes starting the workers.

    .venv/bin/python bench/batch_bench.py [--jobs 24]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
    parser.add_argument("--jobs", type=int, default=24)
    args = parser.parse_args()
    run("1 process", args.jobs, [])
    run("2 local workers", args.jobs, ["--workers", "2"])
    run("Ray local, 2 actors", args.jobs, ["--ray", "local", "--workers", "2"])


if __name__ == "__main__":
    main()
