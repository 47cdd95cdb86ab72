"""FLUX.1 through the node graph, from the files a ComfyUI user has (tiny random weights in
BFL's single-file layout, CLIP-L and T5-XXL files, the 16-channel VAE), against diffusers'
own FluxPipeline given the very modules the files were written from."""

from __future__ import annotations

import functools

import pytest
import torch

from tests.nodes.transformer_graphs import GraphBuilder, model_fixtures, render

PROMPT = "flowers melting into a cosmic black hole"


flux_files, flux_engine = model_fixtures("flux")


def flux_graph(unet="tiny-flux1-schnell.safetensors", t5="tiny-t5xxl_fp16.safetensors", steps=4, cfg=1.0,
               guidance=None, scheduler="simple", seed=7, size=32, checkpoint=None, weight_dtype="default",
               negative=False):
    """ComfyUI's FLUX example graph: UNETLoader, DualCLIPLoader (flux), CLIPTextEncode
    (+ FluxGuidance for dev), EmptySD3LatentImage, KSampler, VAELoader, VAEDecode."""
    graph = GraphBuilder()
    add, workflow, ids = graph.add, graph.workflow, graph.ids

    if checkpoint:
        model, clip, vae = graph.checkpoint(checkpoint)
    else:
        add("unet", "UNETLoader", {"unet_name": unet, "weight_dtype": weight_dtype})
        add("clip", "DualCLIPLoader", {"clip_name1": "tiny-clip_l.safetensors", "clip_name2": t5, "type": "flux"})
        add("vae", "VAELoader", {"vae_name": "tiny-ae.safetensors"})
        model, clip, vae = ("unet", "MODEL"), ("clip", "CLIP"), ("vae", "VAE")
    add("prompt", "CLIPTextEncode", {"text": PROMPT})
    add("negative", "CLIPTextEncode", {"text": "blurry" if negative else ""})
    graph.sampling(seed, steps, cfg, scheduler, size)
    positive = ("prompt", "CONDITIONING")
    if guidance is not None:
        add("guidance", "FluxGuidance", {"guidance": guidance})
        workflow.connect(ids["prompt"], "CONDITIONING", ids["guidance"], "conditioning")
        positive = ("guidance", "CONDITIONING")
    return graph.finish(model, clip, vae, positive)


