"""Image prompts: CLIP vision encoders, unCLIP's image-embedding conditioning, and T2I style
adapters, loaded offline and computed as ComfyUI computes them.

* **CLIP vision encoders** (the ``clip_vision`` folder, or embedded in an SD 2.1 unCLIP
  checkpoint under ``embedder.model.visual.``) come in the Hugging Face transformers layout
  (``vision_model.*``, ``visual_projection.weight``) or in OpenAI's / OpenCLIP's
  (``visual.conv1.weight``, ``visual.transformer.resblocks.*``, ``visual.proj``); both load
  into transformers' ``CLIPVisionModelWithProjection``. Which architecture — ViT-L/14,
  ViT-H/14 or ViT-bigG/14, whose configs are shipped in ``resources/configs/clip_vision`` —
  is read from the weights' width and depth; any other needs a ``config.json`` in a folder of
  the file's own name beside it.
* **Encoding** a picture follows ComfyUI's ``clip_preprocess``: the shorter side resized to
  224 (bicubic, antialiased) and the centre cut out (or the whole picture squeezed to
  224×224 with crop "none"), rounded to 8 bits, normalised with CLIP's mean and deviation.
* **unCLIP conditioning** is the image embedding noised to a chosen level by the model's
  noise augmentor (a 1000-step ``squaredcos_cap_v2`` schedule), side by side with that
  level's sinusoidal embedding, weighted by strength and summed over the images: what
  ComfyUI passes an unCLIP UNet as its class ("adm") input, and SDXL as its pooled prompt
  ("revision").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from studio.runtime.checkpoints import CONFIGS_DIR, ModelLoadError, read_state_dict
from studio.runtime.device import DevicePolicy

CLIP_VISION_CONFIGS = CONFIGS_DIR / "clip_vision"
# The published towers by (width, layers): OpenAI's ViT-L/14, LAION's OpenCLIP ViT-H/14 and
# ViT-bigG/14 (the image encoders of SD 2.1 unCLIP L and H, IP-Adapter and SDXL revision).
KNOWN_TOWERS = {(1024, 24): "vit-l-14", (1280, 32): "vit-h-14", (1664, 48): "vit-bigg-14"}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPEN_CLIP_LAYER = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")
OPEN_CLIP_LAYER_NAMES = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1",
                         "mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}
OPEN_CLIP_NAMES = {"class_embedding": "vision_model.embeddings.class_embedding",
                   "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
                   "positional_embedding": "vision_model.embeddings.position_embedding.weight",
                   # "layrnorm" is transformers' own spelling of the key.
                   "ln_pre.weight": "vision_model.pre_layrnorm.weight", "ln_pre.bias": "vision_model.pre_layrnorm.bias",
                   "ln_post.weight": "vision_model.post_layernorm.weight",
                   "ln_post.bias": "vision_model.post_layernorm.bias"}


@dataclass
class ClipVision:
    """What flows through a CLIP_VISION socket: an image encoder and how it wants pictures."""

    model: Any  # transformers.CLIPVisionModelWithProjection
    key: str
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


@dataclass(frozen=True)
class ClipVisionOutput:
    """What flows through a CLIP_VISION_OUTPUT socket (ComfyUI's fields, float32 on the CPU):
    the projected embedding of each picture (B×P), the last layer's tokens and the layer
    before it's (B×T×W), and a multimodal projection when the encoder has one (else None)."""

    image_embeds: torch.Tensor
    last_hidden_state: torch.Tensor
    penultimate_hidden_states: torch.Tensor
    mm_projected: torch.Tensor | None = None

    def __getitem__(self, name: str) -> Any:  # ComfyUI's outputs are read by key too
        return getattr(self, name)


# --- Loading --------------------------------------------------------------------------------

def open_clip_vision_to_transformers(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """An OpenAI/OpenCLIP-layout vision tower (keys under ``prefix``, e.g. ``visual.``) renamed
    to transformers' ``CLIPVisionModelWithProjection``: the fused attention input projection
    split into q, k and v, and the output projection transposed (OpenCLIP multiplies by it)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name in OPEN_CLIP_NAMES:
            out[OPEN_CLIP_NAMES[name]] = value
        elif name == "proj":
            out["visual_projection.weight"] = value.T.contiguous()
        elif match := OPEN_CLIP_LAYER.fullmatch(name):
            index, rest = match.groups()
            target = f"vision_model.encoder.layers.{index}."
            if rest.startswith("attn.in_proj_"):
                kind = rest.removeprefix("attn.in_proj_")
                for projection, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[f"{target}self_attn.{projection}_proj.{kind}"] = part.contiguous()
                continue
            module, _, kind = rest.rpartition(".")
            if module in OPEN_CLIP_LAYER_NAMES:
                out[f"{target}{OPEN_CLIP_LAYER_NAMES[module]}.{kind}"] = value
    return out


def vision_tower_weights(path: Path, state_dict: Mapping[str, torch.Tensor],
                         prefix: str = "") -> dict[str, torch.Tensor]:
    """The tower's weights in transformers' layout, from either layout (under ``prefix``)."""
    if f"{prefix}visual.transformer.resblocks.0.attn.in_proj_weight" in state_dict:
        return open_clip_vision_to_transformers(state_dict, prefix + "visual.")
    if f"{prefix}transformer.resblocks.0.attn.in_proj_weight" in state_dict and f"{prefix}conv1.weight" in state_dict:
        return open_clip_vision_to_transformers(state_dict, prefix)
    weights = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if "vision_model.embeddings.patch_embedding.weight" not in weights:
        raise ModelLoadError(path, "is not a CLIP vision model (expected the transformers layout, "
                             "vision_model.embeddings.patch_embedding.weight, or OpenCLIP's, "
                             "visual.transformer.resblocks.0.attn.in_proj_weight)")
    return {key: value for key, value in weights.items()
            if key.startswith(("vision_model.", "visual_projection."))}


def vision_config(path: Path, weights: Mapping[str, torch.Tensor], config_folder: Path | None = None) -> Any:
    """The tower's ``CLIPVisionConfig``: a ``config.json`` in ``config_folder`` (or in a folder
    named like the file beside it) when there is one, else the shipped config of the published
    tower of this width and depth, with the picture size its position embedding holds (336 for
    ViT-L/14-336)."""
    from transformers import CLIPVisionConfig

    folders = [folder for folder in (config_folder, path.with_suffix("")) if folder is not None]
    for folder in folders:
        if (folder / "config.json").is_file():
            return CLIPVisionConfig.from_json_file(str(folder / "config.json"))
    patch = weights["vision_model.embeddings.patch_embedding.weight"]
    width = int(patch.shape[0])
    layers = 1 + max((int(key.split(".")[3]) for key in weights if key.startswith("vision_model.encoder.layers.")),
                     default=-1)
    name = KNOWN_TOWERS.get((width, layers))
    if name is None:
        known = ", ".join(f"{n} ({w} wide, {d} layers)" for (w, d), n in KNOWN_TOWERS.items())
        raise ModelLoadError(path, f"is a CLIP vision tower {width} wide with {layers} layers, which Seed Studio "
                             f"ships no config for (it knows {known}); put its transformers config.json in a "
                             f"folder named {path.with_suffix('').name!r} beside it")
    config = CLIPVisionConfig.from_json_file(str(CLIP_VISION_CONFIGS / name / "config.json"))
    positions = int(weights["vision_model.embeddings.position_embedding.weight"].shape[0])
    config.image_size = int(round(math.sqrt(positions - 1))) * int(patch.shape[-1])
    if "visual_projection.weight" in weights:
        config.projection_dim = int(weights["visual_projection.weight"].shape[0])
    return config


def clip_vision_from_weights(path: Path, weights: Mapping[str, torch.Tensor], policy: DevicePolicy, key: str,
                             config_folder: Path | None = None) -> ClipVision:
    """A ``ClipVision`` from a tower's weights in transformers' layout."""
    from transformers import CLIPVisionModelWithProjection

    config = vision_config(path, weights, config_folder)
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(config)
    expected = set(model.state_dict())
    missing = sorted(expected - set(weights))
    if missing:
        raise ModelLoadError(path, f"the CLIP vision model is missing {len(missing)} weights (e.g. {missing[0]}); "
                             "the file is incomplete or of another architecture")
    try:
        model.load_state_dict({k: v for k, v in weights.items() if k in expected}, strict=True, assign=True)
    except RuntimeError as error:
        raise ModelLoadError(path, f"its CLIP vision weights do not fit the architecture "
                             f"({str(error).splitlines()[-1].strip()[:300]})") from None
    # Built on "meta" so that a 600M-weight tower is not first filled with random numbers;
    # the one buffer files do not hold, the token positions, is made here.
    embeddings = model.vision_model.embeddings
    embeddings.register_buffer("position_ids", torch.arange(embeddings.num_positions).expand((1, -1)),
                               persistent=False)
    model = model.to(policy.dtype).eval().requires_grad_(False)
    return ClipVision(model, key, image_size=int(config.image_size))


def load_clip_vision_file(path: Path, policy: DevicePolicy, key: str) -> ClipVision:
    """A CLIP vision model from the ``clip_vision`` folder: a single file in either layout, or
    a transformers folder (config.json and its weights)."""
    if path.is_dir():
        from transformers import CLIPVisionModelWithProjection

        try:
            model = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True, torch_dtype=policy.dtype)
        except (OSError, ValueError) as error:
            raise ModelLoadError(path, f"cannot be loaded as a transformers CLIP vision model ({error})") from None
        return ClipVision(model.eval().requires_grad_(False), key, image_size=int(model.config.image_size))
    state_dict = read_state_dict(path)
    return clip_vision_from_weights(path, vision_tower_weights(path, state_dict), policy, key)


def load_clip_vision(manager: Any, name: str) -> ClipVision:
    """A CLIP vision model by its name in the ``clip_vision`` folders, loaded once and shared
    through the model manager's cache like every other model file."""
    from studio.runtime.model_manager import file_key

    path = manager.resolve("clip_vision", name)
    key = file_key(path / "config.json" if path.is_dir() else path)
    return manager._cached("clip_vision:" + key, lambda: load_clip_vision_file(path, manager.policy, key))


# --- Encoding -------------------------------------------------------------------------------

def clip_preprocess(image: torch.Tensor, size: int = 224, mean: Sequence[float] = CLIP_MEAN,
                    std: Sequence[float] = CLIP_STD, crop: bool = True) -> torch.Tensor:
    """IMAGE (B×H×W×C, 0..1) → CLIP's input (B×3×size×size), as ComfyUI's ``clip_preprocess``:
    the shorter side to ``size`` and the centre cut out (``crop``), or squeezed to a square;
    bicubic with antialiasing; rounded to 8 bits; normalised."""
    pixels = image[..., :3].movedim(-1, 1).float()
    if tuple(pixels.shape[2:]) != (size, size):
        if crop:
            scale = size / min(pixels.shape[2], pixels.shape[3])
            target = (round(scale * pixels.shape[2]), round(scale * pixels.shape[3]))
        else:
            target = (size, size)
        pixels = F.interpolate(pixels, size=target, mode="bicubic", antialias=True)
        top, left = (pixels.shape[2] - size) // 2, (pixels.shape[3] - size) // 2
        pixels = pixels[:, :, top:top + size, left:left + size]
    pixels = torch.clip(255.0 * pixels, 0, 255).round() / 255.0
    mean_t = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    return (pixels - mean_t) / std_t


def encode_image(clip_vision: ClipVision, image: torch.Tensor, crop: bool = True) -> ClipVisionOutput:
    """What the encoder makes of each picture (the model must be on its device already: the
    node runs this inside ``ModelManager.use``)."""
    model = clip_vision.model
    device = next(model.parameters()).device
    pixels = clip_preprocess(image.to(device), clip_vision.image_size, clip_vision.mean, clip_vision.std, crop)
    with torch.no_grad():
        out = model(pixel_values=pixels.to(model.dtype), output_hidden_states=True)
    return ClipVisionOutput(image_embeds=out.image_embeds.float().cpu(),
                            last_hidden_state=out.last_hidden_state.float().cpu(),
                            penultimate_hidden_states=out.hidden_states[-2].float().cpu())


# --- unCLIP: noise-augmented image embeddings -----------------------------------------------

def timestep_embedding(levels: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The sinusoidal embedding of each level (cosines first, then sines; LDM's convention)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    angles = levels.float()[:, None] * frequencies[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class EmbeddingNoiseAugmentor:
    """Noises an image embedding to a level of a 1000-step ``squaredcos_cap_v2`` schedule and
    embeds that level (LDM's ``CLIPEmbeddingNoiseAugmentation`` as ComfyUI configures it).

    The embedding is first normalised by data statistics; ComfyUI builds the augmentor without
    any (mean 0, deviation 1) and never reads the checkpoint's ``noise_augmentor.*`` buffers,
    so neither does Seed Studio: the same files give the same pictures.
    """

    def __init__(self, dim: int, timesteps: int = 1000, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None) -> None:
        self.dim = int(dim)
        self.max_noise_level = int(timesteps)

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - alpha_bar((i + 1) / timesteps) / alpha_bar(i / timesteps), 0.999)
                              for i in range(timesteps)], dtype=torch.float64)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.sqrt_alphas_cumprod = alphas_cumprod.sqrt().float()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - alphas_cumprod).sqrt().float()
        self.mean = torch.zeros(1, self.dim) if mean is None else mean.float().reshape(1, -1)
        self.std = torch.ones(1, self.dim) if std is None else std.float().reshape(1, -1)

    def level(self, noise_augmentation: float) -> int:
        """The schedule step that a 0..1 noise_augmentation stands for."""
        return round((self.max_noise_level - 1) * float(noise_augmentation))

    def __call__(self, embedding: torch.Tensor, level: int, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the noised embedding, the level's embedding), each 1×dim."""
        if embedding.shape[-1] != self.dim:
            raise ValueError(f"the image embedding has {embedding.shape[-1]} values and this model's noise "
                             f"augmentor expects {self.dim}: the CLIP vision model does not belong to this model")
        scaled = (embedding.float().reshape(1, -1) - self.mean) * 1.0 / self.std
        noised = self.sqrt_alphas_cumprod[level] * scaled + self.sqrt_one_minus_alphas_cumprod[level] * noise
        return noised * self.std + self.mean, timestep_embedding(torch.tensor([level]), self.dim)


def unclip_embedding(unclip_conditioning: Sequence[Mapping[str, Any]], augmentor: EmbeddingNoiseAugmentor,
                     seed: int, merge_augmentation: float = 0.0) -> torch.Tensor:
    """ComfyUI's ``unclip_adm``: 1×(2·dim), each picture's embedding noised to its entry's
    level beside that level's embedding, times the entry's strength, summed. Every picture's
    noise is drawn from ``seed`` afresh (ComfyUI seeds the generator per picture), so pictures
    noised at one level share their noise. Several pictures: the sum's embedding half is
    noised again at ``merge_augmentation`` with the generator's next draw."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn((1, augmentor.dim), generator=generator, dtype=torch.float32)
    parts = []
    for entry in unclip_conditioning:
        output = entry["clip_vision_output"]
        strength = float(entry["strength"])
        level = augmentor.level(entry["noise_augmentation"])
        for embedding in output["image_embeds"]:
            noised, level_embedding = augmentor(embedding, level, noise)
            parts.append(torch.cat([noised, level_embedding], dim=1) * strength)
    if not parts:
        raise ValueError("unclip_conditioning holds no image embeddings")
    total = torch.stack(parts).sum(0)
    if len(parts) == 1:
        return total
    merge_noise = torch.randn((1, augmentor.dim), generator=generator, dtype=torch.float32)
    noised, level_embedding = augmentor(total[:, :augmentor.dim], augmentor.level(merge_augmentation), merge_noise)
    return torch.cat([noised, level_embedding], dim=1)


# --- T2I style adapter ----------------------------------------------------------------------

class _StyleBlock(torch.nn.Module):
    """One pre-norm transformer block, named as the published adapter's file names it."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(width, heads)
        self.ln_1 = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential()
        self.mlp.add_module("c_fc", torch.nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", _QuickGelu())
        self.mlp.add_module("c_proj", torch.nn.Linear(width * 4, width))
        self.ln_2 = torch.nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: tokens × batch × width
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _QuickGelu(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class StyleAdapter(torch.nn.Module):
    """TencentARC's T2I style adapter (``t2iadapter_style_sd14v1``): learnt style tokens read a
    picture's CLIP ViT-L/14 tokens through a small transformer and come out as extra prompt
    tokens of the UNet's context width. (``transformer_layes`` is the file's own spelling.)"""

    def __init__(self, width: int = 1024, context_dim: int = 768, heads: int = 8, layers: int = 3,
                 tokens: int = 8) -> None:
        super().__init__()
        self.transformer_layes = torch.nn.Sequential(*[_StyleBlock(width, heads) for _ in range(layers)])
        self.num_token = tokens
        self.style_embedding = torch.nn.Parameter(torch.zeros(1, tokens, width))
        self.ln_post = torch.nn.LayerNorm(width)
        self.ln_pre = torch.nn.LayerNorm(width)
        self.proj = torch.nn.Parameter(torch.zeros(width, context_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """CLIP vision tokens (B×T×width) → style tokens (B×tokens×context_dim)."""
        style = self.style_embedding.expand(hidden.shape[0], -1, -1)
        x = self.ln_pre(torch.cat([hidden, style], dim=1)).permute(1, 0, 2)
        x = self.transformer_layes(x).permute(1, 0, 2)
        return self.ln_post(x[:, -self.num_token:, :]) @ self.proj


@dataclass
class StyleModel:
    """What flows through a STYLE_MODEL socket."""

    model: StyleAdapter
    key: str

    def tokens(self, output: ClipVisionOutput) -> torch.Tensor:
        """The style tokens for each picture of a CLIP vision output (B×tokens×context)."""
        with torch.no_grad():
            return self.model(output.last_hidden_state.float()).float()


# The published adapter's head count: attention heads leave no trace in the weights' shapes.
STYLE_ADAPTER_HEADS = 8


def load_style_model_file(path: Path, key: str) -> StyleModel:
    """A T2I style adapter from the ``style_models`` folder; its width, token count, depth and
    context width are read from the weights. (FLUX Redux files, ``redux_down.weight``, are for
    a model family Seed Studio does not load.)"""
    state_dict = read_state_dict(path)
    if "style_embedding" not in state_dict:
        if "redux_down.weight" in state_dict:
            raise ModelLoadError(path, "is a FLUX Redux image encoder; Seed Studio does not load FLUX models, so it "
                                 "cannot use it")
        raise ModelLoadError(path, "is not a style model (expected a T2I style adapter with a style_embedding)")
    _, tokens, width = state_dict["style_embedding"].shape
    context_dim = int(state_dict["proj"].shape[1]) if "proj" in state_dict else 0
    layers = 1 + max((int(name.split(".")[1]) for name in state_dict if name.startswith("transformer_layes.")),
                     default=-1)
    model = StyleAdapter(int(width), context_dim, STYLE_ADAPTER_HEADS, layers, int(tokens))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        reason = str(error).splitlines()[-1].strip()[:300]
        raise ModelLoadError(path, f"its weights do not fit a T2I style adapter ({reason})") from None
    return StyleModel(model.eval().requires_grad_(False), key)


def load_style_model(manager: Any, name: str) -> StyleModel:
    """A style model by its name in the ``style_models`` folders, loaded once and shared."""
    from studio.runtime.model_manager import file_key

    path = manager.resolve("style_models", name)
    key = file_key(path)
    return manager._cached("style_model:" + key, lambda: load_style_model_file(path, key))
