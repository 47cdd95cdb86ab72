"""FLUX.1's architecture at full width with random weights: the node graph (UNETLoader →
KSampler) against diffusers' FluxPipeline called directly on the very same modules, in bf16
and with fp8 storage (weights in float8_e4m3fn, each layer computed in bf16). Prints seconds
per sampling step for each, graph / direct, and peak memory (GPU: allocated by torch; CPU:
the process's peak resident size, loading included). Each precision runs in a process of its
own so its peak is its own.

The transformer is FLUX.1 dev's (width 3072, 24 heads of 128, T5 width 4096, CLIP-L pooled
768, guidance input) with all 19 + 38 blocks on a GPU; a CPU cannot hold or run that in
reasonable time (24 GB in bf16, ~6 TFLOP per step even at 64²), so there it keeps the full
width but only ``--double``/``--single`` blocks (1 + 1 by default) and prints the time a full
model would take, scaled by the blocks' share of the work. The text encoders are CLIP-L and
T5-XXL at full width (full depth on a GPU, one layer each on a CPU); the VAE is FLUX's.

    .venv/bin/python bench/flux_bench.py                          # CPU: 64², 2 steps, 1 + 1 blocks
    .venv/bin/python bench/flux_bench.py --size 1024 --steps 4    # GPU: the whole model
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

PROMPT = "flowers melting into a cosmic black hole swirling around the cosmos like stars, fantasy"
WIDTH, HEADS = 3072, 24
FULL_DOUBLE, FULL_SINGLE = 19, 38
# Parameters per block in units of width² (a double block: two streams of q/k/v, output, MLP
# and modulation; a single block: fused q/k/v/MLP in, out, modulation), for scaling times.
DOUBLE_COST, SINGLE_COST = 36, 15


def build_models(root: Path, double: int, single: int, full_encoders: bool) -> None:
    """Random-weight files in ComfyUI's folders: the transformer in BFL's layout (bf16), CLIP-L
    and T5-XXL in transformers' layout, FLUX's VAE in the LDM layout."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from studio.runtime.ldm_export import vae_to_ldm
    from tests.flux_models import _state, flux_to_bfl

    for folder in ("diffusion_models", "text_encoders", "vae"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with torch.device("cpu"):
        transformer = FluxTransformer2DModel(num_layers=double, num_single_layers=single, guidance_embeds=True)
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.normal_(0, 0.02)
    save_file({k: v.to(torch.bfloat16) for k, v in flux_to_bfl(transformer).items()},
              root / "diffusion_models" / "flux-bench.safetensors")
    del transformer
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12 if full_encoders else 1, projection_dim=768,
                                        vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                                        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    save_file({k: v.to(torch.bfloat16) for k, v in _state(clip).items()}, root / "text_encoders" / "clip_l.safetensors")
    t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240,
                                 num_layers=24 if full_encoders else 1, feed_forward_proj="gated-gelu",
                                 is_encoder_decoder=False, use_cache=False))
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in _state(t5).items()},
              root / "text_encoders" / "t5xxl.safetensors")
    del t5
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=16,
                        use_quant_conv=False, use_post_quant_conv=False)
    save_file(vae_to_ldm(vae, prefix=""), root / "vae" / "ae.safetensors")


def graph(size: int, steps: int, seed: int, weight_dtype: str):
    from studio.graph import Workflow

    workflow = Workflow()
    unet = workflow.add_node("UNETLoader", {"unet_name": "flux-bench.safetensors", "weight_dtype": weight_dtype}).id
    clip = workflow.add_node("DualCLIPLoader", {"clip_name1": "t5xxl.safetensors", "clip_name2": "clip_l.safetensors",
                                                "type": "flux"}).id
    prompt = workflow.add_node("CLIPTextEncode", {"text": PROMPT}).id
    guided = workflow.add_node("FluxGuidance", {"guidance": 3.5}).id
    negative = workflow.add_node("CLIPTextEncode", {"text": ""}).id
    latent = workflow.add_node("EmptySD3LatentImage", {"width": size, "height": size, "batch_size": 1}).id
    sampler = workflow.add_node("KSampler", {"seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "euler",
                                             "scheduler": "simple", "denoise": 1.0}).id
    for source, output, target, name in [(clip, "CLIP", prompt, "clip"), (clip, "CLIP", negative, "clip"),
                                         (prompt, "CONDITIONING", guided, "conditioning"),
                                         (unet, "MODEL", sampler, "model"),
                                         (guided, "CONDITIONING", sampler, "positive"),
                                         (negative, "CONDITIONING", sampler, "negative"),
                                         (latent, "LATENT", sampler, "latent_image")]:
        workflow.connect(source, output, target, name)
    return workflow, unet, clip, prompt, sampler


