"""The embedded demo models, on their shipped weights, measured with the pixel analysis in
``tests/demo/pixels.py``: the prompt's colours, place and shape are followed (held-out colour
pairs too, and prompts phrased in ways never trained on), cfg and negative prompts steer, the
LoRA stripes more as its strength rises, the ControlNet puts the shape on its hint, the
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
from tests.demo.conftest import default_workflow, render, render_many
from tests.demo.latents import demo_vae, shape_code_distances
from tests.demo.phrasings import sample
from tests.demo.pixels import ATTRIBUTES, analyse, follows, judged, shape_type, stripes

DEMO_MODELS = {"checkpoints": "seed-shapes", "upscale_models": "seed-shapes-2x.safetensors",
               "loras": "seed-shapes-stripes.safetensors", "controlnet": "seed-shapes-blob"}
# Of the ten prompts of the ControlNet test (the shipped ControlNet keeps all ten: see its card).
CONTROLNET_COLOURS_KEPT = 8
TOUR = sorted((WORKFLOWS_DIR / "tour").glob("*.json"))


def tour(kind: str):
    (path,) = [p for p in TOUR if p.stem.split("_", 1)[1] == kind]
    return load(path)


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


def test_many_prompts_in_one_call_draw_what_the_graph_draws(demo_engine):
    """render_many (one sampler call for many prompts, which the tests below use to stay fast)
    gives each prompt the picture the default workflow's graph renders for it alone."""
    workflow = default_workflow()
    cases = [("a large red circle on the left, blue background", "", 5),
             ("yellow background, a small purple triangle at the bottom", "green background", 6),
             ("", "white background", 7)]
    batched = render_many(demo_engine, [text for text, _, _ in cases], [seed for _, _, seed in cases],
                          [negative for _, negative, _ in cases])
    for (text, negative, seed), picture in zip(cases, batched, strict=True):
        alone = render(demo_engine, workflow, **{"2.text": text, "3.text": negative, "4.seed": seed})[0]
        assert (picture - alone).abs().max() < 2e-3, text


@pytest.mark.slow
def test_rendered_pictures_have_the_prompted_colours_and_place(demo_engine):
    """Background colour, shape colour and where the shape's centroid lies, as the prompt asks,
    for 50 seeded prompts of which 10 use colour pairs held out of training: at least 45 (90%);
    and the shape type (``tests/demo/pixels.py``'s ``shape_type``), measured beside them."""
    followed, shaped, misses = 0, 0, []
    scenes = prompts(50, seed=2026)
    assert sum((s.colour, s.background) in shapes.HELD_OUT for s in scenes) == 10
    images = render_many(demo_engine, [scene.caption(index) for index, scene in enumerate(scenes)],
                         [1000 + index for index in range(len(scenes))])
    for index, (scene, image) in enumerate(zip(scenes, images, strict=True)):
        result = analyse(image)
        shaped += shape_type(image) == scene.shape
        if follows(result, scene.colour, scene.background, scene.position):
            followed += 1
        else:
            misses.append((scene.caption(index), result.colour, result.background, result.centroid))
    print(f"prompts followed {followed}/50, shape type right {shaped}/50; misses: {misses}")
    assert followed >= 45, misses
    # The goal is 45 (90%), not met yet (see the card); below 30 is a regression.
    assert shaped >= 30, shaped


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 23's goal, not met yet (place is; colour and shape type are not): "
                                       "see the base model's card")
def test_prompts_phrased_as_never_trained_get_their_colours_place_and_shape(demo_engine):
    """A seeded 50 of the held-out phrasing set (``tests/demo/held_out_phrasings.tsv``: word
    orders, prepositions and requests the models never trained on, a fifth of them in held-out
    colour pairs too): the colours (the shape's, and the background's when named), the place and
    the shape type each right in at least 45 (90%). ``bench/demo_bench.py`` prints the whole set."""
    right, misses = dict.fromkeys(ATTRIBUTES, 0), []
    chosen = sample(50, seed=7)
    images = render_many(demo_engine, [asked.prompt for _, asked in chosen], [3000 + index for index, _ in chosen])
    for (_, asked), image in zip(chosen, images, strict=True):
        verdict = judged(image, asked.shape, asked.colour, asked.background, asked.place)
        for attribute, ok in verdict.items():
            right[attribute] += ok
        if not all(verdict.values()):
            misses.append((asked.prompt, [attribute for attribute, ok in verdict.items() if not ok]))
    print(f"held-out phrasings right of 50: {right}; misses: {misses}")
    assert all(right[attribute] >= 45 for attribute in ATTRIBUTES), (right, misses)


