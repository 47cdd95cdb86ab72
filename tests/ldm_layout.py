"""Writing tiny diffusers models as single-file checkpoints in the original CompVis/LDM key
layout (what users download as ``.safetensors``), so the loader's conversion path is tested
on real key names. diffusers converts LDM → diffusers only; this is the reverse, written from
the key layout its converters read (``diffusers.loaders.single_file_utils``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from studio.runtime.ldm_names import unet_layout, unet_ldm_name

UNET = "model.diffusion_model."
VAE = "first_stage_model."


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    layers_per_block, with_attention = unet_layout(unet)
    out = {}
    for key, value in unet.state_dict().items():
        name = unet_ldm_name(key, layers_per_block, with_attention)
        if name is None:
            raise KeyError(key)
        out[UNET + name] = value
    return out


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    blocks = len(vae.config.block_out_channels)
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in vae.state_dict().items():
        key_ldm = key.replace("conv_norm_out", "norm_out")
        parts = key.split(".")
        if len(parts) > 2 and parts[1] == "down_blocks":
            key_ldm = (f"encoder.down.{parts[2]}.block.{parts[4]}.{'.'.join(parts[5:])}".replace(
                "conv_shortcut", "nin_shortcut") if parts[3] == "resnets"
                else f"encoder.down.{parts[2]}.downsample.conv.{parts[-1]}")
        elif len(parts) > 2 and parts[1] == "up_blocks":
            block = blocks - 1 - int(parts[2])
            key_ldm = (f"decoder.up.{block}.block.{parts[4]}.{'.'.join(parts[5:])}".replace(
                "conv_shortcut", "nin_shortcut") if parts[3] == "resnets"
                else f"decoder.up.{block}.upsample.conv.{parts[-1]}")
        elif len(parts) > 2 and parts[1] == "mid_block":
            if parts[2] == "resnets":
                key_ldm = f"{parts[0]}.mid.block_{int(parts[3]) + 1}.{'.'.join(parts[4:])}".replace(
                    "conv_shortcut", "nin_shortcut")
            else:
                inner = ".".join(parts[4:-1])
                key_ldm = f"{parts[0]}.mid.attn_1.{attention[inner]}.{parts[-1]}"
                if inner != "group_norm" and value.ndim == 2:
                    value = value[:, :, None, None]  # linear → 1×1 convolution, as LDM stores it
        out[VAE + key_ldm] = value
    return out


def clip_to_ldm(encoder, prefix: str) -> dict[str, torch.Tensor]:
    """A CLIP-L text model in the Hugging Face layout under an LDM prefix."""
    state = encoder.state_dict()
    return {prefix + (key if key.startswith("text_model.") else "text_model." + key): value
            for key, value in state.items() if not key.startswith("text_projection")}


def open_clip_to_ldm(encoder, prefix: str) -> dict[str, torch.Tensor]:
    """A CLIP text model with projection written in OpenCLIP's layout (SDXL's second encoder)."""
    state = {key.removeprefix("text_model."): value for key, value in encoder.state_dict().items()}
    out = {prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"]}
    if "text_projection.weight" in state:  # SDXL's second encoder; SD2's has no projection
        out[prefix + "text_projection"] = state["text_projection.weight"].T.contiguous()
    layers = encoder.config.num_hidden_layers
    for index in range(layers):
        source = f"encoder.layers.{index}."
        target = f"{prefix}transformer.resblocks.{index}."
        for kind in ("weight", "bias"):
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{source}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[f"{target}attn.out_proj.{kind}"] = state[f"{source}self_attn.out_proj.{kind}"]
            out[f"{target}ln_1.{kind}"] = state[f"{source}layer_norm1.{kind}"]
            out[f"{target}ln_2.{kind}"] = state[f"{source}layer_norm2.{kind}"]
            out[f"{target}mlp.c_fc.{kind}"] = state[f"{source}mlp.fc1.{kind}"]
            out[f"{target}mlp.c_proj.{kind}"] = state[f"{source}mlp.fc2.{kind}"]
    return out


def write_single_file(folder: Path, target: Path) -> Path:
    """Write the diffusers model in ``folder`` as one LDM-layout ``.safetensors`` file, with its
    configs in a folder of the same name (how a model Seed Studio ships no configs for is
    given its architecture)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae)}
    if (folder / "text_encoder_2").is_dir():
        state.update(clip_to_ldm(CLIPTextModel.from_pretrained(folder / "text_encoder"),
                                 "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2"),
                                      "conditioner.embedders.1.model."))
    else:
        encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
        if encoder.config.hidden_size == 1024:  # SD2 keeps OpenCLIP's own layout
            state.update(open_clip_to_ldm(encoder, "cond_stage_model.model."))
        else:
            state.update(clip_to_ldm(encoder, "cond_stage_model.transformer."))
    save_file({key: value.contiguous() for key, value in state.items()}, str(target))
    configs = target.with_suffix("")
    for path in folder.rglob("*.json"):
        if path.name in ("model_index.json", "config.json", "scheduler_config.json"):
            destination = configs / path.relative_to(folder)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, destination)
    json.loads((configs / "model_index.json").read_text())
    return target


