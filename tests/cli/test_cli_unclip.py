"""The unCLIP example workflow, rendered headless on a tiny unCLIP checkpoint (as
test_cli_diffusion.py renders the other examples)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.settings import WORKFLOWS_DIR
from tests.cli.test_cli import studio
from tests.unclip_models import CHECKPOINT, unclip_model_root


@pytest.fixture(scope="session")
def unclip_root(tmp_path_factory):
    return unclip_model_root(tmp_path_factory.getbasetemp() / "unclip-models")


def test_the_unclip_example_renders_once_its_checkpoint_is_in_the_folder(tmp_path, unclip_root):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"model_roots": [str(unclip_root)], "input_dirs": [str(tmp_path / "input")],
                                  "temp_dir": str(tmp_path / "temp")}))
    code, out, err = studio("--config", str(config), "render", str(WORKFLOWS_DIR / "unclip.json"),
                            "--out", str(tmp_path / "out"), "--set", f"Checkpoint.ckpt_name={CHECKPOINT}",
                            "--set", "Sampler.steps=2", "--set", "Size.width=64", "--set", "Size.height=64",
                            "--set", "Image prompt.noise_augmentation=0.1")
    assert code == 0, err
    assert Path(out.strip()).is_file()
