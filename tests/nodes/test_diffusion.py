"""The diffusion nodes on tiny random-weight models in diffusers folders."""

from __future__ import annotations

import pytest
import torch

from studio.engine import CancelToken, Engine, NodeProgress
from studio.graph import Workflow
from studio.runtime.device import DevicePolicy
from studio.runtime.services import create_services

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


@pytest.fixture
def engine(registry, model_settings):
    return Engine(registry, model_settings, services=create_services(model_settings, CPU))


def txt2img(checkpoint="tiny-sd15", positive="a red circle", negative="blurry", seed=42, steps=4, cfg=7.5,
            sampler="euler", scheduler="normal", size=64, batch=1) -> tuple[Workflow, dict[str, str]]:
    workflow = Workflow()
    ids = {}

    def add(name, type_name, values=None):
        ids[name] = workflow.add_node(type_name, values or {}).id

    add("loader", "CheckpointLoaderSimple", {"ckpt_name": checkpoint})
    add("positive", "CLIPTextEncode", {"text": positive})
    add("negative", "CLIPTextEncode", {"text": negative})
    add("latent", "EmptyLatentImage", {"width": size, "height": size, "batch_size": batch})
    add("sampler", "KSampler", {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
                                "scheduler": scheduler, "denoise": 1.0})
    add("decode", "VAEDecode")
    for source, output, target, input_name in [
            ("loader", "CLIP", "positive", "clip"), ("loader", "CLIP", "negative", "clip"),
            ("loader", "MODEL", "sampler", "model"), ("positive", "CONDITIONING", "sampler", "positive"),
            ("negative", "CONDITIONING", "sampler", "negative"), ("latent", "LATENT", "sampler", "latent_image"),
            ("sampler", "LATENT", "decode", "samples"), ("loader", "VAE", "decode", "vae")]:
        workflow.connect(ids[source], output, ids[target], input_name)
    return workflow, ids


def render(engine, workflow, ids, **kwargs):
    report = engine.run(workflow, [ids["decode"]], **kwargs)
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    return report.results[ids["decode"]][0]


@pytest.mark.parametrize(("checkpoint", "folder", "pipeline_class"), [
    ("tiny-sd15", "tiny-sd15", "StableDiffusionPipeline"),
    ("tiny-sd15-single.safetensors", "tiny-sd15", "StableDiffusionPipeline"),
    ("tiny-sd2-single.safetensors", "tiny-sd2", "StableDiffusionPipeline"),
    ("tiny-sdxl", "tiny-sdxl", "StableDiffusionXLPipeline"),
    ("tiny-sdxl-single.safetensors", "tiny-sdxl", "StableDiffusionXLPipeline"),
])
def test_the_graph_renders_what_diffusers_own_pipeline_renders(engine, model_root, checkpoint, folder,
                                                               pipeline_class):
    """Diffusers folders and LDM single files alike; the pipeline reads the folder."""
    import diffusers

    image = render(engine, *txt2img(checkpoint))
    pipeline = getattr(diffusers, pipeline_class).from_pretrained(model_root / "checkpoints" / folder,
                                                                 local_files_only=True, torch_dtype=torch.float32)
    # ComfyUI's "normal" schedule (the graph's) is diffusers' "linspace" spacing: evenly spaced
    # timesteps from 999 to 0, starting from noise of variance 1 + σmax².
    pipeline.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipeline.scheduler.config,
                                                                      timestep_spacing="linspace")
    expected = pipeline("a red circle", negative_prompt="blurry", height=64, width=64, num_inference_steps=4,
                        guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(42),
                        output_type="pt").images.permute(0, 2, 3, 1)
    # Same weights, noise and schedule; the float arithmetic differs (diffusers keeps its σ
    # table in float32 where ComfyUI, and so the graph, computes it in float64, and guides on
    # noise rather than on clean estimates), which these random-weight VAEs amplify to at
    # most ~0.5% of full scale (0.05% on average). Wrong weights or a wrong schedule move
    # pixels by tens of percent; the exact figures are held by the ComfyUI parity tests.
    assert image.shape == expected.shape == (1, 64, 64, 3)
    assert (image - expected).abs().max() < 0.01
    assert (image - expected).abs().mean() < 0.001


