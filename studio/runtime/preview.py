"""Live previews that look like the result: each VAE's own linear map from latent channels to
RGB, fitted by least squares when a first preview is asked for.

A few synthetic pictures (patches of random colours) are encoded with the model's own VAE;
each latent cell is paired with its block's mean colour, and ``colour ≈ M · latent + b`` is
solved for. It holds for any family (4 or 16 channels, the demo model's colour-anchored
latents included), where fixed factors fitted on one family's VAE show another's as a
mosaic of saturated colours. It costs one batched encode at 64², once per VAE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

PICTURES, SIDE = 16, 64


def _pictures(generator: torch.Generator) -> torch.Tensor:
    """Pictures of two random colours, split at a random place across or down (−1..1)."""
    colours = torch.rand((PICTURES, 2, 3, 1, 1), generator=generator) * 2 - 1
    ramp = torch.arange(SIDE, dtype=torch.float32)
    cuts = torch.randint(8, SIDE - 8, (PICTURES,), generator=generator)
    pictures = torch.empty((PICTURES, 3, SIDE, SIDE))
    for index in range(PICTURES):
        mask = (ramp[None, :] < cuts[index]).expand(SIDE, SIDE)
        if index % 2:
            mask = mask.T
        pictures[index] = torch.where(mask, colours[index, 0], colours[index, 1])
    return pictures


def fitted_map(vae: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(matrix C×3, bias 3) from latent channels (as the VAE encodes, unscaled) to RGB in −1..1."""
    cached = getattr(vae, "_preview_map", None)
    if cached is not None:
        return cached
    module = vae.vae
    parameter = next(module.parameters())
    generator = torch.Generator().manual_seed(0)
    pictures = _pictures(generator)
    with torch.no_grad():
        encoded = module.encode(pictures.to(parameter.device, parameter.dtype))
        latents = (encoded.latent_dist.mean if hasattr(encoded, "latent_dist") else encoded[0]).float().cpu()
    cell = SIDE // latents.shape[-1]
    blocks = F.avg_pool2d(pictures, cell)
    channels = latents.shape[1]
    inputs = latents.permute(0, 2, 3, 1).reshape(-1, channels)
    inputs = torch.cat([inputs, torch.ones((inputs.shape[0], 1))], dim=1)
    targets = blocks.permute(0, 2, 3, 1).reshape(-1, 3)
    solution = torch.linalg.lstsq(inputs, targets).solution
    fitted = (solution[:channels].contiguous(), solution[channels].contiguous())
    vae._preview_map = fitted
    return fitted


def vae_preview(latent: torch.Tensor, vae: Any) -> torch.Tensor:
    """The first picture of a latent batch (unscaled VAE latents) as 1 × h × w × 3 in 0..1."""
    matrix, bias = fitted_map(vae)
    rgb = torch.einsum("chw,cr->hwr", latent[0].float().cpu(), matrix) + bias
    return ((rgb + 1) / 2).clamp(0, 1)[None]
