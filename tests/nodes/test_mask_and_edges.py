from __future__ import annotations

import pytest
import torch

from nodes.image import Canny
from nodes.mask import ImageToMask, InvertMask, MaskToImage, ThresholdMask


def test_canny_finds_the_edges_of_a_square_and_nothing_in_flat_areas(ctx):
    image = torch.zeros(1, 64, 64, 3)
    image[:, 16:48, 16:48] = 1.0
    (edges,) = Canny().run(ctx, image=image, low_threshold=0.2, high_threshold=0.5)
    assert edges.shape == (1, 64, 64, 3)
    assert edges[0, 16:48, 15:18].max() == 1.0  # the left side of the square
    assert edges[0, 30:34, 30:34].max() == 0.0 and edges[0, :8, :8].max() == 0.0
    assert set(torch.unique(edges).tolist()) <= {0.0, 1.0}


def test_canny_refuses_crossed_thresholds(settings):
    assert Canny.check({"low_threshold": 0.9, "high_threshold": 0.2}, settings)[0][0] == "low_threshold"


def test_masks_from_channels_thresholds_and_back(ctx):
    image = torch.rand(2, 8, 8, 3)
    (green,) = ImageToMask().run(ctx, image=image, channel="green")
    assert torch.equal(green, image[..., 1])
    (alpha,) = ImageToMask().run(ctx, image=image, channel="alpha")
    assert torch.equal(alpha, torch.ones(2, 8, 8))
    (hard,) = ThresholdMask().run(ctx, mask=green, value=0.5)
    assert torch.equal(hard, (image[..., 1] > 0.5).float())
    (inverted,) = InvertMask().run(ctx, mask=hard)
    assert torch.equal(inverted + hard, torch.ones(2, 8, 8))
    (grey,) = MaskToImage().run(ctx, mask=hard)
    assert grey.shape == (2, 8, 8, 3) and torch.equal(grey[..., 2], hard)


@pytest.mark.parametrize("shape", [(8, 6), (1, 8, 6), (3, 8, 6), (3, 1, 8, 6)])
def test_every_node_reading_a_mask_takes_one_mask_a_batch_or_a_noise_mask_stack(ctx, shape):
    from nodes.conditioning import ConditioningSetMask
    from nodes.latent import SetLatentNoiseMask
    from studio.runtime.images import as_mask_batch

    mask = torch.rand(shape)
    batch = mask.reshape(-1, 8, 6)
    assert torch.equal(as_mask_batch(mask), batch)
    (grey,) = MaskToImage().run(ctx, mask=mask)
    assert torch.equal(grey[..., 0], batch)
    ((_, extras),) = ConditioningSetMask().run(ctx, conditioning=[(torch.zeros(1, 77, 8), {})], mask=mask,
                                               strength=1.0, set_cond_area="default")[0]
    assert torch.equal(extras["mask"], batch)
    (latent,) = SetLatentNoiseMask().run(ctx, samples={"samples": torch.zeros(1, 4, 1, 1)}, mask=mask)
    assert torch.equal(latent["noise_mask"], batch[:, None])


# The nodes below follow ComfyUI's comfy_extras/nodes_mask.py and nodes.py's LoadImageMask;
# tests/nodes/test_comfy_nodes.py compares them with ComfyUI's own results.

def single_pixel(size: int = 5) -> torch.Tensor:
    mask = torch.zeros(1, size, size)
    mask[0, size // 2, size // 2] = 1.0
    return mask


def test_growing_one_pixel_by_one_gives_a_cross_or_a_square(ctx):
    from nodes.mask import GrowMask

    (cross,) = GrowMask().run(ctx, mask=single_pixel(), expand=1, tapered_corners=True)
    (square,) = GrowMask().run(ctx, mask=single_pixel(), expand=1, tapered_corners=False)
    assert torch.equal(cross[0, 1:4, 1:4], torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]]))
    assert torch.equal(square[0, 1:4, 1:4], torch.ones(3, 3))
    assert cross.sum() == 5 and square.sum() == 9
    (shrunk,) = GrowMask().run(ctx, mask=square, expand=-1, tapered_corners=False)
    assert torch.equal(shrunk, single_pixel())