def controlnet_to_ldm(net, prefix: str = "control_model.") -> dict[str, torch.Tensor]:
    """A diffusers ControlNet in the original layout (zero_convs, input_hint_block,
    middle_block_out; its UNet encoder copy named as the UNet's)."""
    layers = net.config.layers_per_block
    out = {}
    for key, value in net.state_dict().items():
        parts = key.split(".")
        if parts[0] == "controlnet_down_blocks":
            name = f"zero_convs.{parts[1]}.0.{parts[2]}"
        elif parts[0] == "controlnet_mid_block":
            name = f"middle_block_out.0.{parts[1]}"
        elif parts[0] == "controlnet_cond_embedding":
            if parts[1] == "conv_in":
                name = f"input_hint_block.0.{parts[2]}"
            elif parts[1] == "conv_out":
                name = f"input_hint_block.14.{parts[2]}"
            else:
                name = f"input_hint_block.{2 * (int(parts[2]) + 1)}.{parts[3]}"
        else:
            name = unet_ldm_name(key, layers, frozenset())
            if name is None:
                raise KeyError(key)
        out[prefix + name] = value
    return out


def write_refiner_single_file(folder: Path, target: Path) -> Path:
    """Write a diffusers SDXL refiner folder as one LDM-layout ``.safetensors`` file: its one
    encoder (text_encoder_2) in OpenCLIP's layout under ``conditioner.embedders.0.model.``,
    with its configs in a folder of the same name."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae),
             **open_clip_to_ldm(CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2"),
                                "conditioner.embedders.0.model.")}
    save_file({key: value.contiguous() for key, value in state.items()}, str(target))
    configs = target.with_suffix("")
    for path in folder.rglob("*.json"):
        if path.name in ("model_index.json", "config.json", "scheduler_config.json"):
            destination = configs / path.relative_to(folder)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, destination)
    return target


def t2i_adapter_to_original(adapter) -> dict[str, torch.Tensor]:
    """A diffusers ``T2IAdapter`` in TencentARC's original key layout (what the published
    ``t2iadapter_*_sd14v1.pth`` files hold). Full adapters: level i's resnet j is the flat
    block ``body.{2i+j}`` (two per level, as published) and a level's channel change is that
    first block's ``in_conv``; light adapters: ``body.i.body.j`` for ``body.i.resnets.j``."""
    light = adapter.config.adapter_type == "light_adapter"
    if not light and adapter.config.num_res_blocks != 2:
        raise ValueError("TencentARC's full adapters have two resnets per level")
    out = {}
    for key, value in adapter.state_dict().items():
        parts = key.removeprefix("adapter.").split(".")
        if parts[0] == "conv_in":
            name = ".".join(parts)
        elif light:
            name = (f"body.{parts[1]}.body.{parts[3]}.{'.'.join(parts[4:])}" if parts[2] == "resnets"
                    else ".".join(parts))
        elif parts[2] == "resnets":
            name = f"body.{2 * int(parts[1]) + int(parts[3])}.{'.'.join(parts[4:])}"
        else:  # the level's in_conv belongs to its first block
            name = f"body.{2 * int(parts[1])}.{'.'.join(parts[2:])}"
        out[name] = value
    return out
