"""Parity with ComfyUI itself: σ lists and sampled latents and pictures against references that
real ComfyUI produced on the same tiny checkpoint (``bench/comfy_reference.py`` made them,
``tests/data/comfy_reference/meta.json`` records the commit and settings). CI never needs
ComfyUI: the checkpoint is rewritten here bit for bit (its sha256 is checked)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from studio.runtime.samplers import SAMPLERS
from studio.runtime.sampling import SamplingJob, ksampler_sigmas, sample
from studio.runtime.schedules import DiscreteModelSampling, scheduler_sigmas
from tests import parity_model

DATA = Path(__file__).parents[1] / "data" / "comfy_reference"
META = json.loads((DATA / "meta.json").read_text())
SIGMAS = json.loads((DATA / "sigmas.json").read_text())
LATENTS = load_file(DATA / "latents.safetensors")
INPUTS = load_file(DATA / "inputs.safetensors")
SD = DiscreteModelSampling()
# Samplers whose per-step noise is random: their pictures differ more where a value sits at a
# rounding edge of the 8-bit conversion, so the bar is 45 dB; deterministic ones need 50 dB.
DETERMINISTIC_PSNR, STOCHASTIC_PSNR = 50.0, 45.0


def test_the_references_are_from_comfyui_on_this_checkpoint(tmp_path):
    assert len(META["comfyui"]["commit"]) == 40
    path = parity_model.write_parity_checkpoint(tmp_path / "parity.safetensors")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == META["checkpoint"]["sha256"]


def test_the_model_grid_is_comfyuis():
    grid = torch.tensor(SIGMAS["model_sampling"]["sigmas"])
    assert torch.allclose(SD.sigmas, grid, rtol=1e-6, atol=0)


@pytest.mark.parametrize("scheduler", list(SIGMAS["calculate_sigmas"]))
def test_every_schedule_gives_comfyuis_sigmas(scheduler):
    for steps, expected in SIGMAS["calculate_sigmas"][scheduler].items():
        if any(math.isnan(value) for value in expected):
            # ComfyUI's kl_optimal divides by steps − 1, so one step gives NaN there; here it
            # is the one step from σmax (which the schedule's own formula gives in the limit).
            assert scheduler == "kl_optimal" and steps == "1"
            assert scheduler_sigmas(SD, scheduler, 1).tolist() == pytest.approx([float(SD.sigma_max), 0.0])
            continue
        ours = scheduler_sigmas(SD, scheduler, int(steps))
        assert len(ours) == len(expected), (scheduler, steps)
        assert torch.allclose(ours, torch.tensor(expected), rtol=1e-6, atol=1e-6), (scheduler, steps)


@pytest.mark.parametrize("denoise", ["denoise_1.0", "denoise_0.6"])
def test_ksampler_sigmas_are_comfyuis(denoise):
    steps = SIGMAS["ksampler"]["steps"]
    # "standard" for most samplers, and for those that drop the σ before the last
    for scheduler, kinds in SIGMAS["ksampler"][denoise].items():
        for kind, sampler in (("standard", "euler"), ("discard_penultimate", "dpm_2")):
            ours = ksampler_sigmas(SD, sampler, scheduler, steps, float(denoise.split("_")[1]))
            expected = torch.tensor(kinds[kind])
            assert len(ours) == len(expected) and torch.allclose(ours, expected, rtol=1e-6, atol=1e-6), \
                (scheduler, kind)


@cache
def _checkpoint():
    import tempfile

    from studio.runtime.checkpoints import load_single_file
    from studio.runtime.device import DevicePolicy

    folder = Path(tempfile.mkdtemp(prefix="parity-"))
    path = parity_model.write_parity_checkpoint(folder / "parity.safetensors")
    return load_single_file(path, DevicePolicy(torch.device("cpu"), torch.float32), "parity")


def _render(mode: str, sampler: str, scheduler: str) -> torch.Tensor:
    settings = META["settings"]
    latent = INPUTS["img2img_latent"] if mode == "img2img" else torch.zeros(1, 4, 8, 8)
    job = SamplingJob([(INPUTS["positive"], {})], [(INPUTS["negative"], {})], {"samples": latent},
                      settings["seed"], settings["steps"], settings["cfg"], sampler, scheduler,
                      denoise=settings["img2img_denoise"] if mode == "img2img" else 1.0)
    return sample(_checkpoint().model, job, lambda *args: None)["samples"]


def _picture(latent: torch.Tensor) -> np.ndarray:
    vae = _checkpoint().vae.vae
    with torch.no_grad():
        image = vae.decode(latent, return_dict=False)[0]  # a LATENT is in the VAE's own scale
    image = ((image + 1) / 2).clamp(0, 1)[0].movedim(0, -1).numpy()
    return np.clip(255.0 * image, 0, 255).astype(np.uint8)  # ComfyUI's SaveImage truncates


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if error == 0 else 10 * math.log10(255.0 ** 2 / error)


CASES = sorted(key.split("/") for key in LATENTS)
SAMPLER_NAMES = sorted({sampler for _, sampler, _ in CASES})
SCHEDULER_NAMES = sorted({scheduler for _, _, scheduler in CASES})
# Every sampler against ComfyUI with the two schedulers artists use most and two more that
# rotate with the sampler, so that each scheduler meets about a dozen samplers in each mode:
# 352 of the 792 renders, in a share of the suite's six minutes. A scheduler only shapes the
# σ list (each schedule is checked against ComfyUI's exactly above), so the full cross product
# adds little; `bench/parity_bench.py` renders all of it, and SEED_STUDIO_FULL_PARITY=1 here.
ALWAYS = ("normal", "karras")
ROTATING = [name for name in SCHEDULER_NAMES if name not in ALWAYS]


def schedulers_for(sampler: str) -> set[str]:
    if os.environ.get("SEED_STUDIO_FULL_PARITY") == "1":
        return set(SCHEDULER_NAMES)
    index = SAMPLER_NAMES.index(sampler)
    return {*ALWAYS, ROTATING[(2 * index) % len(ROTATING)], ROTATING[(2 * index + 1) % len(ROTATING)]}


def test_the_rotation_meets_every_scheduler_in_both_modes_many_times():
    meetings = {name: 0 for name in SCHEDULER_NAMES}
    for sampler in SAMPLER_NAMES:
        for name in schedulers_for(sampler):
            meetings[name] += 1
    assert min(meetings.values()) >= 10, meetings


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_sampled_latents_and_pictures_match_comfyuis(sampler):
    """Four schedulers (see :func:`schedulers_for`), txt2img and img2img, for one sampler: the
    latent within 1e-3 of its range, and the 8-bit picture (decoded as one batch) at 50 dB, 45 for samplers that draw
    noise as they go."""
    if sampler not in SAMPLERS:
        pytest.skip(f"{sampler} is not implemented yet")
    cases = [(mode, scheduler) for mode, name, scheduler in CASES
             if name == sampler and scheduler in schedulers_for(sampler)]
    wrong, latents = [], []
    for mode, scheduler in cases:
        expected = LATENTS[f"{mode}/{sampler}/{scheduler}"]
        ours = _render(mode, sampler, scheduler)
        latents.append(ours)
        difference = float((ours - expected).abs().max() / expected.abs().max())
        if difference > 1e-3:
            wrong.append(f"{mode}/{scheduler}: latent differs by {difference:.3g} of its range")
    pictures = _pictures(torch.cat(latents))
    bar = STOCHASTIC_PSNR if SAMPLERS[sampler].stochastic else DETERMINISTIC_PSNR
    for (mode, scheduler), picture in zip(cases, pictures, strict=True):
        png = DATA / "png" / f"{mode}-{sampler}-{scheduler}.png"
        quality = psnr(picture, np.asarray(Image.open(png).convert("RGB")))
        if quality < bar:
            wrong.append(f"{mode}/{scheduler}: picture at {quality:.1f} dB")
    assert not wrong


def _pictures(latents: torch.Tensor) -> np.ndarray:
    vae = _checkpoint().vae.vae
    with torch.no_grad():
        images = vae.decode(latents, return_dict=False)[0]
    images = ((images + 1) / 2).clamp(0, 1).movedim(1, -1).numpy()
    return np.clip(255.0 * images, 0, 255).astype(np.uint8)


CASES_DATA = load_file(DATA / "cases.safetensors")


@cache
def _registry():
    from studio.registry import build_registry

    return build_registry()


@pytest.mark.parametrize("name", list(parity_model.CONDITIONING_CASES))
def test_conditioning_and_step_range_cases_match_comfyuis(name):
    """Areas (cells, percentages, feathered edges), masks (with strength, or as bounds),
    timestep ranges, an area on the negative side, cfg 1, inpainting (incl. ddim's own
    inpaint noise), KSamplerAdvanced's step ranges, model patches, a hypernetwork and GLIGEN
    text boxes, against ComfyUI's own results."""
    case = parity_model.CONDITIONING_CASES[name]
    inputs = parity_model.case_inputs()
    assert torch.equal(inputs["alt"], CASES_DATA["alt"])

    def conditioning(side, default):
        return [tuple(entry) for entry in parity_model.case_conditioning(case.get(side, [{"embedding": default}]),
                                                                         inputs)]

    latent = {"samples": inputs["img2img_latent"] if case.get("latent") == "img2img" else torch.zeros(1, 4, 8, 8)}
    if case.get("noise_mask") == "left":
        latent["noise_mask"] = parity_model.left_mask()
    advanced = case.get("advanced") or {}
    positive = conditioning("positive", "positive")
    if "gligen" in case:
        import tempfile

        from studio.runtime.gligen import read_gligen, with_text_box

        gligen = read_gligen(parity_model.write_parity_gligen(Path(tempfile.mkdtemp()) / "parity-gligen.safetensors"))
        phrases = parity_model.gligen_phrases(len(case["gligen"]))
        for index, (width, height, x, y) in enumerate(case["gligen"]):
            positive = with_text_box(positive, gligen, phrases[index:index + 1], width, height, x, y)
    job = SamplingJob(positive, conditioning("negative", "negative"), latent,
                      parity_model.SEED, parity_model.STEPS, case.get("cfg", parity_model.CFG),
                      case.get("sampler", "euler"), case.get("scheduler", "normal"),
                      denoise=case.get("denoise", 1.0), start_step=advanced.get("start"), end_step=advanced.get("end"),
                      add_noise=advanced.get("add_noise", True), leftover_noise=advanced.get("leftover_noise", False))
    model = _checkpoint().model
    for node_type, values in case.get("patches", []):
        node = _registry().get(node_type)()
        (model,) = node.run(None, model, *values)
    if "hypernetwork" in case:
        import tempfile
        from dataclasses import replace

        from studio.runtime.hypernetwork import read_hypernetwork

        path = parity_model.write_parity_hypernetwork(Path(tempfile.mkdtemp()) / "parity.pt")
        model = replace(model, hypernetworks=(read_hypernetwork(path, case["hypernetwork"]),))
    ours = sample(model, job, lambda *args: None)["samples"]
    expected = CASES_DATA[name]
    assert (ours - expected).abs().max() <= 1e-3 * expected.abs().max(), \
        f"latent differs by {(ours - expected).abs().max():.4g}"
    assert psnr(_picture(ours), CASES_DATA[f"{name}/png"].numpy()) >= DETERMINISTIC_PSNR
