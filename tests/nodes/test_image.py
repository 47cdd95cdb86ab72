from __future__ import annotations

import pytest
import torch

from nodes.image import (
    BLEND_MODES,
    EmptyImage,
    ImageAddNoise,
    ImageBlend,
    ImageCrop,
    ImageInvert,
    ImageScale,
    ImageScaleBy,
)


def gradient(batch=1, height=8, width=12) -> torch.Tensor:
    y = torch.linspace(0, 1, height)[:, None, None]
    x = torch.linspace(0, 1, width)[None, :, None]
    rgb = torch.cat([x.expand(height, width, 1), y.expand(height, width, 1), (x * y).expand(height, width, 1)], -1)
    return rgb.expand(batch, height, width, 3).contiguous()


def test_invert_is_one_minus_value(ctx):
    image = gradient()
    (inverted,) = ImageInvert().run(ctx, image=image)
    assert torch.allclose(inverted, 1 - image)


def test_empty_image_has_the_requested_size_batch_and_colour(ctx):
    (image,) = EmptyImage().run(ctx, width=5, height=3, batch_size=2, color=0xFF8000)
    assert image.shape == (2, 3, 5, 3)
    assert torch.allclose(image[1, 2, 4], torch.tensor([1.0, 128 / 255, 0.0]))


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_scale_gives_the_requested_size_and_keeps_values_in_range(ctx, method):
    (scaled,) = ImageScale().run(ctx, image=gradient(batch=2), upscale_method=method, width=30, height=20,
                                 crop="disabled")
    assert scaled.shape == (2, 20, 30, 3)
    assert scaled.min() >= 0 and scaled.max() <= 1
    # A smooth ramp stays a ramp: the left edge is dark red, the right edge bright red.
    assert scaled[0, 10, 0, 0] < 0.2 < 0.8 < scaled[0, 10, -1, 0]


def test_scale_with_one_side_zero_keeps_the_aspect_ratio(ctx):
    (scaled,) = ImageScale().run(ctx, image=gradient(height=8, width=12), upscale_method="bilinear",
                                 width=24, height=0, crop="disabled")
    assert scaled.shape[1:3] == (16, 24)


def test_center_crop_trims_to_the_new_aspect_instead_of_stretching(ctx):
    image = torch.zeros(1, 10, 20, 3)
    image[:, :, 5:15] = 1.0  # a white square band in the middle
    (scaled,) = ImageScale().run(ctx, image=image, upscale_method="nearest-exact", width=10, height=10,
                                 crop="center")
    assert scaled.shape == (1, 10, 10, 3)
    assert scaled.min() == 1.0  # only the white middle is left


def test_scale_by_multiplies_both_sides(ctx):
    (scaled,) = ImageScaleBy().run(ctx, image=gradient(height=8, width=12), upscale_method="area", scale_by=0.5)
    assert scaled.shape[1:3] == (4, 6)


def test_lanczos_keeps_float_precision_on_smooth_gradients(ctx):
    ramp = torch.linspace(0.3, 0.3 + 1 / 1024, 64).reshape(1, 1, 64, 1).expand(1, 4, 64, 3).contiguous()
    (scaled,) = ImageScale().run(ctx, image=ramp, upscale_method="lanczos", width=128, height=4, crop="disabled")
    # An 8-bit round trip would collapse this 1/1024 ramp onto one or two levels.
    assert len(torch.unique(scaled[0, 2, :, 0])) > 16


@pytest.mark.parametrize("mode", sorted(BLEND_MODES))
def test_blend_factor_zero_is_image1_and_one_is_the_full_blend(ctx, mode):
    a, b = gradient(), gradient().flip(2)
    (none,) = ImageBlend().run(ctx, image1=a, image2=b, blend_factor=0.0, blend_mode=mode)
    assert torch.allclose(none, a)
    (full,) = ImageBlend().run(ctx, image1=a, image2=b, blend_factor=1.0, blend_mode=mode)
    assert torch.allclose(full, BLEND_MODES[mode](a, b).clamp(0, 1))


def test_blend_modes_match_their_textbook_values(ctx):
    base, blend = torch.tensor([0.25]), torch.tensor([0.5])
    assert BLEND_MODES["multiply"](base, blend).item() == pytest.approx(0.125)
    assert BLEND_MODES["screen"](base, blend).item() == pytest.approx(0.625)
    assert BLEND_MODES["overlay"](base, blend).item() == pytest.approx(0.25)
    assert BLEND_MODES["difference"](base, blend).item() == pytest.approx(0.25)
    assert BLEND_MODES["soft_light"](base, blend).item() == pytest.approx(0.25)  # 0.5 is neutral


def test_blend_resizes_image2_and_broadcasts_a_batch_of_one(ctx):
    (out,) = ImageBlend().run(ctx, image1=gradient(batch=3), image2=torch.ones(1, 4, 4, 3), blend_factor=0.5,
                              blend_mode="normal")
    assert out.shape == (3, 8, 12, 3)
    with pytest.raises(ValueError, match="batch of 2 and image2 of 3"):
        ImageBlend().run(ctx, image1=gradient(batch=2), image2=gradient(batch=3), blend_factor=0.5,
                         blend_mode="normal")


def test_crop_cuts_the_rectangle_and_trims_at_the_edge(ctx):
    image = gradient(height=8, width=12)
    (cropped,) = ImageCrop().run(ctx, image=image, width=4, height=3, x=2, y=1)
    assert torch.equal(cropped, image[:, 1:4, 2:6])
    (edge,) = ImageCrop().run(ctx, image=image, width=100, height=100, x=50, y=50)
    assert edge.shape == (1, 1, 1, 3)


def test_add_noise_is_reproducible_per_seed_and_differs_between_seeds(ctx):
    image = torch.full((1, 16, 16, 3), 0.5)
    (first,) = ImageAddNoise().run(ctx, image=image, seed=7, strength=0.1)
    (again,) = ImageAddNoise().run(ctx, image=image, seed=7, strength=0.1)
    (other,) = ImageAddNoise().run(ctx, image=image, seed=8, strength=0.1)
    (none,) = ImageAddNoise().run(ctx, image=image, seed=7, strength=0.0)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(none, image)
    assert 0.05 < (first - image).std() < 0.15
