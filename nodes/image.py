"""Image operations without a model: scale, crop, invert, blend, noise, blank images."""

from __future__ import annotations

import torch

from studio.graph.sockets import FLOAT, IMAGE, INT, MASK, STRING
from studio.node_api import MAX_RESOLUTION, SEED_MAX, Input, NodeBase, Output
from studio.runtime.images import RESIZE_METHODS, center_crop_to_aspect, complete_size, resize_image


class ImageScale(NodeBase):
    """Resizes images to a width and height. A size of 0 keeps the aspect ratio from the
    other one; "center" crop trims the image to the new aspect ratio first instead of
    stretching it."""

    type_name = "ImageScale"
    category = "image/transform"
    title = "Upscale Image"
    inputs = (
        Input("image", IMAGE),
        Input("upscale_method", STRING, default="nearest-exact", choices=RESIZE_METHODS),
        Input("width", INT, default=512, min=0, max=MAX_RESOLUTION, step=1),
        Input("height", INT, default=512, min=0, max=MAX_RESOLUTION, step=1),
        Input("crop", STRING, default="disabled", choices=("disabled", "center")),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, image: torch.Tensor, upscale_method: str, width: int, height: int,
            crop: str) -> tuple[torch.Tensor]:
        if width == 0 and height == 0:
            return (image,)
        width, height = complete_size(width, height, image.shape[2], image.shape[1])
        if crop == "center":
            image = center_crop_to_aspect(image, width, height)
        return (resize_image(image, width, height, upscale_method),)


class ImageScaleBy(NodeBase):
    """Resizes images by a factor (0.5 halves each side, 2 doubles it)."""

    type_name = "ImageScaleBy"
    category = "image/transform"
    title = "Upscale Image By"
    inputs = (
        Input("image", IMAGE),
        Input("upscale_method", STRING, default="nearest-exact", choices=RESIZE_METHODS),
        Input("scale_by", FLOAT, default=1.0, min=0.01, max=8.0, step=0.01),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, image: torch.Tensor, upscale_method: str, scale_by: float) -> tuple[torch.Tensor]:
        width = max(1, round(image.shape[2] * scale_by))
        height = max(1, round(image.shape[1] * scale_by))
        if width > MAX_RESOLUTION or height > MAX_RESOLUTION:
            raise ValueError(f"scaling by {scale_by} gives {width}×{height}, larger than "
                             f"{MAX_RESOLUTION} pixels a side")
        return (resize_image(image, width, height, upscale_method),)


class ImageInvert(NodeBase):
    """Inverts every colour channel (1 − value): a photographic negative."""

    type_name = "ImageInvert"
    category = "image"
    title = "Invert Image"
    inputs = (Input("image", IMAGE),)
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - image,)


def _soft_light(base: torch.Tensor, blend: torch.Tensor) -> torch.Tensor:
    # The W3C compositing formula (as in image editors), smooth in both arguments.
    lifted = torch.where(base <= 0.25, ((16 * base - 12) * base + 4) * base, torch.sqrt(base))
    return torch.where(blend <= 0.5,
                       base - (1 - 2 * blend) * base * (1 - base),
                       base + (2 * blend - 1) * (lifted - base))


BLEND_MODES = {
    "normal": lambda base, blend: blend,
    "multiply": lambda base, blend: base * blend,
    "screen": lambda base, blend: 1 - (1 - base) * (1 - blend),
    "overlay": lambda base, blend: torch.where(base <= 0.5, 2 * base * blend, 1 - 2 * (1 - base) * (1 - blend)),
    "soft_light": _soft_light,
    "difference": lambda base, blend: (base - blend).abs(),
}


class ImageBlend(NodeBase):
    """Blends image2 over image1 with a blend mode, mixed in by blend_factor (0 = image1
    only, 1 = the full blend). image2 is resized and centre-cropped to image1's size; a
    batch of one is used with every item of the other batch."""

    type_name = "ImageBlend"
    category = "image/postprocessing"
    title = "Image Blend"
    inputs = (
        Input("image1", IMAGE),
        Input("image2", IMAGE),
        Input("blend_factor", FLOAT, default=0.5, min=0.0, max=1.0, step=0.01),
        Input("blend_mode", STRING, default="normal", choices=tuple(BLEND_MODES)),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, image1: torch.Tensor, image2: torch.Tensor, blend_factor: float,
            blend_mode: str) -> tuple[torch.Tensor]:
        height, width = image1.shape[1], image1.shape[2]
        if image2.shape[1:3] != image1.shape[1:3]:
            image2 = resize_image(center_crop_to_aspect(image2, width, height), width, height, "bicubic")
        if image1.shape[-1] != image2.shape[-1]:
            raise ValueError(f"image1 has {image1.shape[-1]} channels and image2 {image2.shape[-1]}; "
                             "they must match")
        if image1.shape[0] != image2.shape[0] and 1 not in (image1.shape[0], image2.shape[0]):
            raise ValueError(f"image1 is a batch of {image1.shape[0]} and image2 of {image2.shape[0]}; "
                             "use equal batches or a batch of one")
        blended = BLEND_MODES[blend_mode](image1, image2.to(image1))
        return ((image1 * (1 - blend_factor) + blended * blend_factor).clamp(0.0, 1.0),)