def pipeline_render(files, transformer, sigmas, guidance=3.5, seed=7, size=32, negative=None, cfg=1.0):
    """diffusers' FluxPipeline on the modules the files were written from, walking the same
    σ list (the graph's) from the same seed's noise."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from studio.runtime.text_encoders import make_t5_tokenizer

    pipeline = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
                            vae=files.vae, text_encoder=files.clip_l, tokenizer=clip_tokenizer(),
                            text_encoder_2=files.t5, tokenizer_2=make_t5_tokenizer(), transformer=transformer)
    pipeline.set_progress_bar_config(disable=True)
    latent = size // 8
    noise = torch.randn((1, 16, latent, latent), generator=torch.Generator("cpu").manual_seed(seed))
    packed = FluxPipeline._pack_latents(noise, 1, 16, latent, latent)
    extra = {"negative_prompt": negative, "true_cfg_scale": cfg} if negative is not None else {}
    return pipeline(PROMPT, height=size, width=size, sigmas=[float(s) for s in sigmas[:-1]], latents=packed,
                    guidance_scale=guidance, max_sequence_length=256, output_type="pt",
                    **extra).images.permute(0, 2, 3, 1)


@functools.lru_cache(maxsize=1)
def clip_tokenizer():
    from studio.runtime.checkpoints import make_tokenizer

    return make_tokenizer()


def graph_sigmas(model_sampling, steps, scheduler="simple"):
    from studio.runtime.sampling import ksampler_sigmas

    return ksampler_sigmas(model_sampling, "euler", scheduler, steps)


@pytest.mark.parametrize(("scheduler", "steps"), [("simple", 4), ("normal", 2), ("beta", 2)])
def test_schnell_at_4_steps_cfg_1_renders_what_fluxpipeline_renders(flux_engine, flux_files, scheduler, steps):
    from studio.runtime.flux import schnell_sampling

    image = render(flux_engine, *flux_graph(scheduler=scheduler, steps=steps))
    expected = pipeline_render(flux_files, flux_files.schnell, graph_sigmas(schnell_sampling(), steps, scheduler))
    assert image.shape == expected.shape == (1, 32, 32, 3)
    assert (image - expected).abs().max() < 1e-4
    assert image.std() > 0.01


def test_dev_with_flux_guidance_renders_what_fluxpipeline_renders(flux_engine, flux_files):
    from studio.runtime.flux import FluxModelSampling

    image = render(flux_engine, *flux_graph("tiny-flux1-dev.safetensors", guidance=2.5, steps=2))
    expected = pipeline_render(flux_files, flux_files.dev, graph_sigmas(FluxModelSampling(), 2), guidance=2.5)
    assert (image - expected).abs().max() < 1e-4
    other = render(flux_engine, *flux_graph("tiny-flux1-dev.safetensors", guidance=6.0, steps=2))
    assert (image - other).abs().mean() > 1e-3  # the guidance input is read


def test_dev_with_true_cfg_and_a_negative_prompt_matches_the_pipelines_true_cfg(flux_engine, flux_files):
    from studio.runtime.flux import FluxModelSampling

    image = render(flux_engine, *flux_graph("tiny-flux1-dev.safetensors", steps=2, cfg=2.0, negative=True))
    expected = pipeline_render(flux_files, flux_files.dev, graph_sigmas(FluxModelSampling(), 2), negative="blurry",
                               cfg=2.0)
    assert (image - expected).abs().max() < 1e-4


def test_fp8_transformer_and_t5_are_stored_in_fp8_and_render_close_to_full_precision(flux_engine, flux_files):
    from studio.runtime.services import model_manager

    full = render(flux_engine, *flux_graph("tiny-flux1-dev.safetensors", steps=1))
    stored = render(flux_engine, *flux_graph("tiny-flux1-dev-fp8.safetensors", t5="tiny-t5xxl_fp8_e4m3fn.safetensors",
                                             steps=1))
    cast = render(flux_engine, *flux_graph("tiny-flux1-dev.safetensors", steps=1, weight_dtype="fp8_e4m3fn"))
    assert torch.isfinite(stored).all() and stored.std() > 0.01
    # fp8 file and fp8 storage of the fp32 file hold the same weights (the T5 differs).
    assert 0 < (stored - full).abs().mean() < 0.2
    assert 0 < (cast - full).abs().mean() < 0.2
    manager = model_manager(flux_engine.services)
    dtypes = {p.dtype for model in manager._loaded.values() if hasattr(model, "unet")
              for p in model.unet.parameters()}
    assert torch.float8_e4m3fn in dtypes


def test_an_all_in_one_fp8_checkpoint_loads_through_checkpointloadersimple(flux_engine, flux_files):
    image = render(flux_engine, *flux_graph(checkpoint="tiny-flux1-dev-fp8-aio.safetensors", steps=1))
    assert image.shape == (1, 32, 32, 3) and torch.isfinite(image).all() and image.std() > 0.01


def test_flux_files_are_recognised_from_their_headers(flux_files):
    from studio.runtime.checkpoints import inspect_checkpoint_header

    assert inspect_checkpoint_header(flux_files.root / "checkpoints" / "tiny-flux1-dev-fp8-aio.safetensors") is None


def test_misplaced_files_are_told_from_their_headers_before_the_run(flux_files):
    from studio.runtime.model_headers import inspect_model_header

    root = flux_files.root
    fp8 = root / "diffusion_models" / "tiny-flux1-dev-fp8.safetensors"
    assert inspect_model_header("diffusion_models", fp8) is None
    assert inspect_model_header("text_encoders", root / "text_encoders" / "tiny-t5xxl_fp16.safetensors") is None
    assert inspect_model_header("text_encoders", root / "text_encoders" / "tiny-clip_l.safetensors") is None
    wrong = inspect_model_header("diffusion_models", root / "text_encoders" / "tiny-t5xxl_fp16.safetensors")
    assert "holds no FLUX.1 or SD3.5 transformer" in wrong and "T5 text encoder" in wrong
    wrong = inspect_model_header("text_encoders", root / "diffusion_models" / "tiny-flux1-schnell.safetensors")
    assert "holds no CLIP or T5" in wrong and "FLUX transformer" in wrong


def test_diffusers_folders_load_as_they_are(flux_engine, flux_files, tmp_path_factory):
    """A FluxPipeline folder through CheckpointLoaderSimple, and a transformer folder through
    UNETLoader, render what the single files render."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from studio.runtime.checkpoints import make_tokenizer
    from studio.runtime.text_encoders import make_t5_tokenizer

    root = flux_files.root
    folder = root / "checkpoints" / "tiny-flux1-schnell-diffusers"
    if not folder.is_dir():
        FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=flux_files.vae,
                     text_encoder=flux_files.clip_l, tokenizer=make_tokenizer(), text_encoder_2=flux_files.t5,
                     tokenizer_2=make_t5_tokenizer(), transformer=flux_files.schnell).save_pretrained(folder)
        flux_files.schnell.save_pretrained(root / "diffusion_models" / "tiny-flux1-schnell-transformer")
    files = render(flux_engine, *flux_graph(steps=2))
    pipeline_folder = render(flux_engine, *flux_graph(steps=2, checkpoint="tiny-flux1-schnell-diffusers"))
    transformer_folder = render(flux_engine, *flux_graph("tiny-flux1-schnell-transformer", steps=2))
    assert (files - pipeline_folder).abs().max() < 1e-5
    assert (files - transformer_folder).abs().max() < 1e-5


