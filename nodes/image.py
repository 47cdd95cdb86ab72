"""Image operations without a model: scale, crop, rotate, invert, blend, composite, filters,
batches, noise, blank images."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.graph.sockets import BOOLEAN, FLOAT, IMAGE, INT, MASK, STRING
from studio.lazy import lazy_module
from studio.node_api import MAX_RESOLUTION, SEED_MAX, Input, NodeBase, Output
from studio.runtime.names import QUANTIZE_DITHERS, RESIZE_METHODS

if TYPE_CHECKING:
    from studio.node_api import NodeContext

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")
F = lazy_module("torch.nn.functional")

ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
FLIP_METHODS = ("x-axis: vertically", "y-axis: horizontally")


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

    def run(self, ctx: NodeContext, image: torch.Tensor, upscale_method: str, width: int, height: int,
            crop: str) -> tuple[torch.Tensor]:
        from studio.runtime.images import center_crop_to_aspect, complete_size, resize_image

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

    def run(self, ctx: NodeContext, image: torch.Tensor, upscale_method: str, scale_by: float) -> tuple[torch.Tensor]:
        from studio.runtime.images import resize_image

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

    def run(self, ctx: NodeContext, image: torch.Tensor) -> tuple[torch.Tensor]:
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

    def run(self, ctx: NodeContext, image1: torch.Tensor, image2: torch.Tensor, blend_factor: float,
            blend_mode: str) -> tuple[torch.Tensor]:
        from studio.runtime.images import center_crop_to_aspect, resize_image

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

    def run(self, ctx: NodeContext, image: torch.Tensor, width: int, height: int, x: int,
            y: int) -> tuple[torch.Tensor]:
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

    def run(self, ctx: NodeContext, width: int, height: int, batch_size: int, color: int) -> tuple[torch.Tensor]:
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

    def run(self, ctx: NodeContext, image: torch.Tensor, seed: int, strength: float) -> tuple[torch.Tensor]:
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

    def run(self, ctx: NodeContext, image: torch.Tensor, left: int, top: int, right: int, bottom: int,
            feathering: int) -> tuple:
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

    def run(self, ctx: NodeContext, image: torch.Tensor, low_threshold: float, high_threshold: float) -> tuple:
        import kornia

        _, edges = kornia.filters.canny(image.movedim(-1, 1)[:, :3].float(), low_threshold=low_threshold,
                                        high_threshold=high_threshold)
        return (edges.movedim(1, -1).expand(-1, -1, -1, 3).contiguous(),)


class ImageScaleToTotalPixels(NodeBase):
    """Resizes images to about `megapixels` million pixels (a megapixel is 1024², as in
    ComfyUI) keeping the aspect ratio; each side is rounded to a multiple of
    `resolution_steps` (8 or 64 suit models that need it)."""

    type_name = "ImageScaleToTotalPixels"
    category = "image/upscaling"
    title = "Scale Image to Total Pixels"
    inputs = (
        Input("image", IMAGE),
        Input("upscale_method", STRING, default="nearest-exact", choices=RESIZE_METHODS),
        Input("megapixels", FLOAT, default=1.0, min=0.01, max=16.0, step=0.01),
        Input("resolution_steps", INT, default=1, min=1, max=256),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image: torch.Tensor, upscale_method: str, megapixels: float,
            resolution_steps: int) -> tuple[torch.Tensor]:
        from studio.runtime.images import resize_image, size_for_total_pixels

        width, height = size_for_total_pixels(image.shape[2], image.shape[1], megapixels, resolution_steps)
        return (resize_image(image, width, height, upscale_method),)


class GetImageSize(NodeBase):
    """Gives the width, height and batch size of images (to size other nodes from a picture)."""

    type_name = "GetImageSize"
    category = "image"
    title = "Get Image Size"
    inputs = (Input("image", IMAGE),)
    outputs = (Output("width", INT), Output("height", INT), Output("batch_size", INT))

    def run(self, ctx: NodeContext, image: torch.Tensor) -> tuple[int, int, int]:
        return (image.shape[2], image.shape[1], image.shape[0])


def _with_alpha(image: torch.Tensor) -> torch.Tensor:
    return torch.cat([image, torch.ones_like(image[..., :1])], dim=-1)


def _same_channels(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # An RGB image meeting an RGBA one gets an opaque alpha channel.
    if first.shape[-1] == 3 and second.shape[-1] == 4:
        return _with_alpha(first), second
    if first.shape[-1] == 4 and second.shape[-1] == 3:
        return first, _with_alpha(second)
    return first, second


class ImageCompositeMasked(NodeBase):
    """Lays the source image over the destination with its top-left corner at x, y, through
    the mask where one is given (1 = source; it is stretched to the source's size). What
    falls outside the destination is cut off; `resize_source` first stretches the source to
    the destination's size."""

    type_name = "ImageCompositeMasked"
    category = "image"
    title = "Image Composite Masked"
    inputs = (
        Input("destination", IMAGE),
        Input("source", IMAGE),
        Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=1),
        Input("resize_source", BOOLEAN, default=False),
        Input("mask", MASK, optional=True),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, destination: torch.Tensor, source: torch.Tensor, x: int, y: int,
            resize_source: bool, mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        from studio.runtime.images import paste

        if destination.shape[-1] < source.shape[-1]:
            source = source[..., :destination.shape[-1]]  # the destination decides: no alpha pasted in
        destination, source = _same_channels(destination, source)
        if resize_source:
            source = F.interpolate(source.movedim(-1, 1), size=destination.shape[1:3], mode="bilinear",
                                   align_corners=False).movedim(1, -1)
        return (paste(destination, source, x, y, mask),)


class ImageBatch(NodeBase):
    """Joins two image batches into one. image2 is stretched (after a centre crop to the
    same aspect ratio) to image1's size; an RGB image joining an RGBA one gets an opaque
    alpha channel."""

    type_name = "ImageBatch"
    category = "image"
    title = "Batch Images"
    inputs = (Input("image1", IMAGE), Input("image2", IMAGE))
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor]:
        from studio.runtime.images import trim_to_aspect

        image1, image2 = _same_channels(image1, image2)
        if image1.shape[-1] != image2.shape[-1]:
            raise ValueError(f"image1 has {image1.shape[-1]} channels and image2 {image2.shape[-1]}; they must match")
        height, width = image1.shape[1], image1.shape[2]
        if image2.shape[1:3] != image1.shape[1:3]:
            cropped = trim_to_aspect(image2.movedim(-1, 1), width, height)
            image2 = F.interpolate(cropped, size=(height, width), mode="bilinear", align_corners=False).movedim(1, -1)
        return (torch.cat([image1, image2.to(image1)]),)


