"""Loading Stable Diffusion checkpoints offline: diffusers folders and single files in the
original (CompVis/LDM) layout for SD1.x, SD2.x, SDXL and the SDXL refiner, the inpainting
models of each (whose UNet reads 9 channels: the latent, the mask and the masked picture's
latent), and SD 2.1 unCLIP (an SD 2 UNet that also reads a picture's CLIP image embedding,
with the CLIP vision model that makes it embedded in the file).

Single files are read once; their family is detected from their keys (diffusers'
``infer_diffusers_model_type``), and each component is built from the configs shipped in
``resources/configs/<family>`` (or a diffusers config folder with the file's own name next
to it, for architectures Seed Studio does not ship), so nothing is fetched from the network.
An inpainting file uses its family's configs with the UNet's input channels taken from its
weights. The CLIP tokenizer comes from ``resources/tokenizers/clip``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from studio.runtime.device import DevicePolicy
from studio.runtime.families import FAMILY_NAMES, TRANSFORMER_FAMILIES, ModelFamily
from studio.runtime.model_errors import (  # noqa: F401
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    ModelLoadError,
    read_safetensors,
    read_weights_pickle,
)
from studio.settings import RESOURCES_DIR

CONFIGS_DIR = RESOURCES_DIR / "configs"
TOKENIZER_DIR = RESOURCES_DIR / "tokenizers" / "clip"
# diffusers' names for checkpoint families, and the config folder we ship for each. The
# inpainting models share their family's architecture but for the UNet's input channels.
FAMILY_OF_MODEL_TYPE = {"v1": ModelFamily.SD15, "v2": ModelFamily.SD2, "xl_base": ModelFamily.SDXL,
                        "xl_refiner": ModelFamily.SDXL_REFINER, "inpainting": ModelFamily.SD15,
                        "inpainting_v2": ModelFamily.SD2, "xl_inpaint": ModelFamily.SDXL,
                        "instruct-pix2pix": ModelFamily.SD15}
# The tokenizer of each text encoder, by family: OpenCLIP's encoders (SD2's, SDXL's second
# and the refiner's only one) pad with "!", OpenAI's CLIP with the end-of-text token.
TOKENIZER_PADDING = {ModelFamily.SD15: ("<|endoftext|>",), ModelFamily.SD2: ("!",),
                     ModelFamily.SDXL: ("<|endoftext|>", "!"), ModelFamily.SDXL_REFINER: ("!",),
                     ModelFamily.SD2_UNCLIP: ("!",)}
UNET_INPUT_KEY = "model.diffusion_model.input_blocks.0.0.weight"
# SD 2.1 unCLIP: the UNet's class ("adm") input, an image embedding and its noise level's
# embedding side by side (1536 for unCLIP L's ViT-L/14, 2048 for unCLIP H's ViT-H/14), and
# the embedded image encoder. SDXL has a label_emb too, but no image embedder.
UNCLIP_LABEL_KEY = "model.diffusion_model.label_emb.0.0.weight"
UNCLIP_EMBEDDER_PREFIX = "embedder.model."
UNCLIP_CONFIGS = {1536: "sd21_unclip_l", 2048: "sd21_unclip_h"}
# A UNet's input channels: 4 for the latent alone, 9 for inpainting (latent, mask, masked
# picture's latent), which the sampler builds for it.
INPUT_CHANNELS = {4: "text to image", 8: "InstructPix2Pix", 9: "inpainting"}


@dataclass
class DiffusionModel:
    """What flows through a MODEL socket: the denoising UNet and how it was trained."""

    unet: Any
    family: ModelFamily
    scheduler_config: dict[str, Any]
    key: str
    # How latents are scaled for this UNet; a property of the model family (its own VAE's
    # factor), not of whichever VAE decodes the result.
    latent_scale: float = 0.18215
    # LoRA patches to merge while sampling (the shared UNet itself is never changed).
    patches: tuple[Any, ...] = ()
    # How noise level maps to timestep and what the output means, when a node changed it
    # (ModelSamplingDiscrete, …); None: from scheduler_config.
    sampling: Any = None
    # RescaleCFG's multiplier: guidance rescaled towards the conditional prediction's spread.
    cfg_rescale: float | None = None
    # unCLIP: what noises image embeddings before the UNet reads them (an
    # EmbeddingNoiseAugmentor from studio.runtime.clip_vision); None for other families.
    noise_augmentor: Any = None
    # Hypernetworks acting on every attention layer while sampling (studio.runtime.hypernetwork).
    hypernetworks: tuple[Any, ...] = ()
    # Subtracted from VAE latents before scaling (FLUX's and SD3's latent formats), added back after.
    latent_shift: float = 0.0
    # The VAE that came with this model (its checkpoint's): live previews are fitted to it.
    preview_vae: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.family = ModelFamily(self.family)  # a plain family string is taken too

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    @property
    def is_inpainting(self) -> bool:
        """An inpainting UNet: besides the latent it reads the mask and the masked picture's
        latent (9 input channels)."""
        return int(getattr(self.unet.config, "in_channels", 4)) == 9


@dataclass
class TextEncoder:
    """What flows through a CLIP socket: one or two CLIP text models with their tokenizers
    (the SDXL refiner's one is SDXL's second encoder, OpenCLIP ViT-bigG, with its projection)."""

    family: ModelFamily
    tokenizers: list[Any]
    encoders: list[Any]
    key: str
    # CLIPSetLastLayer: -1 is the last layer, -2 the one before it, as in ComfyUI.
    stop_at_layer: int = -1
    # LoRA patches to merge while encoding (target "clip0" / "clip1" names the encoder).
    patches: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        self.family = ModelFamily(self.family)  # a plain family string is taken too

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
    # The image encoder an unCLIP checkpoint carries (a ClipVision), else None.
    clip_vision: Any = None

    def __post_init__(self) -> None:
        if self.model.preview_vae is None:
            self.model.preview_vae = self.vae


@functools.lru_cache(maxsize=4)
def make_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """CLIP's tokenizer from the shipped vocabulary (SD2, SDXL's second encoder and the SDXL
    refiner pad with "!", the others with the end-of-text token). Made once per padding and
    shared (tokenizing changes nothing in it); building it reads 1.5 MB of vocabulary."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"),
                         model_max_length=77, pad_token=pad_token)


