"""ControlNet on the tiny SD1 model."""

from __future__ import annotations

import pytest
import torch

from studio.engine import Engine
from studio.runtime.services import create_services

from tests.nodes.test_diffusion import CPU, render, txt2img


@pytest.fixture
def engine(registry, model_settings):
    return Engine(registry, model_settings, services=create_services(model_settings, CPU))


def with_controlnet(workflow, ids, name="tiny-cn", strength=1.0, start=0.0, end=1.0, hint_size=64,
                    source=None):
    """Canny edges of a square as the hint, through ControlNetApplyAdvanced."""
    image = workflow.add_node("EmptyImage", {"width": hint_size, "height": hint_size, "color": 0}).id
    square = workflow.add_node("EmptyImage", {"width": hint_size // 2, "height": hint_size // 2,
                                              "color": 0xFFFFFF}).id
    blend = workflow.add_node("ImageBlend", {"blend_factor": 1.0, "blend_mode": "screen"}).id
    loader = workflow.add_node("ControlNetLoader", {"control_net_name": name}).id
    apply = workflow.add_node("ControlNetApplyAdvanced", {"strength": strength, "start_percent": start,
                                                          "end_percent": end}).id
    workflow.connect(image, "IMAGE", blend, "image1")
    workflow.connect(square, "IMAGE", blend, "image2")
    workflow.connect(blend, "IMAGE", apply, "image")
    workflow.connect(loader, "CONTROL_NET", apply, "control_net")
    positive, negative = source or ((ids["positive"], "CONDITIONING"), (ids["negative"], "CONDITIONING"))
    workflow.connect(*positive, apply, "positive")
    workflow.connect(*negative, apply, "negative")
    workflow.connect(apply, "positive", ids["sampler"], "positive")
    workflow.connect(apply, "negative", ids["sampler"], "negative")
    return apply


def test_strength_zero_and_end_zero_are_no_controlnet_bit_for_bit(engine):
    base = render(engine, *txt2img())
    for settings in ({"strength": 0.0}, {"end": 0.0}):
        workflow, ids = txt2img()
        with_controlnet(workflow, ids, **settings)
        assert torch.equal(render(engine, workflow, ids), base), settings


def test_a_controlnet_changes_the_image_and_its_range_matters(engine):
    base = render(engine, *txt2img(steps=4))
    results = {}
    for label, start, end in (("all", 0.0, 1.0), ("first half", 0.0, 0.5), ("second half", 0.5, 1.0)):
        workflow, ids = txt2img(steps=4)
        with_controlnet(workflow, ids, start=start, end=end)
        results[label] = render(engine, workflow, ids)
    assert (results["all"] - base).abs().mean() > 1e-3
    assert not torch.allclose(results["first half"], results["all"])
    assert not torch.allclose(results["first half"], results["second half"])


def test_hints_of_another_size_are_fitted_to_the_latent(engine):
    workflow, ids = txt2img()
    with_controlnet(workflow, ids, hint_size=32)
    assert render(engine, workflow, ids).shape == (1, 64, 64, 3)


def test_controlnets_chain(engine):
    workflow, ids = txt2img()
    with_controlnet(workflow, ids, "tiny-cn")
    one = render(engine, workflow, ids)
    workflow, ids = txt2img()
    first = with_controlnet(workflow, ids, "tiny-cn")
    with_controlnet(workflow, ids, "tiny-cn-2", source=((first, "positive"), (first, "negative")))
    two = render(engine, workflow, ids)
    assert (two - one).abs().mean() > 1e-4


def test_simple_apply_and_loader_errors(engine, model_root):
    workflow, ids = txt2img()
    hint = workflow.add_node("EmptyImage", {"width": 64, "height": 64, "color": 0xFFFFFF}).id
    loader = workflow.add_node("ControlNetLoader", {"control_net_name": "tiny-cn"}).id
    apply = workflow.add_node("ControlNetApply", {"strength": 0.8}).id
    workflow.connect(ids["positive"], "CONDITIONING", apply, "conditioning")
    workflow.connect(loader, "CONTROL_NET", apply, "control_net")
    workflow.connect(hint, "IMAGE", apply, "image")
    workflow.connect(apply, "CONDITIONING", ids["sampler"], "positive")
    assert (render(engine, workflow, ids) - render(engine, *txt2img())).abs().mean() > 1e-4
    # A checkpoint is not a ControlNet, and says so.
    from studio.runtime.checkpoints import ModelLoadError
    from studio.runtime.controlnet import load_controlnet

    with pytest.raises(ModelLoadError, match="is not a ControlNet"):
        load_controlnet(model_root / "checkpoints" / "tiny-sd15-single.safetensors", CPU, "k")
    with pytest.raises(ModelLoadError, match="is not a ControlNet"):
        load_controlnet(model_root / "checkpoints" / "tiny-sd15" / "unet", CPU, "k")