def run_mode(root: Path, mode: str, size: int, steps: int, repeat: int) -> dict:
    """One precision in this process: the graph, then the pipeline on the same modules (best of
    ``repeat`` timed runs each)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from studio.engine import Engine
    from studio.registry import build_registry
    from studio.runtime.device import DevicePolicy
    from studio.runtime.sampling import ksampler_sigmas
    from studio.runtime.services import create_services
    from studio.settings import Settings

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    policy = DevicePolicy(device, torch.bfloat16)
    settings = Settings(model_roots=(root,), output_dir=root / "output", cache_bytes=1 << 30)
    engine = Engine(build_registry(), settings, services=create_services(settings, policy))
    weight_dtype = "fp8_e4m3fn" if mode == "fp8" else "default"

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    began = time.perf_counter()
    workflow, unet, clip, prompt, sampler = graph(size, steps, 0, weight_dtype)
    report = engine.run(workflow, [sampler])  # loads everything, encodes, samples once (warm-up)
    assert report.ok, [error.traceback for error in report.errors]
    load_seconds = time.perf_counter() - began
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    graph_steps = []
    for seed in range(1, repeat + 1):  # only the sampler runs again: its seed changed
        workflow, unet, clip, prompt, sampler = graph(size, steps, seed, weight_dtype)
        sync()
        report = engine.run(workflow, [sampler, unet, prompt])
        sync()
        assert report.ok, [error.traceback for error in report.errors]
        graph_steps.append(report.seconds[sampler] / steps)
    graph_step = min(graph_steps)
    model = report.results[unet][0]
    conditioning = report.results[prompt][0]
    graph_peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None

    services = engine.services
    transformer = model.unet.transformer
    pipeline = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
                            vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                            transformer=transformer)
    pipeline.set_progress_bar_config(disable=True)
    sigmas = [float(s) for s in ksampler_sigmas(model.sampling, "euler", "simple", steps)[:-1]]
    embeds = conditioning[0][0].to(device, torch.bfloat16)
    pooled = conditioning[0][1]["pooled_output"].to(device, torch.bfloat16)
    direct_steps = []
    with services.models.use(model.unet):
        for attempt in range(repeat + 1):  # a warm-up, then timed
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            began = time.perf_counter()
            pipeline(prompt_embeds=embeds, pooled_prompt_embeds=pooled, height=size, width=size, sigmas=sigmas,
                     guidance_scale=3.5, output_type="latent", generator=torch.Generator("cpu").manual_seed(1))
            sync()
            if attempt:
                direct_steps.append((time.perf_counter() - began) / steps)
    direct_step = min(direct_steps)
    direct_peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    stored = {str(p.dtype).replace("torch.", "") for p in transformer.parameters()}
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "device": str(device), "graph_step": graph_step, "direct_step": direct_step,
            "graph_peak": graph_peak, "direct_peak": direct_peak, "process_peak_rss": rss, "load_seconds": load_seconds,
            "stored": sorted(stored)}


def gigabytes(value) -> str:
    return "—" if value is None else f"{value / 1024**3:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    parser.add_argument("--size", type=int, default=1024 if gpu else 64)
    parser.add_argument("--steps", type=int, default=4 if gpu else 2)
    parser.add_argument("--double", type=int, default=FULL_DOUBLE if gpu else 1)
    parser.add_argument("--single", type=int, default=FULL_SINGLE if gpu else 1)
    parser.add_argument("--modes", default="bf16,fp8")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--models", help="folder to keep the generated models in (default: a temporary one)")
    parser.add_argument("--run-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(args.models or tempfile.mkdtemp(prefix="seed-flux-bench-"))
    if args.run_mode:
        print(json.dumps(run_mode(root, args.run_mode, args.size, args.steps, args.repeat)))
        return
    marker = root / f"built-{args.double}-{args.single}-{int(gpu)}"
    if not marker.is_file():
        began = time.perf_counter()
        build_models(root, args.double, args.single, full_encoders=gpu)
        marker.write_text("")
        print(f"built random FLUX files ({args.double} + {args.single} blocks) in {time.perf_counter() - began:.0f} s "
              f"under {root}")
    results = []
    for mode in args.modes.split(","):
        command = [sys.executable, __file__, "--run-mode", mode, "--models", str(root), "--size", str(args.size),
                   "--steps", str(args.steps), "--repeat", str(args.repeat)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"{mode}: failed\n{done.stderr[-3000:]}")
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    scale = (FULL_DOUBLE * DOUBLE_COST + FULL_SINGLE * SINGLE_COST) / (args.double * DOUBLE_COST +
                                                                      args.single * SINGLE_COST)
    print(f"FLUX.1 dev architecture, width {WIDTH}, {args.double} double + {args.single} single blocks "
          f"(full: {FULL_DOUBLE} + {FULL_SINGLE}); {args.size}², {args.steps} steps euler simple, cfg 1, guidance 3.5; "
          f"best of {args.repeat}")
    for result in results:
        print(f"[{result['mode']} on {result['device']}, weights stored as {', '.join(result['stored'])}]")
        print(f"  direct FluxPipeline: {result['direct_step']:.3f} s/step   peak {gigabytes(result['direct_peak'])}")
        print(f"  Seed Studio graph:   {result['graph_step']:.3f} s/step   peak {gigabytes(result['graph_peak'])}   "
              f"graph / direct = {result['graph_step'] / result['direct_step']:.3f}")
        print(f"  process peak resident memory {gigabytes(result['process_peak_rss'])}; loading and the first run "
              f"{result['load_seconds']:.1f} s")
        if scale > 1.01:
            print(f"  the full {FULL_DOUBLE} + {FULL_SINGLE}-block model would take about "
                  f"{result['graph_step'] * scale:.0f} s per step here "
                  f"(×{scale:.1f}, by the blocks' share of the work)")


if __name__ == "__main__":
    main()
