"""Image prompts against real ComfyUI: its CLIP vision encoding of a picture (preprocessing,
the OpenCLIP-layout tower's conversion, the three outputs) and its unCLIP conditioning
(``unclip_adm``: noise augmentation seeded from the sampler's seed, strengths, several
pictures, SDXL revision's pooled cut). The reference is ``tests/data/comfy_reference/
unclip.safetensors``, made by ``bench/comfy_unclip_reference.py`` with ComfyUI itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from studio.runtime.clip_vision import (
    ClipVisionOutput,
    EmbeddingNoiseAugmentor,
    clip_vision_from_weights,
    encode_image,
    open_clip_vision_to_transformers,
    unclip_embedding,
)
from studio.runtime.device import DevicePolicy

DATA = Path(__file__).parent.parent / "data" / "comfy_reference" / "unclip.safetensors"
REFERENCE = load_file(str(DATA))
with safe_open(str(DATA), framework="pt") as handle:
    METADATA = handle.metadata()
CASES = json.loads(METADATA["adm_cases"])


@pytest.fixture(scope="module")
def tower(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tower")
    (folder / "tower").mkdir()
    (folder / "tower" / "config.json").write_text(METADATA["tower_config"])
    state = {key.removeprefix("tower."): value for key, value in REFERENCE.items() if key.startswith("tower.")}
    weights = open_clip_vision_to_transformers(state, "visual.")
    return clip_vision_from_weights(folder / "tower.safetensors", weights,
                                    DevicePolicy(torch.device("cpu"), torch.float32), "tower")


@pytest.mark.parametrize("crop", ["center", "none"])
def test_clip_vision_encode_is_comfyuis(tower, crop):
    ours = encode_image(tower, REFERENCE["picture"], crop=crop == "center")
    for field in ("image_embeds", "last_hidden_state", "penultimate_hidden_states"):
        theirs = REFERENCE[f"encode.{crop}.{field}"]
        assert getattr(ours, field).shape == theirs.shape
        assert torch.allclose(getattr(ours, field), theirs, atol=2e-5, rtol=1e-5), field


@pytest.mark.parametrize("name", sorted(CASES))
def test_unclip_conditioning_is_comfyuis(name):
    width, entries, seed, merge = CASES[name]
    conditioning = [{"clip_vision_output": ClipVisionOutput(REFERENCE[f"adm.{name}.embeds.{index}"], torch.zeros(1),
                                                             torch.zeros(1)),
                     "strength": strength, "noise_augmentation": noise_augmentation}
                    for index, (_, strength, noise_augmentation) in enumerate(entries)]
    ours = unclip_embedding(conditioning, EmbeddingNoiseAugmentor(width), seed - 10, merge_augmentation=merge)
    if name == "sdxl_revision":
        ours = ours[:, :1280]
    theirs = REFERENCE[f"adm.{name}"]
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-6)
