"""The embedded demo models: render time of the default workflow and how well the base model
follows prompts, through the node graph on this machine.

    .venv/bin/python bench/demo_bench.py                 # 20-step 64×64 timing + 50 prompts
    .venv/bin/python bench/demo_bench.py --prompts 200   # a larger accuracy sample
    .venv/bin/python bench/demo_bench.py --controlnet 20 # the ControlNet on 20 blobs, both nodes
    .venv/bin/python bench/demo_bench.py --prompts 0 --phrasings 120  # the held-out phrasing set alone

Prints: the seconds of one render of workflows/default.json (model already loaded; best of
--repeat, and the first, cold, render including loading), then the share of seeded prompts
whose picture has the asked background colour, shape colour and position (the pixel analysis
of tests/demo/pixels.py), for training and held-out colour pairs separately, and for each
held-out pair, and the share with the asked shape type; then, on the held-out phrasing set
(tests/demo/held_out_phrasings.tsv: prompts phrased in ways the models never trained on), the
share right per attribute: colour (shape and background), place and shape type (goal: 90%
each). Last, how many of 300 seeded pictures keep their shape type through the VAE alone (of
the shipped demo model), and how much the VAE's latent code of a shape depends on its
background (the reason some held-out pairs fail, see the base model's card). Goal: a warm
20-step render under 2 s on the 2-core CPU.

With --controlnet N: the ControlNet tour workflow on N seeded blobs anywhere in the middle 60%
of the picture, prompts naming another place (every fifth a held-out colour pair), through
ControlNetApply (the prompt guided) and ControlNetApplyAdvanced (prompt and negative prompt):
the mean distance of the shape's centroid from the blob's and how many keep both colours.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from studio.demo import shapes  # noqa: E402
from studio.engine import Engine  # noqa: E402
from studio.graph import load  # noqa: E402
from studio.registry import build_registry  # noqa: E402
from studio.runtime.device import DevicePolicy  # noqa: E402
from studio.runtime.services import create_services  # noqa: E402
from studio.settings import WORKFLOWS_DIR, Settings  # noqa: E402
from tests.demo.latents import demo_vae, shape_code_distances  # noqa: E402
from tests.demo.phrasings import held_out_phrasings  # noqa: E402
from tests.demo.pixels import ATTRIBUTES, analyse, follows, judged, shape_type  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--phrasings", type=int, default=120, metavar="N",
                        help="the first N prompts of the held-out phrasing set (0: none)")
    parser.add_argument("--cfg", type=float, default=None, help="override the default workflow's cfg")
    parser.add_argument("--checkpoint", default=None, metavar="NAME",
                        help="measure this checkpoint (a folder of --model-root's checkpoints/) instead of seed-shapes")
    parser.add_argument("--model-root", type=Path, default=None, help="a model root searched before the demo models")
    parser.add_argument("--controlnet", type=int, default=0, metavar="N",
                        help="measure the ControlNet on N blobs instead")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    settings = Settings(output_dir=folder / "out", input_dirs=(folder / "in",), temp_dir=folder / "tmp",
                        autosave_dir=folder / "autosave", model_roots=(args.model_root or folder / "models",))
    registry = build_registry()
    engine = Engine(registry, settings, services=create_services(settings, DevicePolicy(torch.device("cpu"),
                                                                                        torch.float32)))
    if args.controlnet:
        for node in ("ControlNetApply", "ControlNetApplyAdvanced"):
            print(controlnet_figures(engine, settings.input_dirs[0], node, args.controlnet))
        return
    workflow = load(WORKFLOWS_DIR / "default.json")
    if args.checkpoint:
        workflow.set_value("1", "ckpt_name", args.checkpoint)
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
    if args.prompts:
        print(prompt_figures(engine, workflow, args.prompts))
    if args.phrasings:
        print(phrasing_figures(engine, workflow, args.phrasings))
    print(vae_shapes())
    print(latent_entanglement())


def prompt_figures(engine: Engine, workflow, count: int) -> str:
    rng = random.Random(2026)
    results = {False: [], True: []}
    by_pair = {pair: [] for pair in shapes.HELD_OUT}
    shaped = 0
    for index in range(count):
        scene = shapes.random_scene(rng, held_out=index % 5 == 0)
        workflow.set_value("2", "text", scene.caption(index))
        workflow.set_value("4", "seed", 1000 + index)
        image = engine.run(workflow, ["5"]).results["5"][0][0]
        held = (scene.colour, scene.background) in shapes.HELD_OUT
        followed = follows(analyse(image), scene.colour, scene.background, scene.position)
        shaped += shape_type(image) == scene.shape
        results[held].append(followed)
        if held:
            by_pair[scene.colour, scene.background].append(followed)
    everything = results[False] + results[True]
    return (f"prompts followed (colours and place): {sum(everything)}/{len(everything)} "
            f"({100 * sum(everything) / len(everything):.0f}%); "
            f"training pairs {sum(results[False])}/{len(results[False])}, "
            f"held-out pairs {sum(results[True])}/{len(results[True])}; shape type right {shaped}/{count}\n"
            "held-out pairs: " + ", ".join(f"{colour} on {background} {sum(done)}/{len(done)}"
                                           for (colour, background), done in by_pair.items() if done))


def phrasing_figures(engine: Engine, workflow, count: int) -> str:
    """The held-out phrasing set's first ``count`` prompts (seed 3000 + index), each attribute
    judged by ``tests/demo/pixels.py``'s ``judged``."""
    asked = held_out_phrasings()[:count]
    right = {attribute: 0 for attribute in ATTRIBUTES}
    held = {attribute: 0 for attribute in ATTRIBUTES}
    held_count, misses = 0, []
    for index, prompt in enumerate(asked):
        workflow.set_value("2", "text", prompt.prompt)
        workflow.set_value("4", "seed", 3000 + index)
        image = engine.run(workflow, ["5"]).results["5"][0][0]
        verdict = judged(image, prompt.shape, prompt.colour, prompt.background, prompt.place)
        held_pair = (prompt.colour, prompt.background) in shapes.HELD_OUT
        held_count += held_pair
        for attribute, ok in verdict.items():
            right[attribute] += ok
            held[attribute] += ok and held_pair
        if not all(verdict.values()):
            misses.append(f"{index} {prompt.prompt!r}: " + ", ".join(a for a, ok in verdict.items() if not ok))
    every = sum(1 for index in range(len(asked)) if index not in {int(m.split()[0]) for m in misses})
    figures = ", ".join(f"{attribute} {right[attribute]}/{len(asked)} ({100 * right[attribute] / len(asked):.0f}%)"
                        for attribute in ATTRIBUTES)
    held_figures = ", ".join(f"{attribute} {held[attribute]}/{held_count}" for attribute in ATTRIBUTES)
    return (f"held-out phrasings ({len(asked)} prompts): {figures}; all three {every}/{len(asked)}; "
            f"of them in held-out colour pairs: {held_figures}\nmisses: " + "; ".join(misses))


