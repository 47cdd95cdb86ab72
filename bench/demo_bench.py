"""The embedded demo models: render time of the default workflow and how well the base model
follows prompts, through the node graph on this machine.

    .venv/bin/python bench/demo_bench.py                 # 20-step 64×64 timing + 50 prompts
    .venv/bin/python bench/demo_bench.py --prompts 200   # a larger accuracy sample

Prints: the seconds of one render of workflows/default.json (model already loaded; best of
--repeat, and the first, cold, render including loading), then the share of seeded prompts
whose picture has the asked background colour, shape colour and position (the pixel analysis
of tests/demo/pixels.py), for training and held-out colour pairs separately. Goal: a warm
20-step render under 2 s on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from studio.demo import shapes  # noqa: E402
from studio.engine import Engine  # noqa: E402
from studio.graph import load  # noqa: E402
from studio.registry import build_registry  # noqa: E402
from studio.runtime.device import DevicePolicy  # noqa: E402
from studio.runtime.services import create_services  # noqa: E402
from studio.settings import WORKFLOWS_DIR, Settings  # noqa: E402
from tests.demo.pixels import analyse, follows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cfg", type=float, default=None, help="override the default workflow's cfg")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    settings = Settings(output_dir=folder / "out", input_dirs=(folder / "in",), temp_dir=folder / "tmp",
                        autosave_dir=folder / "autosave", model_roots=(folder / "models",))
    registry = build_registry()
    engine = Engine(registry, settings, services=create_services(settings, DevicePolicy(torch.device("cpu"),
                                                                                        torch.float32)))
    workflow = load(WORKFLOWS_DIR / "default.json")
    if args.cfg is not None:
        workflow.set_value("4", "cfg", args.cfg)
    times = []
    for index in range(args.repeat + 1):
        workflow.set_value("4", "seed", 10_000 + index)  # a new seed: the sampler really runs
        started = time.perf_counter()
        report = engine.run(workflow, ["5"])
        times.append(time.perf_counter() - started)
        assert report.ok, report.errors or report.problems
    steps = workflow.nodes["4"].values["steps"]
    print(f"default workflow ({steps} steps, 64x64, torch threads {torch.get_num_threads()}): "
          f"cold {times[0]:.2f} s (loading included), warm best {min(times[1:]):.3f} s")
    rng = random.Random(2026)
    results = {False: [], True: []}
    for index in range(args.prompts):
        scene = shapes.random_scene(rng, held_out=index % 5 == 0)
        workflow.set_value("2", "text", scene.caption(index))
        workflow.set_value("4", "seed", 1000 + index)
        image = engine.run(workflow, ["5"]).results["5"][0][0]
        held = (scene.colour, scene.background) in shapes.HELD_OUT
        results[held].append(follows(analyse(image), scene.colour, scene.background, scene.position))
    everything = results[False] + results[True]
    print(f"prompts followed: {sum(everything)}/{len(everything)} ({100 * sum(everything) / len(everything):.0f}%); "
          f"training pairs {sum(results[False])}/{len(results[False])}, "
          f"held-out pairs {sum(results[True])}/{len(results[True])}")


if __name__ == "__main__":
    main()
