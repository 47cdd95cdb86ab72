"""unCLIP and image prompts through the engine: unCLIPCheckpointLoader, CLIPVisionLoader,
CLIPVisionEncode, unCLIPConditioning, StyleModelLoader and StyleModelApply on a tiny unCLIP
checkpoint written in Stability's single-file layout."""

from __future__ import annotations

import pytest
import torch

from studio.engine import Engine
from studio.graph import Workflow
from studio.runtime.device import DevicePolicy
from studio.runtime.services import create_services
from tests.unclip_models import CHECKPOINT, STYLE, STYLE_TOKENS, VISION_OPEN_CLIP, unclip_model_root

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def unclip_root(tmp_path_factory):
    return unclip_model_root(tmp_path_factory.getbasetemp() / "unclip-models")


@pytest.fixture
def engine(registry, settings, unclip_root):
    settings = settings.replace(model_roots=(unclip_root,))
    return Engine(registry, settings, services=create_services(settings, CPU))


def unclip_graph(strength=1.0, noise_augmentation=0.0, seed=7, with_picture=True, steps=3):
    workflow = Workflow()
    ids = {}

    def add(name, type_name, values=None):
        ids[name] = workflow.add_node(type_name, values or {}).id

    add("loader", "unCLIPCheckpointLoader", {"ckpt_name": CHECKPOINT})
    add("positive", "CLIPTextEncode", {"text": "a photo"})
    add("negative", "CLIPTextEncode", {"text": "blurry"})
    add("picture", "LoadImage", {"image": "seed_sample.png"})
    add("encode", "CLIPVisionEncode", {"crop": "center"})
    add("unclip", "unCLIPConditioning", {"strength": strength, "noise_augmentation": noise_augmentation})
    add("latent", "EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1})
    add("sampler", "KSampler", {"seed": seed, "steps": steps, "cfg": 4.0, "sampler_name": "euler",
                                "scheduler": "normal", "denoise": 1.0})
    wires = [("loader", "CLIP", "positive", "clip"), ("loader", "CLIP", "negative", "clip"),
             ("loader", "CLIP_VISION", "encode", "clip_vision"), ("picture", "IMAGE", "encode", "image"),
             ("positive", "CONDITIONING", "unclip", "conditioning"),
             ("encode", "CLIP_VISION_OUTPUT", "unclip", "clip_vision_output"), ("loader", "MODEL", "sampler", "model"),
             ("negative", "CONDITIONING", "sampler", "negative"), ("latent", "LATENT", "sampler", "latent_image")]
    wires.append(("unclip", "CONDITIONING", "sampler", "positive") if with_picture
                 else ("positive", "CONDITIONING", "sampler", "positive"))
    for source, output, target, input_name in wires:
        workflow.connect(ids[source], output, ids[target], input_name)
    return workflow, ids


def sample(engine, **kwargs):
    workflow, ids = unclip_graph(**kwargs)
    report = engine.run(workflow, [ids["sampler"]])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    return report.results[ids["sampler"]][0]["samples"]


def test_strength_zero_is_the_prompt_without_the_picture(engine):
    without = sample(engine, with_picture=False)
    assert torch.equal(sample(engine, strength=0.0), without)
    assert not torch.allclose(sample(engine, strength=1.0), without, atol=1e-4)


def test_two_strengths_give_two_results_and_a_seed_gives_the_same_one_again(engine):
    weak, strong = sample(engine, strength=0.5), sample(engine, strength=2.0)
    assert not torch.allclose(weak, strong, atol=1e-4)
    assert torch.equal(sample(engine, strength=2.0), strong)


def test_noise_augmentation_changes_the_result_and_is_seeded(engine):
    clean = sample(engine, noise_augmentation=0.0)
    noised = sample(engine, noise_augmentation=0.8)
    assert not torch.allclose(clean, noised, atol=1e-4)
    assert torch.equal(sample(engine, noise_augmentation=0.8), noised)


def test_unclip_conditioning_appends_each_picture_to_every_entry(registry, ctx):
    node = registry.get("unCLIPConditioning")()
    output = object()
    conditioning = [(torch.zeros(1, 77, 32), {"pooled_output": None}), (torch.ones(1, 77, 32), {})]
    once, = node.run(ctx, conditioning, output, 0.5, 0.25)
    twice, = node.run(ctx, once, output, 1.5, 0.0)
    assert [len(extras["unclip_conditioning"]) for _, extras in twice] == [2, 2]
    assert twice[0][1]["unclip_conditioning"][1] == {"clip_vision_output": output, "strength": 1.5,
                                                     "noise_augmentation": 0.0}
    assert "unclip_conditioning" not in conditioning[0][1]  # the input is left as it was
    assert node.run(ctx, conditioning, output, 0.0, 0.5)[0] is conditioning


def test_a_clip_vision_file_encodes_like_the_checkpoints_own_tower(engine):
    workflow = Workflow()
    loader = workflow.add_node("CLIPVisionLoader", {"clip_name": VISION_OPEN_CLIP}).id
    checkpoint = workflow.add_node("unCLIPCheckpointLoader", {"ckpt_name": CHECKPOINT}).id
    picture = workflow.add_node("LoadImage", {"image": "seed_sample.png"}).id
    encodes = []
    for source, crop in ((loader, "none"), (checkpoint, "none"), (checkpoint, "center")):
        node = workflow.add_node("CLIPVisionEncode", {"crop": crop}).id
        workflow.connect(source, "CLIP_VISION", node, "clip_vision")
        workflow.connect(picture, "IMAGE", node, "image")
        encodes.append(node)
    report = engine.run(workflow, encodes)
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    file_tower, own_tower, cropped = (report.results[node][0] for node in encodes)
    assert torch.allclose(file_tower.image_embeds, own_tower.image_embeds, atol=1e-5)
    assert not torch.allclose(own_tower.image_embeds, cropped.image_embeds, atol=1e-4)  # the sample is not square


def test_a_plain_checkpoint_leaves_clip_vision_empty_and_encoding_says_why(engine, unclip_root, tmp_path):
    from tests.ldm_layout import write_single_file
    from tests.tiny_models import build_sd15

    plain = build_sd15(tmp_path / "plain")
    write_single_file(plain, unclip_root / "checkpoints" / "tiny-plain.safetensors")
    try:
        workflow = Workflow()
        loader = workflow.add_node("unCLIPCheckpointLoader", {"ckpt_name": "tiny-plain.safetensors"}).id
        picture = workflow.add_node("LoadImage", {"image": "seed_sample.png"}).id
        encode = workflow.add_node("CLIPVisionEncode", {"crop": "center"}).id
        workflow.connect(loader, "CLIP_VISION", encode, "clip_vision")
        workflow.connect(picture, "IMAGE", encode, "image")
        report = engine.run(workflow, [encode])
        assert not report.ok
        assert "clip_vision: no CLIP vision model arrived" in report.errors[0].message
    finally:
        (unclip_root / "checkpoints" / "tiny-plain.safetensors").unlink()


def test_apply_style_model_appends_the_style_tokens_scaled_by_strength(engine):
    workflow = Workflow()
    checkpoint = workflow.add_node("unCLIPCheckpointLoader", {"ckpt_name": CHECKPOINT}).id
    style = workflow.add_node("StyleModelLoader", {"style_model_name": STYLE}).id
    prompt = workflow.add_node("CLIPTextEncode", {"text": "a photo"}).id
    picture = workflow.add_node("LoadImage", {"image": "seed_sample.png"}).id
    encode = workflow.add_node("CLIPVisionEncode", {"crop": "center"}).id
    workflow.connect(checkpoint, "CLIP", prompt, "clip")
    workflow.connect(checkpoint, "CLIP_VISION", encode, "clip_vision")
    workflow.connect(picture, "IMAGE", encode, "image")
    applied = []
    for strength, kind in ((1.0, "multiply"), (2.0, "multiply"), (1.0, "attn_bias"), (0.5, "attn_bias")):
        node = workflow.add_node("StyleModelApply", {"strength": strength, "strength_type": kind}).id
        workflow.connect(prompt, "CONDITIONING", node, "conditioning")
        workflow.connect(style, "STYLE_MODEL", node, "style_model")
        workflow.connect(encode, "CLIP_VISION_OUTPUT", node, "clip_vision_output")
        applied.append(node)
    report = engine.run(workflow, [prompt, *applied[:3]])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    text = report.results[prompt][0][0][0]
    one, two, bias = (report.results[node][0][0][0] for node in applied[:3])
    assert one.shape == (1, text.shape[1] + STYLE_TOKENS, 32)
    assert torch.equal(one[:, :text.shape[1]], text)
    assert torch.allclose(two[:, text.shape[1]:], 2 * one[:, text.shape[1]:])
    assert torch.equal(bias, one)
    report = engine.run(workflow, [applied[3]])
    assert not report.ok and "attn_bias with a strength other than 1.0" in report.errors[0].message


def test_sdxl_revision_renders_with_a_picture_in_place_of_the_pooled_prompt(registry, settings, model_root, tmp_path):
    """SDXL "revision": a CLIP vision tower as wide as the tiny SDXL's pooled prompt (48), its
    picture embedding through unCLIPConditioning; the render differs from the prompt alone."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionModelWithProjection

    from tests.tiny_models import tiny_vision_config

    vision_folder = tmp_path / "models" / "clip_vision"
    vision_folder.mkdir(parents=True)
    torch.manual_seed(5)
    vision = CLIPVisionModelWithProjection(tiny_vision_config(projection_dim=48))
    save_file({key: value.contiguous() for key, value in vision.state_dict().items()},
              str(vision_folder / "tiny-g.safetensors"))
    (vision_folder / "tiny-g").mkdir()
    vision.config.to_json_file(str(vision_folder / "tiny-g" / "config.json"))
    settings = settings.replace(model_roots=(model_root, tmp_path / "models"))
    engine = Engine(registry, settings, services=create_services(settings, CPU))

    def render(with_picture):
        workflow = Workflow()
        node = {name: workflow.add_node(type_name, values).id for name, type_name, values in [
            ("loader", "CheckpointLoaderSimple", {"ckpt_name": "tiny-sdxl"}),
            ("vision", "CLIPVisionLoader", {"clip_name": "tiny-g.safetensors"}),
            ("picture", "LoadImage", {"image": "seed_sample.png"}),
            ("encode", "CLIPVisionEncode", {"crop": "center"}),
            ("positive", "CLIPTextEncode", {"text": "a photo"}), ("negative", "CLIPTextEncode", {"text": ""}),
            ("unclip", "unCLIPConditioning", {"strength": 1.0, "noise_augmentation": 0.1}),
            ("latent", "EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}),
            ("sampler", "KSampler", {"seed": 3, "steps": 3, "cfg": 4.0, "sampler_name": "euler",
                                     "scheduler": "normal", "denoise": 1.0})]}
        for source, output, target, input_name in [
                ("loader", "CLIP", "positive", "clip"), ("loader", "CLIP", "negative", "clip"),
                ("vision", "CLIP_VISION", "encode", "clip_vision"), ("picture", "IMAGE", "encode", "image"),
                ("positive", "CONDITIONING", "unclip", "conditioning"),
                ("encode", "CLIP_VISION_OUTPUT", "unclip", "clip_vision_output"),
                ("loader", "MODEL", "sampler", "model"), ("negative", "CONDITIONING", "sampler", "negative"),
                ("latent", "LATENT", "sampler", "latent_image"),
                ("unclip" if with_picture else "positive", "CONDITIONING", "sampler", "positive")]:
            workflow.connect(node[source], output, node[target], input_name)
        report = engine.run(workflow, [node["sampler"]])
        assert report.ok, report.problems or [e.traceback for e in report.errors]
        return report.results[node["sampler"]][0]["samples"]

    revision, plain = render(True), render(False)
    assert torch.isfinite(revision).all()
    assert (revision - plain).abs().max() > 1e-3 * plain.abs().max()
