"""Latents: empty ones, to and from pixels with the VAE, resizing, batches and masks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from studio.graph.sockets import BOOLEAN, FLOAT, IMAGE, INT, LATENT, MASK, STRING, VAE
from studio.node_api import MAX_RESOLUTION, Input, NodeBase, Output
from studio.runtime.checkpoints import Vae
from studio.runtime.images import bislerp, center_crop_to_aspect, complete_size
from studio.runtime.services import model_manager

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

    def run(self, ctx, width: int, height: int, batch_size: int):
        return ({"samples": torch.zeros(batch_size, 4, height // 8, width // 8)},)


def _crop_to_multiple(pixels: torch.Tensor, multiple: int) -> torch.Tensor:
    height = pixels.shape[1] // multiple * multiple
    width = pixels.shape[2] // multiple * multiple
    top = (pixels.shape[1] - height) // 2
    left = (pixels.shape[2] - width) // 2
    return pixels[:, top:top + height, left:left + width]


def vae_decode(ctx, vae: Vae, samples: torch.Tensor) -> torch.Tensor:
    module = vae.vae
    with model_manager(ctx.services).use(module), torch.no_grad():
        decoded = module.decode(samples.to(module.device, module.dtype)).sample
    return (decoded.float() / 2 + 0.5).clamp(0, 1).movedim(1, -1).cpu()


def vae_encode(ctx, vae: Vae, pixels: torch.Tensor) -> torch.Tensor:
    module = vae.vae
    pixels = _crop_to_multiple(pixels[..., :3], vae.downscale)
    with model_manager(ctx.services).use(module), torch.no_grad():
        encoded = module.encode((pixels.movedim(-1, 1) * 2 - 1).to(module.device, module.dtype))
    # The distribution's mean, so encoding the same image twice gives the same latent.
    return encoded.latent_dist.mean.float().cpu()


class VAEDecode(NodeBase):
    """Turns a latent into pixels with the VAE."""

    type_name = "VAEDecode"
    category = "latent"
    title = "VAE Decode"
    inputs = (Input("samples", LATENT), Input("vae", VAE))
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx, samples: dict, vae: Vae):
        return (vae_decode(ctx, vae, samples["samples"]),)


class VAEEncode(NodeBase):
    """Turns pixels into a latent with the VAE (for image-to-image). Sides that are not a
    multiple of 8 are trimmed evenly from both edges."""

    type_name = "VAEEncode"
    category = "latent"
    title = "VAE Encode"
    inputs = (Input("pixels", IMAGE), Input("vae", VAE))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx, pixels: torch.Tensor, vae: Vae):
        return ({"samples": vae_encode(ctx, vae, pixels)},)


class SetLatentNoiseMask(NodeBase):
    """Limits sampling to where the mask is white (1): the rest keeps the input latent."""

    type_name = "SetLatentNoiseMask"
    category = "latent/inpaint"
    title = "Set Latent Noise Mask"
    inputs = (Input("samples", LATENT), Input("mask", MASK))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx, samples: dict, mask: torch.Tensor):
        return ({**samples, "noise_mask": mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()},)


def resize_latent(samples: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
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

    def run(self, ctx, samples: dict, upscale_method: str, width: int, height: int, crop: str):
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

    def run(self, ctx, samples: dict, upscale_method: str, scale_by: float):
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

    def run(self, ctx, samples: dict, amount: int):
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

    def run(self, ctx, samples: dict, batch_index: int, length: int):
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

    def run(self, ctx, pixels: torch.Tensor, vae: Vae, mask: torch.Tensor, grow_mask_by: int):
        mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
        mask = F.interpolate(mask, size=pixels.shape[1:3], mode="bilinear")
        pixels = _crop_to_multiple(pixels[..., :3], vae.downscale)
        mask = _crop_to_multiple(mask.movedim(1, -1), vae.downscale).movedim(-1, 1).round()
        if grow_mask_by > 0:
            kernel = torch.ones(1, 1, grow_mask_by, grow_mask_by)
            grown = F.conv2d(mask, kernel, padding=(grow_mask_by - 1) // 2 + (grow_mask_by - 1) % 2)
            grown = grown[..., :mask.shape[-2], :mask.shape[-1]].clamp(0, 1)
        else:
            grown = mask
        keep = (1.0 - mask).movedim(1, -1)
        greyed = (pixels - 0.5) * keep + 0.5
        return ({"samples": vae_encode(ctx, vae, greyed), "noise_mask": grown},)


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

    def run(self, ctx, samples_to: dict, samples_from: dict, x: int, y: int, feather: int):
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

    def run(self, ctx, destination: dict, source: dict, x: int, y: int, resize_source: bool, mask=None):
        target = destination["samples"]
        pasted = source["samples"]
        if resize_source:
            pasted = F.interpolate(pasted, size=target.shape[2:], mode="bilinear", align_corners=False)
        weight = None
        if mask is not None:
            weight = F.interpolate(mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()[:1],
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

    def run(self, ctx, samples: dict, vae: Vae, tile_size: int, overlap: int, temporal_size: int,
            temporal_overlap: int):
        with tiled(vae, tile_size, overlap):
            return (vae_decode(ctx, vae, samples["samples"]),)


class VAEEncodeTiled(NodeBase):
    """VAE Encode in overlapping tiles, for images too large to encode at once."""

    type_name = "VAEEncodeTiled"
    category = "latent"
    title = "VAE Encode (Tiled)"
    inputs = (Input("pixels", IMAGE), Input("vae", VAE),
              Input("tile_size", INT, default=512, min=64, max=4096, step=32),
              Input("overlap", INT, default=64, min=0, max=4096, step=32),
              *_TEMPORAL)
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx, pixels: torch.Tensor, vae: Vae, tile_size: int, overlap: int, temporal_size: int,
            temporal_overlap: int):
        with tiled(vae, tile_size, overlap):
            return ({"samples": vae_encode(ctx, vae, pixels)},)


_tiling_lock = threading.Lock()


@contextmanager
def tiled(vae: Vae, tile_size: int, overlap: int) -> Iterator[None]:
    """Switch diffusers' tiled VAE on for one call, restoring the shared VAE's settings."""
    module = vae.vae
    names = ("use_tiling", "tile_sample_min_size", "tile_latent_min_size", "tile_overlap_factor")
    with _tiling_lock:
        saved = {name: getattr(module, name) for name in names}
        module.use_tiling = True
        module.tile_sample_min_size = tile_size
        module.tile_latent_min_size = max(1, tile_size // vae.downscale)
        module.tile_overlap_factor = min(0.75, overlap / tile_size)
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(module, name, value)