def test_ksampleradvanced_in_two_stages_equals_one_ksampler(flux_engine):
    """Steps 0–2 with the leftover noise handed on, then 2–4 without adding noise."""
    whole = render(flux_engine, *flux_graph())
    workflow, ids = flux_graph()
    sampler = workflow.nodes[ids["sampler"]]
    links = {name: (link.node, link.output) for name, link in sampler.links.items()}
    workflow.remove_node(ids["sampler"])
    stages = []
    for start, end, noise, leftover in ((0, 2, "enable", "enable"), (2, 4, "disable", "disable")):
        stages.append(workflow.add_node("KSamplerAdvanced", {
            "add_noise": noise, "noise_seed": 7, "steps": 4, "cfg": 1.0, "sampler_name": "euler",
            "scheduler": "simple", "start_at_step": start, "end_at_step": end,
            "return_with_leftover_noise": leftover}).id)
    for stage in stages:
        for name in ("model", "positive", "negative"):
            workflow.connect(links[name][0], links[name][1], stage, name)
    workflow.connect(links["latent_image"][0], links["latent_image"][1], stages[0], "latent_image")
    workflow.connect(stages[0], "LATENT", stages[1], "latent_image")
    workflow.connect(stages[1], "LATENT", ids["decode"], "samples")
    assert (render(flux_engine, workflow, ids) - whole).abs().max() < 1e-5


def test_an_empty_4_channel_latent_is_taken_as_an_empty_16_channel_one(flux_engine):
    """EmptyLatentImage wired to a FLUX sampler, as ComfyUI allows."""
    workflow, ids = flux_graph(steps=1)
    expected = render(flux_engine, workflow, ids)
    workflow.remove_node(ids["latent"])
    ids["latent"] = workflow.add_node("EmptyLatentImage", {"width": 32, "height": 32, "batch_size": 1}).id
    workflow.connect(ids["latent"], "LATENT", ids["sampler"], "latent_image")
    report = flux_engine.run(workflow, [ids["decode"], ids["latent"]])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    assert report.results[ids["latent"]][0]["samples"].shape[1] == 4
    assert torch.equal(report.results[ids["decode"]][0], expected)


@pytest.mark.parametrize(("type_name", "inputs", "needed"), [
    ("CLIPTextEncodeFlux", {"clip_l": "", "t5xxl": "", "guidance": 3.5}, "FLUX's text encoders (CLIP-L and T5-XXL)"),
    ("CLIPTextEncodeSD3", {"clip_l": "", "clip_g": "", "t5xxl": "", "empty_padding": "none"},
     "SD3's text encoders (TripleCLIPLoader, or an SD3.5 checkpoint)"),
])
def test_the_transformer_prompt_nodes_refuse_another_familys_clip(registry, type_name, inputs, needed):
    """FLUX's and SD3's prompt nodes share one check: an SDXL CLIP (or one of the other
    transformer family) is refused with a sentence naming what is needed and what came."""
    from types import SimpleNamespace

    sdxl = SimpleNamespace(family="sdxl")
    other = SimpleNamespace(family="sd3" if type_name == "CLIPTextEncodeFlux" else "flux", roles=("clip_l",))
    for clip in (sdxl, other):
        with pytest.raises(ValueError, match="this node needs ") as refused:
            registry.get(type_name)().run(None, clip, **inputs)
        assert str(refused.value) == f"this node needs {needed}; the CLIP wired in is {clip.family}"