def test_same_seed_same_image_other_seed_or_cfg_another(engine):
    first = render(engine, *txt2img(seed=1))
    engine.cache.clear()
    again = render(engine, *txt2img(seed=1))
    other_seed = render(engine, *txt2img(seed=2))
    low_cfg = render(engine, *txt2img(seed=1, cfg=1.0))
    assert torch.equal(first, again)
    assert (first - other_seed).abs().mean() > 1e-3
    assert (first - low_cfg).abs().mean() > 1e-3


@pytest.mark.parametrize("sampler", ["euler_ancestral", "heun", "dpm_2", "lms", "dpmpp_2m", "dpmpp_2m_sde",
                                     "ddim", "uni_pc"])
def test_every_offered_sampler_renders(engine, sampler):
    image = render(engine, *txt2img(sampler=sampler, steps=3, scheduler="normal"))
    assert torch.isfinite(image).all() and image.std() > 0


def test_karras_spacing_changes_the_result(engine):
    normal = render(engine, *txt2img(sampler="dpmpp_2m", scheduler="normal"))
    karras = render(engine, *txt2img(sampler="dpmpp_2m", scheduler="karras"))
    assert (normal - karras).abs().mean() > 1e-4


def test_every_sampler_takes_every_schedule_as_in_comfyui(engine):
    """The samplers walk σ lists, so no pair is refused (diffusers' DDIM took no Karras)."""
    image = render(engine, *txt2img(sampler="ddim", scheduler="karras", steps=3))
    assert torch.isfinite(image).all() and image.std() > 0


def test_an_unknown_sampler_name_is_a_validation_problem(engine):
    workflow, ids = txt2img(sampler="euler_but_better")
    report = engine.run(workflow, [ids["decode"]])
    assert report.status == "invalid"
    assert [(p.node_id, p.input) for p in report.problems] == [(ids["sampler"], "sampler_name")]


def img2img(workflow, ids, denoise):
    """Replace the empty latent with an encoded image and set the denoise."""
    image = workflow.add_node("EmptyImage", {"width": 64, "height": 64, "color": 0x3366CC}).id
    encode = workflow.add_node("VAEEncode").id
    workflow.connect(image, "IMAGE", encode, "pixels")
    workflow.connect(ids["loader"], "VAE", encode, "vae")
    workflow.connect(encode, "LATENT", ids["sampler"], "latent_image")
    workflow.set_value(ids["sampler"], "denoise", denoise)
    return encode


def test_img2img_at_denoise_zero_returns_the_input(engine):
    workflow, ids = txt2img()
    encode = img2img(workflow, ids, 0.0)
    round_trip = workflow.add_node("VAEDecode").id
    workflow.connect(encode, "LATENT", round_trip, "samples")
    workflow.connect(ids["loader"], "VAE", round_trip, "vae")
    report = engine.run(workflow, [ids["decode"], round_trip])
    assert report.ok
    assert torch.equal(report.results[ids["decode"]][0], report.results[round_trip][0])
    workflow.set_value(ids["sampler"], "denoise", 0.5)
    changed = engine.run(workflow, [ids["decode"]]).results[ids["decode"]][0]
    assert (changed - report.results[round_trip][0]).abs().mean() > 1e-3


