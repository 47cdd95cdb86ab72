"""Masks: from and to images and files, solid masks, thresholds, inversion, compositing,
cropping, feathering, growing. MASK is B×H×W in 0..1 (1 = affected)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from nodes.io import find_input_image, image_file_fingerprint
from studio.graph.sockets import BOOLEAN, FLOAT, IMAGE, INT, MASK, STRING
from studio.lazy import lazy_module
from studio.node_api import MAX_RESOLUTION, Input, NodeBase, Output
from studio.settings import Settings

if TYPE_CHECKING:
    from studio.node_api import NodeContext

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")
F = lazy_module("torch.nn.functional")

CHANNELS = ("red", "green", "blue", "alpha")


class ImageToMask(NodeBase):
    """Takes one channel of an image as a mask (an image without alpha has alpha 1)."""

    type_name = "ImageToMask"
    category = "mask"
    title = "Convert Image to Mask"
    inputs = (Input("image", IMAGE), Input("channel", STRING, default="red", choices=CHANNELS))
    outputs = (Output("MASK", MASK),)

    def run(self, ctx: NodeContext, image: torch.Tensor, channel: str) -> tuple:
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

    def run(self, ctx: NodeContext, mask: torch.Tensor) -> tuple:
        from studio.runtime.images import as_mask_batch

        return (as_mask_batch(mask)[..., None].expand(-1, -1, -1, 3).contiguous(),)


class ThresholdMask(NodeBase):
    """Makes a mask hard: 1 where it is above `value`, 0 elsewhere."""

    type_name = "ThresholdMask"
    category = "mask"
    title = "Threshold Mask"
    inputs = (Input("mask", MASK), Input("value", FLOAT, default=0.5, min=0.0, max=1.0, step=0.01))
    outputs = (Output("MASK", MASK),)

    def run(self, ctx: NodeContext, mask: torch.Tensor, value: float) -> tuple:
        return ((mask > value).float(),)


class InvertMask(NodeBase):
    """Swaps what a mask affects and what it leaves alone (1 − value)."""

    type_name = "InvertMask"
    category = "mask"
    title = "Invert Mask"
    inputs = (Input("mask", MASK),)
    outputs = (Output("MASK", MASK),)

    def run(self, ctx: NodeContext, mask: torch.Tensor) -> tuple:
        return (1.0 - mask,)


class SolidMask(NodeBase):
    """A mask of one value everywhere (1 = all affected, 0 = nothing)."""

    type_name = "SolidMask"
    category = "mask"
    title = "Solid Mask"
    inputs = (
        Input("value", FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
        Input("width", INT, default=512, min=1, max=MAX_RESOLUTION, step=1),
        Input("height", INT, default=512, min=1, max=MAX_RESOLUTION, step=1),
    )
    outputs = (Output("MASK", MASK),)

    def run(self, ctx: NodeContext, value: float, width: int, height: int) -> tuple:
        return (torch.full((1, height, width), value, dtype=torch.float32),)


def _bitwise(operation: str):
    return lambda a, b: getattr(torch, operation)(a.round().bool(), b.round().bool()).float()


MASK_OPERATIONS = {
    "multiply": lambda a, b: torch.mul(a, b),
    "add": lambda a, b: torch.add(a, b),
    "subtract": lambda a, b: torch.sub(a, b),
    # The logical ones first round each value to 0 or 1.
    "and": _bitwise("logical_and"),
    "or": _bitwise("logical_or"),
    "xor": _bitwise("logical_xor"),
}


class MaskComposite(NodeBase):
    """Combines the source mask into the destination where it lies, its top-left corner at
    x, y: multiply, add, subtract, or (after rounding to 0/1) and, or, xor. The result is
    kept within 0..1; the destination outside the source is left as it was."""

    type_name = "MaskComposite"
    category = "mask"
    title = "Mask Composite"
    inputs = (
        Input("destination", MASK),
        Input("source", MASK),
        Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("operation", STRING, default="multiply", choices=tuple(MASK_OPERATIONS)),
    )
    outputs = (Output("MASK", MASK),)

    def run(self, ctx: NodeContext, destination: torch.Tensor, source: torch.Tensor, x: int, y: int,
            operation: str) -> tuple:
        from studio.runtime.images import as_mask_batch

        out = as_mask_batch(destination).float().clone()
        source = as_mask_batch(source).to(out)
        if out.shape[0] != source.shape[0]:
            if out.shape[0] == 1:
                out = out.expand(source.shape[0], -1, -1).clone()
            elif source.shape[0] != 1:
                raise ValueError(f"the destination is a batch of {out.shape[0]} masks and the source of "
                                 f"{source.shape[0]}; use equal batches or a batch of one")
        height = min(source.shape[1], out.shape[1] - y)
        width = min(source.shape[2], out.shape[2] - x)
        if height > 0 and width > 0:
            region = out[:, y:y + height, x:x + width]
            out[:, y:y + height, x:x + width] = MASK_OPERATIONS[operation](region, source[:, :height, :width])
        return (out.clamp(0.0, 1.0),)


class CropMask(NodeBase):
    """Cuts a width × height rectangle out of masks, its top-left corner at x, y (trimmed
    where it would go past the edge)."""

    type_name = "CropMask"
    category = "mask"
    title = "Crop Mask"
    inputs = (
        Input("mask", MASK),
        Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("width", INT, default=512, min=1, max=MAX_RESOLUTION, step=1),
        Input("height", INT, default=512, min=1, max=MAX_RESOLUTION, step=1),
    )
    outputs = (Output("MASK", MASK),)

    def run(self, ctx: NodeContext, mask: torch.Tensor, x: int, y: int, width: int, height: int) -> tuple:
        from studio.runtime.images import as_mask_batch

        mask = as_mask_batch(mask)
        if x >= mask.shape[2] or y >= mask.shape[1]:
            raise ValueError(f"x, y = {x}, {y} lies outside the {mask.shape[2]}×{mask.shape[1]} mask: "
                             "the crop would be empty")
        return (mask[:, y:y + height, x:x + width].clone(),)


def _ramp(length: int, size: int) -> torch.Tensor:
    """1/size, 2/size … 1 over the first `size` of `length` pixels, 1 after (a size past
    the length is the length, as in ComfyUI)."""
    size = max(1, min(size, length))
    return ((torch.arange(length, dtype=torch.float32) + 1) / size).clamp(max=1.0)


class FeatherMask(NodeBase):
    """Fades masks towards their edges: over `left` pixels from the left edge (the edge
    pixel keeps 1/left of its value), and likewise from the top, right and bottom edges."""

    type_name = "FeatherMask"
    category = "mask"
    title = "Feather Mask"
    inputs = (
        Input("mask", MASK),
        Input("left", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("top", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("right", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("bottom", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
    )
    outputs = (Output("MASK", MASK),)

    def run(self, ctx: NodeContext, mask: torch.Tensor, left: int, top: int, right: int, bottom: int) -> tuple:
        from studio.runtime.images import as_mask_batch

        mask = as_mask_batch(mask).float()
        height, width = mask.shape[1], mask.shape[2]
        ones_x, ones_y = torch.ones(width), torch.ones(height)
        horizontal = ((_ramp(width, left) if left else ones_x) * (_ramp(width, right).flip(0) if right else ones_x))
        vertical = ((_ramp(height, top) if top else ones_y) * (_ramp(height, bottom).flip(0) if bottom else ones_y))
        return (mask * vertical[:, None].to(mask) * horizontal[None, :].to(mask),)


def _grow_once(mask: torch.Tensor, square: bool, shrink: bool) -> torch.Tensor:
    """One step of grey dilation (or erosion) with a 3×3 square or a plus-shaped footprint.
    The edge pixels are repeated outwards, so the image border neither grows nor eats the mask."""
    value = -mask if shrink else mask
    padded = F.pad(value[:, None], (1, 1, 1, 1), mode="replicate")
    if square:
        out = F.max_pool2d(padded, kernel_size=3, stride=1)[:, 0]
    else:
        height, width = mask.shape[1], mask.shape[2]
        out = padded[:, 0, 1:-1, 1:-1].clone()
        for dy, dx in ((0, 1), (1, 0), (1, 2), (2, 1)):
            torch.maximum(out, padded[:, 0, dy:dy + height, dx:dx + width], out=out)
    return -out if shrink else out


class GrowMask(NodeBase):
    """Grows masks by `expand` pixels (a negative value shrinks them). With tapered corners
    each step grows by a plus-shaped step, so corners come out bevelled; without, by a full
    3×3 square, so they stay square. Soft masks grow their brightest values."""

    type_name = "GrowMask"
    category = "mask"
    title = "Grow Mask"
    inputs = (
        Input("mask", MASK),
        Input("expand", INT, default=0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION, step=1),
        Input("tapered_corners", BOOLEAN, default=True),
    )
    outputs = (Output("MASK", MASK),)

    def run(self, ctx: NodeContext, mask: torch.Tensor, expand: int, tapered_corners: bool) -> tuple:
        from studio.runtime.images import as_mask_batch

        out = as_mask_batch(mask).float()
        for _ in range(abs(expand)):
            ctx.check_cancelled()
            out = _grow_once(out, square=not tapered_corners, shrink=expand < 0)
        return (out.clone() if expand == 0 else out,)


MASK_FILE_CHANNELS = ("alpha", "red", "green", "blue")


def find_mask_image(name: str, settings: Settings) -> Path | None:
    """LoadImageMask's file: found as LoadImage finds its own, but only inside the input
    folders (and the bundled samples); a name that leads elsewhere is not found."""
    path = find_input_image(name, settings)
    if path is None:
        return None
    resolved = path.resolve()
    for folder in settings.image_search_dirs:
        root = folder.expanduser().resolve()
        if resolved == root or root in resolved.parents:
            return path
    return None


class LoadImageMask(NodeBase):
    """Loads one channel of an image file as a mask: red, green or blue as they are, or the
    transparency (alpha), where transparent is 1, as in LoadImage's mask. An image without
    transparency gives an all-zero alpha mask. The file is looked up in the input folders and
    must lie inside one; an animated file gives its first frame."""

    type_name = "LoadImageMask"
    category = "mask"
    title = "Load Image (as Mask)"
    inputs = (
        Input("image", STRING, default="", tooltip="file name in the input folder"),
        Input("channel", STRING, default="alpha", choices=MASK_FILE_CHANNELS),
    )
    outputs = (Output("MASK", MASK),)

    @classmethod
    def check(cls, values: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
        name = values.get("image") or ""
        if find_mask_image(name, settings) is None:
            folders = ", ".join(str(folder) for folder in settings.image_search_dirs)
            return [("image", f"image file {name!r} not found inside the input folders ({folders})")]
        return []

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], settings: Settings) -> Any:
        return image_file_fingerprint(find_mask_image(values.get("image") or "", settings))

    def run(self, ctx: NodeContext, image: str, channel: str) -> tuple:
        from studio.runtime.images import pil_to_tensors

        path = find_mask_image(image, ctx.settings)
        if path is None:
            raise FileNotFoundError(f"image file {image!r} not found inside the input folders")
        try:
            with Image.open(path) as opened:
                rgb, transparency = pil_to_tensors(opened)
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{path.name} is not an image Seed Studio can read ({error})") from None
        if channel == "alpha":
            return (transparency,)
        return (rgb[..., MASK_FILE_CHANNELS.index(channel) - 1].contiguous(),)
