"""Everything a lent GPU should confirm, in one run of under 8 minutes: one table on stdout
and the same figures as JSON (``--json``, default ``output/gpu_check.json``).

Rows:
- ``nodes``: the node tests (tests/nodes) with every model manager forced onto the device
  (``bench/gpu_check_plugin.py``): every node type on CUDA with the tiny models.
- ``half_precision``: tests/runtime/test_half_precision.py on the device: SD 1.5 with LoRA,
  ControlNet, mask and batch, SDXL, FLUX, SD3.5 and an upscaler in bf16 and fp16 against fp32
  (mean absolute pixel difference < 0.08; the upscaler 0.03).
- ``sd15`` / ``sdxl``: the real architectures with random weights (SD 1.5 at 512², SDXL at
  1024², 20 steps, euler, cfg 7.5): the node graph against diffusers' pipeline called directly
  on the same modules (goal graph / direct ≤ 1.05), seconds per step, peak memory; then the
  speed option (``speed: fast``): compile seconds and the eager / fast step ratio (goals: SD 1.5
  ≥ 2×, SDXL ≥ 1.5×).
- ``manager_6gb``: SDXL + an SDXL ControlNet + a LoRA under a 6 GB model budget: renders, and
  the peak allocated memory.
- ``batch_workers1``: ``studio batch`` of 8 seeds with ``--workers 1``.

Without CUDA (or with ``--tiny``) the same rows run on the tiny test models at 64² with 4
steps, on the CPU, in a few minutes: the script is known to work before a GPU is lent.

    .venv/bin/python bench/gpu_check.py            # a GPU: full size; a CPU: --tiny
    .venv/bin/python bench/gpu_check.py --tiny     # tiny models anywhere
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

PROMPT, NEGATIVE = "a lighthouse on a rocky coast at sunset", "blurry, low quality"
rows: list[dict] = []


def row(name: str, status: str, figures: str, **data) -> None:
    rows.append({"check": name, "status": status, "figures": figures, **data})
    print(f"  {name:<16} {status:<5} {figures}", flush=True)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 1024**3:.2f} GB allocated"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB resident (process peak)"


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the test suites on the device ----------------------------------------------------------

def pytest_row(name: str, paths: list[str], device: str, timeout: int) -> None:
    env = {**os.environ, "SEED_STUDIO_FORCE_DEVICE": device, "PYTHONPATH": str(ROOT),
           "QT_QPA_PLATFORM": "offscreen"}
    began = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "bench.gpu_check_plugin",
                               "-p", "no:cacheprovider", *paths], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)
        output = done.stdout + done.stderr
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.M)
        summary = (re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s", output, flags=re.M) or ["?"])[-1]
        status = "ok" if done.returncode == 0 else "FAIL"
    except subprocess.TimeoutExpired:
        summary, failed, status = f"stopped after {timeout} s", [], "FAIL"
    row(name, status, f"{summary} on {device} ({time.perf_counter() - began:.0f} s)", failed=failed)


# --- models ---------------------------------------------------------------------------------

def build_full(kind: str, folder: Path, dtype: torch.dtype, device: torch.device) -> None:
    """The real SD 1.5 or SDXL architecture from the shipped configs, random weights, saved as
    a diffusers folder in ``dtype`` (built on the device: initialising 2.6 B weights on a CPU
    takes minutes)."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.runtime.checkpoints import CONFIGS_DIR, make_tokenizer

    config = CONFIGS_DIR / kind
    torch.manual_seed(0)
    with torch.device(device):
        parts = dict(
            unet=diffusers.UNet2DConditionModel.from_config(
                diffusers.UNet2DConditionModel.load_config(config / "unet")),
            vae=diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(config / "vae")),
            text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder")),
            tokenizer=make_tokenizer(),
            scheduler=diffusers.EulerDiscreteScheduler.from_config(
                diffusers.EulerDiscreteScheduler.load_config(config / "scheduler")))
        if kind == "sdxl":
            parts.update(text_encoder_2=CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(config / "text_encoder_2")), tokenizer_2=make_tokenizer("!"))
            pipeline = diffusers.StableDiffusionXLPipeline(**parts)
        else:
            pipeline = diffusers.StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                                         requires_safety_checker=False)
    pipeline.to(dtype=dtype).save_pretrained(folder)
    del pipeline
    gc.collect()


