"""Loading FLUX.1 and SD3.5 from the files a ComfyUI user has: a transformer alone
(``diffusion_models``/``unet``, UNETLoader), text encoders alone (``text_encoders``/``clip``,
CLIPLoader, DualCLIPLoader, TripleCLIPLoader), all-in-one checkpoints
(CheckpointLoaderSimple), 16-channel VAEs (VAELoader), and diffusers folders as they are.

Every file is recognised from its keys; nothing is downloaded. Loaded models are cached by
the model manager like checkpoints, keyed by file and storage precision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from studio.runtime.checkpoints import Checkpoint, DiffusionModel, ModelLoadError, TextEncoder, read_state_dict
from studio.runtime.device import DevicePolicy
from studio.runtime.families import TRANSFORMER_FAMILIES, ModelFamily
from studio.runtime.flux import (
    FLUX_SCALE,
    FLUX_SHIFT,
    bfl_weights,
    flux_model,
    latent_channels,
    load_flux_transformer,
    load_vae16,
    vae_weights,
)
from studio.runtime.sd3 import SD3_SCALE, SD3_SHIFT, load_sd3_transformer, mmdit_weights, sd3_model
from studio.runtime.text_encoders import embedded_encoders, load_encoder_file, text_encoder_for
from studio.runtime.weight_storage import file_storage_dtype, offload_if_too_big, storage_for

# ComfyUI's CLIP types for the loaders, and the family each encodes for.
CLIP_TYPES = ("stable_diffusion", "sd3", "flux", "sdxl")


def transformer_family(state_dict: Mapping[str, Any]) -> ModelFamily | None:
    """FLUX or SD3 for a file holding one of their transformers, else None."""
    if bfl_weights(state_dict) is not None:
        return ModelFamily.FLUX
    if mmdit_weights(state_dict) is not None:
        return ModelFamily.SD3
    return None


def _transformer(path: Path, state_dict: Mapping[str, torch.Tensor], policy: DevicePolicy, key: str,
                 weight_dtype: str) -> DiffusionModel:
    flux = bfl_weights(state_dict)
    if flux is not None:
        transformer = load_flux_transformer(path, flux, policy.dtype, storage_for(weight_dtype, flux))
        return flux_model(transformer, key, offload_if_too_big(transformer, policy))
    mmdit = mmdit_weights(state_dict)
    if mmdit is not None:
        transformer = load_sd3_transformer(path, mmdit, policy.dtype, storage_for(weight_dtype, mmdit))
        return sd3_model(transformer, key, offload_if_too_big(transformer, policy))
    raise ModelLoadError(path, "is not a FLUX.1 or SD3.5 transformer (no double_blocks.* or joint_blocks.* "
                         "weights); SD 1.x/XL checkpoints go in the checkpoints folder")


def load_diffusion_model(path: Path, policy: DevicePolicy, key: str, weight_dtype: str = "default") -> DiffusionModel:
    """UNETLoader: a FLUX or SD3 transformer alone (a single file, or a diffusers model folder
    with its config.json), stored in ``weight_dtype`` ("default": the file's own fp8, or the
    compute precision)."""
    if path.is_dir():
        return _transformer_folder(path, policy, key, weight_dtype)
    return _transformer(path, read_state_dict(path), policy, key, weight_dtype)


def _transformer_folder(path: Path, policy: DevicePolicy, key: str, weight_dtype: str) -> DiffusionModel:
    import diffusers

    from studio.runtime.weight_storage import WEIGHT_DTYPES

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(path, f"has no readable config.json ({error})") from None
    name = config.get("_class_name")
    if name not in ("FluxTransformer2DModel", "SD3Transformer2DModel"):
        raise ModelLoadError(path, f"is a diffusers {name or 'model'} folder, not a FLUX or SD3 transformer")
    model = getattr(diffusers, name).from_pretrained(path, local_files_only=True, torch_dtype=policy.dtype)
    storage = WEIGHT_DTYPES.get(weight_dtype)
    if storage is not None:
        model.enable_layerwise_casting(storage_dtype=storage, compute_dtype=policy.dtype)
        model.compute_dtype = policy.dtype
    model.eval().requires_grad_(False)
    offloaded_to = offload_if_too_big(model, policy)
    return (flux_model(model, key, offloaded_to) if name == "FluxTransformer2DModel"
            else sd3_model(model, key, offloaded_to))


def load_text_encoders(paths: Sequence[Path], clip_type: str, policy: DevicePolicy, key: str) -> TextEncoder:
    """CLIPLoader / DualCLIPLoader / TripleCLIPLoader: text encoder files (CLIP-L, CLIP-G,
    T5-XXL, each recognised from its keys) as the CLIP of ``clip_type``: "flux" (CLIP-L +
    T5), "sd3" (any of CLIP-L, CLIP-G, T5), "sdxl" (CLIP-L + CLIP-G), "stable_diffusion"
    (one CLIP-L: SD 1.x)."""
    from studio.runtime.text_encoders import CLIP_KEY, encoder_kind

    files = []
    for path in paths:
        state_dict = read_state_dict(path)
        kind = encoder_kind(state_dict)
        if kind is None:
            raise ModelLoadError(path, "is not a CLIP or T5 text encoder (no text_model.* or encoder.block.* weights "
                                 "in transformers' layout)")
        files.append([path, state_dict, kind])
    clips = [entry for entry in files if entry[2] != "t5xxl"]
    if len(clips) == 2:
        # Two CLIPs (SD3, SDXL): the wider is CLIP-G; of equal widths, the second named.
        widths = [int(entry[1].get(CLIP_KEY, entry[1].get(CLIP_KEY.removeprefix("text_model."))).shape[1])
                  for entry in clips]
        wider = 1 if widths[1] >= widths[0] else 0
        clips[wider][2], clips[1 - wider][2] = "clip_g", "clip_l"
    encoders: dict[str, Any] = {}
    for path, state_dict, kind in files:
        if kind in encoders:
            raise ModelLoadError(path, f"is a second {kind} text encoder; each of CLIP-L, CLIP-G and T5-XXL may be "
                                 "loaded once")
        encoders[kind] = load_encoder_file(path, state_dict, policy.dtype, file_storage_dtype(state_dict), kind)[1]
    if clip_type in ("sdxl", "stable_diffusion"):
        return _clip_text_encoder(paths, clip_type, encoders, key)
    family = ModelFamily.FLUX if clip_type == "flux" else ModelFamily.SD3
    if family == ModelFamily.FLUX and set(encoders) != {"clip_l", "t5xxl"}:
        raise ModelLoadError(paths[0], f"FLUX needs CLIP-L and T5-XXL; these files hold {', '.join(sorted(encoders))}")
    return text_encoder_for(family, encoders, key)


def _clip_text_encoder(paths: Sequence[Path], clip_type: str, encoders: dict[str, Any], key: str) -> TextEncoder:
    from studio.runtime.checkpoints import make_tokenizer

    if clip_type == "stable_diffusion":
        if set(encoders) != {"clip_l"}:
            raise ModelLoadError(paths[0], "type stable_diffusion takes one CLIP-L text encoder")
        return TextEncoder(ModelFamily.SD15, [make_tokenizer()], [encoders["clip_l"]], key)
    if set(encoders) != {"clip_l", "clip_g"}:
        raise ModelLoadError(paths[0], "type sdxl takes CLIP-L and CLIP-G text encoders")
    return TextEncoder(ModelFamily.SDXL, [make_tokenizer(), make_tokenizer("!")],
                       [encoders["clip_l"], encoders["clip_g"]], key)


def load_transformer_checkpoint(path: Path, state_dict: Mapping[str, torch.Tensor], policy: DevicePolicy,
                                key: str) -> Checkpoint:
    """CheckpointLoaderSimple on an all-in-one FLUX or SD3.5 file: the transformer, the text
    encoders it carries (an SD3.5 file may carry none: its CLIP is then empty and
    TripleCLIPLoader supplies them), and its VAE."""
    model = _transformer(path, state_dict, policy, key, "default")
    weights = vae_weights(state_dict)
    if weights is None:
        raise ModelLoadError(path, "holds a transformer but no VAE (first_stage_model.* / vae.*); load it with "
                             "UNETLoader from the diffusion_models folder instead")
    scale, shift = (FLUX_SCALE, FLUX_SHIFT) if model.family == ModelFamily.FLUX else (SD3_SCALE, SD3_SHIFT)
    vae = load_vae16(path, weights, policy.dtype, key, scale, shift, tiled=policy.is_gpu)
    encoders = {}
    for kind, encoder_weights in embedded_encoders(state_dict).items():
        _, encoders[kind] = load_encoder_file(path, encoder_weights, policy.dtype, file_storage_dtype(encoder_weights),
                                              kind=kind)
    clip = text_encoder_for(model.family, encoders, key) if encoders else None
    return Checkpoint(model, clip, vae)


def load_vae_weights(path: Path, state_dict: Mapping[str, torch.Tensor], policy: DevicePolicy, key: str):
    """A 16-channel VAE file (FLUX's ae.safetensors, SD3's), or None for a 4-channel one."""
    weights = vae_weights(state_dict)
    if weights is None or latent_channels(weights) == 4:
        return None
    return load_vae16(path, weights, policy.dtype, key, tiled=policy.is_gpu)


def load_pipeline_folder(path: Path, policy: DevicePolicy, key: str) -> Checkpoint | None:
    """A diffusers FluxPipeline or StableDiffusion3Pipeline folder, as it is (with the
    shipped tokenizers); None for other pipelines."""
    try:
        name = json.loads((path / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError):
        return None
    if name not in ("FluxPipeline", "StableDiffusion3Pipeline"):
        return None
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel

    options = {"local_files_only": True, "torch_dtype": policy.dtype}
    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **options).eval().requires_grad_(False)
        model = _transformer_folder(path / "transformer", policy, key, "default")
        encoders = {}
        flux = name == "FluxPipeline"
        folders = ({"clip_l": ("text_encoder", CLIPTextModel), "t5xxl": ("text_encoder_2", T5EncoderModel)} if flux
                   else {"clip_l": ("text_encoder", CLIPTextModelWithProjection),
                         "clip_g": ("text_encoder_2", CLIPTextModelWithProjection),
                         "t5xxl": ("text_encoder_3", T5EncoderModel)})
        for role, (folder, model_class) in folders.items():
            if (path / folder).is_dir():
                encoders[role] = model_class.from_pretrained(path / folder, **options).eval().requires_grad_(False)
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(path, f"cannot be loaded as a diffusers model ({str(error).splitlines()[0][:300]})") \
            from None
    from studio.runtime.checkpoints import Vae

    return Checkpoint(model, text_encoder_for(model.family, encoders, key), Vae(vae, key))


def cpu_warning(model: DiffusionModel, policy: DevicePolicy) -> str | None:
    """A sentence for a full-size transformer about to run on the CPU, with a rough time for a
    1024² step (two multiply-adds per weight per token at ~50 GFLOP/s per core), else None."""
    if policy.is_gpu or model.family not in TRANSFORMER_FAMILIES:
        return None
    parameters = sum(p.numel() for p in model.unet.parameters())
    if parameters < 1e9:
        return None
    tokens = 4096 + 512  # a 1024² picture's latent patches and the prompt's tokens
    seconds = 2 * parameters * tokens / (50e9 * max(1, torch.get_num_threads()))
    return (f"{TRANSFORMER_FAMILIES[model.family]} ({parameters / 1e9:.1f} billion weights) runs on the CPU here: "
            f"about {seconds / 60:.0f} minutes per step at 1024², so a 20-step picture takes hours; a GPU takes "
            "seconds per step")
