"""The embedded demo models, on their shipped weights, measured with the pixel analysis in
``tests/demo/pixels.py``: the prompt's colours are followed (held-out colour pairs too), the
upscaler beats bicubic, every tour workflow renders."""

from __future__ import annotations

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
from tests.demo.pixels import analyse

DEMO_MODELS = {"checkpoints": "seed-shapes", "upscale_models": "seed-shapes-2x.safetensors"}


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
    assert len(weights) >= 4 and total < 40 * 1024**2, total
    for kind, name in DEMO_MODELS.items():
        card = DEMO_MODELS_DIR / kind / (name.removesuffix(".safetensors") + ".md")
        if (DEMO_MODELS_DIR / kind / name).is_dir():
            card = DEMO_MODELS_DIR / kind / name / "README.md"
        text = card.read_text(encoding="utf-8")
        for heading in ("Trained on", "Training", "Metrics", "Limits"):
            assert f"## {heading}" in text, (card, heading)


@pytest.mark.slow
def test_rendered_pictures_have_the_prompted_colours_in_at_least_90_percent(demo_engine):
    """Background and shape colour as asked, held-out colour pairs included. (Where the shape
    sits is not yet followed: see the model card.)"""
    workflow = default_workflow()
    followed, misses = 0, []
    scenes = prompts(50, seed=2026)
    assert sum((s.colour, s.background) in shapes.HELD_OUT for s in scenes) == 10
    for index, scene in enumerate(scenes):
        image = render(demo_engine, workflow, **{"2.text": scene.caption(index), "4.seed": 1000 + index})[0]
        result = analyse(image)
        if result.colour == scene.colour and result.background == scene.background:
            followed += 1
        else:
            misses.append((scene.caption(index), result.colour, result.background))
    print(f"colours followed {followed}/50; misses: {misses}")
    assert followed >= 45, misses


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


def test_the_tour_covers_the_shipped_demo_models():
    names = set()
    for path in TOUR:
        for node in load(path).nodes.values():
            names.update(str(value) for value in node.values.values())
    assert {DEMO_MODELS["checkpoints"], DEMO_MODELS["upscale_models"]} <= names
    kinds = {path.stem.split("_", 1)[1] for path in TOUR}
    assert kinds == {"txt2img", "img2img", "inpaint", "hires_fix"}
