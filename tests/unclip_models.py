"""A model folder (ComfyUI's layout) for the image-prompt tests: a tiny SD 2.1 unCLIP
checkpoint as a single LDM-layout file, its CLIP vision tower as clip_vision files in the
transformers and the OpenCLIP layouts, and a tiny T2I style adapter. Built once per test
session under pytest's base temporary folder (about ten seconds)."""

from __future__ import annotations

from pathlib import Path

import torch

CHECKPOINT = "tiny-unclip-single.safetensors"
VISION_HF = "tiny-vision.safetensors"
VISION_OPEN_CLIP = "tiny-vision-openclip.safetensors"
STYLE = "tiny-style.safetensors"
STYLE_TOKENS = 4


def tiny_style_adapter_weights(width: int = 32, context_dim: int = 32, layers: int = 2, seed: int = 0):
    """A T2I style adapter's weights in the published file's layout, small."""
    from studio.runtime.clip_vision import StyleAdapter

    torch.manual_seed(seed)
    adapter = StyleAdapter(width, context_dim, heads=8, layers=layers, tokens=STYLE_TOKENS)
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.normal_(0, 0.3)
    return {key: value.contiguous() for key, value in adapter.state_dict().items()}


def unclip_model_root(root: Path) -> Path:
    """Build (once) and return the folder."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionModelWithProjection

    from tests.ldm_layout import vision_to_open_clip, write_unclip_single_file
    from tests.tiny_models import build_unclip

    done = root / ".complete"
    if done.is_file():
        return root
    checkpoints, vision_folder, styles = root / "checkpoints", root / "clip_vision", root / "style_models"
    for folder in (checkpoints, vision_folder, styles):
        folder.mkdir(parents=True, exist_ok=True)
    source = build_unclip(root / "source" / "tiny-unclip")
    write_unclip_single_file(source, checkpoints / CHECKPOINT)
    vision = CLIPVisionModelWithProjection.from_pretrained(source / "image_encoder")
    save_file({key: value.contiguous() for key, value in vision.state_dict().items()}, str(vision_folder / VISION_HF))
    save_file(vision_to_open_clip(vision), str(vision_folder / VISION_OPEN_CLIP))
    for name in (VISION_HF, VISION_OPEN_CLIP):  # a tower this small needs its config beside it
        config = vision_folder / Path(name).stem
        config.mkdir(exist_ok=True)
        vision.config.to_json_file(str(config / "config.json"))
    save_file(tiny_style_adapter_weights(), str(styles / STYLE))
    done.write_text("")
    return root
