"""Latents: empty ones, to and from pixels with the VAE, resizing, rotating, cropping,
arithmetic, batches and masks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.graph.sockets import BOOLEAN, FLOAT, IMAGE, INT, LATENT, MASK, STRING, VAE
from studio.lazy import lazy_module
from studio.node_api import MAX_RESOLUTION, Input, NodeBase, Output

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import Vae

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")
F = lazy_module("torch.nn.functional")

LATENT_RESIZE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")


class EmptyLatentImage(NodeBase):
    """A blank latent to start text-to-image from, for images of this size."""

    type_name = "EmptyLatentImage"
    category = "latent"
    title = "Empty Latent Image"
    inputs = (
        Input("width", INT, default=512, min=16, max=MAX_RESOLUTION, step=8),
        Input("height", INT, default=512, min=16, max=MAX_RESOLUTION, step=8),
        Input("batch_size", INT, default=1, min=1, max=4096),
    )
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, width: int, height: int, batch_size: int) -> tuple:
        return ({"samples": torch.zeros(batch_size, 4, height // 8, width // 8)},)


def vae_decode(ctx: NodeContext, vae: Vae, samples: torch.Tensor) -> torch.Tensor:
    """Pixels of latent samples, with the run's model manager (see studio.runtime.vae_codec)."""
    from studio.runtime import vae_codec
    from studio.runtime.services import model_manager

    return vae_codec.decode_latent(model_manager(ctx.services), vae, samples, ctx.note)


def vae_encode(ctx: NodeContext, vae: Vae, pixels: torch.Tensor) -> torch.Tensor:
    """Latent samples of pixels, with the run's model manager (see studio.runtime.vae_codec)."""
    from studio.runtime import vae_codec
    from studio.runtime.services import model_manager

    return vae_codec.encode_pixels(model_manager(ctx.services), vae, pixels, ctx.note)


class VAEDecode(NodeBase):
    """Turns a latent into pixels with the VAE."""

    type_name = "VAEDecode"
    category = "latent"
    title = "VAE Decode"
    inputs = (Input("samples", LATENT), Input("vae", VAE))
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, samples: dict, vae: Vae) -> tuple:
        return (vae_decode(ctx, vae, samples["samples"]),)


class VAEEncode(NodeBase):
    """Turns pixels into a latent with the VAE (for image-to-image). Sides that are not a
    multiple of 8 are trimmed evenly from both edges."""

    type_name = "VAEEncode"
    category = "latent"
    title = "VAE Encode"
    inputs = (Input("pixels", IMAGE), Input("vae", VAE))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, pixels: torch.Tensor, vae: Vae) -> tuple:
        return ({"samples": vae_encode(ctx, vae, pixels)},)


class SetLatentNoiseMask(NodeBase):
    """Limits sampling to where the mask is white (1): the rest keeps the input latent."""

    type_name = "SetLatentNoiseMask"
    category = "latent/inpaint"
    title = "Set Latent Noise Mask"
    inputs = (Input("samples", LATENT), Input("mask", MASK))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, mask: torch.Tensor) -> tuple:
        from studio.runtime.images import as_mask_batch

        return ({**samples, "noise_mask": as_mask_batch(mask)[:, None].float()},)


