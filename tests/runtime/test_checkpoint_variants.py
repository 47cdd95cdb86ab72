"""Checkpoints beside the base models: the 9-channel inpainting models of SD 1.x, SD 2.x and
SDXL, the SDXL refiner, and reading a file's header to tell whether it would load."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from studio.runtime.checkpoints import CONFIGS_DIR, ModelLoadError, inspect_checkpoint_header, load_single_file
from studio.runtime.device import DevicePolicy
from studio.runtime.model_manager import ModelManager
from studio.runtime.models import ModelFolders

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def variants_root(model_root, tmp_path_factory):
    """A model folder with tiny inpainting files (SD 1.x-, SD 2.x- and SDXL-shaped) and a tiny SDXL
    refiner, each as a diffusers folder and as a single LDM-layout file."""
    from tests.ldm_layout import write_refiner_single_file, write_single_file
    from tests.tiny_models import build_inpainting, build_sdxl_refiner

    root = tmp_path_factory.mktemp("variants")
    checkpoints = root / "checkpoints"
    for name, base, seed in (("tiny-sd15-inpainting", "tiny-sd15", 11), ("tiny-sd2-inpainting", "tiny-sd2", 12),
                             ("tiny-sdxl-inpainting", "tiny-sdxl", 14)):
        folder = build_inpainting(model_root / "checkpoints" / base, checkpoints / name, seed)
        target = write_single_file(folder, checkpoints / f"{name}-single.safetensors")
        # The configs beside the file are the base model's, with 4 input channels, as the
        # shipped family configs are: the 9 channels must come from the weights.
        unet_config = target.with_suffix("") / "unet" / "config.json"
        unet_config.write_text(json.dumps({**json.loads(unet_config.read_text()), "in_channels": 4}))
    folder = build_sdxl_refiner(checkpoints / "tiny-refiner", seed=13)
    write_refiner_single_file(folder, checkpoints / "tiny-refiner-single.safetensors")
    return root


def manager_for(root) -> ModelManager:
    return ModelManager(CPU, ModelFolders.from_roots([root]))


def assert_same_weights(loaded, expected):
    loaded_state, expected_state = loaded.state_dict(), expected.state_dict()
    assert set(loaded_state) == set(expected_state)
    assert all(torch.equal(loaded_state[key], expected_state[key]) for key in expected_state)


@pytest.mark.parametrize(("name", "family"), [("tiny-sd15-inpainting", "sd15"), ("tiny-sd2-inpainting", "sd2"),
                                            ("tiny-sdxl-inpainting", "sdxl")])
def test_nine_channel_inpainting_files_load_with_their_weights(variants_root, name, family):
    from diffusers import UNet2DConditionModel

    checkpoint = manager_for(variants_root).load_checkpoint(f"{name}-single.safetensors")
    unet = checkpoint.model.unet
    assert unet.config.in_channels == 9 and unet.conv_in.weight.shape[1] == 9
    assert checkpoint.model.is_inpainting and checkpoint.model.family == checkpoint.clip.family == family
    written = UNet2DConditionModel.from_pretrained(variants_root / "checkpoints" / name, subfolder="unet")
    assert_same_weights(unet, written)
    # SD 2's inpainting model predicts the noise, though the SD 2 configs say v-prediction.
    assert checkpoint.model.prediction_type == "epsilon"


def test_the_inpainting_diffusers_folder_loads_as_an_inpainting_model(variants_root, model_root):
    inpainting = manager_for(variants_root).load_checkpoint("tiny-sd15-inpainting")
    base = manager_for(model_root).load_checkpoint("tiny-sd15")
    assert inpainting.model.is_inpainting and not base.model.is_inpainting


def test_the_shipped_family_configs_take_the_input_channels_from_the_weights(variants_root, tmp_path):
    """Without configs beside it, an inpainting file is read with its family's shipped
    configs; the tiny file does not fit their size, but it is refused for that, not for its
    9 channels."""
    import shutil

    lone = tmp_path / "sd-v1-5-inpainting.safetensors"
    shutil.copy(variants_root / "checkpoints" / "tiny-sd15-inpainting-single.safetensors", lone)
    with pytest.raises(ModelLoadError, match="looks like SD 1.x but its weights do not fit") as caught:
        load_single_file(lone, CPU, str(lone))
    assert "conv_in" not in str(caught.value)


def test_unets_with_other_input_channel_counts_are_refused_naming_the_count(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 7, 3, 3)}, str(path))
    with pytest.raises(ModelLoadError, match="odd.safetensors: has a UNet with 7 input channels"):
        load_single_file(path, CPU, "k")
    path = tmp_path / "odd5.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 5, 3, 3)}, str(path))
    with pytest.raises(ModelLoadError, match="odd5.safetensors: has a UNet with 5 input channels"):
        load_single_file(path, CPU, "k")


def test_the_sdxl_refiner_loads_with_one_encoder_and_its_tokenizer(variants_root):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    manager = manager_for(variants_root)
    folder = variants_root / "checkpoints" / "tiny-refiner"
    for name in ("tiny-refiner-single.safetensors", "tiny-refiner"):
        checkpoint = manager.load_checkpoint(name)
        assert checkpoint.model.family == checkpoint.clip.family == "sdxl_refiner"
        assert len(checkpoint.clip.encoders) == len(checkpoint.clip.tokenizers) == 1
        assert checkpoint.clip.tokenizers[0].pad_token == "!"
        assert checkpoint.model.latent_scale == pytest.approx(0.13025)
        assert checkpoint.model.unet.config.addition_time_embed_dim * 5 + 48 == \
            checkpoint.model.unet.config.projection_class_embeddings_input_dim
        assert_same_weights(checkpoint.model.unet, UNet2DConditionModel.from_pretrained(folder, subfolder="unet"))
        assert_same_weights(checkpoint.clip.encoders[0],
                            CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2"))


def test_the_shipped_refiner_configs_describe_the_published_refiner():
    """The refiner's UNet (2.26 billion parameters: its fp16 file is 4.5 GB) reads OpenCLIP
    ViT-bigG's 1280-wide states and pooled output with 5 time ids of 256 (1280 + 5·256 =
    2560); its encoder is SDXL's second."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    folder = CONFIGS_DIR / "sdxl_refiner"
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        encoder = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 2) == 2259.53
    assert round(sum(p.numel() for p in encoder.parameters()) / 1e6, 2) == 694.66
    assert unet.config.cross_attention_dim == encoder.config.hidden_size == 1280
    assert unet.add_embedding.linear_1.in_features == 1280 + 5 * 256 == 2560
    assert json.loads((folder / "model_index.json").read_text())["text_encoder"] == [None, None]


