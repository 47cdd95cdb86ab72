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


def write_single_controlnet(model_root, name, subtract=None):
    """The tiny ControlNet as an original-layout file (optionally as differences from a UNet)."""
    import shutil

    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from tests.ldm_layout import controlnet_to_ldm, unet_to_ldm

    folder = model_root / "controlnet" / "tiny-cn"
    net = ControlNetModel.from_pretrained(folder)
    state = controlnet_to_ldm(net)
    if subtract is not None:
        base = {"control_model." + key.removeprefix("model.diffusion_model."): value
                for key, value in unet_to_ldm(subtract).items()}
        state = {key: value - base[key] if key in base and base[key].shape == value.shape else value
                 for key, value in state.items()}
    target = model_root / "controlnet" / name
    save_file({key: value.contiguous() for key, value in state.items()}, str(target))
    (target.with_suffix("")).mkdir(exist_ok=True)
    shutil.copy(folder / "config.json", target.with_suffix("") / "config.json")
    return net


def test_original_layout_and_diff_controlnet_files_load_to_the_same_weights(engine, model_root):
    from studio.runtime.controlnet import load_controlnet

    unet = engine.services.models.load_checkpoint("tiny-sd15").model.unet
    reference = write_single_controlnet(model_root, "tiny-cn-single.safetensors")
    write_single_controlnet(model_root, "tiny-cn-diff.safetensors", subtract=unet)
    single = load_controlnet(model_root / "controlnet" / "tiny-cn-single.safetensors", CPU, "a").model
    diff = load_controlnet(model_root / "controlnet" / "tiny-cn-diff.safetensors", CPU, "b", base_unet=unet).model
    expected = reference.state_dict()
    for loaded in (single, diff):
        state = loaded.state_dict()
        assert set(state) == set(expected)
        assert all(torch.allclose(state[key], expected[key], atol=1e-6) for key in expected)
    # Through the graph: the diff file with its base model renders what the folder renders.
    workflow, ids = txt2img()
    with_controlnet(workflow, ids, "tiny-cn")
    from_folder = render(engine, workflow, ids)
    workflow, ids = txt2img()
    apply = with_controlnet(workflow, ids, "tiny-cn-diff.safetensors")
    loader = workflow.nodes[apply].links["control_net"].node
    workflow.remove_node(loader)
    diff_loader = workflow.add_node("DiffControlNetLoader", {"control_net_name": "tiny-cn-diff.safetensors"}).id
    workflow.connect(ids["loader"], "MODEL", diff_loader, "model")
    workflow.connect(diff_loader, "CONTROL_NET", apply, "control_net")
    assert (render(engine, workflow, ids) - from_folder).abs().max() < 1e-4


def test_t2i_adapters_load_through_the_controlnet_loader(engine, model_root):
    from diffusers import T2IAdapter

    torch.manual_seed(5)
    adapter = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=8,
                         adapter_type="full_adapter")
    adapter.save_pretrained(model_root / "controlnet" / "tiny-t2i")
    base = render(engine, *txt2img())
    workflow, ids = txt2img()
    with_controlnet(workflow, ids, "tiny-t2i", strength=0.0)
    assert torch.equal(render(engine, workflow, ids), base)
    workflow, ids = txt2img()
    with_controlnet(workflow, ids, "tiny-t2i", strength=1.0)
    assert (render(engine, workflow, ids) - base).abs().mean() > 1e-4


def test_shipped_controlnet_configs_mirror_the_unets_they_extend():
    """The ControlNet's copy of the UNet encoder (time embedding, input convolution, down
    blocks, middle block) has exactly the parameters of that part of the UNet."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from studio.runtime.checkpoints import CONFIGS_DIR

    for family in ("sd15", "sdxl"):
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS_DIR / family / "unet"))
            net = ControlNetModel.from_config(ControlNetModel.load_config(CONFIGS_DIR / f"controlnet-{family}"))
        shared = ("time_embedding.", "conv_in.", "down_blocks.", "mid_block.", "add_embedding.")
        unet_shapes = {k: v.shape for k, v in unet.state_dict().items() if k.startswith(shared)}
        net_shapes = {k: v.shape for k, v in net.state_dict().items() if k.startswith(shared)}
        assert net_shapes == unet_shapes, family
    with torch.device("meta"):  # the published SD 1.5 ControlNets have 361.28M parameters
        sd15 = ControlNetModel.from_config(ControlNetModel.load_config(CONFIGS_DIR / "controlnet-sd15"))
    assert round(sum(p.numel() for p in sd15.parameters()) / 1e6, 2) == 361.28


def test_sdxl_controlnets_from_a_folder_and_an_original_layout_file(engine, model_root):
    import shutil

    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from tests.ldm_layout import controlnet_to_ldm

    folder = model_root / "controlnet" / "tiny-cn-xl"
    single = model_root / "controlnet" / "tiny-cn-xl-single.safetensors"
    save_file({k: v.contiguous() for k, v in controlnet_to_ldm(ControlNetModel.from_pretrained(folder)).items()},
              str(single))
    single.with_suffix("").mkdir(exist_ok=True)
    shutil.copy(folder / "config.json", single.with_suffix("") / "config.json")
    base = render(engine, *txt2img("tiny-sdxl"))
    images = []
    for name in ("tiny-cn-xl", "tiny-cn-xl-single.safetensors"):
        workflow, ids = txt2img("tiny-sdxl")
        with_controlnet(workflow, ids, name)
        images.append(render(engine, workflow, ids))
    assert (images[0] - base).abs().mean() > 1e-4
    assert (images[0] - images[1]).abs().max() < 1e-5
