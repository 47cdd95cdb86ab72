"""Masks: from and to images, thresholds, inversion. MASK is B×H×W in 0..1 (1 = affected)."""

from __future__ import annotations

import torch

from studio.graph.sockets import FLOAT, IMAGE, MASK, STRING
from studio.node_api import Input, NodeBase, Output

CHANNELS = ("red", "green", "blue", "alpha")


class ImageToMask(NodeBase):
    """Takes one channel of an image as a mask (an image without alpha has alpha 1)."""

    type_name = "ImageToMask"
    category = "mask"
    title = "Convert Image to Mask"
    inputs = (Input("image", IMAGE), Input("channel", STRING, default="red", choices=CHANNELS))
    outputs = (Output("MASK", MASK),)

    def run(self, ctx, image: torch.Tensor, channel: str):
        index = CHANNELS.index(channel)
        if index >= image.shape[-1]:
            return (torch.ones(image.shape[:3]),)
        return (image[..., index].contiguous(),)


class MaskToImage(NodeBase):
    """Shows a mask as a grey image (white = 1)."""

    type_name = "MaskToImage"
    category = "mask"
    title = "Convert Mask to Image"
    inputs = (Input("mask", MASK),)
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, mask: torch.Tensor):
        mask = mask.reshape(-1, mask.shape[-2], mask.shape[-1])
        return (mask[..., None].expand(-1, -1, -1, 3).contiguous(),)


class ThresholdMask(NodeBase):
    """Makes a mask hard: 1 where it is above `value`, 0 elsewhere."""

    type_name = "ThresholdMask"
    category = "mask"
    title = "Threshold Mask"
    inputs = (Input("mask", MASK), Input("value", FLOAT, default=0.5, min=0.0, max=1.0, step=0.01))
    outputs = (Output("MASK", MASK),)

    def run(self, ctx, mask: torch.Tensor, value: float):
        return ((mask > value).float(),)


class InvertMask(NodeBase):
    """Swaps what a mask affects and what it leaves alone (1 − value)."""

    type_name = "InvertMask"
    category = "mask"
    title = "Invert Mask"
    inputs = (Input("mask", MASK),)
    outputs = (Output("MASK", MASK),)

    def run(self, ctx, mask: torch.Tensor):
        return (1.0 - mask,)
