"""Start-up: commands import only what their work needs (issue 24). Listing, validating and
converting never import torch or the model libraries; rendering imports them on a thread of
its own while the file is read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio.settings import PROJECT_ROOT, WORKFLOWS_DIR

HEAVY = ("torch", "diffusers", "transformers", "accelerate", "spandrel", "torchsde", "scipy", "kornia")

PROBE = """
import io, json, sys
from studio.cli import main
out, err = io.StringIO(), io.StringIO()
code = main(sys.argv[1:], stdout=out, stderr=err)
heavy = sorted({{name.split('.')[0] for name in sys.modules}} & set({heavy!r}))
print(json.dumps({{"code": code, "heavy": heavy, "err": err.getvalue()}}))
"""


def run_command(*arguments: str, cwd: Path = PROJECT_ROOT) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *arguments], cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("workflow", ["default.json", "lora.json", "hires_fix_model.json", "controlnet_canny.json",
                                      "custom_sampling.json", "merge_and_save.json"])
def test_validate_imports_neither_torch_nor_the_model_libraries(workflow):
    report = run_command("validate", str(WORKFLOWS_DIR / workflow))
    assert report["heavy"] == [], report


def test_convert_and_nodes_import_neither_torch_nor_the_model_libraries(tmp_path):
    converted = run_command("convert", str(WORKFLOWS_DIR / "default.json"), str(tmp_path / "out.json"), "--to",
                            "comfy")
    assert converted["code"] == 0 and converted["heavy"] == [], converted
    listed = run_command("nodes", "--json")
    assert listed["code"] == 0 and listed["heavy"] == [], listed


def test_the_node_list_is_whole_without_torch():
    result = subprocess.run([sys.executable, "-m", "studio", "nodes", "--json"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    types = {node["type"] for node in json.loads(result.stdout)}
    assert {"KSampler", "KSamplerAdvanced", "CheckpointLoaderSimple", "SaveImage", "ImageScale", "MaskComposite",
            "SamplerCustom", "ModelSamplingDiscrete"} <= types
    sampler = next(node for node in json.loads(result.stdout) if node["type"] == "KSampler")
    choices = next(spec["choices"] for spec in sampler["inputs"] if spec["name"] == "sampler_name")
    assert choices[0] == "euler" and "dpmpp_2m_sde" in choices


def test_the_runtime_imports_on_its_own_thread_and_waiting_reports_how_long():
    code = ("import sys; from studio.startup import RuntimeImport; r = RuntimeImport(('json', 'torch')); "
            "r.wait(); print('torch' in sys.modules, r.seconds + 0.5 >= r.waited >= 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.split() == ["True", "True"], result.stderr
