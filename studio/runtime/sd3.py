"""Stable Diffusion 3.5 (Large, Large Turbo, Medium) and SD3: the MMDiT from a single file in
Stability's key layout (alone in ``diffusion_models``, or in a checkpoint with or without its
text encoders), and the denoiser the sampler calls.

The MMDiT's size is read from its weights (depth, width, head width from its q/k norms, the
dual-attention layers of 3.5 Medium, the position table's size), and diffusers' single-file
converter maps the keys to :class:`diffusers.SD3Transformer2DModel`. Written here: the
:class:`SD3Denoiser`, which gives the transformer the sampler's model call (padding the
latent to whole 2×2 patches as ComfyUI does). Sampling (ComfyUI's facts): rectified flow
with shift 3 (ModelSamplingSD3 changes it), timestep σ × 1000; latents are
``(x − 0.0609) × 1.5305`` of the VAE's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from studio.runtime.checkpoints import DiffusionModel, ModelLoadError
from studio.runtime.families import ModelFamily
from studio.runtime.schedules import FlowModelSampling
from studio.runtime.transformer_denoiser import TransformerDenoiser
from studio.runtime.weight_storage import load_into

SD3_SCALE, SD3_SHIFT = 1.5305, 0.0609
DEFAULT_SHIFT = 3.0
JOINT_KEY = "joint_blocks.0.x_block.attn.qkv.weight"


def mmdit_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The MMDiT's weights in Stability's names (without ``model.diffusion_model.``), or None."""
    prefix = "model.diffusion_model."
    if prefix + JOINT_KEY in state_dict:
        return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if JOINT_KEY in state_dict:
        return {key: value for key, value in state_dict.items()
                if not key.startswith(("text_encoders.", "first_stage_model.", "vae."))}
    return None


def _count(weights: Mapping[str, Any], prefix: str) -> int:
    indices = {int(key[len(prefix):].split(".")[0]) for key in weights if key.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def sd3_config(path: Path, weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """SD3Transformer2DModel's config from Stability-named weights."""
    hidden, in_channels, patch, _ = (int(n) for n in weights["x_embedder.proj.weight"].shape)
    norm = weights.get("joint_blocks.0.x_block.attn.ln_q.weight")
    head_dim = int(norm.shape[0]) if norm is not None else 64
    positions = int(weights["pos_embed"].shape[1]) if "pos_embed" in weights else 0
    side = int(math.isqrt(positions))
    if not positions or side * side != positions:
        raise ModelLoadError(path, "has an MMDiT without a square position table (pos_embed); the file is "
                             "incomplete")
    attn2 = sorted({int(key.split(".")[1]) for key in weights if key.startswith("joint_blocks.") and ".attn2." in key})
    return dict(sample_size=128, patch_size=patch, in_channels=in_channels, num_layers=_count(weights, "joint_blocks."),
                attention_head_dim=head_dim, num_attention_heads=hidden // head_dim,
                joint_attention_dim=int(weights["context_embedder.weight"].shape[1]),
                caption_projection_dim=int(weights["context_embedder.weight"].shape[0]),
                pooled_projection_dim=int(weights["y_embedder.mlp.0.weight"].shape[1]),
                out_channels=int(weights["final_layer.linear.weight"].shape[0]) // (patch * patch),
                pos_embed_max_size=side, dual_attention_layers=tuple(attn2),
                qk_norm="rms_norm" if norm is not None else None)


def load_sd3_transformer(path: Path, weights: Mapping[str, torch.Tensor], dtype: torch.dtype,
                         storage: torch.dtype | None) -> Any:
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    config = sd3_config(path, weights)
    try:
        converted = convert_sd3_transformer_checkpoint_to_diffusers(dict(weights))
    except (KeyError, RuntimeError, ValueError) as error:
        raise ModelLoadError(path, f"has an MMDiT with missing or misshapen weights ({error})") from None
    return load_into(path, lambda: SD3Transformer2DModel(**config), converted, dtype, storage, "the SD3 MMDiT")


class SD3Denoiser(TransformerDenoiser):
    """The MMDiT behind the sampler's model call: ``(latent B×16×h×w, timestep (σ×1000),
    encoder_hidden_states=[CLIP ‖ T5 states], pooled_projections=…) → (velocity,)``."""

    @property
    def latent_channels(self) -> int:
        """The VAE latent's channels this model denoises (16)."""
        return int(self.config.out_channels)

    def conditioning_inputs(self, extras: Mapping[str, Any], batch: int, device: torch.device,
                            dtype: torch.dtype) -> dict[str, Any]:
        """The pooled prompt (CLIP-L's and CLIP-G's, side by side) of one conditioning entry."""
        return {"pooled_projections": self.pooled_projections(extras, batch, device, dtype)}

    def forward(self, latent: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pooled_projections: torch.Tensor, return_dict: bool = False) -> tuple[torch.Tensor]:
        batch, _, height, width = latent.shape
        patch = int(self.config.patch_size)
        pad_h, pad_w = (-height) % patch, (-width) % patch
        padded = F.pad(latent, (0, pad_w, 0, pad_h), mode="circular") if pad_h or pad_w else latent
        timestep = self.timesteps(timestep, batch)
        out = self.transformer(hidden_states=padded, encoder_hidden_states=encoder_hidden_states,
                               pooled_projections=pooled_projections, timestep=timestep.to(latent.dtype),
                               return_dict=False)[0]
        return (out[:, :, :height, :width],)


def sd3_model(transformer: torch.nn.Module, key: str, offloaded_to: torch.device | None = None) -> DiffusionModel:
    """The MODEL socket's value for an SD3 MMDiT."""
    return DiffusionModel(SD3Denoiser(transformer, offloaded_to), ModelFamily.SD3, {"prediction_type": "flow"}, key,
                          SD3_SCALE,
                          sampling=FlowModelSampling(shift=DEFAULT_SHIFT, multiplier=1000.0), latent_shift=SD3_SHIFT)
