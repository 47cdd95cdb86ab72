"""The image, mask, latent and conditioning nodes against ComfyUI's own results.

The expected tensors in data/comfy_nodes.safetensors were made by ComfyUI's nodes themselves
(commit 618b803; comfy_extras/nodes_post_processing.py, nodes_mask.py, nodes_images.py,
nodes_latent.py and nodes.py) on the inputs stored beside them: comfy_nodes_reference.py
says how. Where Seed Studio deliberately differs from ComfyUI, the test says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nodes.conditioning import ConditioningAverage, ConditioningConcat
from nodes.image import (
    ImageBatch,
    ImageBlur,
    ImageCompositeMasked,
    ImageFlip,
    ImageQuantize,
    ImageRotate,
    ImageScaleToTotalPixels,
    ImageSharpen,
)
from nodes.latent import LatentAdd, LatentBatch, LatentBlend, LatentCrop, LatentFlip, LatentRotate, LatentSubtract
from nodes.mask import FeatherMask, GrowMask, MaskComposite


@pytest.fixture(scope="module")
def comfy() -> dict[str, torch.Tensor]:
    return load_file(str(Path(__file__).parent / "data" / "comfy_nodes.safetensors"))


@pytest.mark.parametrize("dither", ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"])
def test_quantize_gives_comfyuis_pixels_for_every_dither(ctx, comfy, dither):
    # Same steps as ComfyUI's Quantize (Pillow's median-cut palette; its own Bayer offsets,
    # here from the textbook recurrence), so the same bytes.
    (out,) = ImageQuantize().run(ctx, image=comfy["quantize.image"], colors=4, dither=dither)
    assert torch.equal(out, comfy[f"quantize.{dither}.out"])


def test_blur_and_sharpen_match_comfyui(ctx, comfy):
    image = comfy["filter.image"]
    (blurred,) = ImageBlur().run(ctx, image=image, blur_radius=2, sigma=0.7)
    (sharpened,) = ImageSharpen().run(ctx, image=image, sharpen_radius=2, sigma=0.5, alpha=0.6)
    assert torch.allclose(blurred, comfy["blur.out"], atol=1e-6)
    assert torch.allclose(sharpened, comfy["sharpen.out"], atol=1e-5)


def test_feather_from_the_left_and_top_matches_comfyui(ctx, comfy):
    (out,) = FeatherMask().run(ctx, mask=comfy["feather.mask"], left=3, top=2, right=0, bottom=0)
    assert torch.allclose(out, comfy["feather.out"])


def test_feather_from_the_right_and_bottom_mirrors_left_and_top(ctx, comfy):
    # Deliberately not ComfyUI's: its right/bottom loops start at index -0, i.e. the left
    # column / top row, so they dim the opposite edge by 1/right and leave the outermost
    # column at 2/right. Here the right edge fades exactly as the left one does.
    (out,) = FeatherMask().run(ctx, mask=comfy["feather.mask"], left=0, top=0, right=3, bottom=2)
    assert torch.allclose(out, comfy["feather.out"].flip(1, 2))


@pytest.mark.parametrize("expand", [2, -1])
@pytest.mark.parametrize("tapered", [True, False])
def test_grow_and_shrink_match_comfyuis_grey_morphology(ctx, comfy, expand, tapered):
    (out,) = GrowMask().run(ctx, mask=comfy["grow.mask"], expand=expand, tapered_corners=tapered)
    assert torch.equal(out, comfy[f"grow.{expand}.{tapered}.out"])


@pytest.mark.parametrize(("case", "x", "y", "resize", "masked"), [
    ("plain", 4, 2, False, False), ("masked", 1, 3, False, True), ("resized", 0, 0, True, True)])
def test_composite_masked_places_the_source_as_comfyui_does(ctx, comfy, case, x, y, resize, masked):
    mask = comfy["composite.mask"] if masked else None
    (out,) = ImageCompositeMasked().run(ctx, destination=comfy["composite.destination"],
                                        source=comfy["composite.source"], x=x, y=y, resize_source=resize, mask=mask)
    assert torch.allclose(out, comfy[f"composite.{case}.out"], atol=1e-6)


@pytest.mark.parametrize("operation", ["multiply", "add", "subtract", "and", "or", "xor"])
def test_mask_composite_operations_match_comfyui(ctx, comfy, operation):
    (out,) = MaskComposite().run(ctx, destination=comfy["mask_composite.destination"],
                                 source=comfy["mask_composite.source"], x=4, y=3, operation=operation)
    assert torch.allclose(out, comfy[f"mask_composite.{operation}.out"])


@pytest.mark.parametrize("second", ["batch.image2", "batch.wide.image2"])
def test_image_batch_fits_the_second_batch_as_comfyui_does(ctx, comfy, second):
    (out,) = ImageBatch().run(ctx, image1=comfy["batch.image1"], image2=comfy[second])
    expected = comfy["batch.out"] if second == "batch.image2" else comfy["batch.wide.out"]
    assert torch.allclose(out, expected, atol=1e-6)


def test_rotate_and_flip_match_comfyui(ctx, comfy):
    (turned,) = ImageRotate().run(ctx, image=comfy["batch.image1"], rotation="90 degrees")
    (mirrored,) = ImageFlip().run(ctx, image=comfy["batch.image1"], flip_method="y-axis: horizontally")
    assert torch.equal(turned, comfy["rotate.out"]) and torch.equal(mirrored, comfy["flip.out"])


@pytest.mark.parametrize(("megapixels", "steps"), [(0.01, 1), (0.001, 1), (0.5, 8), (0.05, 64)])
def test_scale_to_total_pixels_picks_comfyuis_size(ctx, comfy, megapixels, steps):
    # 64×32 at 0.01 MP: √(0.01·1024² / 2048) = 2.263 → 144.8 × 72.4 → 145 × 72.
    (out,) = ImageScaleToTotalPixels().run(ctx, image=torch.zeros(1, 32, 64, 3), upscale_method="nearest-exact",
                                           megapixels=megapixels, resolution_steps=steps)
    assert list(out.shape[1:3]) == comfy[f"total_pixels.{megapixels}.{steps}.size"].tolist()


def test_latent_blend_add_subtract_and_batch_match_comfyui(ctx, comfy):
    first, second, pair = ({"samples": comfy[key]} for key in ("latent.first", "latent.second", "latent.batch2"))
    (blended,) = LatentBlend().run(ctx, samples1=first, samples2=second, blend_factor=0.3)
    (added,) = LatentAdd().run(ctx, samples1=pair, samples2=first)
    (subtracted,) = LatentSubtract().run(ctx, samples1=first, samples2=second)
    (batched,) = LatentBatch().run(ctx, samples1=first, samples2=pair)
    assert torch.allclose(blended["samples"], comfy["latent_blend.out"], atol=1e-6)
    assert torch.allclose(added["samples"], comfy["latent_add.out"], atol=1e-6)
    assert torch.allclose(subtracted["samples"], comfy["latent_subtract.out"], atol=1e-6)
    assert torch.allclose(batched["samples"], comfy["latent_batch.out"], atol=1e-6)
    assert batched["batch_index"] == comfy["latent_batch.batch_index"].tolist() == [0, 0, 1]


def test_latent_rotate_flip_and_crop_match_comfyui(ctx, comfy):
    first = {"samples": comfy["latent.first"]}
    (turned,) = LatentRotate().run(ctx, samples=first, rotation="90 degrees")
    (mirrored,) = LatentFlip().run(ctx, samples=first, flip_method="x-axis: vertically")
    (cropped,) = LatentCrop().run(ctx, samples={"samples": comfy["latent_crop.input"]}, width=64, height=72,
                                  x=40, y=24)
    assert torch.equal(turned["samples"], comfy["latent_rotate.out"])
    assert torch.equal(mirrored["samples"], comfy["latent_flip.out"])
    assert torch.equal(cropped["samples"], comfy["latent_crop.out"])


def test_conditioning_average_and_concat_match_comfyui(ctx, comfy):
    to = [(comfy["cond.to"], {"pooled_output": comfy["cond.to_pooled"]})]
    from_ = [(comfy["cond.from"], {"pooled_output": comfy["cond.from_pooled"]})]
    # to (5 tokens) with from (3 tokens) padded with zeros; then from with to cut to 3 tokens.
    ([(averaged, extras)],) = ConditioningAverage().run(ctx, conditioning_to=to, conditioning_from=from_,
                                                        conditioning_to_strength=0.25)
    ([(cut, _)],) = ConditioningAverage().run(ctx, conditioning_to=from_, conditioning_from=to,
                                              conditioning_to_strength=0.25)
    ([(joined, _)],) = ConditioningConcat().run(ctx, conditioning_to=to, conditioning_from=from_)
    assert torch.allclose(averaged, comfy["cond_average.out"], atol=1e-6)
    assert torch.allclose(extras["pooled_output"], comfy["cond_average.pooled"], atol=1e-6)
    assert torch.allclose(cut, comfy["cond_average.cut.out"], atol=1e-6)
    assert torch.equal(joined, comfy["cond_concat.out"])
