"""Inpainting, outpainting, compositing, tiling, areas and split sampling."""

from __future__ import annotations

import pytest
import torch

from nodes.image import ImagePadForOutpaint
from nodes.latent import LatentComposite, LatentCompositeMasked
from studio.engine import Engine
from studio.runtime.services import create_services
from tests.nodes.test_diffusion import CPU, render, txt2img


@pytest.fixture
def engine(registry, model_settings):
    return Engine(registry, model_settings, services=create_services(model_settings, CPU))


def test_outpaint_padding_is_grey_and_its_mask_fades_into_the_picture(ctx):
    image = torch.zeros(1, 40, 60, 3)
    padded, mask = ImagePadForOutpaint().run(ctx, image=image, left=16, top=0, right=0, bottom=8, feathering=10)
    assert padded.shape == (1, 48, 76, 3) and mask.shape == (1, 48, 76)
    assert torch.all(padded[0, :, :16] == 0.5) and torch.all(padded[0, 40:] == 0.5)
    assert torch.all(padded[0, :40, 16:] == 0.0)
    assert torch.all(mask[0, :, :16] == 1.0) and torch.all(mask[0, 40:] == 1.0)
    assert mask[0, 20, 16] == 1.0  # at the seam: (10 - 0) / 10, squared
    assert mask[0, 20, 21] == pytest.approx(0.25)  # five pixels in: (5 / 10)²
    assert mask[0, 10, 40] == 0.0  # deep inside, and the top has no new space


def test_latent_composite_pastes_at_a_pixel_position_with_feathered_edges(ctx):
    destination = {"samples": torch.ones(1, 4, 8, 8)}
    source = {"samples": torch.zeros(1, 4, 4, 4)}
    (hard,) = LatentComposite().run(ctx, samples_to=destination, samples_from=source, x=16, y=8, feather=0)
    assert torch.all(hard["samples"][:, :, 1:5, 2:6] == 0) and hard["samples"].sum() == 4 * (64 - 16)
    (soft,) = LatentComposite().run(ctx, samples_to=destination, samples_from=source, x=16, y=8, feather=16)
    inside = soft["samples"][0, 0, 1:5, 2:6]
    assert 0 < inside[0, 0] < 1 and inside[1:3, 1:3].max() == 0  # edges blend, middle is the source
    assert torch.equal(destination["samples"], torch.ones(1, 4, 8, 8))  # inputs are not changed


def test_latent_composite_masked_uses_the_mask_and_can_resize_the_source(ctx):
    destination = {"samples": torch.ones(1, 4, 8, 8)}
    source = {"samples": torch.zeros(1, 4, 4, 4)}
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0
    (out,) = LatentCompositeMasked().run(ctx, destination=destination, source=source, x=0, y=0,
                                         resize_source=True, mask=mask)
    assert torch.all(out["samples"][..., :3] == 0) and torch.all(out["samples"][..., 5:] == 1)


def test_inpaint_encoding_greys_the_masked_area_and_grows_the_noise_mask(engine, model_settings):
    from PIL import Image

    picture = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    picture.paste((0, 0, 0, 0), (24, 24, 40, 40))
    picture.save(model_settings.input_dirs[0] / "hole.png")
    workflow, ids = txt2img()
    load = workflow.add_node("LoadImage", {"image": "hole.png"}).id
    encode = workflow.add_node("VAEEncodeForInpaint", {"grow_mask_by": 6}).id
    workflow.connect(load, "IMAGE", encode, "pixels")
    workflow.connect(load, "MASK", encode, "mask")
    workflow.connect(ids["loader"], "VAE", encode, "vae")
    workflow.connect(encode, "LATENT", ids["sampler"], "latent_image")
    report = engine.run(workflow, [encode, ids["decode"]])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    latent = report.results[encode][0]
    grown = latent["noise_mask"]
    assert grown.shape == (1, 1, 64, 64)
    assert grown.sum() > 16 * 16 and grown[0, 0, 32, 32] == 1 and grown[0, 0, 2, 2] == 0


def test_tiled_vae_matches_the_whole_image_closely(engine):
    workflow, ids = txt2img(size=128)
    tiled = workflow.add_node("VAEDecodeTiled", {"tile_size": 64, "overlap": 32}).id
    workflow.connect(ids["sampler"], "LATENT", tiled, "samples")
    workflow.connect(ids["loader"], "VAE", tiled, "vae")
    report = engine.run(workflow, [ids["decode"], tiled])
    whole, pieces = report.results[ids["decode"]][0], report.results[tiled][0]
    assert whole.shape == pieces.shape == (1, 128, 128, 3)
    assert (whole - pieces).abs().mean() < 0.05
    checkpoint = engine.services.models.load_checkpoint("tiny-sd15")
    assert checkpoint.vae.vae.use_tiling is False  # the shared VAE is left as it was


