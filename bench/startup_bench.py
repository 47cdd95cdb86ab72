"""Start-up overhead of the `studio` commands: the whole process's wall time, less the run's
own time for `render` (the engine's total for the graph, from --json), as fresh processes.

    .venv/bin/python bench/startup_bench.py [--repeat 5]

Goals (issue 24), on an idle machine: render ≤ 1.5 s, validate and convert ≤ 0.7 s. Also
printed: a bare `python -c pass`, and for render how long torch and the model libraries took
to import on their own thread and how long the render waited for them after reading its file
(that wait is part of the overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "workflows" / "default.json"


def run(command: list[str]) -> tuple[float, str]:
    began = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return seconds, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    studio = [sys.executable, "-m", "studio"]
    scratch = Path(tempfile.mkdtemp(prefix="seed-startup-bench-"))
    print(f"load average {os.getloadavg()[0]:.2f} (other work on the machine slows every figure); "
          f"median of {args.repeat} fresh processes")

    bare = [run([sys.executable, "-c", "pass"])[0] for _ in range(args.repeat)]
    print(f"{'python -c pass':<34} {statistics.median(bare):5.2f} s")

    for label, command, goal in (
            ("studio validate default.json", [*studio, "validate", str(DEFAULT)], 0.7),
            ("studio convert default.json", [*studio, "convert", str(DEFAULT), str(scratch / "out.json"), "--force"],
             0.7),
            ("studio nodes", [*studio, "nodes"], None)):
        times = [run(command)[0] for _ in range(args.repeat)]
        target = f"  (goal ≤ {goal} s)" if goal else ""
        print(f"{label:<34} {statistics.median(times):5.2f} s{target}")

    overheads, totals, imports, waits = [], [], [], []
    for index in range(args.repeat):
        seconds, out = run([*studio, "render", str(DEFAULT), "--out", str(scratch / f"render{index}"), "--json"])
        report = json.loads(out)
        graph = sum(run_report["total_seconds"] for run_report in report["runs"])
        totals.append(seconds)
        overheads.append(seconds - graph)
        imports.append(report["runtime_import"]["seconds"])
        waits.append(report["runtime_import"]["waited"])
    print(f"{'studio render default.json':<34} {statistics.median(totals):5.2f} s in all, of which start-up "
          f"overhead {statistics.median(overheads):.2f} s  (goal ≤ 1.5 s)")
    print(f"{'':<34} runtime imports {statistics.median(imports):.2f} s on their thread; the render waited "
          f"{statistics.median(waits):.2f} s for them after reading and checking its file")


if __name__ == "__main__":
    main()
