"""FLUX.1 (dev and schnell): the transformer from a single file in Black Forest Labs' key
layout (``flux1-dev.safetensors``, fp8 variants, or inside an all-in-one checkpoint), the
16-channel VAE (``ae.safetensors``), and the denoiser the sampler calls.

The transformer's size is read from its weights (layers, width, heads, guidance input), so
one loader takes the real model and the tiny test models; diffusers' single-file converter
maps the keys to :class:`diffusers.FluxTransformer2DModel`. What is written here because
diffusers lacks it: the converter fixes FLUX.1's width (3072) when it splits the single
blocks' fused projection, so that split is done here for any width; the RoPE axes of a
non-standard head width (BFL's 16/56/56 for 128, scaled alike otherwise); and the
:class:`FluxDenoiser`, which gives the transformer the call the sampler core makes of every
model (latent, timestep, prompt states) and packs 2×2 latent patches, positions and guidance
as ComfyUI's and diffusers' FLUX code do.

Sampling (ComfyUI's facts): dev uses the time shift ``exp(μ)/(exp(μ) + 1/t − 1)`` with
μ = 1.15 (ModelSamplingFlux changes it), schnell no shift; both take σ itself as the
timestep. Latents are ``(x − 0.1159) × 0.3611`` of the VAE's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from studio.runtime.checkpoints import DiffusionModel, ModelLoadError, Vae
from studio.runtime.families import ModelFamily
from studio.runtime.schedules import FlowModelSampling
from studio.runtime.transformer_denoiser import TransformerDenoiser
from studio.runtime.weight_storage import load_into

FLUX_SCALE, FLUX_SHIFT = 0.3611, 0.1159
DEFAULT_MU = 1.15
DOUBLE_KEY = "double_blocks.0.img_attn.qkv.weight"
BFL_PREFIXES = ("model.diffusion_model.", "")


class FluxModelSampling(FlowModelSampling):
    """FLUX.1 dev's noise levels: the flux time shift by μ (``shift``) on a 10,000-point grid,
    σ itself as the timestep (ComfyUI's ModelSamplingFlux)."""

    def __init__(self, shift: float = DEFAULT_MU) -> None:
        super().__init__(shift=shift, multiplier=1.0, timesteps=10000)

    def _shift(self, t: torch.Tensor) -> torch.Tensor:
        factor = math.exp(self.shift)
        return factor / (factor + (1 / t - 1))

    def sigma_to_percent(self, sigma: float) -> float:
        sigma = min(max(float(sigma), 1e-9), 1.0)
        factor = math.exp(self.shift)
        # invert σ = e / (e + 1/t - 1): t = 1 / (e/σ - e + 1)
        return 1.0 - 1.0 / (factor / sigma - factor + 1.0)


def schnell_sampling() -> FlowModelSampling:
    """FLUX.1 schnell's: no shift, σ as the timestep (ComfyUI's settings for it)."""
    return FlowModelSampling(shift=1.0, multiplier=1.0)


def bfl_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The FLUX transformer's weights in BFL's names (without ``model.diffusion_model.``), or
    None when the file holds no FLUX transformer."""
    for prefix in BFL_PREFIXES:
        if prefix + DOUBLE_KEY in state_dict and prefix + "img_in.weight" in state_dict:
            if prefix:
                return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
            return {key: value for key, value in state_dict.items()
                    if not key.startswith(("vae.", "text_encoders.", "first_stage_model.", "cond_stage_model."))}
    return None


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """RoPE axes (index, row, column) for a head width: BFL's (16, 56, 56) for 128."""
    side = int(head_dim * 7 / 16) // 2 * 2
    return (head_dim - 2 * side, side, side)


def flux_config(path: Path, weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """FluxTransformer2DModel's config from BFL-named weights."""
    hidden, in_channels = (int(n) for n in weights["img_in.weight"].shape)
    head_dim = int(weights["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0])
    if hidden % head_dim:
        raise ModelLoadError(path, f"has a FLUX transformer {hidden} wide with {head_dim}-wide heads, which do not "
                             "divide it")
    mlp = int(weights["double_blocks.0.img_mlp.0.weight"].shape[0])
    if mlp != 4 * hidden:
        raise ModelLoadError(path, f"has a FLUX transformer whose MLP is {mlp} wide, not 4 × {hidden}; Seed Studio "
                             "loads FLUX.1's architecture")
    if int(weights["final_layer.linear.weight"].shape[0]) != in_channels:
        raise ModelLoadError(path, "has a FLUX transformer with more input than output channels (FLUX.1 Fill or "
                             "a depth/canny model), which Seed Studio cannot use yet")
    return dict(
        patch_size=1, in_channels=in_channels, num_layers=_count(weights, "double_blocks."),
        num_single_layers=_count(weights, "single_blocks."), attention_head_dim=head_dim,
        num_attention_heads=hidden // head_dim, joint_attention_dim=int(weights["txt_in.weight"].shape[1]),
        pooled_projection_dim=int(weights["vector_in.in_layer.weight"].shape[1]),
        guidance_embeds="guidance_in.in_layer.weight" in weights, axes_dims_rope=rope_axes(head_dim))


def _count(weights: Mapping[str, Any], prefix: str) -> int:
    indices = {int(key[len(prefix):].split(".")[0]) for key in weights if key.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def diffusers_flux_weights(weights: Mapping[str, torch.Tensor], hidden: int) -> dict[str, torch.Tensor]:
    """BFL-named FLUX weights in diffusers' names, with diffusers' converter; the single
    blocks' fused q/k/v/MLP projections are split here at the model's own width."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    checkpoint = dict(weights)
    fused = {}
    full_width = 3072
    for key in [k for k in checkpoint if k.startswith("single_blocks.") and ".linear1." in k]:
        fused[key] = checkpoint.pop(key)
        # The converter splits at FLUX.1's width: give it an empty stand-in of that shape.
        checkpoint[key] = torch.empty((7 * full_width, *fused[key].shape[1:]), device="meta")
    converted = convert_flux_transformer_checkpoint_to_diffusers(checkpoint)
    for key, value in fused.items():
        index = key.split(".")[1]
        part = key.rsplit(".", 1)[1]
        q, k, v, mlp = torch.split(value, (hidden, hidden, hidden, value.shape[0] - 3 * hidden), dim=0)
        prefix = f"single_transformer_blocks.{index}."
        for name, tensor in (("attn.to_q", q), ("attn.to_k", k), ("attn.to_v", v), ("proj_mlp", mlp)):
            converted[f"{prefix}{name}.{part}"] = tensor.clone()
    return converted


def load_flux_transformer(path: Path, weights: Mapping[str, torch.Tensor], dtype: torch.dtype,
                          storage: torch.dtype | None) -> Any:
    """The FLUX transformer from BFL-named weights."""
    from diffusers import FluxTransformer2DModel

    config = flux_config(path, weights)
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    try:
        converted = diffusers_flux_weights(weights, hidden)
    except (KeyError, RuntimeError, ValueError) as error:
        raise ModelLoadError(path, f"has a FLUX transformer with missing or misshapen weights ({error})") from None
    return load_into(path, lambda: FluxTransformer2DModel(**config), converted, dtype, storage,
                     "the FLUX transformer")


class FluxDenoiser(TransformerDenoiser):
    """The FLUX transformer behind the sampler's model call: ``(latent B×16×h×w, timestep,
    encoder_hidden_states=T5 states, pooled_projections=…, guidance=…) → (velocity,)``."""

    @property
    def latent_channels(self) -> int:
        """The VAE latent's channels this model denoises (16)."""
        return int(self.config.in_channels) // 4  # 2×2 patches of the latent

    def read_lora(self, state_dict: Mapping[str, torch.Tensor], strength: float) -> tuple[list[Any], set[str], int]:
        """Patches for the LoRA keys that name layers the BFL way (see :func:`read_bfl_lora`);
        diffusers-named keys (``transformer.…``: diffusers, PEFT, ai-toolkit) are this
        module's own names and need nothing special."""
        return read_bfl_lora(state_dict, self, strength)

    def conditioning_inputs(self, extras: Mapping[str, Any], batch: int, device: torch.device,
                            dtype: torch.dtype) -> dict[str, Any]:
        """The transformer's inputs besides the latent and T5's states for one conditioning
        entry: CLIP-L's pooled prompt, and the distilled guidance (FluxGuidance; 3.5 unset)."""
        inputs = {"pooled_projections": self.pooled_projections(extras, batch, device, dtype)}
        if self.config.guidance_embeds:
            guidance = extras.get("guidance")
            guidance = 3.5 if guidance is None else float(guidance)
            inputs["guidance"] = torch.full((batch,), guidance, device=device, dtype=torch.float32)
        return inputs

    def forward(self, latent: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pooled_projections: torch.Tensor, guidance: torch.Tensor | None = None,
                return_dict: bool = False) -> tuple[torch.Tensor]:
        batch, channels, height, width = latent.shape
        padded = F.pad(latent, (0, width % 2, 0, height % 2), mode="circular") if height % 2 or width % 2 else latent
        rows, columns = padded.shape[2] // 2, padded.shape[3] // 2
        packed = padded.reshape(batch, channels, rows, 2, columns, 2).permute(0, 2, 4, 1, 3, 5)
        packed = packed.reshape(batch, rows * columns, channels * 4)
        image_ids = torch.zeros(rows, columns, 3)
        image_ids[..., 1] += torch.arange(rows)[:, None]
        image_ids[..., 2] += torch.arange(columns)[None, :]
        image_ids = image_ids.reshape(rows * columns, 3).to(latent.device, latent.dtype)
        text_ids = torch.zeros(encoder_hidden_states.shape[1], 3, device=latent.device, dtype=latent.dtype)
        timestep = self.timesteps(timestep, batch)
        out = self.transformer(hidden_states=packed, encoder_hidden_states=encoder_hidden_states,
                               pooled_projections=pooled_projections, timestep=timestep.to(latent.dtype),
                               img_ids=image_ids, txt_ids=text_ids, guidance=guidance, return_dict=False)[0]
        out = out.reshape(batch, rows, columns, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
        out = out.reshape(batch, channels, rows * 2, columns * 2)
        return (out[:, :, :height, :width],)


def flux_model(transformer: torch.nn.Module, key: str, offloaded_to: torch.device | None = None) -> DiffusionModel:
    """The MODEL socket's value for a FLUX transformer (dev if it reads guidance, else schnell)."""
    dev = bool(transformer.config.guidance_embeds)
    sampling = FluxModelSampling() if dev else schnell_sampling()
    return DiffusionModel(FluxDenoiser(transformer, offloaded_to), ModelFamily.FLUX, {"prediction_type": "flow"}, key,
                          FLUX_SCALE,
                          sampling=sampling, latent_shift=FLUX_SHIFT)


# --- The 16-channel VAE --------------------------------------------------------------------

VAE_PREFIXES = ("first_stage_model.", "vae.", "")


def vae_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """An LDM-layout VAE's weights (``encoder.*``, ``decoder.*``) from a VAE file or a
    checkpoint, or None."""
    for prefix in VAE_PREFIXES:
        if prefix + "decoder.conv_in.weight" in state_dict:
            return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)
                    and key[len(prefix):].startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv."))}
    return None


def latent_channels(weights: Mapping[str, torch.Tensor]) -> int:
    return int(weights["decoder.conv_in.weight"].shape[1])


def load_vae16(path: Path, weights: Mapping[str, torch.Tensor], dtype: torch.dtype, key: str,
               scale: float = FLUX_SCALE, shift: float = FLUX_SHIFT, tiled: bool = False) -> Vae:
    """A VAE in the LDM layout of any size (FLUX's and SD3's 16-channel ones), its shape read
    from its weights; diffusers' converter maps the keys. ``tiled``: pictures larger than
    1024² are decoded and encoded in overlapping tiles (for a GPU's memory)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    levels = _count(weights, "encoder.down.")
    widths = tuple(int(weights[f"encoder.down.{level}.block.0.conv2.weight"].shape[0]) for level in range(levels))
    config = dict(in_channels=int(weights["encoder.conv_in.weight"].shape[1]),
                  out_channels=int(weights["decoder.conv_out.weight"].shape[0]),
                  latent_channels=latent_channels(weights), block_out_channels=widths,
                  down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
                  layers_per_block=_count(weights, "encoder.down.0.block."), norm_num_groups=32,
                  scaling_factor=scale, shift_factor=shift, use_quant_conv="quant_conv.weight" in weights,
                  use_post_quant_conv="post_quant_conv.weight" in weights, sample_size=1024)
    try:
        converted = convert_ldm_vae_checkpoint(dict(weights), config)
    except (KeyError, RuntimeError, ValueError) as error:
        raise ModelLoadError(path, f"is not a complete VAE ({error})") from None
    module = load_into(path, lambda: AutoencoderKL(**config), converted, dtype, None, "the VAE")
    if tiled:
        module.enable_tiling()
    return Vae(module, key)


# --- LoRAs in BFL's names (kohya's sd-scripts, ComfyUI) -------------------------------------

def bfl_lora_targets(config: Any) -> dict[str, list[tuple[str, slice | None, bool]]]:
    """Each FLUX layer a LoRA may name in BFL's terms → the diffusers layers it is, with the
    rows of the fused weight each one holds (q/k/v, and the single blocks' MLP) and whether
    the halves are swapped (the final modulation)."""
    hidden = int(config.num_attention_heads) * int(config.attention_head_dim)
    mlp = 4 * hidden
    thirds = [slice(0, hidden), slice(hidden, 2 * hidden), slice(2 * hidden, 3 * hidden)]
    targets: dict[str, list[tuple[str, slice | None, bool]]] = {
        "img_in": [("x_embedder", None, False)], "txt_in": [("context_embedder", None, False)],
        "time_in.in_layer": [("time_text_embed.timestep_embedder.linear_1", None, False)],
        "time_in.out_layer": [("time_text_embed.timestep_embedder.linear_2", None, False)],
        "vector_in.in_layer": [("time_text_embed.text_embedder.linear_1", None, False)],
        "vector_in.out_layer": [("time_text_embed.text_embedder.linear_2", None, False)],
        "guidance_in.in_layer": [("time_text_embed.guidance_embedder.linear_1", None, False)],
        "guidance_in.out_layer": [("time_text_embed.guidance_embedder.linear_2", None, False)],
        "final_layer.linear": [("proj_out", None, False)],
        "final_layer.adaLN_modulation.1": [("norm_out.linear", None, True)],
    }
    for i in range(int(config.num_layers)):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        targets[b + "img_attn.qkv"] = [(d + f"attn.to_{x}", rows, False) for x, rows in zip("qkv", thirds, strict=True)]
        targets[b + "txt_attn.qkv"] = [(d + f"attn.add_{x}_proj", rows, False)
                                       for x, rows in zip("qkv", thirds, strict=True)]
        for source, target in (("img_attn.proj", "attn.to_out.0"), ("txt_attn.proj", "attn.to_add_out"),
                               ("img_mlp.0", "ff.net.0.proj"), ("img_mlp.2", "ff.net.2"),
                               ("txt_mlp.0", "ff_context.net.0.proj"), ("txt_mlp.2", "ff_context.net.2"),
                               ("img_mod.lin", "norm1.linear"), ("txt_mod.lin", "norm1_context.linear")):
            targets[b + source] = [(d + target, None, False)]
    for i in range(int(config.num_single_layers)):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        targets[b + "linear1"] = [(d + f"attn.to_{x}", rows, False) for x, rows in zip("qkv", thirds, strict=True)] + [
            (d + "proj_mlp", slice(3 * hidden, 3 * hidden + mlp), False)]
        targets[b + "linear2"] = [(d + "proj_out", None, False)]
        targets[b + "modulation.lin"] = [(d + "norm.linear", None, False)]
    return targets


def read_bfl_lora(state_dict: Mapping[str, torch.Tensor], denoiser: FluxDenoiser,
                  strength: float) -> tuple[list[Any], set[str], int]:
    """The patches of a LoRA's keys that name FLUX layers the BFL way — kohya's
    ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``, ComfyUI's
    ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`` — as patches of the
    diffusers layers (a fused q/k/v LoRA patches each of q, k and v with its rows of the up
    matrix), and of PEFT's bare ``base_model.model.<layer>`` keys; the keys used; how many of
    the file's layers applied."""
    from studio.runtime.lora import WeightPatch

    targets = bfl_lora_targets(denoiser.config)
    names = {}
    for bfl in targets:
        names["lora_unet_" + bfl.replace(".", "_")] = bfl
        for prefix in ("diffusion_model.", "transformer.", "model.diffusion_model.", ""):
            names[prefix + bfl] = bfl
    # PEFT's own names for a bare transformer (base_model.model.<diffusers name>).
    for name, module in denoiser.transformer.named_modules():
        if name and isinstance(getattr(module, "weight", None), torch.Tensor):
            targets["diffusers:" + name] = [(name, None, False)]
            names["base_model.model." + name] = "diffusers:" + name
    suffixes = {".lora_down.weight": "down", ".lora_up.weight": "up", ".lora_A.weight": "down",
                ".lora_B.weight": "up", ".alpha": "alpha"}
    found: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for key, value in state_dict.items():
        for suffix, role in suffixes.items():
            if key.endswith(suffix) and key[:-len(suffix)] in names:
                found.setdefault(names[key[:-len(suffix)]], {})[role] = (key, value)
                break
    patches = []
    layers = 0
    for bfl, parts in sorted(found.items()):
        if "down" not in parts or "up" not in parts:
            continue
        used.update(key for key, _ in parts.values())
        alpha = parts.get("alpha")
        alpha = float(alpha[1]) if alpha is not None else None
        up = parts["up"][1]
        for module, rows, swap in targets[bfl]:
            part = up[rows] if rows is not None else up
            if swap:
                first, second = part.chunk(2, dim=0)
                part = torch.cat([second, first], dim=0)
            patches.append(WeightPatch("unet", "transformer." + module, parts["down"][1], part.contiguous(), alpha,
                                       strength))
        layers += 1
    return patches, used, layers
