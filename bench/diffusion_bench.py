"""Graph overhead on a full-size SD 1.5 model: the same txt2img through Seed Studio's node
graph and through diffusers' StableDiffusionPipeline directly, in one process.

The model is built from the shipped SD 1.5 configs with random weights (the real 860M-param
UNet, VAE and CLIP) and saved once as a diffusers folder, so the numbers measure compute and
overhead, not image quality. Prints seconds for each (best of --repeat) and graph / direct.
Goal: graph ≤ 1.05 × direct.

    .venv/bin/python bench/diffusion_bench.py                      # CPU: 256², 4 steps
    .venv/bin/python bench/diffusion_bench.py --size 512 --steps 20   # on a GPU
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from studio.engine import Engine  # noqa: E402
from studio.graph import Workflow  # noqa: E402
from studio.registry import build_registry  # noqa: E402
from studio.runtime.checkpoints import CONFIGS_DIR, make_tokenizer  # noqa: E402
from studio.runtime.device import DevicePolicy  # noqa: E402
from studio.runtime.services import create_services  # noqa: E402
from studio.settings import Settings  # noqa: E402

PROMPT, NEGATIVE = "a lighthouse on a rocky coast at sunset", "blurry, low quality"


def build_model(folder: Path) -> None:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CONFIGS_DIR / "sd15"
    pipeline = StableDiffusionPipeline(
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet")),
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder")),
        tokenizer=make_tokenizer(),
        scheduler=EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(config / "scheduler")),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder)


def graph(size: int, steps: int, seed: int) -> tuple[Workflow, str]:
    workflow = Workflow()
    loader = workflow.add_node("CheckpointLoaderSimple", {"ckpt_name": "sd15-random"}).id
    positive = workflow.add_node("CLIPTextEncode", {"text": PROMPT}).id
    negative = workflow.add_node("CLIPTextEncode", {"text": NEGATIVE}).id
    latent = workflow.add_node("EmptyLatentImage", {"width": size, "height": size, "batch_size": 1}).id
    sampler = workflow.add_node("KSampler", {"seed": seed, "steps": steps, "cfg": 7.5, "sampler_name": "euler",
                                             "scheduler": "normal", "denoise": 1.0}).id
    decode = workflow.add_node("VAEDecode").id
    for source, output, target, name in [(loader, "CLIP", positive, "clip"), (loader, "CLIP", negative, "clip"),
                                         (loader, "MODEL", sampler, "model"),
                                         (positive, "CONDITIONING", sampler, "positive"),
                                         (negative, "CONDITIONING", sampler, "negative"),
                                         (latent, "LATENT", sampler, "latent_image"),
                                         (sampler, "LATENT", decode, "samples"), (loader, "VAE", decode, "vae")]:
        workflow.connect(source, output, target, name)
    return workflow, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--models", help="folder to keep the generated model in (default: a temporary one)")
    args = parser.parse_args()
    policy = DevicePolicy.detect()
    root = Path(args.models or tempfile.mkdtemp(prefix="seed-bench-"))
    folder = root / "checkpoints" / "sd15-random"
    if not (folder / "model_index.json").is_file():
        began = time.perf_counter()
        build_model(folder)
        print(f"built the random SD 1.5 model in {time.perf_counter() - began:.1f} s ({folder})")

    settings = Settings(model_roots=(root,), output_dir=root / "output", cache_bytes=0)
    services = create_services(settings, policy)
    engine = Engine(build_registry(), settings, services=services)
    checkpoint = services.models.load_checkpoint("sd15-random")

    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    # The pipeline gets the very same modules the graph uses: same weights, same device.
    pipeline = StableDiffusionPipeline(unet=checkpoint.model.unet, vae=checkpoint.vae.vae,
                                       text_encoder=checkpoint.clip.encoders[0],
                                       tokenizer=checkpoint.clip.tokenizers[0],
                                       scheduler=EulerDiscreteScheduler.from_config(
                                           checkpoint.model.scheduler_config),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.to(policy.device)
    pipeline.set_progress_bar_config(disable=True)

    def sync() -> None:
        if policy.device.type == "cuda":
            torch.cuda.synchronize()

    def direct(seed: int) -> torch.Tensor:
        return pipeline(PROMPT, negative_prompt=NEGATIVE, height=args.size, width=args.size,
                        num_inference_steps=args.steps, guidance_scale=7.5,
                        generator=torch.Generator("cpu").manual_seed(seed), output_type="pt").images

    def through_graph(seed: int) -> torch.Tensor:
        workflow, decode = graph(args.size, args.steps, seed)
        report = engine.run(workflow, [decode])
        assert report.ok, report.errors
        return report.results[decode][0]

    timings: dict[str, list[float]] = {"direct": [], "graph": []}
    images = {}
    gc.freeze()
    for attempt in range(args.repeat + 1):  # the first round warms up
        for name, run in (("direct", direct), ("graph", through_graph)):
            sync()
            began = time.perf_counter()
            images[name] = run(attempt)
            sync()
            if attempt:
                timings[name].append(time.perf_counter() - began)
    difference = (images["graph"].cpu().float() - images["direct"].permute(0, 2, 3, 1).cpu().float()).abs().max()
    best = {name: min(values) for name, values in timings.items()}
    print(f"device {policy.device} ({policy.dtype}), {args.size}×{args.size}, {args.steps} steps, cfg 7.5, euler")
    print(f"direct diffusers pipeline: {best['direct']:.3f} s")
    print(f"Seed Studio node graph:    {best['graph']:.3f} s")
    print(f"graph / direct = {best['graph'] / best['direct']:.3f}   (max pixel difference {difference:.2e})")


if __name__ == "__main__":
    main()