def read_state_dict(path: Path, wrappers: tuple[str, ...] = ("state_dict",)) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; pickles only as plain weights (``weights_only``).

    A pickle may hold its weights one level down, under the first of ``wrappers`` it has
    (``{"state_dict": …}`` for checkpoints; upscalers add ``params_ema`` and ``params``).
    """
    if not path.is_file():
        raise ModelLoadError(path, f"file not found ({path})")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return read_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        data = read_weights_pickle(path, "is not a plain-weights file: pickled .ckpt/.pth files are read only when "
                                   "they hold nothing but weights (convert it to .safetensors)",
                                   "a PyTorch weights file")
        for wrapper in wrappers:
            if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
                data = data[wrapper]
                break
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise ModelLoadError(path, "does not hold a dictionary of weights")
        return data
    raise ModelLoadError(path, f"unknown kind of weights file {suffix!r} (expected .safetensors or .ckpt)")


def detect_family(path: Path, state_dict: Mapping[str, Any]) -> ModelFamily:
    """Which shipped config fits a single-file checkpoint, from its keys and shapes.

    Only names and shapes are read, so ``state_dict`` may hold empty "meta" tensors made from
    a safetensors header (:func:`inspect_checkpoint_header`).
    """
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    if not any(key.startswith("model.diffusion_model.") for key in state_dict):
        raise ModelLoadError(path, "is not a Stable Diffusion checkpoint (it has no model.diffusion_model "
                             "weights; a LoRA, VAE or ControlNet goes in its own folder)")
    if is_unclip(state_dict):
        unet_input_channels(path, state_dict)
        return ModelFamily.SD2_UNCLIP
    from studio.runtime.transformer_models import transformer_family

    transformer = transformer_family(state_dict)  # FLUX.1 / SD3.5 all-in-one files
    if transformer is not None:
        return transformer
    model_type = infer_diffusers_model_type(state_dict)
    family = FAMILY_OF_MODEL_TYPE.get(model_type)
    if family is None:
        raise ModelLoadError(path, f"is a {model_type!r} checkpoint, which Seed Studio cannot load yet "
                             f"(it loads {', '.join(FAMILY_NAMES.values())}, their inpainting models and "
                             "InstructPix2Pix)")
    unet_input_channels(path, state_dict)
    if family == ModelFamily.SDXL_REFINER and "conditioner.embedders.0.model.text_projection" not in state_dict:
        raise ModelLoadError(path, "looks like the SDXL refiner but has no text projection for its text encoder "
                             "(conditioner.embedders.0.model.text_projection); the file is incomplete")
    return family


def is_unclip(state_dict: Mapping[str, Any]) -> bool:
    """An SD 2.1 unCLIP checkpoint: a UNet with a class input and an image embedder (or the
    embedder's noise augmentor, in files whose image encoder was stripped)."""
    return UNCLIP_LABEL_KEY in state_dict and any(
        key.startswith((UNCLIP_EMBEDDER_PREFIX, "noise_augmentor.")) for key in state_dict)


def unclip_embedding_width(path: Path, state_dict: Mapping[str, Any]) -> int:
    """The width of the image embedding an unCLIP UNet reads: half its class input (the other
    half is the noise level's embedding)."""
    inputs = int(state_dict[UNCLIP_LABEL_KEY].shape[1])
    if inputs % 2:
        raise ModelLoadError(path, f"has an unCLIP class input of {inputs} values; expected an even number (an "
                             "image embedding and its noise level's embedding of the same width)")
    return inputs // 2


def unet_input_channels(path: Path, state_dict: Mapping[str, Any]) -> int:
    """The UNet's input channels, read from its first convolution: 4, 8 for InstructPix2Pix
    (the latent and the source picture's), or 9 for inpainting."""
    weight = state_dict.get(UNET_INPUT_KEY)
    if weight is None:
        raise ModelLoadError(path, f"has no UNet input convolution ({UNET_INPUT_KEY}); the file is incomplete")
    channels = int(weight.shape[1])
    if channels not in INPUT_CHANNELS:
        raise ModelLoadError(path, f"has a UNet with {channels} input channels, which Seed Studio cannot use (it "
                             "loads UNets with 4 channels, for text to image, 8, for InstructPix2Pix, and 9, "
                             "for inpainting)")
    return channels


def inspect_checkpoint_header(path: Path) -> str | None:
    """Why the checkpoint loader would refuse this file, or None when it would load it (as far
    as names and shapes tell), reading only a safetensors file's header, no weights.

    Applies the loader's own rules (:func:`detect_family`). Pickled files (``.ckpt``) cannot
    be judged without unpickling them, so they pass; a diffusers folder passes when it has
    its ``model_index.json``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return None
        return str(ModelLoadError(path, "is a folder without model_index.json, so not a diffusers model"))
    if not path.is_file():
        return str(ModelLoadError(path, f"file not found ({path})"))
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return None
    if suffix not in SAFETENSORS_SUFFIXES:
        return str(ModelLoadError(path, f"unknown kind of weights file {suffix!r} (expected .safetensors or "
                                  ".ckpt)"))
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            # Empty tensors of the right shapes: the family rules read keys and shapes only.
            shapes = {key: torch.empty(handle.get_slice(key).get_shape(), device="meta") for key in handle.keys()}  # noqa: SIM118 - a safe_open handle is not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        return str(ModelLoadError(path, f"damaged or not a safetensors file ({error})"))
    try:
        detect_family(path, shapes)
    except ModelLoadError as error:
        return str(error)
    return None


def _config_folder(path: Path, family: ModelFamily, state_dict: Mapping[str, Any] | None = None) -> Path:
    sidecar = path.with_suffix("")
    if (sidecar / "model_index.json").is_file():
        return sidecar
    if family == ModelFamily.SD2_UNCLIP:
        inputs = int(state_dict[UNCLIP_LABEL_KEY].shape[1])
        if inputs not in UNCLIP_CONFIGS:
            raise ModelLoadError(path, f"is an unCLIP checkpoint whose UNet reads {inputs} image values, which Seed "
                                 "Studio ships no config for (1536 for SD 2.1 unCLIP L, 2048 for unCLIP H); put its "
                                 f"diffusers config folder, named {sidecar.name!r}, beside it")
        return CONFIGS_DIR / UNCLIP_CONFIGS[inputs]
    return CONFIGS_DIR / family


def _scheduler_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))


def load_single_file(path: Path, policy: DevicePolicy, key: str) -> Checkpoint:
    """A CompVis/LDM-layout checkpoint, converted with diffusers' converters."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        create_diffusers_clip_model_from_ldm,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from studio.runtime.meta_loading import single_file_model

    state_dict = read_state_dict(path)
    family = detect_family(path, state_dict)
    if family in TRANSFORMER_FAMILIES:
        from studio.runtime.transformer_models import load_transformer_checkpoint

        return load_transformer_checkpoint(path, state_dict, policy, key)
    in_channels = unet_input_channels(path, state_dict)
    folder = _config_folder(path, family, state_dict)
    options = {"config": str(folder), "local_files_only": True, "torch_dtype": policy.dtype}
    try:
        # The family's UNet config with the file's input channels (9 for inpainting models).
        # Renamed by diffusers' converters, built on the meta device and given the file's
        # tensors (studio.runtime.meta_loading); the family's UNet config with the file's input
        # channels (9 for inpainting models).
        unet = single_file_model(UNet2DConditionModel, convert_ldm_unet_checkpoint, state_dict, folder / "unet",
                                 policy.dtype, path, "UNet", in_channels=in_channels)
        vae = single_file_model(AutoencoderKL, convert_ldm_vae_checkpoint, state_dict, folder / "vae", policy.dtype,
                                path, "VAE")
        if family == ModelFamily.SDXL_REFINER:
            # The refiner has only SDXL's second encoder (diffusers' text_encoder_2), stored
            # first: conditioner.embedders.0 is OpenCLIP ViT-bigG.
            encoders = [create_diffusers_clip_model_from_ldm(
                CLIPTextModelWithProjection, state_dict, subfolder="text_encoder_2", **options)]
        else:
            encoders = [create_diffusers_clip_model_from_ldm(CLIPTextModel, state_dict, subfolder="text_encoder",
                                                             **options)]
        if family == ModelFamily.SDXL:
            encoders.append(create_diffusers_clip_model_from_ldm(
                CLIPTextModelWithProjection, state_dict, subfolder="text_encoder_2", **options))
    except (ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(path, f"looks like {FAMILY_NAMES[family]} but its weights do not fit that "
                             f"architecture ({str(error).splitlines()[0][:300]})") from None
    tokenizers = [make_tokenizer(pad) for pad in TOKENIZER_PADDING[family]]
    scheduler_config = _scheduler_config(folder)
    if family == ModelFamily.SD2 and in_channels == 9:
        # SD 2's inpainting model (512-inpainting-ema) predicts the noise, unlike the 768-v
        # model the shipped SD 2 configs describe; ComfyUI reads it the same way.
        scheduler_config = {**scheduler_config, "prediction_type": "epsilon"}
    checkpoint = _assemble(family, unet, encoders, tokenizers, vae, scheduler_config, key)
    if family == ModelFamily.SD2_UNCLIP:
        _add_unclip_parts(path, state_dict, folder, checkpoint, policy, key)
    return checkpoint


def _add_unclip_parts(path: Path, state_dict: Mapping[str, Any], folder: Path, checkpoint: Checkpoint,
                      policy: DevicePolicy, key: str) -> None:
    """An unCLIP checkpoint's noise augmentor (on the model) and embedded image encoder."""
    from studio.runtime.clip_vision import EmbeddingNoiseAugmentor, clip_vision_from_weights, vision_tower_weights

    width = unclip_embedding_width(path, state_dict)
    checkpoint.model.noise_augmentor = EmbeddingNoiseAugmentor(width)
    # Its text encoder is SD 2's own: prompts, LoRAs and merges treat it as SD 2's.
    checkpoint.clip.family = ModelFamily.SD2
    if any(name.startswith(UNCLIP_EMBEDDER_PREFIX + "visual.") for name in state_dict):
        weights = vision_tower_weights(path, state_dict, UNCLIP_EMBEDDER_PREFIX)
        checkpoint.clip_vision = clip_vision_from_weights(path, weights, policy, key, folder / "image_encoder")


def load_diffusers_folder(path: Path, policy: DevicePolicy, key: str) -> Checkpoint:
    """A diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, …); the
    SDXL refiner's has only text_encoder_2/."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if not (path / "model_index.json").is_file():
        raise ModelLoadError(path, "is a folder without model_index.json, so not a diffusers model")
    from studio.runtime.transformer_models import load_pipeline_folder

    transformer_pipeline = load_pipeline_folder(path, policy, key)  # FLUX.1 / SD3.5 folders
    if transformer_pipeline is not None:
        return transformer_pipeline
    from studio.runtime.meta_loading import load_component

    refiner = not (path / "text_encoder").is_dir() and (path / "text_encoder_2").is_dir()
    try:
        # Built on the meta device and given the files' tensors (studio.runtime.meta_loading).
        unet = load_component(UNet2DConditionModel, path / "unet", policy.dtype, "UNet")
        vae = load_component(AutoencoderKL, path / "vae", policy.dtype, "VAE")
        encoders = [] if refiner else [load_component(CLIPTextModel, path / "text_encoder", policy.dtype,
                                                      "text encoder")]
        if (path / "text_encoder_2").is_dir():
            encoders.append(load_component(CLIPTextModelWithProjection, path / "text_encoder_2", policy.dtype,
                                           "second text encoder"))
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(path, f"cannot be loaded as a diffusers model ({str(error).splitlines()[0][:300]})") \
            from None
    if refiner:
        family = ModelFamily.SDXL_REFINER
    elif len(encoders) == 2:
        family = ModelFamily.SDXL
    else:
        family = ModelFamily.SD2 if unet.config.cross_attention_dim == 1024 else ModelFamily.SD15
    tokenizers = []
    names = ("tokenizer_2",) if refiner else ("tokenizer", "tokenizer_2")[:len(encoders)]
    for name, pad in zip(names, TOKENIZER_PADDING[family], strict=True):
        if (path / name / "vocab.json").is_file():
            tokenizers.append(CLIPTokenizer.from_pretrained(path / name, model_max_length=77))
        else:
            tokenizers.append(make_tokenizer(pad))
    return _assemble(family, unet, encoders, tokenizers, vae, _scheduler_config(path), key)


def _assemble(family: ModelFamily, unet: Any, encoders: list[Any], tokenizers: list[Any], vae: Any,
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


def load_vae_file(path: Path, policy: DevicePolicy, key: str, family: ModelFamily = ModelFamily.SD15) -> Vae:
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
    from studio.runtime.transformer_models import load_vae_weights

    sixteen_channels = load_vae_weights(path, state_dict, policy, key)  # FLUX's ae.safetensors, SD3's
    if sixteen_channels is not None:
        return sixteen_channels
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