def resize_latent(samples: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
    from studio.runtime.images import bislerp

    if method == "bislerp":
        return bislerp(samples, width, height)
    kwargs = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    return F.interpolate(samples, size=(height, width), mode=method, **kwargs)


class LatentUpscale(NodeBase):
    """Resizes a latent to a pixel size (for a second, "hires" pass). A size of 0 keeps the
    aspect ratio from the other side."""

    type_name = "LatentUpscale"
    category = "latent"
    title = "Upscale Latent"
    inputs = (
        Input("samples", LATENT),
        Input("upscale_method", STRING, default="nearest-exact", choices=LATENT_RESIZE_METHODS),
        Input("width", INT, default=512, min=0, max=MAX_RESOLUTION, step=8),
        Input("height", INT, default=512, min=0, max=MAX_RESOLUTION, step=8),
        Input("crop", STRING, default="disabled", choices=("disabled", "center")),
    )
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, upscale_method: str, width: int, height: int, crop: str) -> tuple:
        from studio.runtime.images import center_crop_to_aspect, complete_size

        latent = samples["samples"]
        if width == 0 and height == 0:
            return (samples,)
        width, height = complete_size(width, height, latent.shape[3] * 8, latent.shape[2] * 8, multiple=8)
        if crop == "center":
            latent = center_crop_to_aspect(latent.movedim(1, -1), width, height).movedim(-1, 1)
        resized = resize_latent(latent, max(1, width // 8), max(1, height // 8), upscale_method)
        return ({**{k: v for k, v in samples.items() if k != "noise_mask"}, "samples": resized},)


class LatentUpscaleBy(NodeBase):
    """Resizes a latent by a factor (1.5 for a typical hires pass)."""

    type_name = "LatentUpscaleBy"
    category = "latent"
    title = "Upscale Latent By"
    inputs = (
        Input("samples", LATENT),
        Input("upscale_method", STRING, default="nearest-exact", choices=LATENT_RESIZE_METHODS),
        Input("scale_by", FLOAT, default=1.5, min=0.01, max=8.0, step=0.01),
    )
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, upscale_method: str, scale_by: float) -> tuple:
        latent = samples["samples"]
        width = max(1, round(latent.shape[3] * scale_by))
        height = max(1, round(latent.shape[2] * scale_by))
        resized = resize_latent(latent, width, height, upscale_method)
        return ({**{k: v for k, v in samples.items() if k != "noise_mask"}, "samples": resized},)


class RepeatLatentBatch(NodeBase):
    """Repeats a latent batch `amount` times (several variations of one img2img input)."""

    type_name = "RepeatLatentBatch"
    category = "latent/batch"
    title = "Repeat Latent Batch"
    inputs = (Input("samples", LATENT), Input("amount", INT, default=1, min=1, max=64))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, amount: int) -> tuple:
        out = {**samples, "samples": samples["samples"].repeat(amount, 1, 1, 1)}
        if "noise_mask" in samples and samples["noise_mask"].shape[0] > 1:
            out["noise_mask"] = samples["noise_mask"].repeat(amount, 1, 1, 1)
        return (out,)


class LatentFromBatch(NodeBase):
    """Takes `length` latents from a batch, starting at `batch_index` (0 is the first)."""

    type_name = "LatentFromBatch"
    category = "latent/batch"
    title = "Latent From Batch"
    inputs = (Input("samples", LATENT), Input("batch_index", INT, default=0, min=0, max=63),
              Input("length", INT, default=1, min=1, max=64))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, batch_index: int, length: int) -> tuple:
        latent = samples["samples"]
        start = min(batch_index, latent.shape[0] - 1)
        out = {**samples, "samples": latent[start:start + length].clone()}
        if "noise_mask" in samples and samples["noise_mask"].shape[0] > 1:
            out["noise_mask"] = samples["noise_mask"][start:start + length]
        return (out,)


class VAEEncodeForInpaint(NodeBase):
    """Encodes an image for inpainting with an ordinary model: the masked area is greyed out
    before encoding and becomes the latent's noise mask, grown by a few pixels so the new
    content blends into its surroundings."""

    type_name = "VAEEncodeForInpaint"
    category = "latent/inpaint"
    title = "VAE Encode (for Inpainting)"
    inputs = (Input("pixels", IMAGE), Input("vae", VAE), Input("mask", MASK),
              Input("grow_mask_by", INT, default=6, min=0, max=64, step=1))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, pixels: torch.Tensor, vae: Vae, mask: torch.Tensor, grow_mask_by: int) -> tuple:
        from studio.runtime.vae_codec import grown_noise_mask, inpainting_inputs

        _, mask, greyed = inpainting_inputs(pixels, mask, vae.downscale)
        return ({"samples": vae_encode(ctx, vae, greyed), "noise_mask": grown_noise_mask(mask, grow_mask_by)},)


