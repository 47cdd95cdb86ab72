"""The tiny SD1.5-shaped checkpoint and fixed inputs of the ComfyUI parity data.

``bench/comfy_reference.py`` runs real ComfyUI on this checkpoint and stores what it
produces in ``tests/data/comfy_reference/``; the parity tests load the same checkpoint with
Seed Studio (rewriting it with :func:`write_parity_checkpoint` gives the same bytes) and
compare. Nothing here needs ComfyUI.

The dimensions are chosen for ComfyUI's own code as well as for diffusers':

* ComfyUI's UNet and VAE normalise with ``GroupNorm(32, …)`` whatever the checkpoint says,
  so every channel count is a multiple of 32 and the diffusers models use 32 groups.
* ComfyUI's SD15 model config fixes ``num_heads = 8`` (``num_head_channels = -1``); the
  diffusers UNet's ``attention_head_dim`` (which diffusers reads as the number of heads for
  SD1-style configs) is 8 to match.
* ComfyUI only *detects* SD15 for ``model_channels == 320`` and ``context_dim == 768``, and
  builds its VAE from a fixed ``ch=128, ch_mult=[1, 2, 4, 4], num_res_blocks=2`` config;
  both would make the file hundreds of megabytes. The reference script therefore gives
  ComfyUI the model configs explicitly (:data:`COMFY_VAE_DDCONFIG`, and the UNet config
  that ``comfy.model_detection.detect_unet_config`` reads from the file) and checks
  numerically that ComfyUI's denoiser and VAE decoder equal diffusers' on this file.

The file is a single LDM-layout ``.safetensors`` (UNet + VAE + a CLIP-L-shaped text
encoder) with its diffusers configs in a folder of the same name beside it, written by
``tests.ldm_layout.write_single_file``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

WEIGHT_SEED = 0
# The sampling settings of the reference data (bench/comfy_reference.py records them in
# meta.json too).
SEED = 42
STEPS = 8
CFG = 7.5
WIDTH = HEIGHT = 64
IMG2IMG_DENOISE = 0.6
INPUT_SEED = 1234  # the conditioning tensors and the img2img latent
CONTEXT_DIM = 32
SD15_SCALE_FACTOR = 0.18215  # the latent scale of SD1.x (ComfyUI's latent_formats.SD15)

UNET_CONFIG = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=CONTEXT_DIM,
                   norm_num_groups=32, attention_head_dim=8, sample_size=HEIGHT // 8,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
VAE_CONFIG = dict(block_out_channels=(32, 32, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=32,
                  latent_channels=4, sample_size=WIDTH, scaling_factor=SD15_SCALE_FACTOR)
# The same VAE in ComfyUI's terms (comfy.ldm.modules.diffusionmodules.model.Encoder/Decoder).
COMFY_VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": WIDTH, "in_channels": 3, "out_ch": 3,
                      "ch": 32, "ch_mult": [1, 1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [],
                      "dropout": 0.0}
COMFY_UNET_HEADS = {"num_heads": 8, "num_head_channels": -1}


def build_parity_pipeline(folder: Path, seed: int = WEIGHT_SEED) -> Path:
    """The parity model as a diffusers folder (random weights from ``seed``)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from studio.runtime.checkpoints import make_tokenizer
    from tests.tiny_models import SCHEDULER, _text_config

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    vae = AutoencoderKL(**VAE_CONFIG)
    text = CLIPTextModel(_text_config(hidden_size=CONTEXT_DIM, projection_dim=CONTEXT_DIM))
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text, tokenizer=make_tokenizer(),
        scheduler=EulerDiscreteScheduler(**SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return folder


def write_parity_checkpoint(path: Path, seed: int = WEIGHT_SEED) -> Path:
    """Write the parity model to ``path`` (a ``.safetensors`` file; its diffusers configs go
    in the folder ``path.with_suffix("")``). Deterministic: the same seed gives the same
    tensors."""
    from tests.ldm_layout import write_single_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        folder = build_parity_pipeline(Path(temp) / "parity-sd15", seed)
        return write_single_file(folder, path)


def parity_inputs(seed: int = INPUT_SEED) -> dict[str, torch.Tensor]:
    """The fixed inputs: positive and negative conditioning (1×77×CONTEXT_DIM, unit normal)
    and the img2img latent (1×4×8×8), in the VAE's own scale as a LATENT holds it, i.e.
    unit variance once multiplied by the SD1.5 scale factor (as a VAE-encoded picture)."""
    generator = torch.Generator("cpu").manual_seed(seed)
    positive = torch.randn(1, 77, CONTEXT_DIM, generator=generator)
    negative = torch.randn(1, 77, CONTEXT_DIM, generator=generator)
    latent = torch.randn(1, 4, HEIGHT // 8, WIDTH // 8, generator=generator) / SD15_SCALE_FACTOR
    return {"positive": positive, "negative": negative, "img2img_latent": latent}


# Conditioning and sampling cases beyond plain prompts (areas, masks, timestep ranges,
# inpainting, step ranges, cfg 1), run by ComfyUI with ``bench/comfy_reference.py --cases``
# and by the parity tests, both from these descriptions. An entry names its embedding
# ("positive", "negative" or "alt") and carries ComfyUI's conditioning keys; "mask": "left"
# is a 64×64 mask of ones on the left half (ConditioningSetMask's pixel-size mask).
CONDITIONING_CASES: dict[str, dict] = {
    "area": {"positive": [{"embedding": "positive"},
                          {"embedding": "alt", "area": (4, 4, 2, 2), "strength": 0.8}]},
    "area_edge": {"positive": [{"embedding": "positive"},
                               {"embedding": "alt", "area": (8, 5, 0, 3), "strength": 1.0}]},
    "area_percentage": {"positive": [{"embedding": "positive"},
                                     {"embedding": "alt", "area": ("percentage", 0.5, 0.5, 0.25, 0.25),
                                      "strength": 1.0}]},
    "mask": {"positive": [{"embedding": "positive"},
                          {"embedding": "alt", "mask": "left", "mask_strength": 0.7, "set_area_to_bounds": False,
                           "strength": 1.0}]},
    "mask_bounds": {"positive": [{"embedding": "positive"},
                                 {"embedding": "alt", "mask": "left", "mask_strength": 1.0,
                                  "set_area_to_bounds": True, "strength": 1.0}]},
    "timestep_range": {"positive": [{"embedding": "positive", "start_percent": 0.0, "end_percent": 0.5},
                                    {"embedding": "alt", "start_percent": 0.5, "end_percent": 1.0}]},
    "negative_area": {"negative": [{"embedding": "negative"},
                                   {"embedding": "alt", "area": (3, 8, 5, 0), "strength": 0.5}]},
    "cfg_1": {"cfg": 1.0},
    "inpaint_euler": {"latent": "img2img", "noise_mask": "left", "denoise": 1.0},
    "inpaint_ddim": {"latent": "img2img", "noise_mask": "left", "denoise": 1.0, "sampler": "ddim"},
    "inpaint_ancestral_partial": {"latent": "img2img", "noise_mask": "left", "denoise": 0.6,
                                  "sampler": "euler_ancestral"},
    "advanced_first_half": {"advanced": {"add_noise": True, "start": 0, "end": 4, "leftover_noise": True}},
    "advanced_second_half": {"latent": "img2img", "advanced": {"add_noise": False, "start": 4, "end": 10000,
                                                               "leftover_noise": False}},
    "advanced_stop_early": {"advanced": {"add_noise": True, "start": 0, "end": 5, "leftover_noise": False},
                            "sampler": "dpmpp_2m", "scheduler": "karras"},
    # Model patches: (node type, its widget values after the model), as ComfyUI's nodes take them.
    "sampling_lcm": {"patches": [("ModelSamplingDiscrete", ("lcm", False))], "sampler": "lcm",
                     "scheduler": "sgm_uniform", "cfg": 1.5},
    "sampling_v_zsnr": {"patches": [("ModelSamplingDiscrete", ("v_prediction", True))]},
    "sampling_x0": {"patches": [("ModelSamplingDiscrete", ("x0", False))], "scheduler": "karras"},
    "rescale_cfg": {"patches": [("RescaleCFG", (0.7,))]},
    "continuous_v": {"patches": [("ModelSamplingContinuousEDM", ("v_prediction", 120.0, 0.002))],
                     "scheduler": "karras", "sampler": "dpmpp_2m"},
    "continuous_edm": {"patches": [("ModelSamplingContinuousEDM", ("edm", 80.0, 0.002))], "scheduler": "exponential"},
    # A hypernetwork file of write_parity_hypernetwork at this strength.
    "hypernetwork": {"hypernetwork": 0.8},
    # GLIGEN text boxes on the positive prompt, each GLIGENTextBoxApply's (width, height, x, y)
    # in pixels, with the phrase embeddings of gligen_phrases and the file of write_parity_gligen.
    "gligen": {"gligen": [(32, 24, 8, 16), (24, 48, 40, 8)]},
}


def write_parity_hypernetwork(path: Path) -> Path:
    """A tiny hypernetwork in AUTOMATIC1111's layout for the parity UNet's widths (32 and 64
    for self-attention, 32 for the context): relu, layer structure 1-2-1, no layer norm."""
    generator = torch.Generator("cpu").manual_seed(WEIGHT_SEED + 7)
    data: dict = {"activation_func": "relu", "is_layer_norm": False, "use_dropout": False,
                  "activate_output": False, "last_layer_dropout": False, "layer_structure": [1, 2, 1]}
    for width in (32, 64):
        stacks = []
        for _ in range(2):
            stacks.append({"linear.0.weight": torch.randn(2 * width, width, generator=generator) * 0.2,
                           "linear.0.bias": torch.randn(2 * width, generator=generator) * 0.1,
                           "linear.2.weight": torch.randn(width, 2 * width, generator=generator) * 0.2,
                           "linear.2.bias": torch.randn(width, generator=generator) * 0.1})
        data[width] = stacks
    torch.save(data, str(path))
    return path


# The widths of the parity UNet's transformer layers and where ComfyUI's UNet has them: one in
# the first input level, the middle block, two in the last output level.
PARITY_GLIGEN_LAYERS = (("input_blocks.1.1", 32), ("middle_block.1", 64), ("output_blocks.2.1", 32),
                        ("output_blocks.3.1", 32))
# ComfyUI reads GLIGEN files made for SD 1.x: phrases as wide as the grounding tokens, which
# are 768 wide (with another width its fusers have 64-wide heads, too wide for a 32-wide layer).
GLIGEN_KEY_WIDTH = 768


def write_parity_gligen(path: Path, phrase_width: int = GLIGEN_KEY_WIDTH,
                        layers: tuple[tuple[str, int], ...] = PARITY_GLIGEN_LAYERS) -> Path:
    """A tiny GLIGEN file in ComfyUI's layout (``position_net.*`` and a gated self-attention
    ``fuser`` per transformer layer) for the parity UNet's widths, random weights with gates
    far enough from 0 that it acts. ``phrase_width`` is the pooled CLIP width it reads (the
    parity case feeds fixed 768-wide phrases; the tiny SD 1.5 model's CLIP gives 32).
    Deterministic."""
    from safetensors.torch import save_file

    generator = torch.Generator("cpu").manual_seed(WEIGHT_SEED + 11)

    def linear(name: str, out_width: int, in_width: int, bias: bool = True) -> dict[str, torch.Tensor]:
        weights = {f"{name}.weight": torch.randn(out_width, in_width, generator=generator) / in_width ** 0.5}
        if bias:
            weights[f"{name}.bias"] = torch.randn(out_width, generator=generator) * 0.1
        return weights

    def norm(name: str, width: int) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": 1 + 0.1 * torch.randn(width, generator=generator),
                f"{name}.bias": 0.1 * torch.randn(width, generator=generator)}

    position_width = 8 * 2 * 4
    tensors = {**linear("position_net.linears.0", 512, phrase_width + position_width),
               **linear("position_net.linears.2", 512, 512), **linear("position_net.linears.4", GLIGEN_KEY_WIDTH, 512),
               "position_net.null_positive_feature": torch.randn(phrase_width, generator=generator),
               "position_net.null_position_feature": torch.randn(position_width, generator=generator)}
    for prefix, width in layers:
        fuser = f"{prefix}.transformer_blocks.0.fuser"
        tensors.update({**linear(f"{fuser}.linear", width, GLIGEN_KEY_WIDTH),
                        **linear(f"{fuser}.attn.to_q", width, width, bias=False),
                        **linear(f"{fuser}.attn.to_k", width, width, bias=False),
                        **linear(f"{fuser}.attn.to_v", width, width, bias=False),
                        **linear(f"{fuser}.attn.to_out.0", width, width),
                        **linear(f"{fuser}.ff.net.0.proj", width * 8, width),
                        **linear(f"{fuser}.ff.net.2", width, width * 4),
                        **norm(f"{fuser}.norm1", width), **norm(f"{fuser}.norm2", width),
                        f"{fuser}.alpha_attn": 0.5 + torch.rand((), generator=generator),
                        f"{fuser}.alpha_dense": 0.5 + torch.rand((), generator=generator)})
    save_file({name: value.contiguous() for name, value in tensors.items()}, str(path))
    return path


def gligen_phrases(count: int, width: int = GLIGEN_KEY_WIDTH) -> torch.Tensor:
    """Fixed stand-ins for the pooled CLIP embeddings of the GLIGEN case's phrases (count ×
    width, about unit size as CLIP's final layer norm gives them)."""
    return torch.randn(count, width, generator=torch.Generator("cpu").manual_seed(INPUT_SEED + 2))


def left_mask() -> torch.Tensor:
    mask = torch.zeros(1, HEIGHT, WIDTH)
    mask[:, :, :WIDTH // 2] = 1.0
    return mask


def case_conditioning(entries: list[dict], embeddings: dict[str, torch.Tensor]) -> list[list]:
    """A case's conditioning in ComfyUI's form, [[tensor, {keys}], …]."""
    out = []
    for entry in entries:
        extras = {key: value for key, value in entry.items() if key != "embedding"}
        if extras.get("mask") == "left":
            extras["mask"] = left_mask()
        out.append([embeddings[entry["embedding"]], extras])
    return out


def case_inputs() -> dict[str, torch.Tensor]:
    """The fixed inputs plus the "alt" embedding the conditioning cases use."""
    inputs = parity_inputs()
    inputs["alt"] = torch.randn(1, 77, CONTEXT_DIM, generator=torch.Generator("cpu").manual_seed(INPUT_SEED + 1))
    return inputs
