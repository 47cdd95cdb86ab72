"""Loading Stable Diffusion checkpoints offline: diffusers folders and single files in the
original (CompVis/LDM) layout for SD1.x, SD2.x and SDXL.

Single files are read once; their family is detected from their keys (diffusers'
``infer_diffusers_model_type``), and each component is built from the configs shipped in
``resources/configs/<family>`` (or a diffusers config folder with the file's own name next
to it, for architectures Seed Studio does not ship), so nothing is fetched from the network.
The CLIP tokenizer comes from ``resources/tokenizers/clip``.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from studio.runtime.device import DevicePolicy
from studio.settings import RESOURCES_DIR

CONFIGS_DIR = RESOURCES_DIR / "configs"
TOKENIZER_DIR = RESOURCES_DIR / "tokenizers" / "clip"
# diffusers' names for checkpoint families, and the config folder we ship for each.
FAMILY_OF_MODEL_TYPE = {"v1": "sd15", "v2": "sd2", "xl_base": "sdxl"}
FAMILY_NAMES = {"sd15": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class ModelLoadError(ValueError):
    """A model file that cannot be used, naming the file and what was wrong with it."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path.name}: {message}")


@dataclass
class DiffusionModel:
    """What flows through a MODEL socket: the denoising UNet and how it was trained."""

    unet: Any
    family: str
    scheduler_config: dict[str, Any]
    key: str
    # How latents are scaled for this UNet; a property of the model family (its own VAE's
    # factor), not of whichever VAE decodes the result.
    latent_scale: float = 0.18215
    # LoRA patches to merge while sampling (the shared UNet itself is never changed).
    patches: tuple[Any, ...] = ()

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")


@dataclass
class TextEncoder:
    """What flows through a CLIP socket: one or two CLIP text models with their tokenizers."""

    family: str
    tokenizers: list[Any]
    encoders: list[Any]
    key: str
    # CLIPSetLastLayer: -1 is the last layer, -2 the one before it, as in ComfyUI.
    stop_at_layer: int = -1
    # LoRA patches to merge while encoding (target "clip0" / "clip1" names the encoder).
    patches: tuple[Any, ...] = ()

    def with_last_layer(self, layer: int) -> TextEncoder:
        return replace(self, stop_at_layer=layer)

    def patched_modules(self) -> list[tuple[Any, Any]]:
        return [(self.encoders[int(patch.target[4:])], patch) for patch in self.patches]


@dataclass
class Vae:
    """What flows through a VAE socket."""

    vae: Any
    key: str

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


@dataclass
class Checkpoint:
    model: DiffusionModel
    clip: TextEncoder
    vae: Vae


def make_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """CLIP's tokenizer from the shipped vocabulary (SD2 and SDXL's second encoder pad with
    "!", the others with the end-of-text token)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"),
                         model_max_length=77, pad_token=pad_token)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; pickles only as plain weights (``weights_only``)."""
    if not path.is_file():
        raise ModelLoadError(path, f"file not found ({path})")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(path, f"damaged or not a safetensors file ({error})") from None
    if suffix in PICKLE_SUFFIXES:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # Refused by the weights-only unpickler: Python objects (code) besides tensors, a
            # pickle protocol it does not read, or not a pickle at all. None of it is loaded.
            raise ModelLoadError(path, "is not a plain-weights file: pickled .ckpt/.pth files are read only "
                                 "when they hold nothing but weights (convert it to .safetensors)") from None
        except Exception as error:  # the weights-only unpickler raises many kinds on garbage
            raise ModelLoadError(path, f"damaged or not a PyTorch weights file ({type(error).__name__}: "
                                 f"{error})") from None
        if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
            data = data["state_dict"]
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise ModelLoadError(path, "does not hold a dictionary of weights")
        return data
    raise ModelLoadError(path, f"unknown kind of weights file {suffix!r} (expected .safetensors or .ckpt)")