def txt2img(checkpoint: str, size: int, steps: int, seed: int, controlnet: str | None = None,
            lora: str | None = None):
    from studio.graph import Workflow

    workflow = Workflow()
    ids = {}

    def add(name, type_name, values=None):
        ids[name] = workflow.add_node(type_name, values or {}).id

    add("loader", "CheckpointLoaderSimple", {"ckpt_name": checkpoint})
    add("positive", "CLIPTextEncode", {"text": PROMPT})
    add("negative", "CLIPTextEncode", {"text": NEGATIVE})
    add("latent", "EmptyLatentImage", {"width": size, "height": size, "batch_size": 1})
    add("sampler", "KSampler", {"seed": seed, "steps": steps, "cfg": 7.5, "sampler_name": "euler",
                                "scheduler": "normal", "denoise": 1.0})
    add("decode", "VAEDecode")
    model, clip = ("loader", "MODEL"), ("loader", "CLIP")
    if lora:
        add("lora", "LoraLoader", {"lora_name": lora, "strength_model": 0.8, "strength_clip": 0.8})
        workflow.connect(ids["loader"], "MODEL", ids["lora"], "model")
        workflow.connect(ids["loader"], "CLIP", ids["lora"], "clip")
        model, clip = ("lora", "MODEL"), ("lora", "CLIP")
    positive, negative = ("positive", "CONDITIONING"), ("negative", "CONDITIONING")
    if controlnet:
        add("hint", "EmptyImage", {"width": size, "height": size, "color": 0x808080})
        add("cn", "ControlNetLoader", {"control_net_name": controlnet})
        add("apply", "ControlNetApplyAdvanced", {"strength": 0.8, "start_percent": 0.0, "end_percent": 1.0})
        workflow.connect(ids["hint"], "IMAGE", ids["apply"], "image")
        workflow.connect(ids["cn"], "CONTROL_NET", ids["apply"], "control_net")
        workflow.connect(ids["positive"], "CONDITIONING", ids["apply"], "positive")
        workflow.connect(ids["negative"], "CONDITIONING", ids["apply"], "negative")
        positive, negative = ("apply", "positive"), ("apply", "negative")
    for (source, output), target, name in [
            (clip, "positive", "clip"), (clip, "negative", "clip"), (model, "sampler", "model"),
            (positive, "sampler", "positive"), (negative, "sampler", "negative"),
            (("latent", "LATENT"), "sampler", "latent_image"), (("sampler", "LATENT"), "decode", "samples"),
            (("loader", "VAE"), "decode", "vae")]:
        workflow.connect(ids[source], output, ids[target], name)
    return workflow, ids


def engine_for(root: Path, policy, speed: str = "default"):
    from studio.engine import Engine
    from studio.registry import build_registry
    from studio.runtime.services import create_services
    from studio.settings import Settings

    settings = Settings(model_roots=(root,), output_dir=root / "output", input_dirs=(), temp_dir=root / "temp",
                        autosave_dir=root / "autosave", cache_bytes=0, speed=speed)
    services = create_services(settings, policy)
    return Engine(build_registry(), settings, services=services), services.models


