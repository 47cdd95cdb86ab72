"""The embedded demo models, on their shipped weights, measured with the pixel analysis in
``tests/demo/pixels.py``: prompts are followed (held-out colour pairs too), cfg matters, the
LoRA's strength shows, the ControlNet places the shape, the upscaler beats bicubic."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from studio.demo import shapes
from studio.graph import load
from studio.runtime.models import ModelFolders
from studio.settings import DEMO_MODELS_DIR, WORKFLOWS_DIR, Settings
from tests.demo.conftest import default_workflow, render
from tests.demo.pixels import analyse, follows, prompt_error, stripes

DEMO_MODELS = {"checkpoints": "seed-shapes", "loras": "seed-shapes-stripes.safetensors",
               "controlnet": "seed-shapes-blob", "upscale_models": "seed-shapes-2x.safetensors"}


def prompts(count: int, seed: int, held_out_share: float = 0.2) -> list[shapes.Scene]:
    """Seeded prompts from the vocabulary; every fifth from the colour pairs held out of training."""
    rng = random.Random(seed)
    every = round(1 / held_out_share)
    return [shapes.random_scene(rng, held_out=index % every == 0) for index in range(count)]


def test_every_demo_model_is_listed_small_and_has_a_card(tmp_path):
    folders = ModelFolders.from_settings(Settings(model_roots=(tmp_path,)))
    for kind, name in DEMO_MODELS.items():
        assert name in folders.list(kind), (kind, folders.list(kind))
    weights = [p for p in DEMO_MODELS_DIR.rglob("*") if p.suffix in (".safetensors", ".bin")]
    total = sum(p.stat().st_size for p in weights)
    assert len(weights) >= 6 and total < 40 * 1024**2, total
    for kind, name in DEMO_MODELS.items():
        card = DEMO_MODELS_DIR / kind / (name.removesuffix(".safetensors") + ".md")
        if (DEMO_MODELS_DIR / kind / name).is_dir():
            card = DEMO_MODELS_DIR / kind / name / "README.md"
        text = card.read_text(encoding="utf-8")
        for heading in ("Trained on", "Training", "Metrics", "Limits"):
            assert f"## {heading}" in text, (card, heading)


@pytest.mark.slow
def test_rendered_pictures_follow_the_prompt_in_at_least_90_percent(demo_engine):
    workflow = default_workflow()
    followed, misses = 0, []
    scenes = prompts(50, seed=2026)
    assert sum((s.colour, s.background) in shapes.HELD_OUT for s in scenes) == 10
    for index, scene in enumerate(scenes):
        image = render(demo_engine, workflow, **{"2.text": scene.caption(index), "4.seed": 1000 + index})[0]
        result = analyse(image)
        if follows(result, scene.colour, scene.background, scene.position):
            followed += 1
        else:
            misses.append((scene.caption(index), result.colour, result.background, result.centroid))
    print(f"followed {followed}/50; misses: {misses}")
    assert followed >= 45, misses


@pytest.mark.slow
def test_cfg_5_follows_the_prompt_better_than_cfg_1(demo_engine):
    workflow = default_workflow()
    errors = {1.0: [], 5.0: []}
    for index, scene in enumerate(prompts(16, seed=77)):
        for cfg in errors:
            image = render(demo_engine, workflow, **{"2.text": scene.caption(index), "4.seed": 500 + index,
                                                     "4.cfg": cfg})[0]
            errors[cfg].append(prompt_error(analyse(image), scene.colour, scene.background, scene.position))
    mean = {cfg: float(np.mean(values)) for cfg, values in errors.items()}
    print(f"mean prompt error by cfg: {mean}")
    assert mean[1.0] > 1.25 * mean[5.0]


@pytest.mark.slow
def test_a_negative_prompt_steers_away_from_a_colour(demo_engine):
    """The prompt leaves the shape's colour open; naming a colour in the negative prompt makes
    it rarer."""
    workflow = default_workflow()
    counts = {}
    for negative in ("", "red, orange, purple"):
        warm = 0
        for seed in range(12):
            image = render(demo_engine, workflow, **{"2.text": "a large circle in the centre, white background",
                                                     "3.text": negative, "4.seed": seed})[0]
            warm += analyse(image).colour in ("red", "orange", "purple")
        counts[negative] = warm
    print(f"red/orange/purple shapes by negative prompt: {counts}")
    assert counts["red, orange, purple"] < counts[""]


@pytest.mark.slow
def test_the_stripes_lora_shows_more_with_strength(demo_engine):
    workflow = load(WORKFLOWS_DIR / "tour" / "4_lora.json")
    measured = {}
    for strength in (0.0, 0.5, 1.0):
        values = []
        for index, scene in enumerate(prompts(8, seed=5)):
            image = render(demo_engine, workflow, **{"2.text": scene.caption(index), "4.seed": 300 + index,
                                                     "8.strength_model": strength, "8.strength_clip": strength})[0]
            values.append(stripes(image))
        measured[strength] = float(np.mean(values))
    print(f"stripes by LoRA strength: {measured}")
    assert measured[0.0] < measured[0.5] - 0.05 < measured[1.0] - 0.1
    assert measured[0.0] < 0.1 and measured[1.0] > 0.3


@pytest.mark.slow
def test_the_controlnet_puts_the_shape_where_the_hint_is(demo_engine):
    """Hints at random places; the prompts name a position of their own, which the hint overrides."""
    workflow = load(WORKFLOWS_DIR / "tour" / "5_controlnet.json")
    inputs = demo_engine.settings.input_dirs[0]
    inputs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    errors = []
    for index in range(12):
        scene = shapes.random_scene(rng)
        x, y = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75)
        px, py = shapes.POSITIONS[scene.position]
        placed = shapes.Scene(scene.shape, "white", "black", scene.position, scene.size, dx=x - px, dy=y - py)
        shapes.hint(placed).save(inputs / f"hint-{index}.png")
        image = render(demo_engine, workflow, **{"8.image": f"hint-{index}.png", "2.text": scene.caption(index),
                                                 "4.seed": 700 + index})[0]
        centroid = analyse(image).centroid or (0.5, 0.5)
        hint_centroid = analyse(np.asarray(shapes.hint(placed))).centroid
        errors.append(math.hypot(centroid[0] - hint_centroid[0], centroid[1] - hint_centroid[1]))
    print(f"ControlNet centroid errors: {np.round(errors, 3).tolist()}")
    assert float(np.mean(errors)) < 0.15


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


@pytest.mark.slow
def test_the_upscaler_beats_bicubic_on_held_out_pictures(demo_engine):
    """Pictures of scenes not drawn for training (another seed, held-out colour pairs), drawn
    at 64 and 128 pixels; the 64-pixel ones are enlarged by the UpscaleModel nodes."""
    from studio.graph import Workflow

    rng = random.Random(4242)
    scenes = [shapes.random_scene(rng, held_out=i % 2 == 0, style="striped" if i % 3 == 0 else "plain")
              for i in range(12)]
    small = torch.from_numpy(np.stack([np.asarray(shapes.draw(s, 64)) for s in scenes])).float() / 255
    large = torch.from_numpy(np.stack([np.asarray(shapes.draw(s, 128)) for s in scenes])).float() / 255
    inputs = demo_engine.settings.input_dirs[0]
    inputs.mkdir(parents=True, exist_ok=True)
    model_psnr, bicubic_psnr = [], []
    for index, scene in enumerate(scenes):
        shapes.draw(scene, 64).save(inputs / f"small-{index}.png")
        workflow = Workflow()
        workflow.add_node("LoadImage", {"image": f"small-{index}.png"}, node_id="1")
        workflow.add_node("UpscaleModelLoader", {"model_name": "seed-shapes-2x.safetensors"}, node_id="2")
        workflow.add_node("ImageUpscaleWithModel", {}, node_id="3")
        workflow.connect("1", "IMAGE", "3", "image")
        workflow.connect("2", "UPSCALE_MODEL", "3", "upscale_model")
        upscaled = render(demo_engine, workflow, target="3")[0]
        bicubic = F.interpolate(small[index:index + 1].movedim(-1, 1), scale_factor=2, mode="bicubic",
                                align_corners=False).movedim(1, -1)[0]
        model_psnr.append(psnr(upscaled, large[index]))
        bicubic_psnr.append(psnr(bicubic, large[index]))
    print(f"PSNR upscaler {np.mean(model_psnr):.2f} dB, bicubic {np.mean(bicubic_psnr):.2f} dB")
    assert np.mean(model_psnr) > np.mean(bicubic_psnr) + 1.0
    assert sum(m > b for m, b in zip(model_psnr, bicubic_psnr)) >= 11


TOUR = sorted((WORKFLOWS_DIR / "tour").glob("*.json"))


@pytest.mark.slow
@pytest.mark.parametrize("path", TOUR, ids=[p.stem for p in TOUR])
def test_every_tour_workflow_renders_and_saves(demo_engine, path):
    workflow = load(path)
    report = demo_engine.run(workflow)
    assert report.ok, report.problems or [error.traceback for error in report.errors]
    (saved,) = [file for _, file in report.files]
    from PIL import Image

    with Image.open(saved) as picture:
        assert picture.size == ((128, 128) if "hires" in path.stem else (64, 64))
        described = analyse(np.asarray(picture.convert("RGB")))
    prompt = workflow.nodes["2"].values["text"]
    # Each tour prompt names its background; the picture has it.
    assert f"{described.background} background" in prompt, (prompt, described)


def test_the_tour_covers_every_demo_model():
    names = set()
    for path in TOUR:
        for node in load(path).nodes.values():
            names.update(str(value) for value in node.values.values())
    assert set(DEMO_MODELS.values()) <= names
    kinds = {path.stem.split("_", 1)[1] for path in TOUR}
    assert kinds == {"txt2img", "img2img", "inpaint", "lora", "controlnet", "hires_fix"}
