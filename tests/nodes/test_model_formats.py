"""Model files in the layouts they are published in, through the loader nodes: the SDXL
refiner with its prompt node, 9-channel inpainting checkpoints, T2I-Adapters in TencentARC's
original layout, and Real-ESRGAN files with their weights under ``params_ema``."""

from __future__ import annotations

import pytest
import torch

from studio.engine import Engine
from studio.graph import Workflow
from studio.runtime.controlnet import ControlHint, control_residuals
from studio.runtime.services import create_services
from tests.nodes.test_diffusion import CPU, render, txt2img
from tests.nodes.test_upscale import upscale_graph


@pytest.fixture(scope="module")
def formats_root(model_root, tmp_path_factory):
    from tests.ldm_layout import write_refiner_single_file, write_single_file
    from tests.tiny_models import build_inpainting, build_sdxl_refiner

    root = tmp_path_factory.mktemp("formats")
    checkpoints = root / "checkpoints"
    refiner = build_sdxl_refiner(checkpoints / "tiny-refiner", seed=21)
    write_refiner_single_file(refiner, checkpoints / "tiny-refiner-single.safetensors")
    inpainting = build_inpainting(model_root / "checkpoints" / "tiny-sd15", checkpoints / "tiny-inpainting", 22)
    write_single_file(inpainting, checkpoints / "tiny-inpainting-single.safetensors")
    (root / "controlnet").mkdir()
    (root / "upscale_models").mkdir()
    return root


@pytest.fixture
def engine(registry, model_settings, formats_root):
    settings = model_settings.replace(model_roots=(*model_settings.model_roots, formats_root))
    return Engine(registry, settings, services=create_services(settings, CPU))


# --- SDXL refiner --------------------------------------------------------------------------

def refiner_prompt(workflow, loader, text, ascore=6.0, width=1024, height=1024):
    node = workflow.add_node("CLIPTextEncodeSDXLRefiner", {"ascore": ascore, "width": width, "height": height,
                                                           "text": text}).id
    workflow.connect(loader, "CLIP", node, "clip")
    return node


def test_the_refiner_prompt_node_gives_the_pooled_output_and_the_aesthetic_score(engine, registry):
    spec = registry.spec("CLIPTextEncodeSDXLRefiner")
    assert [i.name for i in spec.inputs] == ["ascore", "width", "height", "text", "clip"]
    ascore = spec.inputs[0]
    assert (ascore.default, ascore.min, ascore.max, ascore.step) == (6.0, 0.0, 1000.0, 0.01)
    workflow = Workflow()
    loader = workflow.add_node("CheckpointLoaderSimple", {"ckpt_name": "tiny-refiner-single.safetensors"}).id
    refined = refiner_prompt(workflow, loader, "a red circle", ascore=2.5, width=768, height=512)
    plain = workflow.add_node("CLIPTextEncode", {"text": "a red circle"}).id
    workflow.connect(loader, "CLIP", plain, "clip")
    report = engine.run(workflow, [refined, plain])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    [(hidden, extras)] = report.results[refined][0]
    assert hidden.shape == (1, 77, 48) and extras["pooled_output"].shape == (1, 48)
    assert (extras["aesthetic_score"], extras["width"], extras["height"]) == (2.5, 768, 512)
    # CLIPTextEncode with the refiner's encoder gives the same states and pooled output.
    [(plain_hidden, plain_extras)] = report.results[plain][0]
    assert torch.equal(plain_hidden, hidden) and torch.equal(plain_extras["pooled_output"], extras["pooled_output"])


def test_the_refiner_prompt_node_refuses_other_text_encoders(engine):
    workflow = Workflow()
    loader = workflow.add_node("CheckpointLoaderSimple", {"ckpt_name": "tiny-sd15"}).id
    node = refiner_prompt(workflow, loader, "a red circle")
    report = engine.run(workflow, [node])
    assert not report.ok and "needs the SDXL refiner's text encoder; the CLIP wired in is sd15" in str(
        [error.message for error in report.errors])


def test_the_refiner_renders_and_its_aesthetic_score_matters(engine):
    images = []
    for ascore in (6.0, 1.0):
        workflow, ids = txt2img("tiny-refiner-single.safetensors")
        for side in ("positive", "negative"):
            workflow.remove_node(ids[side])
            ids[side] = refiner_prompt(workflow, ids["loader"], "a red circle" if side == "positive" else "blurry",
                                       ascore=ascore if side == "positive" else 2.5)
            workflow.connect(ids[side], "CONDITIONING", ids["sampler"], side)
        images.append(render(engine, workflow, ids))
    assert images[0].shape == (1, 64, 64, 3)
    assert (images[0] - images[1]).abs().mean() > 1e-4


def test_a_nine_channel_inpainting_checkpoint_renders_through_the_graph(engine):
    image = render(engine, *txt2img("tiny-inpainting-single.safetensors"))
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()


# --- T2I-Adapters in TencentARC's layout ---------------------------------------------------

def tiny_adapter(adapter_type="full_adapter", in_channels=3, seed=31):
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    # Channels of the tiny SD1 UNet's two levels; two resnets per level as published.
    return T2IAdapter(in_channels=in_channels, channels=[32, 64], num_res_blocks=2, downscale_factor=8,
                      adapter_type=adapter_type).eval()


def save_original(adapter, path, wrap=None):
    from tests.ldm_layout import t2i_adapter_to_original

    state = t2i_adapter_to_original(adapter)
    torch.save({wrap: state} if wrap else state, path)
    return state


