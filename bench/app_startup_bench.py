"""How long `studio` takes to show its window, and to paint the first frame with the graph in
it (after the first fit), from the moment the process is started. Goal: ≤ 2 s on the 2-core
development machine, idle. torch and diffusers are imported after that, behind the window
(the script prints whether they were imported by then, and when the warm-up finished).

    .venv/bin/python bench/app_startup_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from studio.app.main import _application, _window

app = _application()
window = _window(None)
marks = {}

class FirstFrame(QObject):
    def eventFilter(self, watched, event):
        if event.type() == QEvent.Paint and window.view.fits_done and "first_frame" not in marks:
            marks["first_frame"] = time.time()
            marks["torch_by_first_frame"] = "torch" in sys.modules
            QTimer.singleShot(0, warm)
        return False

def warm():
    began = time.time()
    window.engine.services.warm_up().join()
    marks["warm_up_seconds"] = time.time() - began
    print(json.dumps(marks))
    app.quit()

watcher = FirstFrame()
window.view.viewport().installEventFilter(watcher)
window.show()
marks["shown"] = time.time()
app.exec()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["HF_HUB_OFFLINE"] = "1"
    shown, first = [], []
    for _ in range(args.runs):
        started = time.time()
        result = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300)
        line = next((line for line in result.stdout.splitlines() if line.startswith("{")), None)
        if line is None:
            raise SystemExit(f"the app did not start: {result.stderr[-2000:]}")
        marks = json.loads(line)
        shown.append(marks["shown"] - started)
        first.append(marks["first_frame"] - started)
        print(f"window shown {shown[-1]:.2f} s; first frame with the graph {first[-1]:.2f} s; torch imported by "
              f"then: {marks['torch_by_first_frame']}; warm-up (torch, diffusers, model manager) after it "
              f"{marks['warm_up_seconds']:.2f} s")
    print(f"median of {args.runs}: shown {statistics.median(shown):.2f} s, first frame "
          f"{statistics.median(first):.2f} s (goal ≤ 2 s idle)")


if __name__ == "__main__":
    main()
