"""VAE decoding and encoding that survive the GPU's two usual traps.

- **fp16 overflow.** SDXL's VAE (and others) overflow in fp16: black or NaN pictures. So a VAE
  never computes in fp16 unless asked (``DevicePolicy.fp16_vae``, for the fixed fp16 VAEs): on a
  GPU with bf16 it computes in bf16, else in fp32 (ComfyUI's choice). A decode that still gives
  NaN or infinity in 16 bits is done again in fp32, and the VAE stays in fp32 from then on (as
  ComfyUI and A1111 do), with a note for the artist.
- **Out of memory.** A decode or encode that runs out of GPU memory frees what the model
  manager holds and is done once more in tiles (diffusers' tiled VAE), then says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from studio.runtime.device import DevicePolicy

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