def _feathered_paste(destination: torch.Tensor, source: torch.Tensor, x: int, y: int,
                     mask: torch.Tensor | None) -> torch.Tensor:
    """Paste ``source`` (B×C×h×w) into a copy of ``destination`` at latent position x, y,
    weighted by ``mask`` (1×1×h×w, 1 = source) where given; whatever falls outside is cut."""
    out = destination.clone()
    height = min(source.shape[2], out.shape[2] - y)
    width = min(source.shape[3], out.shape[3] - x)
    if height <= 0 or width <= 0:
        return out
    region = out[:, :, y:y + height, x:x + width]
    piece = source[:, :, :height, :width].to(out)
    if piece.shape[0] != region.shape[0]:
        piece = piece[:1].expand(region.shape[0], -1, -1, -1)
    weight = torch.ones(1, 1, height, width) if mask is None else mask[..., :height, :width].to(out)
    out[:, :, y:y + height, x:x + width] = piece * weight + region * (1 - weight)
    return out


class LatentComposite(NodeBase):
    """Pastes one latent into another at a pixel position (multiples of 8), with edges
    feathered over `feather` pixels, for composing before (or between) sampling passes."""

    type_name = "LatentComposite"
    category = "latent"
    title = "Latent Composite"
    inputs = (Input("samples_to", LATENT), Input("samples_from", LATENT),
              Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
              Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
              Input("feather", INT, default=0, min=0, max=MAX_RESOLUTION, step=8))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples_to: dict, samples_from: dict, x: int, y: int, feather: int) -> tuple:
        source = samples_from["samples"]
        mask = None
        steps = feather // 8
        if steps > 0:
            height, width = source.shape[2], source.shape[3]
            ramp_y = torch.clamp((torch.arange(height) + 1) / steps, max=1.0)
            ramp_x = torch.clamp((torch.arange(width) + 1) / steps, max=1.0)
            # Feather only the edges that lie inside the destination.
            vertical = torch.minimum(ramp_y if y > 0 else torch.ones(height), ramp_y.flip(0))
            horizontal = torch.minimum(ramp_x if x > 0 else torch.ones(width), ramp_x.flip(0))
            mask = (vertical[:, None] * horizontal[None, :])[None, None]
        return ({**samples_to, "samples": _feathered_paste(samples_to["samples"], source, x // 8, y // 8, mask)},)


class LatentCompositeMasked(NodeBase):
    """Pastes a source latent into a destination at a pixel position, through an optional
    mask (1 = source); `resize_source` first scales the source to the destination's size."""

    type_name = "LatentCompositeMasked"
    category = "latent"
    title = "Latent Composite Masked"
    inputs = (Input("destination", LATENT), Input("source", LATENT),
              Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
              Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
              Input("resize_source", BOOLEAN, default=False),
              Input("mask", MASK, optional=True))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, destination: dict, source: dict, x: int, y: int, resize_source: bool,
            mask: torch.Tensor | None = None) -> tuple:
        target = destination["samples"]
        pasted = source["samples"]
        if resize_source:
            pasted = F.interpolate(pasted, size=target.shape[2:], mode="bilinear", align_corners=False)
        weight = None
        if mask is not None:
            from studio.runtime.images import as_mask_batch

            weight = F.interpolate(as_mask_batch(mask)[:1, None].float(),
                                   size=pasted.shape[2:], mode="bilinear", align_corners=False)
        return ({**destination, "samples": _feathered_paste(target, pasted, x // 8, y // 8, weight)},)


# ComfyUI's tiled VAE nodes also tile video VAEs in time; image VAEs have no time axis, so
# these only keep ComfyUI files faithful (their values round-trip unchanged).
_TEMPORAL = (Input("temporal_size", INT, default=64, min=8, max=4096, step=4,
                   tooltip="frames per tile, for video VAEs; images have none"),
             Input("temporal_overlap", INT, default=8, min=4, max=4096, step=4,
                   tooltip="overlapping frames, for video VAEs; images have none"))


class VAEDecodeTiled(NodeBase):
    """VAE Decode in overlapping tiles, for images too large to decode at once."""

    type_name = "VAEDecodeTiled"
    category = "latent"
    title = "VAE Decode (Tiled)"
    inputs = (Input("samples", LATENT), Input("vae", VAE),
              Input("tile_size", INT, default=512, min=64, max=4096, step=32),
              Input("overlap", INT, default=64, min=0, max=4096, step=32),
              *_TEMPORAL)
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, samples: dict, vae: Vae, tile_size: int, overlap: int, temporal_size: int,
            temporal_overlap: int) -> tuple:
        from studio.runtime.vae_codec import tiled

        with tiled(vae, tile_size, overlap):
            return (vae_decode(ctx, vae, samples["samples"]),)


class VAEEncodeTiled(NodeBase):
    """VAE Encode in overlapping tiles, for images too large to encode at once."""

    type_name = "VAEEncodeTiled"
    category = "latent"
    title = "VAE Encode (Tiled)"
    inputs = (Input("pixels", IMAGE), Input("vae", VAE),
              Input("tile_size", INT, default=512, min=64, max=4096, step=64),
              Input("overlap", INT, default=64, min=0, max=4096, step=32),
              *_TEMPORAL)
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, pixels: torch.Tensor, vae: Vae, tile_size: int, overlap: int, temporal_size: int,
            temporal_overlap: int) -> tuple:
        from studio.runtime.vae_codec import tiled

        with tiled(vae, tile_size, overlap):
            return ({"samples": vae_encode(ctx, vae, pixels)},)


LATENT_ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
LATENT_FLIP_METHODS = ("x-axis: vertically", "y-axis: horizontally")


def _fit_spatially(latent: torch.Tensor, like: torch.Tensor, method: str) -> torch.Tensor:
    """``latent`` centre-cropped to the aspect ratio of ``like`` and resized to its h × w."""
    from studio.runtime.images import trim_to_aspect

    if latent.shape[2:] == like.shape[2:]:
        return latent
    height, width = like.shape[2], like.shape[3]
    return F.interpolate(trim_to_aspect(latent, width, height), size=(height, width), mode=method,
                         **({"align_corners": False} if method in ("bilinear", "bicubic") else {}))


def _check_channels(first: torch.Tensor, second: torch.Tensor) -> None:
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"samples1 has {first.shape[1]} latent channels and samples2 {second.shape[1]}: "
                         "they come from different model families")


def _transform_noise_mask(samples: dict, transform) -> dict:
    # The noise mask says where to sample; it moves with the latent (ComfyUI leaves it as it
    # was, which masks the wrong place once the latent is turned or flipped).
    if samples.get("noise_mask") is None:
        return {}
    return {"noise_mask": transform(samples["noise_mask"])}


class LatentRotate(NodeBase):
    """Turns latents clockwise by a quarter, half or three-quarter turn (with their noise
    mask, if they have one)."""

    type_name = "LatentRotate"
    category = "latent/transform"
    title = "Rotate Latent"
    inputs = (Input("samples", LATENT), Input("rotation", STRING, default="none", choices=LATENT_ROTATIONS))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, rotation: str) -> tuple:
        def turn(tensor: torch.Tensor) -> torch.Tensor:
            return torch.rot90(tensor, k=LATENT_ROTATIONS.index(rotation), dims=[-1, -2])
        return ({**samples, "samples": turn(samples["samples"]), **_transform_noise_mask(samples, turn)},)


class LatentFlip(NodeBase):
    """Mirrors latents: "x-axis" turns them upside down, "y-axis" swaps left and right (with
    their noise mask, if they have one)."""

    type_name = "LatentFlip"
    category = "latent/transform"
    title = "Flip Latent"
    inputs = (Input("samples", LATENT),
              Input("flip_method", STRING, default=LATENT_FLIP_METHODS[0], choices=LATENT_FLIP_METHODS))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, flip_method: str) -> tuple:
        def flip(tensor: torch.Tensor) -> torch.Tensor:
            return torch.flip(tensor, dims=[-2 if flip_method.startswith("x") else -1])
        return ({**samples, "samples": flip(samples["samples"]), **_transform_noise_mask(samples, flip)},)


