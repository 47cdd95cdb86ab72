"""The example diffusion workflows, rendered headless with the tiny test checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from studio.settings import DEMO_MODELS_DIR, WORKFLOWS_DIR
from tests.cli.test_cli import studio


@pytest.fixture
def config(tmp_path, model_root) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"model_roots": [str(model_root)], "input_dirs": [str(tmp_path / "input")],
                                "temp_dir": str(tmp_path / "temp")}))
    return path


def test_a_seed_sweep_loads_the_checkpoint_once(tmp_path, config):
    code, out, err = studio("--config", str(config), "render", str(WORKFLOWS_DIR / "txt2img.json"),
                            "--out", str(tmp_path / "out"), "--json",
                            "--set", "Checkpoint.ckpt_name=tiny-sd15", "--set", "Size.width=64",
                            "--set", "Size.height=64", "--set", "Sampler.steps=2",
                            "--sweep", "Sampler.seed=1,2,3")
    assert code == 0, err
    runs = json.loads(out)["runs"]
    executed = [node for run in runs for node in run["executed"]]
    assert executed.count("1") == 1  # the checkpoint loader: loaded once, then served from the cache
    assert executed.count("2") == executed.count("3") == 1  # the prompts are encoded once
    assert all(run["cached"] == ["1", "2", "3", "7"] for run in runs[1:])
    files = [Path(run["outputs"][0]["path"]) for run in runs]
    assert len({f.read_bytes() for f in files}) == 3


EXAMPLES = {
    "txt2img.json": ["--set", "Sampler.steps=2", "--set", "Size.width=64", "--set", "Size.height=64"],
    "sdxl.json": ["--set", "Sampler.steps=2", "--set", "Size.width=64", "--set", "Size.height=64"],
    "img2img.json": ["--set", "Sampler.steps=2"],
    "inpaint.json": ["--set", "Sampler.steps=2"],
    "lora.json": ["--set", "Sampler.steps=2", "--set", "Size.width=64", "--set", "Size.height=64",
                  "--set", "LoRA.lora_name=example-lora.safetensors"],
    "controlnet_canny.json": ["--set", "Sampler.steps=2", "--set", "Size.width=64", "--set", "Size.height=48",
                              "--set", "ControlNet.control_net_name=tiny-cn"],
    "hires_fix.json": ["--set", "First pass.steps=2", "--set", "Second pass.steps=2", "--set", "Size.width=64",
                       "--set", "Size.height=64"],
    "hires_fix_model.json": ["--set", "First pass.steps=2", "--set", "Second pass.steps=2", "--set", "Size.width=64",
                             "--set", "Size.height=64", "--set", "Upscaler.model_name=example-x4.safetensors"],
    "custom_sampling.json": ["--set", "Schedule.steps=2", "--set", "Size.width=64", "--set", "Size.height=64"],
    "instruct_pix2pix.json": ["--set", "Sampler.steps=2"],
    "inpaint_model.json": ["--set", "Sampler.steps=2"],
}
# Workflows for models with extra input channels, and the tiny model each runs on here.
PICTURE_MODELS = {"instruct_pix2pix.json": ("tiny-ip2p", 8), "inpaint_model.json": ("tiny-inpaint-model", 9)}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_workflows_run_once_their_models_are_in_the_folders(tmp_path, config, model_root, name):
    checkpoint = "tiny-sdxl" if name == "sdxl.json" else "tiny-sd15"
    if name in PICTURE_MODELS:
        from tests.ldm_layout import write_single_file
        from tests.tiny_models import build_inpainting

        stem, channels = PICTURE_MODELS[name]
        checkpoint = f"{stem}.safetensors"
        # In a model root of the test's own: the shared one's listing is checked elsewhere.
        extra = tmp_path / "extra-models"
        (extra / "checkpoints").mkdir(parents=True)
        folder = build_inpainting(model_root / "checkpoints" / "tiny-sd15", tmp_path / stem, 5, in_channels=channels)
        write_single_file(folder, extra / "checkpoints" / checkpoint)
        settings = json.loads(config.read_text())
        config.write_text(json.dumps({**settings, "model_roots": [*settings["model_roots"], str(extra)]}))
    if name == "lora.json":
        from safetensors.torch import save_file

        (model_root / "loras").mkdir(exist_ok=True)
        key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
        save_file({f"{key}.lora_down.weight": torch.randn(2, 32), f"{key}.lora_up.weight": torch.randn(32, 2)},
                  str(model_root / "loras" / "example-lora.safetensors"))
    if name == "hires_fix_model.json":
        from safetensors.torch import save_file

        from tests.nodes.test_upscale import tiny_esrgan

        (model_root / "upscale_models").mkdir(exist_ok=True)
        save_file(tiny_esrgan(4), str(model_root / "upscale_models" / "example-x4.safetensors"))
    arguments = ["--set", f"Checkpoint.ckpt_name={checkpoint}", *EXAMPLES[name]]
    code, out, err = studio("--config", str(config), "render", str(WORKFLOWS_DIR / name),
                            "--out", str(tmp_path / "out"), *arguments)
    assert code == 0, err
    assert Path(out.strip()).is_file()


def test_without_the_checkpoint_the_workflow_says_which_file_and_folder(tmp_path, config, model_root):
    code, _, err = studio("--config", str(config), "render", str(WORKFLOWS_DIR / "txt2img.json"),
                          "--out", str(tmp_path / "out"))
    assert code == 1
    assert (f"model file 'v1-5-pruned-emaonly.safetensors' is not in the checkpoints folder "
            f"({model_root / 'checkpoints'}, {DEMO_MODELS_DIR / 'checkpoints'})") in err
