"""Latent rotate, flip, crop, blend, arithmetic and batches, as ComfyUI's nodes.py and
comfy_extras/nodes_latent.py define them (tests/nodes/test_comfy_nodes.py compares them with
ComfyUI's own results)."""

from __future__ import annotations

import pytest
import torch

from nodes.latent import (
    LatentAdd,
    LatentBatch,
    LatentBlend,
    LatentCrop,
    LatentFlip,
    LatentMultiply,
    LatentRotate,
    LatentSubtract,
)


def marked(height: int = 2, width: int = 3) -> dict:
    samples = torch.zeros(1, 4, height, width)
    samples[0, :, 0, 0] = 1.0  # top-left
    mask = torch.zeros(1, 1, height * 8, width * 8)
    mask[..., :8, :8] = 1.0  # at pixel resolution, as SetLatentNoiseMask stores it
    return {"samples": samples, "noise_mask": mask}


def test_rotating_by_90_degrees_turns_clockwise_with_the_noise_mask(ctx):
    latent = marked()
    (turned,) = LatentRotate().run(ctx, samples=latent, rotation="90 degrees")
    assert turned["samples"].shape == (1, 4, 3, 2) and turned["samples"][0, 0, 0, 1] == 1.0  # now top-right
    assert turned["noise_mask"].shape == (1, 1, 24, 16) and turned["noise_mask"][0, 0, 0, 15] == 1.0
    (back,) = LatentRotate().run(ctx, samples=turned, rotation="270 degrees")
    assert torch.equal(back["samples"], latent["samples"]) and torch.equal(back["noise_mask"], latent["noise_mask"])
    (unchanged,) = LatentRotate().run(ctx, samples=latent, rotation="none")
    assert torch.equal(unchanged["samples"], latent["samples"])


def test_flipping_mirrors_the_latent_and_its_noise_mask(ctx):
    (upside_down,) = LatentFlip().run(ctx, samples=marked(), flip_method="x-axis: vertically")
    (mirrored,) = LatentFlip().run(ctx, samples=marked(), flip_method="y-axis: horizontally")
    assert upside_down["samples"][0, 0, 1, 0] == 1.0 and upside_down["noise_mask"][0, 0, -1, 0] == 1.0
    assert mirrored["samples"][0, 0, 0, 2] == 1.0 and mirrored["noise_mask"][0, 0, 0, -1] == 1.0


def test_crop_works_in_pixels_keeps_eight_latent_pixels_and_cuts_the_mask_too(ctx):
    samples = torch.arange(16 * 12, dtype=torch.float32).reshape(1, 1, 16, 12)
    latent = {"samples": samples, "noise_mask": torch.arange(16 * 12.0).reshape(1, 1, 16, 12)}
    (cropped,) = LatentCrop().run(ctx, samples=latent, width=64, height=80, x=16, y=8)
    assert torch.equal(cropped["samples"], samples[..., 1:11, 2:10])
    assert torch.equal(cropped["noise_mask"], latent["noise_mask"][..., 1:11, 2:10])
    # A corner too far right or down moves in so that 8 latent pixels remain (ComfyUI's rule).
    (corner,) = LatentCrop().run(ctx, samples=latent, width=512, height=512, x=4000, y=4000)
    assert torch.equal(corner["samples"], samples[..., 8:, 4:])


def test_blend_weights_samples1_by_the_factor(ctx):
    ones, zeros = {"samples": torch.ones(1, 4, 2, 2)}, {"samples": torch.zeros(1, 4, 2, 2)}
    (out,) = LatentBlend().run(ctx, samples1=ones, samples2=zeros, blend_factor=0.8)
    assert torch.allclose(out["samples"], torch.full((1, 4, 2, 2), 0.8))
    with pytest.raises(ValueError, match="different model families"):
        LatentBlend().run(ctx, samples1=ones, samples2={"samples": torch.zeros(1, 16, 2, 2)}, blend_factor=0.5)


def test_arithmetic_repeats_and_resizes_the_second_latent(ctx):
    first = {"samples": torch.full((2, 4, 2, 2), 3.0), "noise_mask": torch.ones(1, 1, 16, 16)}
    second = {"samples": torch.full((1, 4, 4, 4), 1.0)}
    (added,) = LatentAdd().run(ctx, samples1=first, samples2=second)
    (subtracted,) = LatentSubtract().run(ctx, samples1=first, samples2=second)
    (scaled,) = LatentMultiply().run(ctx, samples=first, multiplier=-0.5)
    assert torch.equal(added["samples"], torch.full((2, 4, 2, 2), 4.0))
    assert torch.equal(subtracted["samples"], torch.full((2, 4, 2, 2), 2.0))
    assert torch.equal(scaled["samples"], torch.full((2, 4, 2, 2), -1.5))
    assert added["noise_mask"] is first["noise_mask"]  # samples1's other entries are kept, as in ComfyUI
    assert torch.equal(first["samples"], torch.full((2, 4, 2, 2), 3.0))  # inputs unchanged


def test_batching_keeps_each_latents_seed_position(ctx):
    first = {"samples": torch.zeros(2, 4, 2, 2), "batch_index": [3, 4]}
    second = {"samples": torch.ones(1, 4, 2, 2)}
    (joined,) = LatentBatch().run(ctx, samples1=first, samples2=second)
    assert joined["samples"].shape == (3, 4, 2, 2) and joined["batch_index"] == [3, 4, 0]
