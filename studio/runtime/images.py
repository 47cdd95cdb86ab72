"""Conversions between PIL images and the IMAGE / MASK tensors nodes pass around, and the
pixel operations image nodes share: resizing, cropping, pasting, filtering, quantizing.

IMAGE is a float32 tensor B×H×W×C with values in 0..1 (C = 3), MASK a float32 tensor B×H×W,
as in ComfyUI, so node code ports between the two.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from studio.runtime.names import QUANTIZE_DITHERS, RESIZE_METHODS


def pil_to_tensors(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """One PIL image (one frame) as an IMAGE of batch 1 and its MASK.

    The mask is 1 where the image is transparent (ComfyUI's convention: white = area to
    work on); an image without alpha gets an all-zero mask of its own size.
    """
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit greyscale: scale to 0..1 before anything rounds it to 8 bits.
        grey = np.asarray(image, dtype=np.float32) / 65535.0
        rgb = np.repeat(grey[..., None], 3, axis=2)
        return torch.from_numpy(rgb)[None], torch.zeros((1, *grey.shape), dtype=torch.float32)
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        rgb = rgba[..., :3]
        mask = 1.0 - rgba[..., 3]
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        mask = np.zeros(rgb.shape[:2], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(rgb))[None], torch.from_numpy(np.ascontiguousarray(mask))[None]


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One H×W×C image (0..1) as an 8-bit PIL image. Values are truncated, not rounded, as
    ComfyUI's SaveImage does, so a shared workflow saves the very bytes it saved there."""
    array = (image.detach().float().clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()
    if array.shape[-1] == 1:
        return Image.fromarray(array[..., 0], mode="L")
    if array.shape[-1] == 4:
        return Image.fromarray(array, mode="RGBA")
    return Image.fromarray(array[..., :3], mode="RGB")


def resize_image(image: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
    """Resize a B×H×W×C IMAGE to ``width`` × ``height`` with one of :data:`RESIZE_METHODS`."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; expected one of {', '.join(RESIZE_METHODS)}")
    if image.shape[1] == height and image.shape[2] == width:
        return image
    if method == "lanczos":
        return _resize_lanczos(image, width, height)
    channels_first = image.movedim(-1, 1)
    antialias = method in ("bilinear", "bicubic")
    kwargs = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    resized = F.interpolate(channels_first, size=(height, width), mode=method, antialias=antialias, **kwargs)
    return resized.movedim(1, -1).clamp(0.0, 1.0)


def _resize_lanczos(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    # PIL's Lanczos on 32-bit float planes, one channel at a time, keeps full precision
    # (resizing an 8-bit copy would band smooth gradients).
    batch = []
    for item in image.detach().float().cpu().numpy():
        planes = [np.asarray(Image.fromarray(item[..., c], mode="F").resize((width, height), Image.LANCZOS))
                  for c in range(item.shape[-1])]
        batch.append(np.stack(planes, axis=-1))
    return torch.from_numpy(np.stack(batch)).clamp(0.0, 1.0).to(image.device)


def complete_size(width: int, height: int, source_width: int, source_height: int,
                  multiple: int = 1) -> tuple[int, int]:
    """A target size where 0 on one side means "keep the source's aspect ratio", rounded to
    a multiple (8 for latents measured in pixels)."""
    if width == 0 and height == 0:
        return source_width, source_height
    if width == 0:
        width = max(multiple, round(source_width * height / source_height / multiple) * multiple)
    elif height == 0:
        height = max(multiple, round(source_height * width / source_width / multiple) * multiple)
    return width, height


def center_crop_to_aspect(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop the middle of a B×H×W×C image to the aspect ratio ``width``:``height``."""
    source_height, source_width = image.shape[1], image.shape[2]
    source_aspect = source_width / source_height
    target_aspect = width / height
    if source_aspect > target_aspect:
        keep = max(1, round(source_height * target_aspect))
        left = (source_width - keep) // 2
        return image[:, :, left:left + keep]
    keep = max(1, round(source_width / target_aspect))
    top = (source_height - keep) // 2
    return image[:, top:top + keep]


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize an N×C×H×W latent by interpolating each pixel's channel vector between its two
    neighbours on each axis in turn: the direction by spherical interpolation, the length
    linearly. Unlike bilinear, blends keep the length of the vectors they mix, so upscaled
    latents stay as "sharp" as the model's own (ComfyUI's `bislerp`)."""
    samples = samples.float()
    return _slerp_axis(_slerp_axis(samples, width, axis=3), height, axis=2)


def _slerp_axis(samples: torch.Tensor, length: int, axis: int) -> torch.Tensor:
    old = samples.shape[axis]
    # the source position of each new pixel, as align_corners=False bilinear places it
    position = ((torch.arange(length, dtype=torch.float32) + 0.5) * (old / length) - 0.5).clamp(0, old - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=old - 1)
    ratio = position - low
    moved = samples.movedim(axis, -1).movedim(1, -1)  # … × new-axis-last, channels last
    first, second = moved[..., low, :], moved[..., high, :]
    shape = first.shape
    first, second = first.reshape(-1, shape[-1]), second.reshape(-1, shape[-1])
    r = ratio.view(*([1] * (len(shape) - 2)), length, 1).expand(*shape[:-1], 1).reshape(-1, 1)
    mixed = _slerp(first, second, r).reshape(shape)
    return mixed.movedim(-1, 1).movedim(-1, axis)


def _slerp(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    a_norm, b_norm = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    a_unit = torch.where(a_norm == 0, torch.zeros_like(a), a / a_norm)
    b_unit = torch.where(b_norm == 0, torch.zeros_like(b), b / b_norm)
    dot = (a_unit * b_unit).sum(-1)
    omega = torch.acos(dot.clamp(-1, 1))
    sin_omega = torch.sin(omega)
    out = ((torch.sin((1.0 - r[:, 0]) * omega) / sin_omega)[:, None] * a_unit
           + (torch.sin(r[:, 0] * omega) / sin_omega)[:, None] * b_unit)
    out = out * (a_norm * (1.0 - r) + b_norm * r)
    # (nearly) the same direction: keep the first; opposite directions: plain lerp
    same, opposite = dot > 1 - 1e-5, dot < 1e-5 - 1
    out[same] = a[same]
    out[opposite] = (a * (1.0 - r) + b * r)[opposite]
    return out


def size_for_total_pixels(width: int, height: int, megapixels: float, multiple: int = 1) -> tuple[int, int]:
    """The size with about ``megapixels`` × 1024² pixels and the aspect ratio of
    ``width`` × ``height``, each side rounded to the nearest multiple of ``multiple``
    (ComfyUI's ImageScaleToTotalPixels: a megapixel is 1024², sides rounded half to even).
    A side is never smaller than ``multiple``."""
    scale = math.sqrt(megapixels * 1024 * 1024 / (width * height))
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


def as_mask_batch(mask: torch.Tensor) -> torch.Tensor:
    """A MASK as a batch B×H×W, whether it came as one H×W mask, a batch, or a B×1×H×W stack
    (a latent's noise mask): every node that reads a MASK accepts all of them, as ComfyUI's do."""
    return mask.reshape(-1, mask.shape[-2], mask.shape[-1])


def repeat_to_batch(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``tensor`` cut or cycled along its first axis to ``batch_size`` items."""
    if tensor.shape[0] == batch_size:
        return tensor
    repeats = -(-batch_size // tensor.shape[0])
    return tensor.repeat(repeats, *([1] * (tensor.dim() - 1)))[:batch_size]


def paste(destination: torch.Tensor, source: torch.Tensor, x: int, y: int,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    """A copy of ``destination`` (B×H×W×C) with ``source`` (b×h×w×C) laid over it, its top-left
    corner at pixel x, y, through ``mask`` (any …×h'×w', resized bilinearly to the source's size;
    1 = source). The source batch is cycled or cut to the destination's; whatever falls outside
    the destination is cut off."""
    out = destination.clone()
    source = repeat_to_batch(source.to(out), out.shape[0])
    height = min(source.shape[1], out.shape[1] - y)
    width = min(source.shape[2], out.shape[2] - x)
    if height <= 0 or width <= 0:
        return out
    if mask is None:
        weight = torch.ones(1, height, width, 1, dtype=out.dtype, device=out.device)
    else:
        weight = F.interpolate(as_mask_batch(mask)[:, None].to(out),
                               size=source.shape[1:3], mode="bilinear", align_corners=False)
        weight = repeat_to_batch(weight, out.shape[0]).movedim(1, -1)[:, :height, :width]
    region = out[:, y:y + height, x:x + width]
    out[:, y:y + height, x:x + width] = source[:, :height, :width] * weight + region * (1 - weight)
    return out


def gaussian_kernel(radius: int, sigma: float) -> torch.Tensor:
    """A (2·radius+1)² Gaussian kernel summing to 1. As in ComfyUI's blur and sharpen, the
    kernel's half-width is measured as 1, whatever the radius: sigma is relative to it, so
    a larger radius with the same sigma blurs further."""
    axis = torch.linspace(-1, 1, 2 * radius + 1)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    weights = torch.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def filter_image(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of a B×H×W×C image with a square kernel, mirroring the image
    at its edges (the edge pixel itself not repeated). Each side must be longer than the
    kernel's radius."""
    radius = kernel.shape[-1] // 2
    channels = image.shape[-1]
    weights = kernel.to(image)[None, None].expand(channels, 1, -1, -1)
    padded = F.pad(image.movedim(-1, 1), (radius, radius, radius, radius), mode="reflect")
    return F.conv2d(padded, weights, groups=channels).movedim(1, -1)


def bayer_matrix(order: int) -> torch.Tensor:
    """The order × order Bayer threshold matrix (order a power of two), normalised to
    −0.5..0.5 around zero: entry (i + ½) / order² − ½ for the i-th threshold. Built by the
    usual recurrence M₂ₙ = [[4M, 4M + 2], [4M + 3, 4M + 1]]."""
    index = torch.zeros(1, 1, dtype=torch.float64)
    while index.shape[0] < order:
        index = torch.cat([torch.cat([4 * index, 4 * index + 2], 1), torch.cat([4 * index + 3, 4 * index + 1], 1)], 0)
    return (index + 0.5) / (order * order) - 0.5


def quantize_image(image: torch.Tensor, colors: int, dither: str) -> torch.Tensor:
    """One H×W×3 image (0..1) reduced to a palette of at most ``colors`` colours, as ComfyUI's
    ImageQuantize does: the 8-bit picture (values truncated) gets a median-cut palette from
    Pillow, then each pixel its nearest palette colour, plain, with Floyd–Steinberg error
    diffusion, or after an ordered Bayer offset of ± half the palette's spacing
    (2·256 / palette size)."""
    if dither not in QUANTIZE_DITHERS:
        raise ValueError(f"unknown dither {dither!r}; expected one of {', '.join(QUANTIZE_DITHERS)}")
    pixels = (image.detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    picture = Image.fromarray(pixels, mode="RGB")
    # Pillow maps to a given palette only from a palette image (its own rule), hence two steps.
    palette = picture.quantize(colors=colors)
    if dither.startswith("bayer"):
        order = int(dither.split("-")[1])
        spread = 2 * 256 / (len(palette.getpalette()) // 3)
        offsets = spread * bayer_matrix(order) + 0.5
        rows = torch.arange(pixels.shape[0])[:, None] % order
        columns = torch.arange(pixels.shape[1])[None, :] % order
        # Summed in double precision and kept in single, as ComfyUI does, so that the
        # truncation to 8 bits below falls the same way.
        shifted = (torch.from_numpy(pixels).float() + offsets[rows, columns][..., None]).float().clamp(0, 255)
        picture = Image.fromarray(shifted.to(torch.uint8).numpy(), mode="RGB")
    method = Image.Dither.FLOYDSTEINBERG if dither == "floyd-steinberg" else Image.Dither.NONE
    quantized = picture.quantize(palette=palette, dither=method).convert("RGB")
    return torch.from_numpy(np.asarray(quantized, dtype=np.float32) / 255.0).to(image.device)


def trim_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Trim equal amounts off both sides of the last two axes (…×H×W) towards the aspect
    ratio ``width``:``height``, the amount rounded as ComfyUI's centre crop rounds it (so a
    trim of half a pixel a side may round to nothing), then to be resized to that size."""
    old_height, old_width = samples.shape[-2], samples.shape[-1]
    old_aspect, new_aspect = old_width / old_height, width / height
    x = round((old_width - old_width * (new_aspect / old_aspect)) / 2) if old_aspect > new_aspect else 0
    y = round((old_height - old_height * (old_aspect / new_aspect)) / 2) if old_aspect < new_aspect else 0
    return samples[..., y:old_height - y, x:old_width - x]