def hint_residuals(net, image):
    hint = ControlHint(net, image, strength=1.0)
    latents = torch.zeros(1, 4, image.shape[1] // 8, image.shape[2] // 8)
    return control_residuals((hint,), 0.0, latents, torch.tensor(1.0), torch.zeros(1, 77, 32), {})


@pytest.mark.parametrize(("adapter_type", "wrap"), [("full_adapter", None), ("light_adapter", None),
                                                    ("full_adapter", "adapter")])
def test_original_layout_t2i_adapters_load_to_the_same_weights_and_act(engine, formats_root, adapter_type, wrap):
    reference = tiny_adapter(adapter_type)
    name = f"t2iadapter_{adapter_type}_{wrap}.pth"
    state = save_original(reference, formats_root / "controlnet" / name, wrap)
    assert "conv_in.weight" in state if adapter_type == "full_adapter" else "body.0.body.0.block1.weight" in state
    net = engine.services.models.load_controlnet(name)
    assert type(net.model).__name__ == "T2IAdapter"
    loaded, expected = net.model.state_dict(), reference.state_dict()
    assert set(loaded) == set(expected) and all(torch.equal(loaded[key], expected[key]) for key in expected)
    torch.manual_seed(0)
    image = torch.rand(1, 64, 64, 3)
    residuals = hint_residuals(net, image)["down_intrablock_additional_residuals"]
    with torch.no_grad():
        features = reference(image.movedim(-1, 1))
    assert len(residuals) == len(features) and all(torch.equal(a, b) for a, b in zip(residuals, features, strict=True))


def test_a_one_channel_sketch_adapter_reads_the_mean_of_the_hint(engine, formats_root):
    """The sketch adapter's conv_in takes 64 channels (one colour, unshuffled by 8); as in
    ComfyUI it sees the mean of the RGB hint."""
    reference = tiny_adapter(in_channels=1, seed=32)
    state = save_original(reference, formats_root / "controlnet" / "t2iadapter_sketch.pth")
    assert state["conv_in.weight"].shape[1] == 64
    net = engine.services.models.load_controlnet("t2iadapter_sketch.pth")
    torch.manual_seed(1)
    image = torch.rand(1, 64, 64, 3)
    residuals = hint_residuals(net, image)["down_intrablock_additional_residuals"]
    with torch.no_grad():
        features = reference(image.movedim(-1, 1).mean(1, keepdim=True))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(residuals, features, strict=True))


def test_an_original_layout_adapter_guides_a_render_through_the_controlnet_loader(engine, formats_root):
    from tests.nodes.test_controlnet import with_controlnet

    save_original(tiny_adapter(seed=33), formats_root / "controlnet" / "t2iadapter_canny.pth")
    base = render(engine, *txt2img())
    workflow, ids = txt2img()
    with_controlnet(workflow, ids, "t2iadapter_canny.pth")
    assert (render(engine, workflow, ids) - base).abs().mean() > 1e-4


def test_adapter_variants_diffusers_cannot_hold_are_refused_naming_the_file(formats_root):
    from studio.runtime.checkpoints import ModelLoadError
    from studio.runtime.controlnet import load_controlnet

    state = save_original(tiny_adapter(seed=34), formats_root / "controlnet" / "odd.pth")
    state["body.1.skep.weight"] = torch.zeros(32, 32, 1, 1)
    torch.save(state, formats_root / "controlnet" / "odd.pth")
    with pytest.raises(ModelLoadError, match="odd.pth: is a T2I-Adapter variant with skep layers"):
        load_controlnet(formats_root / "controlnet" / "odd.pth", CPU, "k")
    torch.save({"body.0.weight": torch.zeros(2)}, formats_root / "controlnet" / "other.pth")
    with pytest.raises(ModelLoadError, match="other.pth: is not a ControlNet or T2I-Adapter"):
        load_controlnet(formats_root / "controlnet" / "other.pth", CPU, "k")


# --- Upscalers wrapped by their training code ----------------------------------------------

def test_real_esrgan_files_with_weights_under_params_ema_load(engine, formats_root):
    from studio.runtime.upscale import load_upscale_model
    from tests.nodes.test_upscale import tiny_compact, tiny_esrgan

    folder = formats_root / "upscale_models"
    esrgan, compact = tiny_esrgan(4), tiny_compact()
    torch.save(esrgan, folder / "plain-x4.pth")
    torch.save({"params_ema": esrgan}, folder / "RealESRGAN_x4plus.pth")
    # BasicSR may keep both; the averaged (EMA) weights are the ones to use.
    noisy = {key: value + 1 for key, value in compact.items()}
    torch.save({"params": noisy, "params_ema": compact}, folder / "realesr-general-x4v3.pth")
    torch.save({"params": compact}, folder / "compact-params.pth")
    torch.manual_seed(0)
    image = torch.rand(1, 3, 12, 12)
    plain = load_upscale_model(folder / "plain-x4.pth", CPU, "a")
    wrapped = load_upscale_model(folder / "RealESRGAN_x4plus.pth", CPU, "b")
    assert wrapped.scale == 4 and torch.equal(wrapped.descriptor(image), plain.descriptor(image))
    both = load_upscale_model(folder / "realesr-general-x4v3.pth", CPU, "c")
    only = load_upscale_model(folder / "compact-params.pth", CPU, "d")
    assert torch.equal(both.descriptor(image), only.descriptor(image))
    # And through the graph, by name.
    workflow, upscale = upscale_graph("RealESRGAN_x4plus.pth", 16, 8)
    report = engine.run(workflow, [upscale])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    assert report.results[upscale][0].shape == (1, 32, 64, 3)
