"""VAE decoding and encoding that survive the GPU's two usual traps.

- **fp16 overflow.** SDXL's VAE (and others) overflow in fp16: black or NaN pictures. So a VAE
  never computes in fp16 unless asked (``DevicePolicy.fp16_vae``, for the fixed fp16 VAEs): on a
  GPU with bf16 it computes in bf16, else in fp32 (ComfyUI's choice). A decode that still gives
  NaN or infinity in 16 bits is done again in fp32, and the VAE stays in fp32 from then on (as
  ComfyUI and A1111 do), with a note for the artist.
- **Out of memory.** A decode or encode that runs out of GPU memory frees what the model
  manager holds and is done once more in tiles (diffusers' tiled VAE), then says so.

The VAE nodes' tensor work lives here too: pictures trimmed to the VAE's multiple, tiling asked
for by a node, and the greyed-out picture and mask that inpainting encodes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from studio.runtime.device import DevicePolicy
from studio.runtime.images import as_mask_batch

if TYPE_CHECKING:
    from studio.runtime.checkpoints import Vae

Note = Callable[[str], None]


def vae_dtype(policy: DevicePolicy) -> torch.dtype:
    """The precision VAEs compute in under ``policy``: never fp16 unless asked."""
    if policy.dtype == torch.float16 and not policy.fp16_vae:
        return torch.float32
    return policy.dtype


def _settle_precision(module: Any, policy: DevicePolicy) -> None:
    wanted = vae_dtype(policy)
    if module.dtype == torch.float16 and wanted != torch.float16:
        module.to(dtype=wanted)


def _with_retries(manager: Any, module: Any, run: Callable[[], torch.Tensor], note: Note | None,
                  what: str) -> torch.Tensor:
    _settle_precision(module, manager.policy)
    try:
        with manager.use(module), torch.no_grad():
            result = run()
    except torch.OutOfMemoryError:
        if not hasattr(module, "enable_tiling"):
            raise
        manager.free_memory()
        tiled_before = bool(getattr(module, "use_tiling", False))
        module.enable_tiling()
        try:
            with manager.use(module), torch.no_grad():
                result = run()
        finally:
            if not tiled_before:
                module.disable_tiling()
        if note:
            note(f"the GPU ran out of memory for the VAE {what}; it was done again in tiles")
    if not torch.isfinite(result).all() and module.dtype in (torch.float16, torch.bfloat16):
        # 16-bit overflow: do it again in fp32, and keep the VAE there (it will overflow again).
        was = str(module.dtype).removeprefix("torch.")
        module.to(dtype=torch.float32)
        with manager.use(module), torch.no_grad():
            result = run()
        if note:
            note(f"the VAE {what} overflowed in {was} (NaN); it was done again in fp32, as will every later one")
    return result


def decode(manager: Any, module: Any, samples: torch.Tensor, note: Note | None = None) -> torch.Tensor:
    """Pixels (B × H × W × C, float32 in 0..1, on the CPU) of scaled latents."""
    decoded = _with_retries(manager, module,
                            lambda: module.decode(samples.to(module.device, module.dtype)).sample.float(),
                            note, "decode")
    return (decoded / 2 + 0.5).clamp(0, 1).movedim(1, -1).cpu()


def encode(manager: Any, module: Any, pixels: torch.Tensor, note: Note | None = None) -> torch.Tensor:
    """The latent distribution's mean (B × C × h × w, float32 on the CPU) of pixels in 0..1
    (B × H × W × C), so that encoding the same image twice gives the same latent."""
    encoded = _with_retries(manager, module,
                            lambda: module.encode((pixels.movedim(-1, 1) * 2 - 1).to(module.device, module.dtype))
                            .latent_dist.mean.float(), note, "encode")
    return encoded.cpu()


def crop_to_multiple(pixels: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pixels (B × H × W × C) trimmed evenly from both edges to sides that are multiples of
    ``multiple`` (what the VAE's downscaling can encode)."""
    height = pixels.shape[1] // multiple * multiple
    width = pixels.shape[2] // multiple * multiple
    top = (pixels.shape[1] - height) // 2
    left = (pixels.shape[2] - width) // 2
    return pixels[:, top:top + height, left:left + width]


def decode_latent(manager: Any, vae: Vae, samples: torch.Tensor, note: Note | None = None) -> torch.Tensor:
    """Pixels (B × H × W × C in 0..1, on the CPU) of a LATENT's samples, through :func:`decode`."""
    return decode(manager, vae.vae, samples, note)


def encode_pixels(manager: Any, vae: Vae, pixels: torch.Tensor, note: Note | None = None) -> torch.Tensor:
    """A LATENT's samples for an IMAGE (its colour channels, trimmed to the VAE's multiple),
    through :func:`encode`."""
    return encode(manager, vae.vae, crop_to_multiple(pixels[..., :3], vae.downscale), note)


# Tiling settings live on the VAE module, which every node and run share: one tiled call at a
# time, so two threads never restore each other's settings.
_tiling_lock = threading.Lock()


@contextmanager
def tiled(vae: Vae, tile_size: int, overlap: int) -> Iterator[None]:
    """Switch diffusers' tiled VAE on for one call (tiles of ``tile_size`` pixels overlapping
    by ``overlap``), restoring the shared VAE's settings afterwards."""
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


def inpainting_inputs(pixels: torch.Tensor, mask: torch.Tensor, multiple: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What inpainting encodes: the picture's colour channels trimmed to ``multiple``, the mask
    (any MASK shape) stretched bilinearly to the picture and trimmed alike (B × 1 × h × w, soft),
    and the picture with the masked area (the mask rounded) at mid grey, as inpainting models
    were trained."""
    mask = F.interpolate(as_mask_batch(mask)[:, None].float(), size=tuple(pixels.shape[1:3]), mode="bilinear")
    pixels = crop_to_multiple(pixels[..., :3], multiple)
    mask = crop_to_multiple(mask.movedim(1, -1), multiple).movedim(-1, 1)
    keep = (1.0 - mask.round()).movedim(1, -1)
    return pixels, mask, (pixels - 0.5) * keep + 0.5


def grown_noise_mask(mask: torch.Tensor, grow_by: int) -> torch.Tensor:
    """``mask`` (B × 1 × h × w) rounded to 0 or 1 and grown by ``grow_by`` pixels (a square
    kernel), so that what is sampled anew blends into its surroundings."""
    mask = mask.round()
    if grow_by <= 0:
        return mask
    kernel = torch.ones(1, 1, grow_by, grow_by)
    grown = F.conv2d(mask, kernel, padding=(grow_by - 1) // 2 + (grow_by - 1) % 2)
    return grown[..., :mask.shape[-2], :mask.shape[-1]].clamp(0, 1)
