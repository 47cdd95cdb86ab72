"""The FLUX.1 schnell and SD3.5 example workflows, rendered headless on the tiny test models
(their file names set from the command line, as an artist whose files are named otherwise
would), with the README's example prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.settings import WORKFLOWS_DIR
from tests.cli.test_cli import studio

README_PROMPT = "Prompt.text=flowers melting into a cosmic black hole swirling around the cosmos like stars, fantasy"


@pytest.fixture(scope="module")
def model_roots(tmp_path_factory):
    from tests.flux_models import flux_files_once, sd3_files_once

    return [str(flux_files_once(tmp_path_factory).root), str(sd3_files_once(tmp_path_factory).root)]


def render(tmp_path, roots, name, *arguments):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"model_roots": roots, "temp_dir": str(tmp_path / "temp")}))
    return studio("--config", str(config), "render", str(WORKFLOWS_DIR / name), "--out", str(tmp_path / "out"),
                  *arguments)


@pytest.mark.parametrize(("workflow", "values"), [
    pytest.param("flux_schnell.json", (README_PROMPT, "Diffusion model.unet_name=tiny-flux1-schnell.safetensors",
                                       "Text encoders.clip_name1=tiny-t5xxl_fp8_e4m3fn.safetensors",
                                       "Text encoders.clip_name2=tiny-clip_l.safetensors",
                                       "VAE.vae_name=tiny-ae.safetensors"), id="flux_schnell_readme_example"),
    pytest.param("sd35.json", ("Checkpoint.ckpt_name=tiny-sd3.5_medium-noclip.safetensors",
                               "Text encoders.clip_name1=tiny-sd3-clip_l.safetensors",
                               "Text encoders.clip_name2=tiny-sd3-clip_g.safetensors",
                               "Text encoders.clip_name3=tiny-sd3-t5xxl_fp16.safetensors", "Sampler.steps=2"),
                 id="sd35"),
])
def test_the_bundled_transformer_workflow_renders_with_the_tiny_files(tmp_path, model_roots, workflow, values):
    sets = [argument for value in (*values, "Size.width=32", "Size.height=32") for argument in ("--set", value)]
    code, out, err = render(tmp_path, model_roots, workflow, *sets)
    assert code == 0, err
    assert Path(out.strip()).is_file()


def test_without_the_files_the_workflow_names_each_and_its_folder(tmp_path):
    code, _, err = render(tmp_path, [str(tmp_path / "empty")], "flux_schnell.json")
    assert code == 1
    for name, folder in (("flux1-schnell.safetensors", "diffusion_models"), ("clip_l.safetensors", "text_encoders"),
                         ("ae.safetensors", "vae")):
        assert name in err and folder in err
