"""Latents: empty ones, to and from pixels with the VAE, resizing, batches and masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from studio.graph.sockets import FLOAT, IMAGE, INT, LATENT, MASK, STRING, VAE
from studio.node_api import MAX_RESOLUTION, Input, NodeBase, Output
from studio.runtime.checkpoints import Vae
from studio.runtime.images import center_crop_to_aspect
from studio.runtime.services import model_manager

LATENT_RESIZE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic")


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
        if width == 0:
            width = max(8, round(latent.shape[3] * height / latent.shape[2] / 8) * 8)
        elif height == 0:
            height = max(8, round(latent.shape[2] * width / latent.shape[3] / 8) * 8)
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
