"""The GPU's number formats on the CPU: most GPU bugs are dtype and device bugs, and those
show on the CPU too. The fastest render tests of each model family and feature run again with
the device policy forced to bf16 and to fp16 (the CPU has kernels for both in torch 2.13), on
the tiny models: SD 1.5 with a LoRA, a ControlNet hint, an inpainting mask, a batch of two and
latent previews; SDXL; FLUX.1 schnell; SD3.5; a model upscaler. Each must run without a dtype
mismatch and give finite pictures (and previews) close to the float32 render.

What a real GPU adds (kernels, memory, speed) is `bench/gpu_check.py`'s."""

from __future__ import annotations

import pytest
import torch

from studio.engine import Engine, NodeProgress
from studio.runtime.device import DevicePolicy
from studio.runtime.services import create_services
from studio.settings import Settings
from tests.nodes.test_controlnet import with_controlnet
from tests.nodes.test_diffusion import txt2img
from tests.nodes.test_flux import flux_graph
from tests.nodes.test_lora import with_lora, write_kohya_sd1
from tests.nodes.test_sd3 import sd3_graph
from tests.nodes.test_upscale import tiny_compact, upscale_graph

HALF = [torch.bfloat16, torch.float16]


def _settings(root_dirs, folder) -> Settings:
    return Settings(output_dir=folder / "output", input_dirs=(), temp_dir=folder / "temp",
                    autosave_dir=folder / "autosave", cache_bytes=256 * 1024**2, model_roots=tuple(root_dirs))


@pytest.fixture(scope="module")
def roots(model_root, tmp_path_factory):
    """The tiny SD checkpoints and ControlNets, the FLUX and SD3.5 files, a LoRA and an
    upscaler, in model folders."""
    from safetensors.torch import save_file

    from tests.flux_models import flux_files_once, sd3_files_once

    extra = tmp_path_factory.mktemp("half_models")
    (extra / "upscale_models").mkdir()
    save_file(tiny_compact(), str(extra / "upscale_models" / "tiny-compact-x2.safetensors"))
    (extra / "loras").mkdir()
    return [model_root, extra, flux_files_once(tmp_path_factory).root, sd3_files_once(tmp_path_factory).root]


@pytest.fixture(scope="module")
def engines(registry, roots, tmp_path_factory):
    """One engine per number format, each with its own model manager (files loaded once)."""
    made = {}
    for dtype in (torch.float32, *HALF):
        settings = _settings(roots, tmp_path_factory.mktemp(str(dtype).removeprefix("torch.")))
        made[dtype] = Engine(registry, settings, services=create_services(settings, DevicePolicy(torch.device("cpu"),
                                                                                                  dtype)))
    write_kohya_sd1(made[torch.float32], roots[1] / "loras" / "tiny-lora.safetensors")
    return made


def _render(engine, workflow, output, previews=None):
    events = (lambda e: previews.append(e.preview) if isinstance(e, NodeProgress) and e.preview is not None
              else None) if previews is not None else None
    report = engine.run(workflow, [output], on_event=events)
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    image = report.results[output][0]
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    return image


def _sd15_everything():
    """SD 1.5 at 32², 2 steps, a batch of two, a LoRA, a ControlNet and an inpainting mask."""
    workflow, ids = txt2img(steps=2, batch=2, size=32)
    with_lora(workflow, ids, "tiny-lora.safetensors", 0.8, 0.8)
    with_controlnet(workflow, ids, hint_size=32)
    mask = workflow.add_node("SolidMask", {"value": 0.7, "width": 32, "height": 32}).id
    masked = workflow.add_node("SetLatentNoiseMask").id
    workflow.connect(ids["latent"], "LATENT", masked, "samples")
    workflow.connect(mask, "MASK", masked, "mask")
    workflow.connect(masked, "LATENT", ids["sampler"], "latent_image")
    return workflow, ids["decode"]


def _sdxl():
    workflow, ids = txt2img("tiny-sdxl-single.safetensors", steps=2, size=32)
    return workflow, ids["decode"]


def _flux():
    workflow, ids = flux_graph(steps=2)
    return workflow, ids["decode"]


def _sd3():
    workflow, ids = sd3_graph(steps=2)
    return workflow, ids["decode"]


def _upscale():
    return upscale_graph("tiny-compact-x2.safetensors")


# Random-weight tiny models amplify rounding: a wrong dtype path gives NaN, an error or a
# different picture (tens of percent); 16-bit rounding moves a few percent at most.
GRAPHS = {"sd15_lora_controlnet_mask_batch": (_sd15_everything, 0.08), "sdxl": (_sdxl, 0.08),
          "flux_schnell": (_flux, 0.08), "sd35": (_sd3, 0.08), "upscaler": (_upscale, 0.03)}


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_renders_in_half_precision_on_the_cpu_without_dtype_mismatch(engines, graph, dtype):
    build, tolerance = GRAPHS[graph]
    workflow, output = build()
    previews: list = []
    image = _render(engines[dtype], workflow, output, previews)
    reference = _render(engines[torch.float32], *build())
    assert image.shape == reference.shape
    assert (image - reference).abs().mean() < tolerance, (image - reference).abs().mean()
    for preview in previews:
        assert torch.isfinite(torch.as_tensor(preview, dtype=torch.float32)).all()
    if graph.startswith("sd15"):
        assert len(previews) == 2


def test_the_forced_policy_really_loads_16_bit_weights(engines):
    for dtype in HALF:
        manager = engines[dtype].services.models
        checkpoint = manager.load_checkpoint("tiny-sd15-single.safetensors")
        assert next(checkpoint.model.unet.parameters()).dtype == dtype
        assert next(checkpoint.vae.vae.parameters()).dtype in (dtype, torch.float32)