def test_an_area_prompt_of_strength_zero_changes_nothing_and_of_strength_one_does(engine):
    plain = render(engine, *txt2img())
    results = []
    for strength in (0.0, 1.0):
        workflow, ids = txt2img()
        other = workflow.add_node("CLIPTextEncode", {"text": "a blue square"}).id
        area = workflow.add_node("ConditioningSetArea", {"width": 64, "height": 64, "x": 0, "y": 0,
                                                         "strength": strength}).id
        combine = workflow.add_node("ConditioningCombine").id
        workflow.connect(ids["loader"], "CLIP", other, "clip")
        workflow.connect(other, "CONDITIONING", area, "conditioning")
        workflow.connect(ids["positive"], "CONDITIONING", combine, "conditioning_1")
        workflow.connect(area, "CONDITIONING", combine, "conditioning_2")
        workflow.connect(combine, "CONDITIONING", ids["sampler"], "positive")
        results.append(render(engine, workflow, ids))
    # The plain render runs both prompts as one batched UNet call, the area prompt one call per
    # entry: they may differ by float rounding (more than 1e-6 here), never by a visible amount.
    assert torch.allclose(results[0], plain, atol=1e-4)
    assert (results[1] - plain).abs().mean() > 1e-3


def test_advanced_sampler_split_in_two_equals_one_full_run(engine):
    full = render(engine, *txt2img(steps=4))
    workflow, ids = txt2img(steps=4)
    common = {"noise_seed": 42, "steps": 4, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal"}
    first = workflow.add_node("KSamplerAdvanced", {**common, "add_noise": "enable", "start_at_step": 0,
                                                   "end_at_step": 2, "return_with_leftover_noise": "enable"}).id
    second = workflow.add_node("KSamplerAdvanced", {**common, "add_noise": "disable", "start_at_step": 2,
                                                    "end_at_step": 10000,
                                                    "return_with_leftover_noise": "disable"}).id
    for node in (first, second):
        workflow.connect(ids["loader"], "MODEL", node, "model")
        workflow.connect(ids["positive"], "CONDITIONING", node, "positive")
        workflow.connect(ids["negative"], "CONDITIONING", node, "negative")
    workflow.connect(ids["latent"], "LATENT", first, "latent_image")
    workflow.connect(first, "LATENT", second, "latent_image")
    workflow.connect(second, "LATENT", ids["decode"], "samples")
    split = render(engine, workflow, ids)
    assert (split - full).abs().max() < 1e-4


def test_a_separate_vae_file_decodes_like_the_checkpoints_own(engine, model_root, model_settings):
    import shutil

    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from tests.ldm_layout import VAE, vae_to_ldm

    vae_folder = model_root / "vae"
    vae_folder.mkdir(exist_ok=True)
    source = model_root / "checkpoints" / "tiny-sd15" / "vae"
    state = {key.removeprefix(VAE): value for key, value in vae_to_ldm(AutoencoderKL.from_pretrained(source)).items()}
    save_file(state, str(vae_folder / "tiny-vae.safetensors"))
    (vae_folder / "tiny-vae").mkdir(exist_ok=True)
    shutil.copy(source / "config.json", vae_folder / "tiny-vae" / "config.json")
    workflow, ids = txt2img()
    loader = workflow.add_node("VAELoader", {"vae_name": "tiny-vae.safetensors"}).id
    decode = workflow.add_node("VAEDecode").id
    workflow.connect(ids["sampler"], "LATENT", decode, "samples")
    workflow.connect(loader, "VAE", decode, "vae")
    report = engine.run(workflow, [ids["decode"], decode])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    assert torch.equal(report.results[ids["decode"]][0], report.results[decode][0])


def test_sdxl_size_conditioning_reaches_the_sampler(engine):
    plain = render(engine, *txt2img("tiny-sdxl"))
    results = {}
    for label, size in (("same", 64), ("larger", 4096)):
        workflow, ids = txt2img("tiny-sdxl")
        encode = workflow.add_node("CLIPTextEncodeSDXL", {
            "width": size, "height": size, "crop_w": 0, "crop_h": 0, "target_width": 64, "target_height": 64,
            "text_g": "a red circle", "text_l": "a red circle"}).id
        workflow.connect(ids["loader"], "CLIP", encode, "clip")
        workflow.connect(encode, "CONDITIONING", ids["sampler"], "positive")
        results[label] = render(engine, workflow, ids)
    # Same text and the image's own size: the same as the plain prompt node.
    assert torch.allclose(results["same"], plain, atol=1e-5)
    assert (results["larger"] - plain).abs().mean() > 1e-4


def test_bislerp_matches_comfyuis():
    """Reference made by ComfyUI's own comfy.utils.bislerp (commit in the file's metadata)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from studio.runtime.images import bislerp

    reference = load_file(Path(__file__).parents[1] / "data" / "comfy_bislerp.safetensors")
    for key, expected in reference.items():
        if key == "input":
            continue
        width, height = map(int, key.removeprefix("out_").split("x"))
        assert torch.allclose(bislerp(reference["input"], width, height), expected, atol=1e-6), key


def test_latent_upscale_offers_bislerp(registry):
    from nodes.latent import LatentUpscaleBy

    latent = {"samples": torch.randn(1, 4, 8, 8)}
    (out,) = LatentUpscaleBy().run(None, latent, "bislerp", 2.0)
    assert out["samples"].shape == (1, 4, 16, 16)
    # interpolated vectors keep the length of their neighbours (bilinear would shorten them)
    lengths = out["samples"].norm(dim=1)
    assert lengths.min() >= latent["samples"].norm(dim=1).min() - 1e-5