def detect_family(path: Path, state_dict: dict[str, torch.Tensor]) -> str:
    """Which shipped config fits a single-file checkpoint, from its keys and shapes."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    if not any(key.startswith("model.diffusion_model.") for key in state_dict):
        raise ModelLoadError(path, "is not a Stable Diffusion checkpoint (it has no model.diffusion_model "
                             "weights; a LoRA, VAE or ControlNet goes in its own folder)")
    model_type = infer_diffusers_model_type(state_dict)
    family = FAMILY_OF_MODEL_TYPE.get(model_type)
    if family is None:
        raise ModelLoadError(path, f"is a {model_type!r} checkpoint, which Seed Studio cannot load yet "
                             f"(it loads {', '.join(FAMILY_NAMES.values())})")
    return family


def _config_folder(path: Path, family: str) -> Path:
    sidecar = path.with_suffix("")
    if (sidecar / "model_index.json").is_file():
        return sidecar
    return CONFIGS_DIR / family


def _scheduler_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))


def load_single_file(path: Path, policy: DevicePolicy, key: str) -> Checkpoint:
    """A CompVis/LDM-layout checkpoint, converted with diffusers' converters."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    state_dict = read_state_dict(path)
    family = detect_family(path, state_dict)
    folder = _config_folder(path, family)
    options = {"config": str(folder), "local_files_only": True, "torch_dtype": policy.dtype}
    try:
        unet = UNet2DConditionModel.from_single_file(state_dict, subfolder="unet", **options)
        vae = AutoencoderKL.from_single_file(state_dict, subfolder="vae", **options)
        encoders = [create_diffusers_clip_model_from_ldm(CLIPTextModel, state_dict, subfolder="text_encoder",
                                                         **options)]
        if family == "sdxl":
            encoders.append(create_diffusers_clip_model_from_ldm(
                CLIPTextModelWithProjection, state_dict, subfolder="text_encoder_2", **options))
    except (ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(path, f"looks like {FAMILY_NAMES[family]} but its weights do not fit that "
                             f"architecture ({str(error).splitlines()[0][:300]})") from None
    tokenizers = {"sd15": [make_tokenizer()], "sd2": [make_tokenizer("!")],
                  "sdxl": [make_tokenizer(), make_tokenizer("!")]}[family]
    return _assemble(family, unet, encoders, tokenizers, vae, _scheduler_config(folder), key)


def load_diffusers_folder(path: Path, policy: DevicePolicy, key: str) -> Checkpoint:
    """A diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, …)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if not (path / "model_index.json").is_file():
        raise ModelLoadError(path, "is a folder without model_index.json, so not a diffusers model")
    options = {"local_files_only": True, "torch_dtype": policy.dtype}
    try:
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **options)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **options)
        encoders = [CLIPTextModel.from_pretrained(path / "text_encoder", **options)]
        if (path / "text_encoder_2").is_dir():
            encoders.append(CLIPTextModelWithProjection.from_pretrained(path / "text_encoder_2", **options))
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(path, f"cannot be loaded as a diffusers model ({str(error).splitlines()[0][:300]})") \
            from None
    family = "sdxl" if len(encoders) == 2 else "sd2" if unet.config.cross_attention_dim == 1024 else "sd15"
    tokenizers = []
    for index, name in enumerate(("tokenizer", "tokenizer_2")[:len(encoders)]):
        if (path / name / "vocab.json").is_file():
            tokenizers.append(CLIPTokenizer.from_pretrained(path / name, model_max_length=77))
        else:
            tokenizers.append(make_tokenizer("!" if family == "sd2" or index == 1 else "<|endoftext|>"))
    return _assemble(family, unet, encoders, tokenizers, vae, _scheduler_config(path), key)


def _assemble(family: str, unet: Any, encoders: list[Any], tokenizers: list[Any], vae: Any,
              scheduler_config: dict[str, Any], key: str) -> Checkpoint:
    for name, module in (("UNet", unet), ("VAE", vae), *((f"text encoder {i + 1}", e) for i, e in enumerate(encoders))):
        # Weights the file did not provide stay as empty "meta" tensors; refuse them here
        # rather than fail mid-render.
        missing = [k for k, v in module.state_dict().items() if v.device.type == "meta"]
        if missing:
            raise ModelLoadError(Path(key.split("|")[0]), f"the {name} is missing {len(missing)} weights "
                                 f"(e.g. {missing[0]}); the file is incomplete or of another architecture")
        module.eval().requires_grad_(False)
    return Checkpoint(DiffusionModel(unet, family, scheduler_config, key, float(vae.config.scaling_factor)),
                      TextEncoder(family, tokenizers, encoders, key), Vae(vae, key))


def load_vae_file(path: Path, policy: DevicePolicy, key: str, family: str = "sd15") -> Vae:
    """A separate VAE: a diffusers VAE folder, or a single file in either key layout."""
    from diffusers import AutoencoderKL

    if path.is_dir():
        try:
            return Vae(AutoencoderKL.from_pretrained(path, local_files_only=True, torch_dtype=policy.dtype).eval(), key)
        except (OSError, ValueError) as error:
            raise ModelLoadError(path, f"cannot be loaded as a diffusers VAE ({error})") from None
    state_dict = read_state_dict(path)
    if not any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in state_dict):
        raise ModelLoadError(path, "is not a VAE (no encoder/decoder weights)")
    sidecar = path.with_suffix("")
    config, subfolder = ((str(sidecar), None) if (sidecar / "config.json").is_file()
                         else (str(CONFIGS_DIR / family), "vae"))
    try:
        vae = AutoencoderKL.from_single_file(state_dict, config=config, subfolder=subfolder,
                                             local_files_only=True, torch_dtype=policy.dtype)
    except (ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(path, f"does not fit the VAE architecture ({str(error).splitlines()[0][:300]})") \
            from None
    return Vae(vae.eval().requires_grad_(False), key)