class ImageCrop(NodeBase):
    """Cuts a width × height rectangle out of images, its top-left corner at x, y. The
    rectangle is trimmed to the image where it would go past the edge."""

    type_name = "ImageCrop"
    category = "image/transform"
    title = "Image Crop"
    inputs = (
        Input("image", IMAGE),
        Input("width", INT, default=512, min=1, max=MAX_RESOLUTION, step=1),
        Input("height", INT, default=512, min=1, max=MAX_RESOLUTION, step=1),
        Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, image: torch.Tensor, width: int, height: int, x: int, y: int) -> tuple[torch.Tensor]:
        x = min(x, image.shape[2] - 1)
        y = min(y, image.shape[1] - 1)
        return (image[:, y:y + height, x:x + width, :],)


class EmptyImage(NodeBase):
    """Makes a batch of images filled with one colour (given as 0xRRGGBB)."""

    type_name = "EmptyImage"
    category = "image"
    title = "Empty Image"
    inputs = (
        Input("width", INT, default=512, min=1, max=MAX_RESOLUTION, step=1),
        Input("height", INT, default=512, min=1, max=MAX_RESOLUTION, step=1),
        Input("batch_size", INT, default=1, min=1, max=4096),
        Input("color", INT, default=0, min=0, max=0xFFFFFF, step=1, tooltip="colour as 0xRRGGBB"),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, width: int, height: int, batch_size: int, color: int) -> tuple[torch.Tensor]:
        rgb = torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=torch.float32) / 255.0
        return (rgb.expand(batch_size, height, width, 3).contiguous(),)


class ImageAddNoise(NodeBase):
    """Adds seeded random noise (film grain) to images. The noise is drawn on the CPU from
    the seed, so the same seed gives the same grain on any machine."""

    type_name = "ImageAddNoise"
    category = "image"
    title = "Image Add Noise"
    inputs = (
        Input("image", IMAGE),
        Input("seed", INT, default=0, min=0, max=SEED_MAX, seed=True),
        Input("strength", FLOAT, default=0.5, min=0.0, max=1.0, step=0.01),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, image: torch.Tensor, seed: int, strength: float) -> tuple[torch.Tensor]:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(image.shape, generator=generator, dtype=torch.float32)
        return ((image + noise.to(image.device) * strength).clamp(0.0, 1.0),)


class ImagePadForOutpaint(NodeBase):
    """Adds space around an image for outpainting: the new border is mid-grey, and the MASK
    marks it (1) for the sampler, fading into the picture over `feathering` pixels so the
    extension blends in."""

    type_name = "ImagePadForOutpaint"
    category = "image"
    title = "Pad Image for Outpainting"
    inputs = (
        Input("image", IMAGE),
        Input("left", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("top", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("right", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("bottom", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("feathering", INT, default=40, min=0, max=MAX_RESOLUTION, step=1),
    )
    outputs = (Output("IMAGE", IMAGE), Output("MASK", MASK))

    def run(self, ctx, image: torch.Tensor, left: int, top: int, right: int, bottom: int, feathering: int):
        batch, height, width, channels = image.shape
        padded = torch.full((batch, height + top + bottom, width + left + right, channels), 0.5, dtype=image.dtype)
        padded[:, top:top + height, left:left + width] = image
        mask = torch.ones(padded.shape[1:3])
        inner = torch.zeros(height, width)
        if feathering > 0:
            rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
            columns = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
            far = torch.full((height, width), float("inf"))
            # Distance to the nearest edge that has new space beyond it.
            distance = torch.minimum(torch.minimum(rows if top else far, (height - 1 - rows) if bottom else far),
                                     torch.minimum(columns if left else far, (width - 1 - columns) if right else far))
            inner = torch.where(distance < feathering, ((feathering - distance) / feathering) ** 2, inner)
        mask[top:top + height, left:left + width] = inner
        return (padded, mask[None].expand(batch, -1, -1).contiguous())


class Canny(NodeBase):
    """Finds edges (white on black) with the Canny detector, as a ControlNet hint. Lower
    thresholds keep fainter edges."""

    type_name = "Canny"
    category = "image/preprocessors"
    title = "Canny"
    inputs = (
        Input("image", IMAGE),
        Input("low_threshold", FLOAT, default=0.4, min=0.01, max=0.99, step=0.01),
        Input("high_threshold", FLOAT, default=0.8, min=0.01, max=0.99, step=0.01),
    )
    outputs = (Output("IMAGE", IMAGE),)

    @classmethod
    def check(cls, values, settings):
        if values.get("low_threshold", 0) > values.get("high_threshold", 1):
            return [("low_threshold", "the low threshold must not be above the high one")]
        return []

    def run(self, ctx, image: torch.Tensor, low_threshold: float, high_threshold: float):
        import kornia

        _, edges = kornia.filters.canny(image.movedim(-1, 1)[:, :3].float(), low_threshold=low_threshold,
                                        high_threshold=high_threshold)
        return (edges.movedim(1, -1).expand(-1, -1, -1, 3).contiguous(),)
