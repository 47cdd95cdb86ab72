"""Model upscalers through spandrel, on tiny ESRGAN and Real-ESRGAN-compact weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from studio.engine import Engine, NodeProgress
from studio.graph import Workflow
from studio.runtime.checkpoints import ModelLoadError
from studio.runtime.services import create_services
from studio.runtime.upscale import import_spandrel, load_upscale_model, upscale_tiled
from tests.nodes.test_diffusion import CPU


def tiny_esrgan(scale: int = 4) -> dict[str, torch.Tensor]:
    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(scale)
    return ESRGAN(num_filters=8, num_blocks=1, scale=scale).state_dict()


def tiny_compact() -> dict[str, torch.Tensor]:
    import_spandrel()
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact

    torch.manual_seed(7)
    return SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2).state_dict()


def upscale_graph(model_name: str, width: int = 24, height: int = 16, color: int = 0x336699) -> tuple[Workflow, str]:
    """EmptyImage → ImageUpscaleWithModel with the upscaler ``model_name``: the graph and the
    upscaling node's id."""
    workflow = Workflow()
    image = workflow.add_node("EmptyImage", {"width": width, "height": height, "color": color}).id
    loader = workflow.add_node("UpscaleModelLoader", {"model_name": model_name}).id
    upscale = workflow.add_node("ImageUpscaleWithModel").id
    workflow.connect(loader, "UPSCALE_MODEL", upscale, "upscale_model")
    workflow.connect(image, "IMAGE", upscale, "image")
    return workflow, upscale


@pytest.fixture
def upscalers(model_root):
    folder = model_root / "upscale_models"
    folder.mkdir(exist_ok=True)
    torch.save(tiny_esrgan(4), folder / "tiny-esrgan-x4.pth")
    save_file(tiny_esrgan(2), str(folder / "tiny-esrgan-x2.safetensors"))
    save_file(tiny_compact(), str(folder / "tiny-compact-x2.safetensors"))
    (folder / "broken.pth").write_bytes(b"not a model at all")
    save_file({"weight": torch.zeros(3)}, str(folder / "odd.safetensors"))
    return folder


@pytest.fixture
def engine(registry, model_settings):
    return Engine(registry, model_settings, services=create_services(model_settings, CPU))


@pytest.mark.parametrize(("name", "scale"), [("tiny-esrgan-x4.pth", 4), ("tiny-esrgan-x2.safetensors", 2),
                                             ("tiny-compact-x2.safetensors", 2)])
def test_the_upscaler_gives_its_models_scale(engine, upscalers, name, scale):
    workflow, upscale = upscale_graph(name)
    report = engine.run(workflow, [upscale])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    assert report.results[upscale][0].shape == (1, 16 * scale, 24 * scale, 3)


def test_tiles_match_the_whole_image_and_report_progress(upscalers):
    model = load_upscale_model(upscalers / "tiny-esrgan-x2.safetensors", CPU, "k")
    torch.manual_seed(0)
    image = torch.rand(1, 40, 56, 3)
    whole = upscale_tiled(model, image, tile=128, overlap=0, progress=lambda done, total: None)
    steps = []
    tiled = upscale_tiled(model, image, tile=24, overlap=8, progress=lambda done, total: steps.append((done, total)))
    assert tiled.shape == whole.shape == (1, 80, 112, 3)
    # The tiny net sees a few pixels around each one; 8 pixels of overlap, cross-faded, hide
    # the seams almost entirely.
    assert (tiled - whole).abs().mean() < 2e-3
    assert steps[-1][0] == steps[-1][1] > 1 and [done for done, _ in steps] == list(range(1, len(steps) + 1))


def test_cancel_stops_between_tiles(engine, upscalers):
    from studio.engine import CancelToken

    workflow, upscale = upscale_graph("tiny-compact-x2.safetensors", 1100, 600, 0)
    token = CancelToken()
    seen = []

    def watch(event):
        if isinstance(event, NodeProgress):
            seen.append(event.step)
            token.cancel()

    report = engine.run(workflow, [upscale], cancel=token, on_event=watch)
    assert report.status == "cancelled" and seen == [1]


def test_bad_files_get_errors_naming_them(upscalers):
    with pytest.raises(ModelLoadError, match="broken.pth: is not a plain-weights file"):
        load_upscale_model(upscalers / "broken.pth", CPU, "k")
    with pytest.raises(ModelLoadError, match="odd.safetensors: is not an upscaler architecture"):
        load_upscale_model(upscalers / "odd.safetensors", CPU, "k")


def test_spandrel_imports_leave_no_torchvision_stand_in_behind():
    import importlib.util
    import sys

    import_spandrel()
    assert "torchvision" not in sys.modules or importlib.util.find_spec("torchvision") is not None