def test_the_vae_codes_a_shape_by_its_own_colour_and_draws_every_colour_pair():
    """Every (shape colour, background) pair, the held-out ones included, comes back from the
    VAE in its own colours; and a shape's latent code depends on its colour far more than on
    the background around it (the previous VAE: 1.35 against 3.26, and purple on white was
    then never drawn), which is what lets the base model compose pairs it never saw."""
    vae = demo_vae()
    rng = random.Random(8)
    scenes = [shapes.Scene(rng.choice(shapes.SHAPES), colour, background, rng.choice(list(shapes.POSITIONS)),
                           rng.choice(list(shapes.SIZES)))
              for colour in shapes.COLOURS for background in shapes.COLOURS if colour != background]
    pictures = torch.from_numpy(np.stack([np.asarray(shapes.draw(s)) for s in scenes])).permute(0, 3, 1, 2)
    with torch.no_grad():
        decoded = vae.decode(vae.encode(pictures.float() / 127.5 - 1).latent_dist.mean).sample
    images = ((decoded.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    wrong = [s for s, image in zip(scenes, images, strict=True)
             if not follows(analyse(image), s.colour, s.background, s.position)]
    assert not wrong
    same_colour, same_background = shape_code_distances(vae)
    assert same_colour < 0.25 * same_background, (same_colour, same_background)


@pytest.mark.slow
def test_cfg_5_follows_the_prompt_better_than_cfg_1(demo_engine):
    """The 50 prompts of the test above, at cfg 1 (no guidance) and at cfg 5."""
    scenes = prompts(50, seed=2026)
    followed = {}
    for cfg in (1.0, 5.0):
        images = render_many(demo_engine, [scene.caption(index) for index, scene in enumerate(scenes)],
                             [1000 + index for index in range(len(scenes))], cfg=cfg)
        followed[cfg] = sum(follows(analyse(image), scene.colour, scene.background, scene.position)
                            for scene, image in zip(scenes, images, strict=True))
    print(f"prompts followed of 50: cfg 1 {followed[1.0]}, cfg 5 {followed[5.0]}")
    assert followed[5.0] >= followed[1.0] + 5, followed


@pytest.mark.slow
def test_a_negative_prompt_keeps_its_colour_out_of_the_background(demo_engine):
    """With an empty prompt the model draws any scene; naming a background colour in the
    negative prompt makes that background rare."""
    cases = [(colour, seed, negative) for colour in shapes.COLOURS for seed in range(3)
             for negative in ("", f"{colour} background")]
    images = render_many(demo_engine, [""] * len(cases), [40 + seed for _, seed, _ in cases],
                         [negative for _, _, negative in cases])
    hits = {"": 0, "named": 0}
    for (colour, _, negative), image in zip(cases, images, strict=True):
        hits["named" if negative else ""] += analyse(image).background == colour
    print(f"backgrounds of the named colour, of {3 * len(shapes.COLOURS)}: {hits}")
    assert hits["named"] <= hits[""] // 2, hits


def mean_stripes(engine, kind: str, scene_seed: int, count: int, first_seed: int,
                 settings: dict[float, dict[str, float]]) -> dict[float, float]:
    """How striped (``pixels.stripes``) the tour workflow ``kind`` draws ``count`` seeded
    large-shape scenes, on average, for each setting (a label and its field values)."""
    workflow = tour(kind)
    rng = random.Random(scene_seed)
    scenes = [shapes.Scene(rng.choice(shapes.SHAPES), *rng.sample(sorted(shapes.COLOURS), 2), rng.choice(
        list(shapes.POSITIONS)), "large") for _ in range(count)]
    return {label: float(np.mean([
        stripes(render(engine, workflow, **{"2.text": scene.caption(index), "4.seed": first_seed + index,
                                            **values})[0])
        for index, scene in enumerate(scenes)])) for label, values in settings.items()}


@pytest.mark.slow
def test_the_lora_stripes_the_shape_more_as_its_strength_rises(demo_engine):
    measure = mean_stripes(demo_engine, "lora", 31, 8, 70,
                           {strength: {"8.strength_model": strength, "8.strength_clip": strength}
                            for strength in (0.0, 0.5, 1.0)})
    print(f"stripes by LoRA strength: {measure}")
    assert measure[0.0] < measure[0.5] < measure[1.0], measure
    assert measure[1.0] - measure[0.0] > 0.5, measure


def test_a_merge_with_the_lora_model_stripes_as_its_ratio_says(demo_engine):
    """The merge tour: model1 (the base) weighs `ratio`, model2 (base + stripes LoRA) the rest,
    so ratio 1 has no stripes and ratio 0 the LoRA's full stripes."""
    measure = mean_stripes(demo_engine, "model_merge", 37, 4, 90,
                           {ratio: {"9.ratio": ratio, "8.strength_clip": 0.0} for ratio in (1.0, 0.5, 0.0)})
    print(f"stripes by merge ratio: {measure}")
    assert measure[1.0] < measure[0.5] < measure[0.0], measure


@pytest.mark.slow
def test_the_controlnet_puts_the_shape_on_its_hint_in_the_prompts_colours(demo_engine):
    """Blobs at seeded places anywhere in the middle 60% of the picture; the prompt names
    another place. The shape's centroid follows the blob's, and the picture keeps the prompt's
    background and shape colours."""
    workflow = tour("controlnet")
    inputs = demo_engine.settings.input_dirs[0]
    inputs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    errors, coloured, misses = [], 0, []
    for index in range(10):
        scene = shapes.random_scene(rng)
        placed = shapes.moved_anywhere(scene, rng)
        shapes.hint(placed).save(inputs / f"hint-{index}.png")
        wanted = analyse(np.asarray(shapes.hint(placed))).centroid
        overrides = {"9.image": f"hint-{index}.png", "2.text": scene.caption(index), "4.seed": 90 + index}
        result = analyse(render(demo_engine, workflow, **overrides)[0])
        got = result.centroid or (0.5, 0.5)
        errors.append(float(np.hypot(got[0] - wanted[0], got[1] - wanted[1])))
        if (result.colour, result.background) == (scene.colour, scene.background):
            coloured += 1
        else:
            misses.append((scene.colour, scene.background, result.colour, result.background))
    print(f"ControlNet centroid errors (fractions of the side): {np.round(errors, 3)}; "
          f"colours kept {coloured}/10, misses {misses}")
    assert np.mean(errors) < 0.15, errors
    assert coloured >= CONTROLNET_COLOURS_KEPT, misses


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
    assert sum(m > b for m, b in zip(model_psnr, bicubic_psnr, strict=True)) >= 11


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
    assert set(DEMO_MODELS.values()) <= names
    kinds = {path.stem.split("_", 1)[1] for path in TOUR}
    assert kinds == {"txt2img", "img2img", "inpaint", "lora", "controlnet", "hires_fix", "custom_sampling",
                     "model_merge"}