class RepeatImageBatch(NodeBase):
    """Repeats a batch of images `amount` times (1, 2, 1, 2… for a batch of two)."""

    type_name = "RepeatImageBatch"
    category = "image/batch"
    title = "Repeat Image Batch"
    inputs = (Input("image", IMAGE), Input("amount", INT, default=1, min=1, max=4096))
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image: torch.Tensor, amount: int) -> tuple[torch.Tensor]:
        return (image.repeat(amount, 1, 1, 1),)


class ImageFromBatch(NodeBase):
    """Takes `length` images from a batch, starting at `batch_index` (0 is the first); both
    are cut to what the batch holds."""

    type_name = "ImageFromBatch"
    category = "image/batch"
    title = "Image From Batch"
    inputs = (Input("image", IMAGE), Input("batch_index", INT, default=0, min=0, max=4095),
              Input("length", INT, default=1, min=1, max=4096))
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image: torch.Tensor, batch_index: int, length: int) -> tuple[torch.Tensor]:
        start = min(batch_index, image.shape[0] - 1)
        return (image[start:start + length].clone(),)


class ImageFlip(NodeBase):
    """Mirrors images: "x-axis" turns them upside down, "y-axis" swaps left and right."""

    type_name = "ImageFlip"
    category = "image/transform"
    title = "Image Flip"
    inputs = (Input("image", IMAGE), Input("flip_method", STRING, default=FLIP_METHODS[0], choices=FLIP_METHODS))
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image: torch.Tensor, flip_method: str) -> tuple[torch.Tensor]:
        return (torch.flip(image, dims=[1 if flip_method.startswith("x") else 2]),)


