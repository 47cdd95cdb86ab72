"""The speed option: a setting and `--speed fast`; regional compilation of a denoiser's
repeated blocks in place (the module the manager moves and LoRAs patch stays the same
object, computing the same); nothing at all on the CPU; `studio doctor`."""

from __future__ import annotations

import json

import pytest
import torch

from studio.runtime.device import DevicePolicy
from studio.settings import Settings, SettingsError


def test_the_speed_setting_and_the_command_line_option():
    from studio.cli import _load_settings, build_parser

    assert Settings().speed == "default"
    assert Settings.from_mapping({"speed": "fast"}).speed == "fast"
    with pytest.raises(SettingsError, match="speed must be one of default, fast"):
        Settings.from_mapping({"speed": "ludicrous"})
    args = build_parser().parse_args(["--config", "/nonexistent.json", "render", "workflow.json", "--speed", "fast"])
    assert _load_settings(args).speed == "fast"
    args = build_parser().parse_args(["batch", "workflow.json", "--speed", "fast"])
    assert args.speed == "fast"


def test_services_carry_the_speed_option_to_the_model_manager(settings):
    from studio.runtime.services import create_services

    cpu = DevicePolicy(torch.device("cpu"), torch.float32)
    assert create_services(settings, cpu).models.policy.speed == "default"
    assert create_services(settings.replace(speed="fast"), cpu).models.policy.speed == "fast"


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                cross_attention_dim=8, attention_head_dim=2, sample_size=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()


def test_fast_changes_nothing_on_the_cpu():
    from studio.runtime.speed import accelerate

    unet = _tiny_unet()
    assert accelerate(unet, DevicePolicy(torch.device("cpu"), torch.float32, speed="fast")) is False
    assert not any(getattr(block, "_compiled_call_impl", None) for block in unet.modules())
    assert accelerate(_tiny_unet(), DevicePolicy(torch.device("cpu"), torch.float32)) is False


def test_regional_compilation_compiles_the_repeated_blocks_in_place_and_computes_the_same(monkeypatch, tmp_path):
    from studio.runtime.speed import accelerate, use_disk_cache

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    use_disk_cache(tmp_path)
    unet = _tiny_unet()
    sample, timestep, context = torch.randn(1, 4, 8, 8), torch.tensor([500]), torch.randn(1, 3, 8)
    with torch.no_grad():
        expected = unet(sample, timestep, context).sample
        # The "eager" backend runs dynamo's capture without a C++ compiler: what the GPU's
        # inductor compiles is the same set of blocks.
        assert accelerate(unet, DevicePolicy(torch.device("cpu"), torch.float32, speed="fast"), compile_on_cpu=True,
                          backend="eager")
        compiled = {type(block).__name__ for block in unet.modules() if getattr(block, "_compiled_call_impl", None)}
        assert compiled == {"BasicTransformerBlock", "ResnetBlock2D"}
        got = unet(sample, timestep, context).sample
        assert accelerate(unet, DevicePolicy(torch.device("cpu"), torch.float32, speed="fast")) is False  # once
    assert torch.allclose(got, expected, atol=1e-5)
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path)


def test_doctor_prints_device_dtype_versions_and_model_folders(capsys, tmp_path):
    from studio.cli import main

    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"model_roots": [str(tmp_path / "models")]}))
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "a.safetensors").write_bytes(b"")
    assert main(["--config", str(config), "doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu" and report["dtype"] == "float32" and report["torch"] == torch.__version__
    assert {"folder": str(tmp_path / "models" / "checkpoints"), "files": 1} in report["model_folders"]["checkpoints"]
    assert main(["--config", str(config), "doctor"]) == 0
    text = capsys.readouterr().out
    assert "device: cpu" in text and "checkpoints" in text and "(1 files)" in text