def test_inpainting_leaves_the_unmasked_region_unchanged(engine, model_settings):
    from PIL import Image

    # Transparent on the left half: LoadImage's MASK is 1 there, the area to repaint.
    picture = Image.new("RGBA", (64, 64), (200, 100, 50, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 32, 64))
    picture.save(model_settings.input_dirs[0] / "half.png")
    workflow, ids = txt2img()
    encode = img2img(workflow, ids, 1.0)
    load = workflow.add_node("LoadImage", {"image": "half.png"}).id
    masked = workflow.add_node("SetLatentNoiseMask").id
    workflow.connect(encode, "LATENT", masked, "samples")
    workflow.connect(load, "MASK", masked, "mask")
    workflow.connect(masked, "LATENT", ids["sampler"], "latent_image")
    report = engine.run(workflow, [ids["sampler"], encode])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    before = report.results[encode][0]["samples"]
    after = report.results[ids["sampler"]][0]["samples"]
    assert torch.allclose(after[..., 4:], before[..., 4:], atol=1e-5)  # right half of the latent: kept
    assert (after[..., :4] - before[..., :4]).abs().mean() > 1e-2  # left half: repainted


def test_cancel_stops_sampling_within_one_step(engine):
    workflow, ids = txt2img(steps=30)
    token = CancelToken()
    steps_seen = []

    def watch(event):
        if isinstance(event, NodeProgress) and event.node_id == ids["sampler"]:
            steps_seen.append(event.step)
            if event.step == 3:
                token.cancel()

    report = engine.run(workflow, [ids["decode"]], cancel=token, on_event=watch)
    assert report.status == "cancelled"
    assert steps_seen == [1, 2, 3]


def test_progress_carries_a_latent_preview(engine):
    workflow, ids = txt2img(steps=2)
    previews = []
    engine.run(workflow, [ids["decode"]], on_event=lambda e: previews.append(e.preview)
               if isinstance(e, NodeProgress) else None)
    assert len(previews) == 2 and previews[0].shape == (1, 8, 8, 3)


def test_a_missing_checkpoint_is_a_clear_validation_problem(engine):
    workflow, ids = txt2img(checkpoint="nope.safetensors")
    report = engine.run(workflow, [ids["decode"]])
    assert report.status == "invalid"
    [problem] = report.problems
    assert problem.node_id == ids["loader"] and problem.input == "ckpt_name"
    assert "model file 'nope.safetensors' is not in the checkpoints folder" in problem.message


def test_clip_skip_and_zero_out_change_the_conditioning(engine):
    workflow, ids = txt2img()
    skip = workflow.add_node("CLIPSetLastLayer", {"stop_at_clip_layer": -2}).id
    skipped = workflow.add_node("CLIPTextEncode", {"text": "a red circle"}).id
    zero = workflow.add_node("ConditioningZeroOut").id
    workflow.connect(ids["loader"], "CLIP", skip, "clip")
    workflow.connect(skip, "CLIP", skipped, "clip")
    workflow.connect(ids["positive"], "CONDITIONING", zero, "conditioning")
    report = engine.run(workflow, [ids["positive"], skipped, zero])
    plain = report.results[ids["positive"]][0][0][0]
    assert not torch.allclose(report.results[skipped][0][0][0], plain)
    assert torch.count_nonzero(report.results[zero][0][0][0]) == 0


def test_latent_nodes_resize_and_batch(engine):
    workflow, ids = txt2img(batch=2)
    up = workflow.add_node("LatentUpscaleBy", {"upscale_method": "bilinear", "scale_by": 1.5}).id
    repeat = workflow.add_node("RepeatLatentBatch", {"amount": 3}).id
    pick = workflow.add_node("LatentFromBatch", {"batch_index": 4, "length": 2}).id
    sized = workflow.add_node("LatentUpscale", {"upscale_method": "nearest-exact", "width": 128, "height": 0,
                                                "crop": "disabled"}).id
    workflow.connect(ids["latent"], "LATENT", up, "samples")
    workflow.connect(ids["latent"], "LATENT", repeat, "samples")
    workflow.connect(repeat, "LATENT", pick, "samples")
    workflow.connect(ids["latent"], "LATENT", sized, "samples")
    report = engine.run(workflow, [up, pick, sized])
    assert report.results[up][0]["samples"].shape == (2, 4, 12, 12)
    assert report.results[pick][0]["samples"].shape == (2, 4, 8, 8)
    assert report.results[sized][0]["samples"].shape == (2, 4, 16, 16)
