"""Conversions between PIL images and the IMAGE / MASK tensors nodes pass around.

IMAGE is a float32 tensor B×H×W×C with values in 0..1 (C = 3), MASK a float32 tensor B×H×W,
as in ComfyUI, so node code ports between the two.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

RESIZE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")


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
