"""Tiny random-weight FLUX.1 and SD3.5 models, written in the files a ComfyUI user has: the
transformer in Black Forest Labs' / Stability's single-file key layout (bf16-free fp32 and
fp8), CLIP-L / CLIP-G / T5-XXL files in transformers' layout, the 16-channel VAE in the LDM
layout, and all-in-one checkpoints. The reverse key mappings (diffusers → original) are
test-only; the loaders under test convert back with diffusers' converters.

The diffusers modules they were made from are returned too, so tests can give diffusers'
own pipelines the very same modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studio.runtime.ldm_export import vae_to_ldm

CLIP_WIDTH, T5_WIDTH, HIDDEN = 32, 32, 32


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def flux_to_bfl(transformer: Any) -> dict[str, torch.Tensor]:
    """A diffusers FluxTransformer2DModel's weights under BFL's names."""
    state = {key: value.detach().clone() for key, value in transformer.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    renames = {"time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
               "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
               "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
               "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
               "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
               "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
               "context_embedder": "txt_in", "x_embedder": "img_in", "proj_out": "final_layer.linear"}
    for source, target in renames.items():
        for part in ("weight", "bias"):
            if f"{source}.{part}" in state:
                out[f"{target}.{part}"] = state.pop(f"{source}.{part}")
    for part in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{part}"] = _swap_halves(state.pop(f"norm_out.linear.{part}"))
    double = int(transformer.config.num_layers)
    for i in range(double):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for part in ("weight", "bias"):
            pairs = {"norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin",
                     "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2", "ff_context.net.0.proj": "txt_mlp.0",
                     "ff_context.net.2": "txt_mlp.2", "attn.to_out.0": "img_attn.proj",
                     "attn.to_add_out": "txt_attn.proj"}
            for source, target in pairs.items():
                out[f"{b}{target}.{part}"] = state.pop(f"{d}{source}.{part}")
            out[f"{b}img_attn.qkv.{part}"] = torch.cat([state.pop(f"{d}attn.to_{x}.{part}") for x in "qkv"])
            out[f"{b}txt_attn.qkv.{part}"] = torch.cat([state.pop(f"{d}attn.add_{x}_proj.{part}") for x in "qkv"])
        for source, target in (("norm_q", "img_attn.norm.query_norm"), ("norm_k", "img_attn.norm.key_norm"),
                               ("norm_added_q", "txt_attn.norm.query_norm"),
                               ("norm_added_k", "txt_attn.norm.key_norm")):
            out[f"{b}{target}.scale"] = state.pop(f"{d}attn.{source}.weight")
    for i in range(int(transformer.config.num_single_layers)):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for part in ("weight", "bias"):
            out[f"{b}modulation.lin.{part}"] = state.pop(f"{d}norm.linear.{part}")
            out[f"{b}linear1.{part}"] = torch.cat([state.pop(f"{d}attn.to_{x}.{part}") for x in "qkv"]
                                                  + [state.pop(f"{d}proj_mlp.{part}")])
            out[f"{b}linear2.{part}"] = state.pop(f"{d}proj_out.{part}")
        out[f"{b}norm.query_norm.scale"] = state.pop(f"{d}attn.norm_q.weight")
        out[f"{b}norm.key_norm.scale"] = state.pop(f"{d}attn.norm_k.weight")
    assert not state, sorted(state)[:5]
    return out


def tiny_flux(dev: bool, seed: int) -> Any:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=T5_WIDTH,
                                   pooled_projection_dim=CLIP_WIDTH, guidance_embeds=dev, axes_dims_rope=(4, 6, 6))
    # Random-weight modulations start at zero in diffusers' init for some layers; give every
    # weight a value so every layer matters.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    return model.eval()


def tiny_vae16(seed: int, scale: float, shift: float) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=32,
                         latent_channels=16, sample_size=64, scaling_factor=scale, shift_factor=shift,
                         use_quant_conv=False, use_post_quant_conv=False).eval()


def tiny_clip(seed: int, width: int = CLIP_WIDTH, projection: bool = False, act: str = "quick_gelu",
              pad: int = 49407) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(hidden_size=width, intermediate_size=37, num_attention_heads=max(1, width // 64),
                            num_hidden_layers=2, max_position_embeddings=77, vocab_size=49408, bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=pad, projection_dim=width, hidden_act=act)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def tiny_t5(seed: int, width: int = T5_WIDTH) -> Any:
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(vocab_size=32128, d_model=width, d_kv=8, num_heads=4, d_ff=37, num_layers=2,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    return T5EncoderModel(config).eval()


def _state(module: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """A module's weights as ComfyUI's text encoder files name them (CLIP's tower under
    text_model., its projection beside it; T5 as transformers names it)."""
    out = {}
    for key, value in module.state_dict().items():
        if "position_ids" in key:
            continue
        if hasattr(module, "logit_scale") or type(module).__name__.startswith("CLIPText"):
            key = key if key.startswith(("text_model.", "text_projection")) else "text_model." + key
        out[prefix + key] = value.detach().clone().contiguous()
    return out


def fp8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Large weights in float8_e4m3fn, the rest as they are (how fp8 files are stored)."""
    return {key: value.to(torch.float8_e4m3fn) if value.ndim >= 2 and value.is_floating_point() else value
            for key, value in state.items()}


