"""Writing diffusers models back in the original CompVis/LDM key layout of single-file
checkpoints (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*`` /
``conditioner.embedders.*``), the layout artists share and other tools load.

diffusers converts LDM → diffusers only (``diffusers.loaders.single_file_utils``); this is the
reverse, written from the key layout those converters read, so a file written here loads back
through them to the same weights bit for bit. Each function takes the module (for its
configuration) and, optionally, the weights to write in its place: a save writes the weights a
model has with its LoRAs and merges applied, which are not the module's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from studio.runtime.families import ModelFamily
from studio.runtime.ldm_names import unet_layout, unet_ldm_name

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
# Where each family's text encoders live in a single file, in the order of TextEncoder.encoders,
# and in which layout: OpenAI's CLIP as Hugging Face names it, or OpenCLIP's own.
TEXT_ENCODER_LAYOUT = {
    ModelFamily.SD15: (("clip", "cond_stage_model.transformer."),),
    ModelFamily.SD2: (("open_clip", "cond_stage_model.model."),),
    ModelFamily.SDXL: (("clip", "conditioner.embedders.0.transformer."),
                       ("open_clip", "conditioner.embedders.1.model.")),
    ModelFamily.SDXL_REFINER: (("open_clip", "conditioner.embedders.0.model."),),
}
# The diffusers sub-folder of each text encoder, by family (for a config folder beside a file).
TEXT_ENCODER_FOLDERS = {ModelFamily.SD15: ("text_encoder",), ModelFamily.SD2: ("text_encoder",),
                        ModelFamily.SDXL: ("text_encoder", "text_encoder_2"),
                        ModelFamily.SDXL_REFINER: ("text_encoder_2",)}


def unet_to_ldm(unet: Any, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A diffusers UNet's weights (``state``, by default its own) under their LDM names."""
    layers_per_block, with_attention = unet_layout(unet)
    out = {}
    for key, value in (unet.state_dict() if state is None else state).items():
        name = unet_ldm_name(key, layers_per_block, with_attention)
        if name is None:
            raise KeyError(f"the UNet weight {key} has no name in the LDM layout")
        out[UNET_PREFIX + name] = value
    return out


