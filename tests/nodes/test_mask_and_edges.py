from __future__ import annotations

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
