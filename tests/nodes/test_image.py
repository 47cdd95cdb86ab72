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


# The nodes below follow ComfyUI (comfy_extras/nodes_images.py, nodes_mask.py,
# nodes_post_processing.py and nodes.py's ImageBatch); tests/nodes/test_comfy_nodes.py
# compares them with ComfyUI's own results.

def test_get_image_size_gives_width_height_and_batch(ctx):
    from nodes.image import GetImageSize

    assert GetImageSize().run(ctx, image=gradient(batch=3, height=8, width=12)) == (12, 8, 3)


def test_scale_to_total_pixels_keeps_the_aspect_ratio_and_rounds_as_comfyui(ctx):
    from nodes.image import ImageScaleToTotalPixels

    # ComfyUI: scale = √(0.001·1024² / (64·32)) = 0.7155 → round(45.79) × round(22.90) = 46 × 23.
    (small,) = ImageScaleToTotalPixels().run(ctx, image=gradient(height=32, width=64), upscale_method="bilinear",
                                             megapixels=0.001, resolution_steps=1)
    assert small.shape == (1, 23, 46, 3)
    (stepped,) = ImageScaleToTotalPixels().run(ctx, image=gradient(height=32, width=64), upscale_method="area",
                                               megapixels=0.01, resolution_steps=16)
    assert stepped.shape == (1, 80, 144, 3)  # 144.8 / 16 → 9 × 16, 72.4 / 16 → 5 × 16


def test_composite_masked_puts_the_source_at_x_y_through_the_mask(ctx):
    from nodes.image import ImageCompositeMasked

    destination, source = torch.zeros(1, 6, 8, 3), torch.ones(1, 2, 3, 3)
    mask = torch.tensor([[[1.0, 0.0, 1.0], [0.5, 1.0, 0.0]]])
    (out,) = ImageCompositeMasked().run(ctx, destination=destination, source=source, x=6, y=3,
                                        resize_source=False, mask=mask)
    # Only the two columns that fit are pasted, each pixel weighted by the mask.
    assert torch.equal(out[0, 3:5, 6:8, 0], torch.tensor([[1.0, 0.0], [0.5, 1.0]]))
    assert out[0, :3].max() == 0 and out[0, 5:].max() == 0 and out[0, :, :6].max() == 0
    assert destination.max() == 0  # the input is not changed


def test_image_batches_join_repeat_and_split(ctx):
    from nodes.image import ImageBatch, ImageFromBatch, RepeatImageBatch

    first, second = torch.zeros(1, 4, 4, 3), torch.ones(2, 8, 8, 3)
    (joined,) = ImageBatch().run(ctx, image1=first, image2=second)
    assert joined.shape == (3, 4, 4, 3) and joined[1:].min() == 1.0
    (repeated,) = RepeatImageBatch().run(ctx, image=joined, amount=2)
    assert repeated.shape[0] == 6 and torch.equal(repeated[3:], joined)
    (taken,) = ImageFromBatch().run(ctx, image=repeated, batch_index=2, length=3)
    assert torch.equal(taken, repeated[2:5])
    (clamped,) = ImageFromBatch().run(ctx, image=repeated, batch_index=99, length=4)
    assert torch.equal(clamped, repeated[5:])  # ComfyUI: the index is cut to the last image


def test_rotation_is_clockwise_and_flips_mirror(ctx):
    from nodes.image import ImageFlip, ImageRotate

    image = torch.zeros(1, 2, 3, 3)
    image[0, 0, 0] = 1.0  # top-left
    (turned,) = ImageRotate().run(ctx, image=image, rotation="90 degrees")
    assert turned.shape == (1, 3, 2, 3) and turned[0, 0, 1, 0] == 1.0  # now top-right
    (upside_down,) = ImageFlip().run(ctx, image=image, flip_method="x-axis: vertically")
    assert upside_down[0, 1, 0, 0] == 1.0
    (mirrored,) = ImageFlip().run(ctx, image=image, flip_method="y-axis: horizontally")
    assert mirrored[0, 0, 2, 0] == 1.0


def test_blur_keeps_flat_areas_and_sharpen_pushes_edges_apart(ctx):
    from nodes.image import ImageBlur, ImageSharpen

    image = torch.full((1, 9, 9, 3), 0.3)
    image[:, :, 5:] = 0.7
    (blurred,) = ImageBlur().run(ctx, image=image, blur_radius=2, sigma=1.0)
    (sharpened,) = ImageSharpen().run(ctx, image=image, sharpen_radius=2, sigma=1.0, alpha=1.0)
    assert torch.allclose(blurred[:, :, :2], image[:, :, :2]) and 0.3 < blurred[0, 4, 4, 0] < 0.7
    assert sharpened[0, 4, 4, 0] < 0.3 and sharpened[0, 4, 5, 0] > 0.7
    with pytest.raises(ValueError, match="blur_radius 9 is too large"):
        ImageBlur().run(ctx, image=image, blur_radius=9, sigma=1.0)


@pytest.mark.parametrize("dither", ["none", "floyd-steinberg", "bayer-4"])
def test_quantize_leaves_at_most_the_asked_number_of_colours(ctx, dither):
    from nodes.image import ImageQuantize

    image = torch.cat([gradient(height=16, width=16), torch.full((1, 16, 16, 1), 0.5)], dim=-1)
    (out,) = ImageQuantize().run(ctx, image=image, colors=3, dither=dither)
    assert len(torch.unique(out[0, ..., :3].reshape(-1, 3), dim=0)) <= 3
    assert torch.equal(out[..., 3], image[..., 3])  # alpha passes through


def test_bayer_matrix_is_the_textbook_one():
    from studio.runtime.images import bayer_matrix

    assert torch.equal((bayer_matrix(2) + 0.5) * 4 - 0.5, torch.tensor([[0.0, 2.0], [3.0, 1.0]], dtype=torch.float64))
    thresholds = ((bayer_matrix(8) + 0.5) * 64 - 0.5).round().long()
    assert sorted(thresholds.flatten().tolist()) == list(range(64))
