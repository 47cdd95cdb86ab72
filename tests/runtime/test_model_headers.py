"""What `studio validate` can tell of a model file from its header, per model folder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from studio.runtime.model_headers import inspect_model_header

LORA = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 32),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 2)}
VAE = {"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3), "decoder.conv_out.weight": torch.zeros(3, 8, 3, 3)}
CHECKPOINT_PART = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3)}
CONTROLNET = {"control_model.input_hint_block.0.weight": torch.zeros(16, 3, 3, 3)}
UPSCALER = {"body.0.weight": torch.zeros(16, 3, 3, 3)}


def write(tmp_path, name, tensors):
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize(("kind", "good"), [("loras", LORA), ("vae", VAE), ("controlnet", CONTROLNET),
                                            ("upscale_models", UPSCALER)])
def test_the_right_file_passes(tmp_path, kind, good):
    assert inspect_model_header(kind, write(tmp_path, "good.safetensors", good)) is None


def test_a_checkpoint_in_the_loras_folder_is_named_as_such(tmp_path):
    reason = inspect_model_header("loras", write(tmp_path, "model.safetensors", CHECKPOINT_PART))
    assert reason.startswith("model.safetensors: holds no LoRA weights")
    assert "it looks like a Stable Diffusion checkpoint (it belongs in the checkpoints folder)" in reason


def test_a_lora_in_the_vae_and_controlnet_folders_is_named_as_such(tmp_path):
    path = write(tmp_path, "style.safetensors", LORA)
    assert "holds no VAE weights" in inspect_model_header("vae", path)
    assert "it looks like a LoRA (it belongs in the loras folder)" in inspect_model_header("controlnet", path)


def test_a_cut_short_download_is_damaged(tmp_path):
    path = write(tmp_path, "cut.safetensors", LORA)
    path.write_bytes(path.read_bytes()[:40])
    assert "damaged or not a safetensors file" in inspect_model_header("loras", path)


def test_pickles_and_unknown_kinds_are_not_judged(tmp_path):
    pickle = tmp_path / "old.pt"
    torch.save({"a": torch.zeros(1)}, str(pickle))
    assert inspect_model_header("loras", pickle) is None
    assert inspect_model_header("embeddings", write(tmp_path, "e.safetensors", VAE)) is None