@dataclass
class FluxFiles:
    root: Path
    schnell: Any
    dev: Any
    clip_l: Any
    t5: Any
    vae: Any


def write_flux_files(root: Path) -> FluxFiles:
    """The files of a FLUX install under ``root`` (ComfyUI's folders), tiny and random."""
    from safetensors.torch import save_file

    for folder in ("diffusion_models", "text_encoders", "vae", "checkpoints", "loras"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    schnell, dev = tiny_flux(False, 1), tiny_flux(True, 2)
    clip_l, t5 = tiny_clip(3), tiny_t5(4)
    vae = tiny_vae16(5, 0.3611, 0.1159)
    save_file(flux_to_bfl(schnell), root / "diffusion_models" / "tiny-flux1-schnell.safetensors")
    save_file(flux_to_bfl(dev), root / "diffusion_models" / "tiny-flux1-dev.safetensors")
    save_file(fp8(flux_to_bfl(dev)), root / "diffusion_models" / "tiny-flux1-dev-fp8.safetensors")
    save_file(_state(clip_l), root / "text_encoders" / "tiny-clip_l.safetensors")
    save_file(_state(t5), root / "text_encoders" / "tiny-t5xxl_fp16.safetensors")
    save_file(fp8(_state(t5)), root / "text_encoders" / "tiny-t5xxl_fp8_e4m3fn.safetensors")
    save_file(vae_to_ldm(vae, prefix=""), root / "vae" / "tiny-ae.safetensors")
    # ComfyUI's all-in-one fp8 checkpoint: transformer, VAE and both text encoders.
    everything = {f"model.diffusion_model.{k}": v for k, v in fp8(flux_to_bfl(dev)).items()}
    everything.update(vae_to_ldm(vae, prefix="vae."))
    everything.update(_state(clip_l, "text_encoders.clip_l.transformer."))
    everything.update(fp8(_state(t5, "text_encoders.t5xxl.transformer.")))
    save_file(everything, root / "checkpoints" / "tiny-flux1-dev-fp8-aio.safetensors")
    return FluxFiles(root, schnell, dev, clip_l, t5, vae)


# --- SD3.5 -----------------------------------------------------------------------------------

def sd3_to_original(transformer: Any) -> dict[str, torch.Tensor]:
    """A diffusers SD3Transformer2DModel's weights under Stability's names."""
    state = {key: value.detach().clone() for key, value in transformer.state_dict().items()}
    out: dict[str, torch.Tensor] = {"pos_embed": state.pop("pos_embed.pos_embed")}
    renames = {"pos_embed.proj": "x_embedder.proj", "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
               "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2", "context_embedder": "context_embedder",
               "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
               "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2", "proj_out": "final_layer.linear"}
    for source, target in renames.items():
        for part in ("weight", "bias"):
            out[f"{target}.{part}"] = state.pop(f"{source}.{part}")
    for part in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{part}"] = _swap_halves(state.pop(f"norm_out.linear.{part}"))
    layers = int(transformer.config.num_layers)
    for i in range(layers):
        d, x, c = f"transformer_blocks.{i}.", f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
        last = i == layers - 1
        for part in ("weight", "bias"):
            out[f"{x}attn.qkv.{part}"] = torch.cat([state.pop(f"{d}attn.to_{q}.{part}") for q in "qkv"])
            out[f"{c}attn.qkv.{part}"] = torch.cat([state.pop(f"{d}attn.add_{q}_proj.{part}") for q in "qkv"])
            out[f"{x}attn.proj.{part}"] = state.pop(f"{d}attn.to_out.0.{part}")
            out[f"{x}adaLN_modulation.1.{part}"] = state.pop(f"{d}norm1.linear.{part}")
            context_mod = state.pop(f"{d}norm1_context.linear.{part}")
            out[f"{c}adaLN_modulation.1.{part}"] = _swap_halves(context_mod) if last else context_mod
            out[f"{x}mlp.fc1.{part}"] = state.pop(f"{d}ff.net.0.proj.{part}")
            out[f"{x}mlp.fc2.{part}"] = state.pop(f"{d}ff.net.2.{part}")
            if not last:
                out[f"{c}attn.proj.{part}"] = state.pop(f"{d}attn.to_add_out.{part}")
                out[f"{c}mlp.fc1.{part}"] = state.pop(f"{d}ff_context.net.0.proj.{part}")
                out[f"{c}mlp.fc2.{part}"] = state.pop(f"{d}ff_context.net.2.{part}")
            if f"{d}attn2.to_q.{part}" in state:
                out[f"{x}attn2.qkv.{part}"] = torch.cat([state.pop(f"{d}attn2.to_{q}.{part}") for q in "qkv"])
                out[f"{x}attn2.proj.{part}"] = state.pop(f"{d}attn2.to_out.0.{part}")
        for source, target in (("attn.norm_q", f"{x}attn.ln_q"), ("attn.norm_k", f"{x}attn.ln_k"),
                               ("attn.norm_added_q", f"{c}attn.ln_q"), ("attn.norm_added_k", f"{c}attn.ln_k"),
                               ("attn2.norm_q", f"{x}attn2.ln_q"), ("attn2.norm_k", f"{x}attn2.ln_k")):
            if f"{d}{source}.weight" in state:
                out[f"{target}.weight"] = state.pop(f"{d}{source}.weight")
    assert not state, sorted(state)[:5]
    return out


def tiny_sd3(seed: int) -> Any:
    """SD3.5 Medium's shape, tiny: qk RMS norms, a dual-attention first layer."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    model = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=16,
                                  num_attention_heads=2, joint_attention_dim=SD3_T5_WIDTH, caption_projection_dim=32,
                                  pooled_projection_dim=CLIP_WIDTH + SD3_G_WIDTH, out_channels=16,
                                  pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    return model.eval()


SD3_G_WIDTH = 64
SD3_T5_WIDTH = 128  # wider than CLIP-L and CLIP-G side by side, as T5-XXL's 4096 is (768 + 1280)


@dataclass
class SD3Files:
    root: Path
    transformer: Any
    clip_l: Any
    clip_g: Any
    t5: Any
    vae: Any


def write_sd3_files(root: Path) -> SD3Files:
    """An SD3.5 install under ``root``: the MMDiT alone and in a checkpoint with its VAE and
    text encoders (SD3.5's own single-file layout), CLIP-L / CLIP-G / T5 files, the VAE."""
    from safetensors.torch import save_file

    for folder in ("diffusion_models", "text_encoders", "vae", "checkpoints"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    transformer = tiny_sd3(11)
    clip_l = tiny_clip(12, projection=True)
    clip_g = tiny_clip(13, width=SD3_G_WIDTH, projection=True, act="gelu", pad=0)
    t5 = tiny_t5(14, SD3_T5_WIDTH)
    vae = tiny_vae16(15, 1.5305, 0.0609)
    original = sd3_to_original(transformer)
    save_file(original, root / "diffusion_models" / "tiny-sd3.5_medium.safetensors")
    save_file(_state(clip_l), root / "text_encoders" / "tiny-sd3-clip_l.safetensors")
    save_file(_state(clip_g), root / "text_encoders" / "tiny-sd3-clip_g.safetensors")
    save_file(_state(t5), root / "text_encoders" / "tiny-sd3-t5xxl_fp16.safetensors")
    save_file(vae_to_ldm(vae, prefix=""), root / "vae" / "tiny-sd3-vae.safetensors")
    everything = {f"model.diffusion_model.{k}": v for k, v in original.items()}
    everything.update(vae_to_ldm(vae, prefix="first_stage_model."))
    save_file(everything, root / "checkpoints" / "tiny-sd3.5_medium-noclip.safetensors")
    everything.update(_state(clip_l, "text_encoders.clip_l.transformer."))
    everything.update(_state(clip_g, "text_encoders.clip_g.transformer."))
    everything.update(_state(t5, "text_encoders.t5xxl.transformer."))
    save_file(everything, root / "checkpoints" / "tiny-sd3.5_medium.safetensors")
    return SD3Files(root, transformer, clip_l, clip_g, t5, vae)


_WRITTEN: dict[str, Any] = {}


def flux_files_once(tmp_path_factory) -> FluxFiles:
    """The FLUX files, written once per test process (several test modules use them)."""
    if "flux" not in _WRITTEN:
        _WRITTEN["flux"] = write_flux_files(tmp_path_factory.mktemp("flux-models"))
    return _WRITTEN["flux"]


def sd3_files_once(tmp_path_factory) -> SD3Files:
    """The SD3.5 files, written once per test process."""
    if "sd3" not in _WRITTEN:
        _WRITTEN["sd3"] = write_sd3_files(tmp_path_factory.mktemp("sd3-models"))
    return _WRITTEN["sd3"]