class LatentCrop(NodeBase):
    """Cuts a rectangle out of latents, in pixels (multiples of 8). The corner is moved in
    so that at least 64 pixels (8 latent pixels) remain on each side; the noise mask, if
    any, is cut to match."""

    type_name = "LatentCrop"
    category = "latent/transform"
    title = "Crop Latent"
    inputs = (
        Input("samples", LATENT),
        Input("width", INT, default=512, min=64, max=MAX_RESOLUTION, step=8),
        Input("height", INT, default=512, min=64, max=MAX_RESOLUTION, step=8),
        Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
    )
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, width: int, height: int, x: int, y: int) -> tuple:
        latent = samples["samples"]
        latent_height, latent_width = latent.shape[-2], latent.shape[-1]
        left = max(0, min(x // 8, latent_width - 8))
        top = max(0, min(y // 8, latent_height - 8))
        right, bottom = left + width // 8, top + height // 8

        def crop(tensor: torch.Tensor) -> torch.Tensor:
            # A noise mask may be at pixel resolution: the same rectangle, in its own units.
            scale_y, scale_x = tensor.shape[-2] / latent_height, tensor.shape[-1] / latent_width
            return tensor[..., round(top * scale_y):round(bottom * scale_y),
                          round(left * scale_x):round(right * scale_x)]
        return ({**samples, "samples": crop(latent), **_transform_noise_mask(samples, crop)},)


class LatentBlend(NodeBase):
    """Mixes two latents: blend_factor of samples1 and the rest of samples2 (1 = samples1
    only, as in ComfyUI). samples2 is resized (bicubic, centre-cropped) to samples1's size."""

    type_name = "LatentBlend"
    category = "latent/advanced"
    title = "Latent Blend"
    inputs = (Input("samples1", LATENT), Input("samples2", LATENT),
              Input("blend_factor", FLOAT, default=0.5, min=0.0, max=1.0, step=0.01))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples1: dict, samples2: dict, blend_factor: float) -> tuple:
        first, second = samples1["samples"], samples2["samples"]
        _check_channels(first, second)
        second = _fit_spatially(second.to(first), first, "bicubic")
        if first.shape[0] != second.shape[0] and 1 not in (first.shape[0], second.shape[0]):
            raise ValueError(f"samples1 is a batch of {first.shape[0]} and samples2 of {second.shape[0]}; "
                             "use equal batches or a batch of one")
        return ({**samples1, "samples": first * blend_factor + second * (1 - blend_factor)},)


def _operand(samples1: dict, samples2: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """samples1's latent, and samples2's fitted to its size and batch."""
    from studio.runtime.images import repeat_to_batch

    first, second = samples1["samples"], samples2["samples"]
    _check_channels(first, second)
    second = _fit_spatially(second.to(first), first, "bilinear")
    return first, repeat_to_batch(second, first.shape[0])


class LatentAdd(NodeBase):
    """Adds samples2 to samples1, value by value (samples2 resized and repeated to fit)."""

    type_name = "LatentAdd"
    category = "latent/advanced"
    title = "Latent Add"
    inputs = (Input("samples1", LATENT), Input("samples2", LATENT))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples1: dict, samples2: dict) -> tuple:
        first, second = _operand(samples1, samples2)
        return ({**samples1, "samples": first + second},)


class LatentSubtract(NodeBase):
    """Subtracts samples2 from samples1, value by value (samples2 resized and repeated to fit)."""

    type_name = "LatentSubtract"
    category = "latent/advanced"
    title = "Latent Subtract"
    inputs = (Input("samples1", LATENT), Input("samples2", LATENT))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples1: dict, samples2: dict) -> tuple:
        first, second = _operand(samples1, samples2)
        return ({**samples1, "samples": first - second},)


class LatentMultiply(NodeBase):
    """Multiplies every value of the latents by `multiplier`."""

    type_name = "LatentMultiply"
    category = "latent/advanced"
    title = "Latent Multiply"
    inputs = (Input("samples", LATENT), Input("multiplier", FLOAT, default=1.0, min=-10.0, max=10.0, step=0.01))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples: dict, multiplier: float) -> tuple:
        return ({**samples, "samples": samples["samples"] * multiplier},)


class LatentBatch(NodeBase):
    """Joins two latent batches into one (samples2 resized to samples1's size). Each latent
    keeps its seed position (batch_index), so its noise is the noise it would have had."""

    type_name = "LatentBatch"
    category = "latent/batch"
    title = "Latent Batch"
    inputs = (Input("samples1", LATENT), Input("samples2", LATENT))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx: NodeContext, samples1: dict, samples2: dict) -> tuple:
        first, second = samples1["samples"], samples2["samples"]
        _check_channels(first, second)
        second = _fit_spatially(second.to(first), first, "bilinear")
        indices = (list(samples1.get("batch_index", range(first.shape[0])))
                   + list(samples2.get("batch_index", range(second.shape[0]))))
        return ({**samples1, "samples": torch.cat([first, second]), "batch_index": indices},)