def header_file(tmp_path, name, tensors):
    """A safetensors file holding only the weights the family rules look at."""
    path = tmp_path / name
    save_file({key: torch.zeros(shape, dtype=torch.float16) for key, shape in tensors.items()}, str(path))
    return path


def test_headers_tell_which_files_the_loader_would_refuse(variants_root, model_root, tmp_path):
    checkpoints = model_root / "checkpoints"
    assert inspect_checkpoint_header(checkpoints / "tiny-sd15-single.safetensors") is None
    assert inspect_checkpoint_header(checkpoints / "tiny-sdxl-single.safetensors") is None
    assert inspect_checkpoint_header(checkpoints / "tiny-sdxl") is None
    assert inspect_checkpoint_header(variants_root / "checkpoints" / "tiny-sd2-inpainting-single.safetensors") is None
    assert inspect_checkpoint_header(variants_root / "checkpoints" / "tiny-refiner-single.safetensors") is None
    # The keys and shapes of the full-size files, without their weights.
    sdxl_inpainting = header_file(tmp_path, "sdxl-inpainting.safetensors", {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3),
        "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,)})
    assert inspect_checkpoint_header(sdxl_inpainting) is None
    refiner_without_projection = header_file(tmp_path, "refiner.safetensors", {
        "model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
        "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,)})
    assert "has no text projection" in inspect_checkpoint_header(refiner_without_projection)
    odd = header_file(tmp_path, "odd.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": (320, 7, 3, 3)})
    assert inspect_checkpoint_header(odd).startswith("odd.safetensors: has a UNet with 7 input channels")
    lora = header_file(tmp_path, "style.safetensors", {"lora_unet_down_blocks_0.lora_down.weight": (4, 4)})
    assert inspect_checkpoint_header(lora).startswith("style.safetensors: is not a Stable Diffusion checkpoint")
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    assert inspect_checkpoint_header(text).startswith("notes.safetensors: damaged or not a safetensors file")
    assert "file not found" in inspect_checkpoint_header(tmp_path / "gone.safetensors")


def test_the_header_check_agrees_with_the_loader(variants_root, model_root, tmp_path):
    """Whatever the header check accepts loads, and what it refuses the loader refuses with
    the same sentence."""
    for channels in (7, 5):
        odd = header_file(tmp_path, f"odd{channels}.safetensors",
                          {"model.diffusion_model.input_blocks.0.0.weight": (320, channels, 3, 3)})
        with pytest.raises(ModelLoadError) as caught:
            load_single_file(odd, CPU, "k")
        assert str(caught.value) == inspect_checkpoint_header(odd)
    for path in (model_root / "checkpoints" / "tiny-sd2-single.safetensors",
                 variants_root / "checkpoints" / "tiny-sd15-inpainting-single.safetensors"):
        assert inspect_checkpoint_header(path) is None
        load_single_file(path, CPU, str(path))