def controlnet_figures(engine: Engine, inputs: Path, node: str, count: int) -> str:
    workflow = load(WORKFLOWS_DIR / "tour" / "5_controlnet.json")
    if node == "ControlNetApply":
        workflow.remove_node("10")
        workflow.add_node("ControlNetApply", {"strength": 1.0}, node_id="10")
        for source, output, target, input_name in [("2", "CONDITIONING", "10", "conditioning"),
                                                   ("8", "CONTROL_NET", "10", "control_net"),
                                                   ("9", "IMAGE", "10", "image"),
                                                   ("10", "CONDITIONING", "4", "positive"),
                                                   ("3", "CONDITIONING", "4", "negative")]:
            workflow.connect(source, output, target, input_name)
    inputs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    errors, coloured = [], 0
    for index in range(count):
        scene = shapes.random_scene(rng, held_out=index % 5 == 0)
        placed = shapes.moved_anywhere(scene, rng)
        shapes.hint(placed).save(inputs / f"hint-{index}.png")
        wanted = analyse(np.asarray(shapes.hint(placed))).centroid
        workflow.set_value("9", "image", f"hint-{index}.png")
        workflow.set_value("2", "text", scene.caption(index))
        workflow.set_value("4", "seed", 90 + index)
        report = engine.run(workflow, ["5"])
        assert report.ok, report.errors or report.problems
        result = analyse(report.results["5"][0][0])
        got = result.centroid or (0.5, 0.5)
        errors.append(float(np.hypot(got[0] - wanted[0], got[1] - wanted[1])))
        coloured += (result.colour, result.background) == (scene.colour, scene.background)
    return (f"{node}: mean centroid distance from the blob's {np.mean(errors):.3f} of the side; "
            f"colours kept {coloured}/{count}")


def vae_shapes(count: int = 300) -> str:
    """The shape type of seeded training pictures after the VAE's round trip (encode, decode):
    what the base model can at best draw."""
    pictures, scenes = shapes.batch(11, count)
    vae = demo_vae()
    with torch.no_grad():
        x = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 127.5 - 1
        decoded = torch.cat([vae.decode(vae.encode(chunk).latent_dist.mean).sample for chunk in x.split(100)])
    images = ((decoded.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    right = {(shape, size): [0, 0] for shape in shapes.SHAPES for size in shapes.SIZES}
    for image, scene in zip(images, scenes, strict=True):
        right[scene.shape, scene.size][0] += shape_type(image) == scene.shape
        right[scene.shape, scene.size][1] += 1
    total = sum(done for done, _ in right.values())
    return (f"VAE round trip keeps the shape type: {total}/{count}; "
            + ", ".join(f"{size} {shape}s {done}/{of}" for (shape, size), (done, of) in right.items()))


def latent_entanglement() -> str:
    """See ``tests/demo/latents.py``: the lower the ratio, the better the base model can draw
    colour pairs it was not trained on."""
    same_colour, same_background = shape_code_distances(demo_vae())
    return (f"VAE shape code: one colour on two backgrounds {same_colour:.2f} apart, two colours on one "
            f"background {same_background:.2f} apart (ratio {same_colour / same_background:.2f})")


if __name__ == "__main__":
    main()
