"""Models that read a picture beside the latent: InpaintModelConditioning for 9-channel
inpainting models and InstructPixToPixConditioning for 8-channel InstructPix2Pix models, on
tiny models in the single-file layout. What the UNet receives is checked at its input."""

from __future__ import annotations

import pytest
import torch

from studio.engine import Engine
from studio.graph import Workflow
from studio.runtime.services import create_services
from tests.nodes.test_diffusion import CPU


@pytest.fixture(scope="module")
def picture_root(model_root, tmp_path_factory):
    from tests.ldm_layout import write_single_file
    from tests.tiny_models import build_inpainting

    root = tmp_path_factory.mktemp("picture-models")
    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    for name, channels in (("tiny-inpaint", 9), ("tiny-ip2p", 8)):
        folder = build_inpainting(model_root / "checkpoints" / "tiny-sd15", root / "folders" / name, 40 + channels,
                                  in_channels=channels)
        write_single_file(folder, checkpoints / f"{name}.safetensors")
    return root


@pytest.fixture
def engine(registry, model_settings, picture_root):
    settings = model_settings.replace(model_roots=(*model_settings.model_roots, picture_root))
    return Engine(registry, settings, services=create_services(settings, CPU))


def picture_graph(checkpoint, node_type, seed=3, **values):
    """Loader, prompts, a 64×64 picture (left half red, right blue), the conditioning node and a
    sampler fed by it."""
    workflow = Workflow()
    ids = {"loader": workflow.add_node("CheckpointLoaderSimple", {"ckpt_name": checkpoint}).id,
           "positive": workflow.add_node("CLIPTextEncode", {"text": "a cat"}).id,
           "negative": workflow.add_node("CLIPTextEncode", {"text": "blurry"}).id,
           "picture": workflow.add_node("EmptyImage", {"width": 64, "height": 64, "color": 0xCC2244}).id,
           "node": workflow.add_node(node_type, values).id,
           "sampler": workflow.add_node("KSampler", {"seed": seed, "steps": 3, "cfg": 5.0, "sampler_name": "euler",
                                                     "scheduler": "normal", "denoise": 1.0}).id}
    for side in ("positive", "negative"):
        workflow.connect(ids["loader"], "CLIP", ids[side], "clip")
        workflow.connect(ids[side], "CONDITIONING", ids["node"], side)
        workflow.connect(ids["node"], side, ids["sampler"], side)
    workflow.connect(ids["loader"], "VAE", ids["node"], "vae")
    workflow.connect(ids["picture"], "IMAGE", ids["node"], "pixels")
    workflow.connect(ids["loader"], "MODEL", ids["sampler"], "model")
    workflow.connect(ids["node"], "latent", ids["sampler"], "latent_image")
    return workflow, ids


def unet_inputs(engine, workflow, ids, also=()):
    """Run the graph and return the first UNet input the sampler made, and the report."""
    seen = []
    model = engine.services.models
    original = type(model).use

    def spy(self, *modules, **kwargs):
        for module in modules:
            if type(module).__name__ == "UNet2DConditionModel" and not getattr(module, "_spied", False):
                module._spied = True
                module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
        return original(self, *modules, **kwargs)

    type(model).use = spy
    try:
        report = engine.run(workflow, [ids["sampler"], *also])
    finally:
        type(model).use = original
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    return seen[0], report


def test_inpaint_model_conditioning_gives_the_model_the_mask_and_the_greyed_picture(engine):
    workflow, ids = picture_graph("tiny-inpaint.safetensors", "InpaintModelConditioning", noise_mask=True)
    # the mask from padding a 32-wide picture to 64: 1 on the right half (where to repaint)
    padded = workflow.add_node("ImagePadForOutpaint", {"left": 0, "top": 0, "right": 32, "bottom": 0,
                                                       "feathering": 0}).id
    blank = workflow.add_node("EmptyImage", {"width": 32, "height": 64, "color": 0}).id
    workflow.connect(blank, "IMAGE", padded, "image")
    workflow.connect(padded, "MASK", ids["node"], "mask")
    first_input, report = unet_inputs(engine, workflow, ids)
    batch_of_two = first_input.shape[0] == 2  # negative and positive in one call
    assert first_input.shape[1] == 9
    mask_channel = first_input[0, 4]
    assert torch.equal(mask_channel[:, 4:], torch.ones(8, 4)) and torch.equal(mask_channel[:, :4], torch.zeros(8, 4))
    # the masked picture's latent is the same for both sides
    if batch_of_two:
        assert torch.equal(first_input[0, 4:], first_input[1, 4:])
    latent = report.results[ids["sampler"]][0]
    assert latent["samples"].shape == (1, 4, 8, 8)


def test_inpaint_without_noise_mask_resamples_the_whole_latent(engine, registry):
    from nodes.image_conditioning import InpaintModelConditioning

    assert [i.name for i in registry.spec("InpaintModelConditioning").inputs] == [
        "positive", "negative", "vae", "pixels", "mask", "noise_mask"]
    workflow, ids = picture_graph("tiny-inpaint.safetensors", "InpaintModelConditioning", noise_mask=False)
    mask = workflow.add_node("SolidMask", {"value": 1.0, "width": 64, "height": 64}).id
    workflow.connect(mask, "MASK", ids["node"], "mask")
    report = engine.run(workflow, [ids["node"]])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    positive, negative, latent = report.results[ids["node"]]
    assert "noise_mask" not in latent
    extras = positive[0][1]
    assert extras["concat_mask"].shape[-2:] == (64, 64) and extras["concat_latent_image"].shape == (1, 4, 8, 8)
    assert InpaintModelConditioning.title


def test_instruct_pix2pix_gives_the_model_the_source_picture(engine):
    workflow, ids = picture_graph("tiny-ip2p.safetensors", "InstructPixToPixConditioning")
    first_input, report = unet_inputs(engine, workflow, ids, also=[ids["node"]])
    assert first_input.shape[1] == 8
    node_out = report.results[ids["node"]]
    source = node_out[0][0][1]["concat_latent_image"]
    scale = 0.18215
    assert torch.allclose(first_input[0, 4:], source[0] * scale, atol=1e-5)
    assert torch.equal(node_out[2]["samples"], torch.zeros_like(source))
