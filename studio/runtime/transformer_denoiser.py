"""What FLUX's and SD3's denoisers share: a diffusers transformer behind the call the sampler
core makes of every model (``model(latent, timestep, encoder_hidden_states=…, …) →
(prediction,)``), and what the model manager asks of a model (``device``, ``dtype``,
``to``, ``config``). Each family's subclass packs the latent and reads the conditioning its
own way (:class:`studio.runtime.flux.FluxDenoiser`, :class:`studio.runtime.sd3.SD3Denoiser`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from studio.runtime.weight_storage import compute_dtype


class TransformerDenoiser(torch.nn.Module):
    def __init__(self, transformer: torch.nn.Module, offloaded_to: torch.device | None = None) -> None:
        super().__init__()
        self.transformer = transformer
        # Set when the transformer is group-offloaded: it computes there, block by block, and
        # the model manager's moves leave it alone.
        self.offloaded_to = offloaded_to

    def to(self, *args: Any, **kwargs: Any) -> torch.nn.Module:
        if self.offloaded_to is not None:
            return self
        return super().to(*args, **kwargs)

    @property
    def config(self) -> Any:
        return self.transformer.config

    @property
    def device(self) -> torch.device:
        if self.offloaded_to is not None:
            return self.offloaded_to
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return compute_dtype(self.transformer)

    def pooled_projections(self, extras: Mapping[str, Any], batch: int, device: torch.device,
                           dtype: torch.dtype) -> torch.Tensor:
        """One conditioning entry's pooled prompt for every row of the batch (zeros when the
        entry has none)."""
        pooled = extras.get("pooled_output")
        if pooled is None:
            pooled = torch.zeros(1, int(self.config.pooled_projection_dim))
        return pooled[:1].to(device, dtype).expand(batch, -1)

    @staticmethod
    def timesteps(timestep: torch.Tensor, batch: int) -> torch.Tensor:
        """One timestep per row: a single one repeated, or the sampler's own per row."""
        return timestep.reshape(-1).expand(batch) if timestep.numel() == 1 else timestep.reshape(-1)
