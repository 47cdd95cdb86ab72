"""SD3.5 through the node graph, from the files a ComfyUI user has (a tiny random-weight
MMDiT in Stability's single-file layout, alone or in a checkpoint with or without its text
encoders; CLIP-L, CLIP-G and T5-XXL files; the 16-channel VAE), against diffusers' own
StableDiffusion3Pipeline given the very modules the files were written from."""

from __future__ import annotations

import torch

from tests.nodes.transformer_graphs import GraphBuilder, model_fixtures, render

PROMPT = "a lighthouse on a cliff at dawn"
NEGATIVE = "blurry"


sd3_files, sd3_engine = model_fixtures("sd3")


def sd3_graph(checkpoint=None, triple=True, steps=3, cfg=4.5, seed=11, size=32, shift=None):
    """ComfyUI's SD3.5 example graph: the model (UNETLoader or CheckpointLoaderSimple),
    TripleCLIPLoader, CLIPTextEncodeSD3 and CLIPTextEncode, EmptySD3LatentImage, KSampler
    with cfg, VAEDecode."""
    graph = GraphBuilder()
    add, workflow, ids = graph.add, graph.workflow, graph.ids

    if checkpoint:
        model, clip, vae = graph.checkpoint(checkpoint)
    else:
        add("unet", "UNETLoader", {"unet_name": "tiny-sd3.5_medium.safetensors", "weight_dtype": "default"})
        add("vae", "VAELoader", {"vae_name": "tiny-sd3-vae.safetensors"})
        model, vae = ("unet", "MODEL"), ("vae", "VAE")
    if triple:
        add("clip", "TripleCLIPLoader", {"clip_name1": "tiny-sd3-clip_l.safetensors",
                                         "clip_name2": "tiny-sd3-clip_g.safetensors",
                                         "clip_name3": "tiny-sd3-t5xxl_fp16.safetensors"})
        clip = ("clip", "CLIP")
    if shift is not None:
        add("shift", "ModelSamplingSD3", {"shift": shift})
        workflow.connect(ids[model[0]], model[1], ids["shift"], "model")
        model = ("shift", "MODEL")
    add("prompt", "CLIPTextEncodeSD3", {"clip_l": PROMPT, "clip_g": PROMPT, "t5xxl": PROMPT, "empty_padding": "none"})
    add("negative", "CLIPTextEncode", {"text": NEGATIVE})
    graph.sampling(seed, steps, cfg, "simple", size)
    return graph.finish(model, clip, vae)


def pipeline_render(files, sigmas, cfg=4.5, seed=11, size=32):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    from studio.runtime.checkpoints import make_tokenizer
    from studio.runtime.text_encoders import make_t5_tokenizer

    pipeline = StableDiffusion3Pipeline(
        transformer=files.transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=files.vae,
        text_encoder=files.clip_l, tokenizer=make_tokenizer(), text_encoder_2=files.clip_g,
        tokenizer_2=make_tokenizer("!"), text_encoder_3=files.t5, tokenizer_3=make_t5_tokenizer())
    noise = torch.randn((1, 16, size // 8, size // 8), generator=torch.Generator("cpu").manual_seed(seed))
    return pipeline(PROMPT, negative_prompt=NEGATIVE, height=size, width=size, sigmas=[float(s) for s in sigmas[:-1]],
                    latents=noise, guidance_scale=cfg, max_sequence_length=77,
                    output_type="pt").images.permute(0, 2, 3, 1)


def test_sd35_with_cfg_renders_what_stablediffusion3pipeline_renders(sd3_engine, sd3_files):
    from studio.runtime.sampling import ksampler_sigmas
    from studio.runtime.schedules import FlowModelSampling

    image = render(sd3_engine, *sd3_graph())
    sigmas = ksampler_sigmas(FlowModelSampling(shift=3.0, multiplier=1000.0), "euler", "simple", 3)
    expected = pipeline_render(sd3_files, sigmas)
    assert image.shape == expected.shape == (1, 32, 32, 3)
    assert (image - expected).abs().max() < 1e-4
    assert image.std() > 0.01


def test_checkpoints_with_and_without_their_text_encoders_render_the_same(sd3_engine):
    separate = render(sd3_engine, *sd3_graph())
    inside = render(sd3_engine, *sd3_graph(checkpoint="tiny-sd3.5_medium.safetensors", triple=False))
    without = render(sd3_engine, *sd3_graph(checkpoint="tiny-sd3.5_medium-noclip.safetensors", triple=True))
    assert (separate - inside).abs().max() < 1e-5
    assert (separate - without).abs().max() < 1e-5


def test_modelsamplingsd3_changes_the_shift(sd3_engine):
    default = render(sd3_engine, *sd3_graph())
    same = render(sd3_engine, *sd3_graph(shift=3.0))
    other = render(sd3_engine, *sd3_graph(shift=1.0))
    assert torch.equal(default, same)
    assert (default - other).abs().mean() > 1e-3


def test_dualcliploader_sdxl_and_sd3_types_and_cliploader(sd3_engine):
    """CLIP-L + CLIP-G as SDXL's text encoder (each file told by its width, in either order),
    two of SD3's three as SD3's, and one alone through CLIPLoader."""
    from studio.graph import Workflow

    workflow = Workflow()
    loaders = {
        "sdxl": workflow.add_node("DualCLIPLoader", {"clip_name1": "tiny-sd3-clip_g.safetensors",
                                                     "clip_name2": "tiny-sd3-clip_l.safetensors", "type": "sdxl"}).id,
        "sd3": workflow.add_node("DualCLIPLoader", {"clip_name1": "tiny-sd3-clip_g.safetensors",
                                                    "clip_name2": "tiny-sd3-clip_l.safetensors", "type": "sd3"}).id,
        "single": workflow.add_node("CLIPLoader", {"clip_name": "tiny-sd3-t5xxl_fp16.safetensors", "type": "sd3"}).id,
    }
    encoders = {}
    for name, loader in loaders.items():
        encoders[name] = workflow.add_node("CLIPTextEncode", {"text": "a red fox"}).id
        workflow.connect(loader, "CLIP", encoders[name], "clip")
    report = sd3_engine.run(workflow, list(encoders.values()) + list(loaders.values()))
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    sdxl = report.results[loaders["sdxl"]][0]
    assert sdxl.family == "sdxl" and [e.config.hidden_size for e in sdxl.encoders] == [32, 64]
    hidden, extras = report.results[encoders["sdxl"]][0][0]
    assert hidden.shape == (1, 77, 96) and extras["pooled_output"].shape == (1, 64)
    # Without T5, the CLIPs' states are padded to T5-XXL's width, as in ComfyUI.
    hidden, extras = report.results[encoders["sd3"]][0][0]
    assert hidden.shape == (1, 77, 4096) and extras["pooled_output"].shape == (1, 32 + 64)
    assert torch.count_nonzero(hidden[..., 96:]) == 0
    # T5 alone: its states, and zeros for the absent CLIPs' pooled outputs (768 + 1280 wide).
    hidden, extras = report.results[encoders["single"]][0][0]
    assert hidden.shape == (1, 77, 128) and extras["pooled_output"].shape == (1, 2048)
    assert torch.count_nonzero(extras["pooled_output"]) == 0