def test_growing_matches_scipys_grey_dilation_as_comfyui_uses_it(ctx):
    import scipy.ndimage

    from nodes.mask import GrowMask

    mask = torch.rand(2, 9, 11, generator=torch.Generator().manual_seed(3))
    for expand, tapered in ((3, True), (2, False), (-2, True)):
        corner = 0 if tapered else 1
        footprint = [[corner, 1, corner], [1, 1, 1], [corner, 1, corner]]
        expected = mask.numpy()
        for item in range(2):
            plane = expected[item]
            for _ in range(abs(expand)):
                morph = scipy.ndimage.grey_dilation if expand > 0 else scipy.ndimage.grey_erosion
                plane = morph(plane, footprint=footprint)
            expected = expected.copy()
            expected[item] = plane
        (out,) = GrowMask().run(ctx, mask=mask, expand=expand, tapered_corners=tapered)
        assert torch.equal(out, torch.from_numpy(expected)), (expand, tapered)


def test_solid_crop_and_composite_masks(ctx):
    from nodes.mask import CropMask, MaskComposite, SolidMask

    (solid,) = SolidMask().run(ctx, value=0.25, width=6, height=4)
    assert solid.shape == (1, 4, 6) and torch.all(solid == 0.25)
    (cropped,) = CropMask().run(ctx, mask=torch.arange(24.0).reshape(1, 4, 6), x=4, y=1, width=5, height=2)
    assert torch.equal(cropped, torch.tensor([[[10.0, 11.0], [16.0, 17.0]]]))
    with pytest.raises(ValueError, match="outside the 6×4 mask"):
        CropMask().run(ctx, mask=solid, x=6, y=0, width=2, height=2)
    (added,) = MaskComposite().run(ctx, destination=solid, source=torch.ones(1, 2, 2), x=5, y=3, operation="add")
    assert added[0, 3, 5] == 1.0 and added.sum() == 0.25 * 23 + 1.0  # only the one overlapping pixel, clamped
    (xor,) = MaskComposite().run(ctx, destination=torch.tensor([[[0.6, 0.2]]]), source=torch.tensor([[[0.7, 0.9]]]),
                                 x=0, y=0, operation="xor")
    assert torch.equal(xor, torch.tensor([[[0.0, 1.0]]]))  # values are rounded to 0/1 first


def test_feathering_ramps_each_edge_from_one_step_to_full(ctx):
    from nodes.mask import FeatherMask

    (out,) = FeatherMask().run(ctx, mask=torch.ones(1, 4, 8), left=2, top=0, right=4, bottom=0)
    assert torch.allclose(out[0, 0], torch.tensor([0.5, 1, 1, 1, 1, 0.75, 0.5, 0.25]))


def write_rgba(path, rgba) -> None:
    from PIL import Image

    Image.fromarray(rgba, mode="RGBA").save(path)


@pytest.mark.parametrize(("channel", "expected"), [("red", 200 / 255), ("green", 100 / 255), ("blue", 0.0),
                                                   ("alpha", 1 - 64 / 255)])
def test_load_image_mask_reads_a_channel_and_alpha_is_transparency(ctx, settings, channel, expected):
    import numpy as np

    from nodes.mask import LoadImageMask

    rgba = np.zeros((3, 5, 4), dtype=np.uint8)
    rgba[...] = (200, 100, 0, 64)
    write_rgba(settings.input_dirs[0] / "layer.png", rgba)
    assert LoadImageMask.check({"image": "layer.png", "channel": channel}, settings) == []
    (mask,) = LoadImageMask().run(ctx, image="layer.png", channel=channel)
    assert mask.shape == (1, 3, 5)
    assert torch.allclose(mask, torch.full((1, 3, 5), expected))


def test_load_image_mask_stays_inside_the_input_folders(ctx, settings, tmp_path):
    import numpy as np

    from nodes.mask import LoadImageMask

    outside = tmp_path / "secret.png"
    write_rgba(outside, np.zeros((2, 2, 4), dtype=np.uint8))
    for name in (str(outside), "../secret.png"):
        [(input_name, message)] = LoadImageMask.check({"image": name, "channel": "red"}, settings)
        assert input_name == "image" and "not found inside the input folders" in message
        with pytest.raises(FileNotFoundError):
            LoadImageMask().run(ctx, image=name, channel="red")
