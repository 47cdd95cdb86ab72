"""What a model file is, from its safetensors header alone (names and shapes, no weights): so
`studio validate` and the app's Problems panel can say before a run that a file would be
refused — a LoRA put in the checkpoints folder, a checkpoint in the loras folder, a download
cut short — without loading anything.

Each folder kind has the rule its loader applies; a rule returns a sentence or None. Pickled
files (``.ckpt``, ``.pt``) cannot be read without unpickling them and pass; folders pass when
they are diffusers folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from studio.runtime.model_errors import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES, ModelLoadError

LORA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".lora.down.weight",
                 ".lora.up.weight", ".hada_w1_a", ".lokr_w1", ".lokr_w2", ".diff")
# What other kinds of file look like, to say what a misplaced one probably is.
LOOKS_LIKE = (
    ("model.diffusion_model.", "a Stable Diffusion checkpoint (it belongs in the checkpoints folder)"),
    ("control_model.", "a ControlNet (it belongs in the controlnet folder)"),
    ("lora_unet_", "a LoRA (it belongs in the loras folder)"),
    ("encoder.down.", "a VAE (it belongs in the vae folder)"),
    ("first_stage_model.", "a checkpoint's VAE part"),
    ("double_blocks.", "a FLUX transformer (it belongs in the diffusion_models folder)"),
    ("joint_blocks.", "an SD3 transformer (it belongs in the diffusion_models folder)"),
    ("encoder.block.", "a T5 text encoder (it belongs in the text_encoders folder)"),
    ("text_model.", "a CLIP text encoder (it belongs in the text_encoders folder)"),
)


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape from a safetensors header; ModelLoadError when the file
    is not a readable safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        # numpy, not torch: validation reads headers and must not wait for torch to import
        with safe_open(str(path), framework="numpy") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(path, f"damaged or not a safetensors file ({error})") from None


def _looks_like(names: list[str]) -> str:
    for prefix, meaning in LOOKS_LIKE:
        if any(name.startswith(prefix) or f".{prefix}" in name for name in names):
            return f"; it looks like {meaning}"
    return ""


def _lora(path: Path, shapes: dict[str, tuple[int, ...]]) -> str | None:
    if any(name.endswith(LORA_SUFFIXES) for name in shapes):
        return None
    return f"holds no LoRA weights (no *.lora_down / lora_A / LoHa / LoKr tensors){_looks_like(list(shapes))}"


def _vae(path: Path, shapes: dict[str, tuple[int, ...]]) -> str | None:
    if any(name.startswith(("encoder.", "decoder.", "first_stage_model.", "vae.")) for name in shapes):
        return None
    return f"holds no VAE weights (no encoder./decoder. tensors){_looks_like(list(shapes))}"


def _controlnet(path: Path, shapes: dict[str, tuple[int, ...]]) -> str | None:
    markers = ("control_model.", "controlnet_", "input_hint_block", "zero_convs", "body.", "adapter.",
               "conv_in.", "down_blocks.", "controlnet_cond_embedding")
    if any(marker in name for name in shapes for marker in markers):
        return None
    return f"holds no ControlNet or T2I-Adapter weights{_looks_like(list(shapes))}"


def _upscaler(path: Path, shapes: dict[str, tuple[int, ...]]) -> str | None:
    if any(len(shape) == 4 for shape in shapes.values()):
        return None
    return f"holds no convolution weights, so no upscaler{_looks_like(list(shapes))}"


def _diffusion_model(path: Path, shapes: dict[str, tuple[int, ...]]) -> str | None:
    markers = ("double_blocks.0.img_attn.qkv.weight", "joint_blocks.0.x_block.attn.qkv.weight")
    if any(name.endswith(markers) for name in shapes):
        return None
    return ("holds no FLUX.1 or SD3.5 transformer (no double_blocks.* / joint_blocks.* tensors)"
            f"{_looks_like(list(shapes))}")


def _text_encoder(path: Path, shapes: dict[str, tuple[int, ...]]) -> str | None:
    markers = ("embeddings.token_embedding.weight", "encoder.block.0.layer.0.SelfAttention.q.weight")
    if any(name.endswith(markers) for name in shapes):
        return None
    return f"holds no CLIP or T5 text encoder in transformers' layout{_looks_like(list(shapes))}"


RULES: dict[str, Callable[[Path, dict[str, tuple[int, ...]]], str | None]] = {
    "loras": _lora, "vae": _vae, "controlnet": _controlnet, "upscale_models": _upscaler,
    "diffusion_models": _diffusion_model, "text_encoders": _text_encoder,
}


def inspect_model_header(kind: str, path: Path) -> str | None:
    """Why the loader of ``kind`` (a model folder name) would refuse ``path``, or None."""
    path = Path(path)
    if kind == "checkpoints":
        if path.is_dir() and (path / "model_index.json").is_file():
            return None  # a diffusers folder: nothing to read before loading (and no torch to import)
        from studio.runtime.checkpoints import inspect_checkpoint_header

        return inspect_checkpoint_header(path)
    rule = RULES.get(kind)
    if rule is None or path.is_dir() or path.suffix.lower() in PICKLE_SUFFIXES:
        return None
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return None
    try:
        shapes = safetensors_shapes(path)
    except ModelLoadError as error:
        return str(error)
    reason = rule(path, shapes)
    return None if reason is None else str(ModelLoadError(path, reason))