def graph_vs_direct(kind: str, root: Path, name: str, policy, size: int, steps: int) -> None:
    """One model: graph / direct, s/step, peak memory, then the speed option."""
    import diffusers

    engine, manager = engine_for(root, policy)
    checkpoint = manager.load_checkpoint(name)
    scheduler = diffusers.EulerDiscreteScheduler.from_config(checkpoint.model.scheduler_config,
                                                             timestep_spacing="linspace")
    encoders, tokenizers = checkpoint.clip.encoders, checkpoint.clip.tokenizers
    if kind == "sdxl":
        pipeline = diffusers.StableDiffusionXLPipeline(
            unet=checkpoint.model.unet, vae=checkpoint.vae.vae, text_encoder=encoders[0], text_encoder_2=encoders[1],
            tokenizer=tokenizers[0], tokenizer_2=tokenizers[1], scheduler=scheduler)
    else:
        pipeline = diffusers.StableDiffusionPipeline(
            unet=checkpoint.model.unet, vae=checkpoint.vae.vae, text_encoder=encoders[0], tokenizer=tokenizers[0],
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    device = policy.device

    def direct(seed: int):
        pipeline.to(device)
        return pipeline(PROMPT, negative_prompt=NEGATIVE, height=size, width=size, num_inference_steps=steps,
                        guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(seed),
                        output_type="pt").images

    def graph(seed: int, on=engine):
        workflow, ids = txt2img(name, size, steps, seed)
        report = on.run(workflow, [ids["decode"]])
        assert report.ok, [error.traceback for error in report.errors]
        return report.results[ids["decode"]][0]

    def timed(run, seed) -> float:
        sync(device)
        began = time.perf_counter()
        run(seed)
        sync(device)
        return time.perf_counter() - began

    graph(0), direct(0)  # warm up
    reset_peak(device)
    times = {"direct": [], "graph": []}
    for seed in (1, 2, 3):
        times["direct"].append(timed(direct, seed))
        times["graph"].append(timed(graph, seed))
    best = {key: min(values) for key, values in times.items()}
    ratio = best["graph"] / best["direct"]
    memory = peak_memory(device)
    row(f"{kind}", "ok" if ratio <= 1.05 else "slow",
        f"{size}² {steps} steps: graph {best['graph'] / steps:.3f} s/step, direct {best['direct'] / steps:.3f} "
        f"s/step, graph/direct {ratio:.3f} (goal ≤ 1.05); peak {memory}",
        size=size, steps=steps, graph_s=best["graph"], direct_s=best["direct"], ratio=ratio, peak=memory)
    # The speed option, on the same modules (compiled in place by the manager).
    fast_engine, fast_manager = engine_for(root, policy, speed="fast")
    fast_manager._loaded = manager._loaded  # the same loaded files, not a second copy
    compile_s = timed(lambda seed: graph(seed, fast_engine), 4)
    # Eager and fast renders in turn, so that a busy machine slows both alike.
    eager_times, fast_times = [], []
    for seed in (5, 6, 7):
        eager_times.append(timed(graph, seed))
        fast_times.append(timed(lambda seed: graph(seed, fast_engine), seed))
    fast, eager = min(fast_times), min(eager_times)
    goal = 2.0 if kind == "sd15" else 1.5
    speedup = eager / fast
    status = "ok" if device.type != "cuda" or speedup >= goal else "slow"
    row(f"{kind}_fast", status,
        f"eager/fast {speedup:.2f}× (goal on a GPU ≥ {goal}×; on the CPU: no slower), first render with compile "
        f"{compile_s:.2f} s (an eager render {eager:.2f} s)", speedup=speedup, compile_s=compile_s, fast_s=fast)
    # Not `del pipeline`: direct() closes over it, and a deleted closure variable reads as undefined.
    # Rebinding drops the reference all the same (direct() is not called again).
    pipeline = None
    del checkpoint
    manager.free_memory()
    manager._loaded.clear()
    gc.collect()


def write_lora(path: Path, unet: torch.nn.Module, layers: int = 20) -> None:
    """A kohya-layout LoRA of rank 8 on the first attention projections of ``unet``."""
    from safetensors.torch import save_file

    state = {}
    names = [name for name, module in unet.named_modules()
             if name.endswith(("attn1.to_q", "attn1.to_k", "attn2.to_q")) and isinstance(module, torch.nn.Linear)]
    generator = torch.Generator().manual_seed(0)
    for name in names[:layers]:
        weight = unet.get_submodule(name).weight
        key = "lora_unet_" + name.replace(".", "_")
        state[f"{key}.lora_down.weight"] = torch.randn(8, weight.shape[1], generator=generator) * 0.01
        state[f"{key}.lora_up.weight"] = torch.randn(weight.shape[0], 8, generator=generator) * 0.01
        state[f"{key}.alpha"] = torch.tensor(8.0)
    save_file(state, str(path))


def manager_budget(root: Path, name: str, controlnet: str, policy, size: int, steps: int, budget: int) -> None:
    import dataclasses

    policy = dataclasses.replace(policy, budget_bytes=budget)
    engine, manager = engine_for(root, policy)
    (root / "loras").mkdir(exist_ok=True)
    write_lora(root / "loras" / "check-lora.safetensors", manager.load_checkpoint(name).model.unet)
    reset_peak(policy.device)
    workflow, ids = txt2img(name, size, steps, 9, controlnet=controlnet, lora="check-lora.safetensors")
    began = time.perf_counter()
    report = engine.run(workflow, [ids["decode"]])
    seconds = time.perf_counter() - began
    finite = report.ok and bool(torch.isfinite(report.results[ids["decode"]][0]).all())
    row("manager_budget", "ok" if finite else "FAIL",
        f"SDXL + ControlNet + LoRA under a {budget / 1024**3:.3g} GB budget: {seconds:.1f} s, peak "
        f"{peak_memory(policy.device)}" + ("" if report.ok else f"; {report.errors[0].message}"),
        budget=budget, seconds=seconds)
    manager.free_memory()


def batch_row(root: Path, name: str, size: int, steps: int) -> None:
    from studio.graph import dumps

    workflow, ids = txt2img(name, size, steps, 1)
    save = workflow.add_node("SaveImage", {"filename_prefix": "check"}).id
    workflow.connect(ids["decode"], "IMAGE", save, "images")
    path = root / "batch.json"
    path.write_text(dumps(workflow))
    config = root / "settings.json"
    config.write_text(json.dumps({"model_roots": [str(root)], "output_dir": str(root / "output")}))
    out = Path(tempfile.mkdtemp(prefix="batch-", dir=root))  # a fresh folder: a batch never starts over another
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "studio.cli", "--config", str(config), "batch", str(path),
                           "--sweep", f"{ids['sampler']}.seed=1..8", "--workers", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    seconds = time.perf_counter() - began
    images = len(list(out.rglob("*.png")))
    row("batch_workers1", "ok" if done.returncode == 0 and images == 8 else "FAIL",
        f"8 seeds with --workers 1: {images} images in {seconds:.1f} s"
        + ("" if done.returncode == 0 else f"; {done.stderr.strip()[-300:]}"), seconds=seconds, images=images)


def transformer_seed_batch_row(policy) -> None:
    """FLUX.1-dev and SD3.5 seed batches on the device: three seeds in one sampler call against
    each seed alone (tiny random transformers: this checks the batching on the device's kernels,
    not a picture)."""
    from dataclasses import replace

    from studio.runtime.flux import flux_model
    from studio.runtime.sampling import SamplingJob, sample, sample_seed_batch, seed_batchable
    from studio.runtime.sd3 import sd3_model
    from tests.flux_models import CLIP_WIDTH, SD3_G_WIDTH, SD3_T5_WIDTH, T5_WIDTH, tiny_flux, tiny_sd3

    for family, model, states, pooled, extras in (
            ("flux", flux_model(tiny_flux(dev=True, seed=0).to(policy.device), "gpu-flux"), T5_WIDTH, CLIP_WIDTH,
             {"guidance": 3.5}),
            ("sd3", sd3_model(tiny_sd3(seed=0).to(policy.device), "gpu-sd3"), SD3_T5_WIDTH, CLIP_WIDTH + SD3_G_WIDTH,
             {})):
        torch.manual_seed(3)
        positive, negative = ([(torch.randn(1, 6, states), {"pooled_output": torch.randn(1, pooled), **extras})]
                              for _ in (0, 1))
        job = SamplingJob(positive, negative, {"samples": torch.zeros(1, 16, 16, 16)}, 0, 6, 2.0, "dpmpp_2m", "simple")
        seeds = (11, 5, 2 ** 40)
        began = time.perf_counter()
        batched = sample_seed_batch(model, job, seeds, lambda *a: None)
        sync(policy.device)
        seconds = time.perf_counter() - began
        worst = 0.0
        for seed, result in zip(seeds, batched, strict=True):
            alone = sample(model, replace(job, seed=seed), lambda *a: None)["samples"]
            worst = max(worst, float((result["samples"] - alone).abs().max() / max(1.0, float(alone.abs().max()))))
        ok = seed_batchable(model, job) and worst < 1e-3
        row(f"seed_batch_{family}", "ok" if ok else "FAIL",
            f"3 seeds in one call ({seconds:.2f} s): largest difference from alone {worst:.2g} of the latent's scale",
            seconds=seconds, difference=worst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models at 64² (the default without CUDA)")
    parser.add_argument("--json", default=str(ROOT / "output" / "gpu_check.json"), help="where to write the figures")
    parser.add_argument("--skip", action="append", default=[], help="a row to leave out (nodes, half_precision, sd15, "
                        "sdxl, manager_budget, batch_workers1, seed_batch)")
    parser.add_argument("--models", help="folder for the generated models (default: a temporary one)")
    args = parser.parse_args()
    from studio.runtime.device import DevicePolicy

    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    policy = DevicePolicy.detect()
    device = "cuda" if cuda else "cpu"
    began = time.perf_counter()
    print(f"Seed Studio GPU check: torch {torch.__version__}, CUDA {torch.version.cuda}, device {policy.device} "
          f"({torch.cuda.get_device_name() if cuda else 'CPU'}), {str(policy.dtype).removeprefix('torch.')}, "
          f"{'tiny models' if tiny else 'full size'}", flush=True)
    root = Path(args.models or tempfile.mkdtemp(prefix="seed-gpu-check-"))
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    if "nodes" not in args.skip:
        pytest_row("nodes", ["tests/nodes"] if not tiny else ["tests/nodes/test_latent_nodes.py"], device, 300)
    if "half_precision" not in args.skip:
        pytest_row("half_precision", ["tests/runtime/test_half_precision.py", "tests/runtime/test_vae_codec.py"],
                   device, 200)
    if tiny:
        from tests.tiny_models import build_controlnet, build_sd15, build_sdxl

        for model, build in (("sd15", build_sd15), ("sdxl", build_sdxl)):
            if not (root / "checkpoints" / model / "model_index.json").is_file():
                build(root / "checkpoints" / model)
        if not (root / "controlnet" / "cn-xl" / "config.json").is_file():
            build_controlnet(root / "checkpoints" / "sdxl", root / "controlnet" / "cn-xl", seed=3)
        sizes = {"sd15": 64, "sdxl": 64}
        steps, budget = 4, 2 * 1024**2  # a budget under the tiny models' size, so the manager evicts
    else:
        for model in ("sd15", "sdxl"):
            if not (root / "checkpoints" / model / "model_index.json").is_file():
                build_full(model, root / "checkpoints" / model, policy.dtype, policy.device)
        if not (root / "controlnet" / "cn-xl" / "config.json").is_file():
            import diffusers

            from studio.runtime.checkpoints import CONFIGS_DIR

            config = diffusers.ControlNetModel.load_config(CONFIGS_DIR / "controlnet-sdxl")
            with torch.device(policy.device):
                diffusers.ControlNetModel.from_config(config).to(policy.dtype).save_pretrained(
                    root / "controlnet" / "cn-xl")
        sizes = {"sd15": 512, "sdxl": 1024}
        steps, budget = 20, 6 * 1024**3
    for model in ("sd15", "sdxl"):
        if model not in args.skip:
            try:
                graph_vs_direct(model, root, model, policy, sizes[model], steps)
            except Exception as error:  # noqa: BLE001 - a row that fails is reported, the others still run
                row(model, "FAIL", f"{type(error).__name__}: {str(error)[:300]}")
    if "manager_budget" not in args.skip:
        try:
            manager_budget(root, "sdxl", "cn-xl", policy, sizes["sdxl"], steps, budget)
        except Exception as error:  # noqa: BLE001
            row("manager_budget", "FAIL", f"{type(error).__name__}: {str(error)[:300]}")
    if "batch_workers1" not in args.skip:
        batch_row(root, "sd15", sizes["sd15"], steps)
    if "seed_batch" not in args.skip:
        try:
            transformer_seed_batch_row(policy)
        except Exception as error:  # noqa: BLE001 - a row that fails is reported, the others still run
            row("seed_batch", "FAIL", f"{type(error).__name__}: {str(error)[:300]}")
    total = time.perf_counter() - began
    print(f"\n{'check':<18}{'status':<7}figures")
    for entry in rows:
        print(f"{entry['check']:<18}{entry['status']:<7}{entry['figures']}")
    print(f"total {total:.0f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"device": str(policy.device), "dtype": str(policy.dtype),
                                           "torch": torch.__version__, "cuda": torch.version.cuda, "tiny": tiny,
                                           "total_s": total, "rows": rows}, indent=2))
    print(f"figures written to {args.json}")
    return 0 if all(entry["status"] in ("ok", "slow") for entry in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
