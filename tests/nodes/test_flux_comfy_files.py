"""ComfyUI's own FLUX.1 dev and SD3.5 example graphs (hand-written in ComfyUI's UI and API
formats, sources in tests/graph/comfy_files/README.md) open with every node known, UI and
API alike, and render on the tiny models once their file names point at them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from studio.engine import Engine
from studio.graph.files import open_workflow
from studio.runtime.device import DevicePolicy
from studio.runtime.services import create_services

FILES = Path(__file__).parent.parent / "graph" / "comfy_files"
CPU = DevicePolicy(torch.device("cpu"), torch.float32)
# The files' model names → the tiny models'; sizes and steps made small.
TINY = {
    "flux_dev": {"12": {"unet_name": "tiny-flux1-dev.safetensors"},
                 "11": {"clip_name1": "tiny-t5xxl_fp16.safetensors", "clip_name2": "tiny-clip_l.safetensors"},
                 "10": {"vae_name": "tiny-ae.safetensors"}, "17": {"steps": 2},
                 "27": {"width": 32, "height": 32}, "30": {"width": 32, "height": 32}},
    "sd35": {"4": {"ckpt_name": "tiny-sd3.5_medium-noclip.safetensors"},
             "11": {"clip_name1": "tiny-sd3-clip_l.safetensors", "clip_name2": "tiny-sd3-clip_g.safetensors",
                    "clip_name3": "tiny-sd3-t5xxl_fp16.safetensors"},
             "3": {"steps": 2}, "53": {"width": 32, "height": 32}},
}
DECODE = {"flux_dev": "8", "sd35": "8"}


@pytest.fixture(scope="module")
def engine(registry, tmp_path_factory):
    from studio.settings import Settings
    from tests.flux_models import flux_files_once, sd3_files_once

    roots = (flux_files_once(tmp_path_factory).root, sd3_files_once(tmp_path_factory).root)
    folder = tmp_path_factory.mktemp("comfy-files")
    settings = Settings(output_dir=folder / "output", input_dirs=(), temp_dir=folder / "temp",
                        autosave_dir=folder / "autosave", cache_bytes=256 * 1024**2, model_roots=roots)
    return Engine(registry, settings, services=create_services(settings, CPU))


@pytest.mark.parametrize("name", ["flux_dev", "sd35"])
def test_comfyuis_example_graphs_open_with_no_placeholders_ui_and_api_alike(registry, name):
    from tests.graph.test_comfy import effective_graph

    from_ui, ui_report = open_workflow(FILES / f"{name}_ui.json", registry.spec)
    from_api, api_report = open_workflow(FILES / f"{name}_api.json", registry.spec)
    assert ui_report.unknown_types == api_report.unknown_types == []
    assert all(node.type in registry for node in from_ui.nodes.values())
    assert effective_graph(from_ui, registry) == effective_graph(from_api, registry)


# The API files give the same graphs (checked above), so the UI files stand for both here.
@pytest.mark.parametrize(("name", "form"), [("flux_dev", "ui"), ("sd35", "ui")])
def test_comfyuis_example_graphs_render_on_the_tiny_models(registry, engine, name, form):
    workflow, _ = open_workflow(FILES / f"{name}_{form}.json", registry.spec)
    for node_id, values in TINY[name].items():
        workflow.nodes[node_id].values.update(values)
    report = engine.run(workflow, [DECODE[name]])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    image = report.results[DECODE[name]][0]
    assert image.shape == (1, 32, 32, 3) and torch.isfinite(image).all() and image.std() > 0.01