class ImageRotate(NodeBase):
    """Turns images clockwise by a quarter, half or three-quarter turn."""

    type_name = "ImageRotate"
    category = "image/transform"
    title = "Image Rotate"
    inputs = (Input("image", IMAGE), Input("rotation", STRING, default="none", choices=ROTATIONS))
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image: torch.Tensor, rotation: str) -> tuple[torch.Tensor]:
        # Turning from the width axis towards the height axis is clockwise on screen.
        return (torch.rot90(image, k=ROTATIONS.index(rotation), dims=[2, 1]),)


def _check_radius(image: torch.Tensor, radius: int, input_name: str) -> None:
    if radius >= min(image.shape[1], image.shape[2]):
        raise ValueError(f"{input_name} {radius} is too large for a {image.shape[2]}×{image.shape[1]} image: "
                         "it must be smaller than both sides")


class ImageSharpen(NodeBase):
    """Sharpens images by subtracting a blurred copy (an unsharp mask): `alpha` sets how
    strongly, `sharpen_radius` and `sigma` (relative to the radius) how wide the blur."""

    type_name = "ImageSharpen"
    category = "image/postprocessing"
    title = "Image Sharpen"
    inputs = (
        Input("image", IMAGE),
        Input("sharpen_radius", INT, default=1, min=1, max=31, step=1),
        Input("sigma", FLOAT, default=1.0, min=0.1, max=10.0, step=0.01),
        Input("alpha", FLOAT, default=1.0, min=0.0, max=5.0, step=0.01),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image: torch.Tensor, sharpen_radius: int, sigma: float,
            alpha: float) -> tuple[torch.Tensor]:
        from studio.runtime.images import filter_image, gaussian_kernel

        _check_radius(image, sharpen_radius, "sharpen_radius")
        # −10·alpha times the blur, with the centre raised so the kernel sums to 1: flat
        # areas stay as they are, edges are pushed apart.
        kernel = gaussian_kernel(sharpen_radius, sigma) * -(alpha * 10)
        kernel[sharpen_radius, sharpen_radius] += 1.0 - kernel.sum()
        return (filter_image(image, kernel).clamp(0.0, 1.0),)


class ImageBlur(NodeBase):
    """Blurs images with a Gaussian of `blur_radius` pixels; `sigma` is relative to the
    radius (1 = the radius is one standard deviation), so small values blur little."""

    type_name = "ImageBlur"
    category = "image/postprocessing"
    title = "Image Blur"
    inputs = (
        Input("image", IMAGE),
        Input("blur_radius", INT, default=1, min=1, max=31, step=1),
        Input("sigma", FLOAT, default=1.0, min=0.1, max=10.0, step=0.1),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image: torch.Tensor, blur_radius: int, sigma: float) -> tuple[torch.Tensor]:
        from studio.runtime.images import filter_image, gaussian_kernel

        _check_radius(image, blur_radius, "blur_radius")
        return (filter_image(image, gaussian_kernel(blur_radius, sigma)),)


class ImageQuantize(NodeBase):
    """Reduces images to at most `colors` colours (a palette chosen per image), for a
    posterised or retro look. Dithering hides the banding: Floyd–Steinberg spreads each
    pixel's error to its neighbours, Bayer adds a fixed cross-hatch pattern of the given size.
    An alpha channel passes through unchanged."""

    type_name = "ImageQuantize"
    category = "image/postprocessing"
    title = "Image Quantize"
    inputs = (
        Input("image", IMAGE),
        Input("colors", INT, default=256, min=1, max=256, step=1),
        Input("dither", STRING, default="none", choices=QUANTIZE_DITHERS),
    )
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, image: torch.Tensor, colors: int, dither: str) -> tuple[torch.Tensor]:
        from studio.runtime.images import quantize_image

        out = image.clone()
        for index, item in enumerate(image):
            ctx.check_cancelled()
            out[index, ..., :3] = quantize_image(item[..., :3], colors, dither).to(out)
        return (out,)