def vae_to_ldm(vae: Any, state: dict[str, torch.Tensor] | None = None,
               prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL's weights under their LDM names (``prefix`` "" for a VAE file
    of its own)."""
    blocks = len(vae.config.block_out_channels)
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in (vae.state_dict() if state is None else state).items():
        key_ldm = key.replace("conv_norm_out", "norm_out")
        parts = key.split(".")
        if len(parts) > 2 and parts[1] == "down_blocks":
            key_ldm = (f"encoder.down.{parts[2]}.block.{parts[4]}.{'.'.join(parts[5:])}".replace(
                "conv_shortcut", "nin_shortcut") if parts[3] == "resnets"
                else f"encoder.down.{parts[2]}.downsample.conv.{parts[-1]}")
        elif len(parts) > 2 and parts[1] == "up_blocks":
            # LDM numbers the decoder's levels from the lowest resolution up, diffusers down.
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
        out[prefix + key_ldm] = value
    return out


def clip_to_ldm(encoder: Any, prefix: str, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """An OpenAI CLIP text model in the Hugging Face layout under an LDM prefix."""
    state = encoder.state_dict() if state is None else state
    # transformers 5 flattened CLIPTextModel; files name its weights as before, under text_model.
    return {prefix + (key if key.startswith("text_model.") else "text_model." + key): value
            for key, value in state.items() if not key.startswith("text_projection")}


def open_clip_to_ldm(encoder: Any, prefix: str,
                     state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A CLIP text model (with its projection, if any) in OpenCLIP's layout: SD2's encoder,
    SDXL's second and the refiner's."""
    state = {key.removeprefix("text_model."): value
             for key, value in (encoder.state_dict() if state is None else state).items()}
    out = {prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"]}
    if "text_projection.weight" in state:  # SDXL's second encoder; SD2's has no projection
        out[prefix + "text_projection"] = state["text_projection.weight"].T.contiguous()
    out.update(open_clip_resblocks(state, encoder.config.num_hidden_layers, prefix))
    return out


def open_clip_resblocks(state: dict[str, torch.Tensor], layers: int, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP encoder's layers (``encoder.layers.N.…``, text or vision) under
    OpenCLIP's names (``transformer.resblocks.N.…``)."""
    out = {}
    for index in range(layers):
        source = f"encoder.layers.{index}."
        target = f"{prefix}transformer.resblocks.{index}."
        for kind in ("weight", "bias"):
            # OpenCLIP keeps the query, key and value projections as one matrix.
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{source}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[f"{target}attn.out_proj.{kind}"] = state[f"{source}self_attn.out_proj.{kind}"]
            out[f"{target}ln_1.{kind}"] = state[f"{source}layer_norm1.{kind}"]
            out[f"{target}ln_2.{kind}"] = state[f"{source}layer_norm2.{kind}"]
            out[f"{target}mlp.c_fc.{kind}"] = state[f"{source}mlp.fc1.{kind}"]
            out[f"{target}mlp.c_proj.{kind}"] = state[f"{source}mlp.fc2.{kind}"]
    return out


def checkpoint_to_ldm(family: ModelFamily, unet: Any, vae: Any, encoders: list[Any],
                      unet_state: dict[str, torch.Tensor] | None = None,
                      vae_state: dict[str, torch.Tensor] | None = None,
                      encoder_states: list[dict[str, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
    """A whole checkpoint of ``family`` ("sd15", "sd2", "sdxl", "sdxl_refiner") as one LDM
    state dict, each tensor contiguous (as safetensors stores it)."""
    layout = TEXT_ENCODER_LAYOUT[family]
    if len(encoders) != len(layout):
        raise ValueError(f"a {family} checkpoint has {len(layout)} text encoders, not {len(encoders)}")
    state = {**unet_to_ldm(unet, unet_state), **vae_to_ldm(vae, vae_state)}
    for index, (encoder, (kind, prefix)) in enumerate(zip(encoders, layout, strict=True)):
        write = clip_to_ldm if kind == "clip" else open_clip_to_ldm
        state.update(write(encoder, prefix, encoder_states[index] if encoder_states else None))
    return {key: value.contiguous() for key, value in state.items()}


# Entries of a diffusers or transformers config that say nothing about the architecture.
_BOOKKEEPING = {"architectures", "transformers_version", "torch_dtype", "dtype", "in_channels"}


def _config_dict(module: Any) -> dict[str, Any]:
    config = module.config
    return dict(config.to_dict() if hasattr(config, "to_dict") else config)


def same_architecture(module: Any, shipped: Path) -> bool:
    """Whether ``module`` is what the loader builds from the shipped config file ``shipped``.
    Only the shipped file's entries are compared (a newer library adds defaults); the input
    channels are left out, as the loader reads them from the weights."""
    expected = json.loads(shipped.read_text(encoding="utf-8"))
    actual = json.loads(json.dumps(_config_dict(module), default=str))  # tuples → lists, as in the file
    return all(actual[key] == value for key, value in expected.items()
               if not key.startswith("_") and key not in _BOOKKEEPING and key in actual)


def needs_config_folder(family: ModelFamily, unet: Any, vae: Any, encoders: list[Any], configs: Path) -> bool:
    """Whether a checkpoint file of these modules needs its own config folder beside it to load
    back (an architecture other than the one ``configs``/<family> describes)."""
    folder = configs / family
    pairs = [(unet, folder / "unet" / "config.json"), (vae, folder / "vae" / "config.json"),
             *((encoder, folder / name / "config.json")
               for encoder, name in zip(encoders, TEXT_ENCODER_FOLDERS[family], strict=True))]
    return not all(same_architecture(module, path) for module, path in pairs)


def write_config_folder(folder: Path, family: ModelFamily, unet: Any, vae: Any, encoders: list[Any],
                        scheduler_config: dict[str, Any], model_index: Path) -> None:
    """The diffusers configs (no weights) that give a single file its architecture: the
    folder the checkpoint loader looks for beside a file of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(model_index.read_text(encoding="utf-8"), encoding="utf-8")
    unet.save_config(folder / "unet")
    vae.save_config(folder / "vae")
    for encoder, name in zip(encoders, TEXT_ENCODER_FOLDERS[family], strict=True):
        (folder / name).mkdir(exist_ok=True)
        encoder.config.to_json_file(str(folder / name / "config.json"))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2),
                                                                 encoding="utf-8")
