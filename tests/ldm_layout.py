"""Writing tiny diffusers models as single-file checkpoints in the original CompVis/LDM key
layout (what users download as ``.safetensors``), so the loader's conversion path is tested
on real key names. The reverse mapping of each component is the one CheckpointSave writes
with (``studio.runtime.ldm_export``); the ControlNet and T2I-Adapter layouts are test-only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from studio.runtime.ldm_export import (  # noqa: F401
    UNET_PREFIX,
    VAE_PREFIX,
    checkpoint_to_ldm,
    clip_to_ldm,
    open_clip_resblocks,
    open_clip_to_ldm,
    unet_to_ldm,
    vae_to_ldm,
)
from studio.runtime.ldm_names import unet_ldm_name

UNET = UNET_PREFIX
VAE = VAE_PREFIX


def copy_configs(folder: Path, target: Path) -> None:
    """The diffusers folder's configs in a folder named after the single file, as the loader
    reads them for an architecture Seed Studio ships no configs for."""
    configs = target.with_suffix("")
    for path in folder.rglob("*.json"):
        if path.name in ("model_index.json", "config.json", "scheduler_config.json"):
            destination = configs / path.relative_to(folder)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, destination)


def write_single_file(folder: Path, target: Path) -> Path:
    """Write the diffusers model in ``folder`` as one LDM-layout ``.safetensors`` file, with its
    configs in a folder of the same name (how a model Seed Studio ships no configs for is
    given its architecture)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    encoders = [CLIPTextModel.from_pretrained(folder / "text_encoder")]
    if (folder / "text_encoder_2").is_dir():
        family = "sdxl"
        encoders.append(CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2"))
    else:
        family = "sd2" if encoders[0].config.hidden_size == 1024 else "sd15"  # SD2 keeps OpenCLIP's layout
    state = checkpoint_to_ldm(family, unet, vae, encoders)
    save_file(state, str(target))
    copy_configs(folder, target)
    json.loads((target.with_suffix("") / "model_index.json").read_text())
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
    state = checkpoint_to_ldm("sdxl_refiner", unet, vae,
                              [CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2")])
    save_file(state, str(target))
    copy_configs(folder, target)
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


def vision_to_open_clip(model, prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """A transformers ``CLIPVisionModelWithProjection`` in OpenAI's / OpenCLIP's layout (what
    ``open_clip`` saves, and what unCLIP checkpoints embed under ``embedder.model.visual.``):
    q, k and v fused into one input projection, the output projection transposed."""
    state = model.state_dict()
    vision = {key.removeprefix("vision_model."): value for key, value in state.items()
              if key.startswith("vision_model.")}
    out = {prefix + "class_embedding": vision["embeddings.class_embedding"],
           prefix + "conv1.weight": vision["embeddings.patch_embedding.weight"],
           prefix + "positional_embedding": vision["embeddings.position_embedding.weight"],
           prefix + "ln_pre.weight": vision["pre_layrnorm.weight"], prefix + "ln_pre.bias": vision["pre_layrnorm.bias"],
           prefix + "ln_post.weight": vision["post_layernorm.weight"],
           prefix + "ln_post.bias": vision["post_layernorm.bias"],
           prefix + "proj": state["visual_projection.weight"].T.contiguous()}
    out.update(open_clip_resblocks(vision, model.config.num_hidden_layers, prefix))
    return {key: value.contiguous() for key, value in out.items()}


def noise_augmentor_buffers(timesteps: int = 1000) -> dict[str, torch.Tensor]:
    """The persistent buffers an unCLIP checkpoint stores for its noise augmentor (LDM's
    ``CLIPEmbeddingNoiseAugmentation``, squaredcos_cap_v2): the schedule only; its data
    statistics are non-persistent buffers, never saved."""
    import math

    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - alpha_bar((i + 1) / timesteps) / alpha_bar(i / timesteps), 0.999)
                          for i in range(timesteps)], dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    buffers = {"betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": previous,
               "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
               "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
               "log_one_minus_alphas_cumprod": (1 - alphas_cumprod).log(),
               "sqrt_recip_alphas_cumprod": (1 / alphas_cumprod).sqrt(),
               "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt()}
    return {f"noise_augmentor.{name}": value.float() for name, value in buffers.items()}


def write_unclip_single_file(folder: Path, target: Path) -> Path:
    """Write a tiny unCLIP diffusers folder (``tests.tiny_models.build_unclip``) as one LDM-layout
    ``.safetensors`` file as Stability's sd21-unclip checkpoints are laid out: the UNet's class
    input as ``label_emb``, SD 2's OpenCLIP text encoder, the noise augmentor's schedule and the
    image encoder in OpenCLIP's layout under ``embedder.model.visual.``; configs beside it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPVisionModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    # The class input has the LDM name SDXL's added embedding has (label_emb.0.*).
    unet_state = {key.replace("class_embedding.", "add_embedding."): value for key, value in unet.state_dict().items()}
    state = checkpoint_to_ldm("sd2", unet, vae, [CLIPTextModel.from_pretrained(folder / "text_encoder")],
                              unet_state=unet_state)
    state.update(vision_to_open_clip(CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder"),
                                     "embedder.model.visual."))
    state.update(noise_augmentor_buffers())
    save_file(state, str(target))
    copy_configs(folder, target)
    return target
