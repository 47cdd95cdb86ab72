from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from studio.runtime.checkpoints import CONFIGS_DIR, ModelLoadError, make_tokenizer, read_state_dict
from studio.runtime.device import DevicePolicy
from studio.runtime.model_manager import ModelManager
from studio.runtime.models import ModelFolders

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


def manager_for(model_root) -> ModelManager:
    return ModelManager(CPU, ModelFolders.from_roots([model_root]))


@pytest.mark.parametrize(("name", "family", "encoders"), [("tiny-sd15", "sd15", 1), ("tiny-sdxl", "sdxl", 2)])
def test_diffusers_folders_load_offline_with_their_family(model_root, name, family, encoders):
    checkpoint = manager_for(model_root).load_checkpoint(name)
    assert checkpoint.model.family == checkpoint.clip.family == family
    assert len(checkpoint.clip.encoders) == len(checkpoint.clip.tokenizers) == encoders
    assert checkpoint.model.scheduler_config["_class_name"] == "EulerDiscreteScheduler"
    assert checkpoint.model.latent_scale == pytest.approx(0.13025 if family == "sdxl" else 0.18215)


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sd2", "tiny-sdxl"])
def test_single_files_in_the_ldm_layout_load_to_the_same_weights_as_the_folder(model_root, name):
    manager = manager_for(model_root)
    folder = manager.load_checkpoint(name)
    single = manager.load_checkpoint(f"{name}-single.safetensors")
    pairs = [(single.model.unet, folder.model.unet), (single.vae.vae, folder.vae.vae),
             *zip(single.clip.encoders, folder.clip.encoders, strict=True)]
    for loaded, expected in pairs:
        loaded_state, expected_state = loaded.state_dict(), expected.state_dict()
        assert set(loaded_state) == set(expected_state)
        assert all(torch.equal(loaded_state[key], expected_state[key]) for key in expected_state)
    assert single.model.family == folder.model.family == {"tiny-sd15": "sd15", "tiny-sd2": "sd2",
                                                          "tiny-sdxl": "sdxl"}[name]
    if name == "tiny-sd2":
        assert single.model.prediction_type == "v_prediction"


def test_config_folders_beside_single_files_are_not_listed_as_models(model_root):
    names = ModelFolders.from_roots([model_root]).list("checkpoints")
    assert names == ["tiny-sd15", "tiny-sd15-single.safetensors", "tiny-sd2", "tiny-sd2-single.safetensors",
                     "tiny-sdxl", "tiny-sdxl-single.safetensors"]


def test_weights_that_do_not_fit_the_shipped_architecture_are_refused_clearly(model_root, tmp_path):
    import shutil

    from studio.runtime.checkpoints import load_single_file

    # Without its own config folder, the tiny file is read with the full-size SD 1.5 configs.
    lone = tmp_path / "lone.safetensors"
    shutil.copy(model_root / "checkpoints" / "tiny-sd15-single.safetensors", lone)
    with pytest.raises(ModelLoadError, match="lone.safetensors: looks like SD 1.x but its weights do not fit"):
        load_single_file(lone, CPU, str(lone))


def test_a_checkpoint_is_loaded_once_and_shared(model_root):
    manager = manager_for(model_root)
    first = manager.load_checkpoint("tiny-sd15")
    second = manager.load_checkpoint("tiny-sd15")
    assert first is second and manager.loads == 1


def test_the_shipped_tokenizer_gives_stable_diffusions_token_ids():
    assert make_tokenizer()("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert make_tokenizer("!").pad_token_id == 0


@pytest.mark.parametrize(("family", "unet", "text"), [("sd15", 859.52, [123.06]), ("sd2", 865.91, [340.39]),
                                                       ("sdxl", 2567.46, [123.06, 694.66])])
def test_shipped_configs_describe_the_published_architectures(family, unet, text):
    """Parameter counts (millions) of models built from the shipped configs equal those of
    the released SD 1.5, SD 2.1 and SDXL base weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def millions(module):
        return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)

    folder = CONFIGS_DIR / family
    with torch.device("meta"):
        assert millions(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))) == unet
        assert millions(AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))) == 83.65
        counts = [millions(CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")))]
        if (folder / "text_encoder_2").is_dir():
            counts.append(millions(CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))))
    assert counts == text


def test_a_missing_model_names_the_folder_it_was_expected_in(model_root):
    expected = r"nope.safetensors: not found in the checkpoints folder \(.*checkpoints\)"
    with pytest.raises(ModelLoadError, match=expected):
        manager_for(model_root).load_checkpoint("nope.safetensors")


def test_truncated_and_foreign_files_give_errors_naming_them(tmp_path):
    good = tmp_path / "weights.safetensors"
    save_file({"model.diffusion_model.x": torch.zeros(4)}, str(good))
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ModelLoadError, match="cut.safetensors: damaged or not a safetensors file"):
        read_state_dict(truncated)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(ModelLoadError, match="notes.ckpt: damaged or not a PyTorch weights file"):
        read_state_dict(text)
    with pytest.raises(ModelLoadError, match="unknown kind of weights file '.gguf'"):
        (tmp_path / "x.gguf").write_bytes(b"GGUF")
        read_state_dict(tmp_path / "x.gguf")


class Payload:
    """Stands for code smuggled into a pickle."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_with_code_in_them_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as stream:
        pickle.dump({"state_dict": {"w": Payload()}}, stream)
    with pytest.raises(ModelLoadError, match="evil.ckpt: is not a plain-weights file"):
        read_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_plain_weight_pickles_load(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(read_state_dict(path)["w"], torch.ones(2))


def test_a_file_that_is_not_a_checkpoint_says_what_it_looks_like(tmp_path):
    from studio.runtime.checkpoints import load_single_file

    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    with pytest.raises(ModelLoadError, match="style.safetensors: is not a Stable Diffusion checkpoint"):
        load_single_file(lora, CPU, "key")
