"""Reference data from real ComfyUI, for the sampler-parity tests (CI never has ComfyUI).

Runs ComfyUI's own sampling code, headless and on the CPU, on the tiny SD1.5-shaped
checkpoint of ``tests/parity_model.py`` and writes ``tests/data/comfy_reference/``:

* ``meta.json``: the ComfyUI commit, torch version, date, every setting (seed, steps, cfg,
  size, img2img denoise, the sampler and scheduler lists), the numerical checks of ComfyUI's
  model against diffusers', skipped combinations with the reason, seconds per step and UNet
  calls per run for each sampler, and which PNGs were kept.
* ``sigmas.json``: the SD1.5 discrete-EPS model sampling (its 1000 sigmas), the sigmas of
  ``comfy.samplers.calculate_sigmas`` for every scheduler and steps 1, 2, 3, 8, 20, and the
  sigmas ``comfy.samplers.KSampler`` actually uses at 8 steps for denoise 1.0 and 0.6 (the
  samplers in ``KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS`` get other ones).
* ``inputs.safetensors``: ``positive`` and ``negative`` conditioning (1×77×32),
  ``img2img_latent`` (1×4×8×8, in the VAE's scale as a LATENT holds it) and
  ``noise_seed42``, the initial noise ``comfy.sample.prepare_noise`` makes for seed 42.
* ``latents.safetensors``: ``txt2img/{sampler}/{scheduler}`` and
  ``img2img/{sampler}/{scheduler}``: the ``samples`` KSampler returns (what a LATENT holds,
  i.e. after ``process_latent_out``: divided by 0.18215).
* ``png/{txt2img|img2img}-{sampler}-{scheduler}.png``: each result decoded by ComfyUI's VAE
  and turned to 8 bits as ``nodes.SaveImage`` does (``np.clip(255 * x, 0, 255)
  .astype(np.uint8)``, i.e. truncation).

The checkpoint is written by ``tests.parity_model.write_parity_checkpoint`` (bit-identical in
the project's venv and in ComfyUI's: same torch); ComfyUI builds its model from it with an
explicit config (ComfyUI only *detects* full-size SD1.5), and the script checks that
ComfyUI's denoiser and VAE decoder equal diffusers' on it (max abs diff < 1e-4) before
sampling. Its sha256 is recorded in meta.json.

ComfyUI, headless, on the CPU (commit 618b803d314a525faca8f8163d85eaa9ebc1d774 of the fork
pollockjj/ComfyUI, 2026-01-07; ComfyUI 0.8.0)::

    # the source tree of that commit at /tmp/ComfyUI, then its own venv:
    python3.11 -m venv /tmp/comfy-venv
    /tmp/comfy-venv/bin/pip install torch==2.13.0        # first: the CPU wheel
    /tmp/comfy-venv/bin/pip install torch==2.13.0 torchsde numpy einops transformers \\
        tokenizers sentencepiece safetensors aiohttp yarl pyyaml pillow scipy tqdm psutil \\
        alembic SQLAlchemy av pydantic pydantic-settings \\
        diffusers accelerate platformdirs               # for tests.parity_model
    # (ComfyUI's requirements.txt minus the frontend/templates/docs packages, torchvision,
    #  torchaudio, comfy-kitchen (fp8 only), kornia and spandrel (they pull torchvision);
    #  use the project venv's versions of diffusers/transformers/safetensors.)

torchvision and torchaudio have no build for this torch on the CPU, but ComfyUI imports
them (and transformers probes torchvision) in modules the SD1 path never uses. Put a
stand-in package in the venv: ``site-packages/torchvision/__init__.py`` (and the same for
``torchaudio``) that installs a ``sys.meta_path`` finder making every ``torchvision.*``
submodule importable, each attribute a placeholder that raises when called; see
:data:`STANDIN` (``--write-standins`` writes both). If pip ever pulls a real torchvision
(kornia and spandrel require it), uninstall it: it fails to import with this torch.

Run from the project root (the script imports ``tests.parity_model`` from the project
before ComfyUI, which has a ``tests`` package of its own)::

    HF_HUB_OFFLINE=1 /tmp/comfy-venv/bin/python bench/comfy_reference.py --comfyui /tmp/ComfyUI

``--checkpoint PATH`` uses a checkpoint written beforehand by ``write_parity_checkpoint`` (e.g.
in the project venv; its config folder must lie beside it) instead of writing one in a temp
folder; the result is the same file (its sha256 is in meta.json). ComfyUI is driven without its server: ``--cpu``
is put in ``sys.argv`` and ``comfy.options.enable_args_parsing()`` called before comfy is
imported, and the KSampler node's own function ``nodes.common_ksampler`` samples. About
three minutes on two cores (one torch thread: ``--threads``; with one thread the results are
bit-for-bit reproducible, with two they differ by ~2e-6 relative).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "comfy_reference"
COMFY_COMMIT = "618b803d314a525faca8f8163d85eaa9ebc1d774"
COMFY_FORK = "pollockjj/ComfyUI"
SIGMA_STEPS = [1, 2, 3, 8, 20]
UNET_PREFIX = "model.diffusion_model."
TOLERANCE = 1e-4
PNG_BUDGET_BYTES = 12 * 1024 * 1024  # every picture (about 8 MB); a subset only beyond this

STANDIN = '''"""Stand-in for {name}: no build of it exists for the CPU torch 2.13.0 used to run
ComfyUI for Seed Studio's reference data (bench/comfy_reference.py). Every ``{name}.*``
module imports; every attribute is a placeholder that raises when called."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.0.0+standin"
_ROOT = __name__


def _lookup(prefix, name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Missing(prefix + "." + name)


class _Missing:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, item):
        return _lookup(self._name, item)

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{{_ROOT}} stand-in: {{self._name}} is not available")

    def __repr__(self):
        return f"<{{_ROOT}} stand-in {{self._name}}>"


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_ROOT + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda name, _prefix=spec.name: _lookup(_prefix, name)
        return module

    def exec_module(self, module):
        pass


sys.meta_path.append(_Finder())


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    import importlib
    try:
        return importlib.import_module(_ROOT + "." + name)
    except ImportError:
        return _lookup(_ROOT, name)
'''


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def write_standins() -> None:
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    for name in ("torchvision", "torchaudio"):
        (site / name).mkdir(exist_ok=True)
        (site / name / "__init__.py").write_text(STANDIN.format(name=name))
        print(f"wrote {site / name / '__init__.py'}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def floats(tensor) -> list[float]:
    return [float(x) for x in tensor.flatten().tolist()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, default=Path("/tmp/ComfyUI"), help="ComfyUI source tree")
    parser.add_argument("--checkpoint", type=Path, help="the parity checkpoint, written beforehand "
                        "(default: written now by tests.parity_model into a temp folder)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before a combination is skipped")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a "
                        "busy machine; the results do not depend on it beyond float rounding)")
    parser.add_argument("--samplers", help="comma-separated subset (a quick trial; default all)")
    parser.add_argument("--schedulers", help="comma-separated subset (default all)")
    parser.add_argument("--cases", action="store_true",
                        help="run only tests.parity_model.CONDITIONING_CASES (areas, masks, timestep ranges, "
                             "inpainting, step ranges) and write cases.safetensors and cases.json")
    parser.add_argument("--write-standins", action="store_true",
                        help="write the torchvision/torchaudio stand-ins into this venv and stop")
    options = parser.parse_args()
    if options.write_standins:
        write_standins()
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The project's tests package first: ComfyUI has a regular package named tests too.
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    import tests.ldm_layout  # noqa: F401
    import tests.tiny_models  # noqa: F401
    from tests import parity_model as pm

    temp = tempfile.TemporaryDirectory()
    if options.checkpoint is None:
        checkpoint = pm.write_parity_checkpoint(Path(temp.name) / "parity-sd15.safetensors")
    else:
        checkpoint = options.checkpoint.resolve()
    config_folder = checkpoint.with_suffix("")

    # ComfyUI, headless: --cpu parsed by comfy.cli_args (only once args parsing is enabled).
    comfy_root = options.comfyui.resolve()
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, str(comfy_root))
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_detection
    import comfy.model_management
    import comfy.model_patcher
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import comfy.supported_models
    import comfy.utils

    import nodes

    comfy.utils.PROGRESS_BAR_ENABLED = False
    # torchsde warns when a float32 sigma lies a rounding error outside its tree's interval.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torchsde\..*")
    warnings.filterwarnings("ignore", message="To copy construct from a tensor")
    assert comfy.model_management.get_torch_device() == torch.device("cpu")
    torch.set_grad_enabled(False)
    torch.set_num_threads(options.threads)

    # ---- ComfyUI's model objects, from the file --------------------------------------------
    state = comfy.utils.load_torch_file(str(checkpoint))
    unet_config = comfy.model_detection.detect_unet_config(state, UNET_PREFIX)
    detected = comfy.model_detection.model_config_from_unet_config(unet_config, state)
    model_config = comfy.supported_models.SD15(unet_config)
    model_config.unet_config.update(pm.COMFY_UNET_HEADS)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model(state, UNET_PREFIX, device=torch.device("cpu"))
    file_keys = {key[len(UNET_PREFIX):] for key in state if key.startswith(UNET_PREFIX)}
    model_keys = set(model.diffusion_model.state_dict())
    if file_keys != model_keys:
        raise SystemExit(f"UNet keys differ: missing {model_keys - file_keys}, unexpected {file_keys - model_keys}")
    model.load_model_weights(state, UNET_PREFIX)
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)

    vae_state = comfy.utils.state_dict_prefix_replace(state, {"first_stage_model.": ""}, filter_keys=True)
    vae_state = model_config.process_vae_state_dict(vae_state)
    vae_config = {"params": {"ddconfig": pm.COMFY_VAE_DDCONFIG, "embed_dim": 4}}
    vae_keys = set(vae_state)
    vae = comfy.sd.VAE(sd=vae_state, config=vae_config, dtype=torch.float32)
    if set(vae.first_stage_model.state_dict()) != vae_keys:
        raise SystemExit("VAE keys differ")

    # ---- Numerical checks against diffusers (Seed Studio's loading route) -------------------
    from diffusers import AutoencoderKL, UNet2DConditionModel

    def fresh_state():
        return comfy.utils.load_torch_file(str(checkpoint))

    d_unet = UNet2DConditionModel.from_single_file(fresh_state(), config=str(config_folder), subfolder="unet",
                                                   local_files_only=True, torch_dtype=torch.float32).eval()
    d_vae = AutoencoderKL.from_single_file(fresh_state(), config=str(config_folder), subfolder="vae",
                                           local_files_only=True, torch_dtype=torch.float32).eval()
    inputs = pm.parity_inputs()
    generator = torch.Generator().manual_seed(7)
    ms = model.model_sampling
    checks = {"unet": [], "vae": []}
    context = torch.cat([inputs["positive"], inputs["negative"]])
    for sigma_value in [float(ms.sigma_max), 8.0, 1.0, 0.1, float(ms.sigma_min)]:
        x = torch.randn(2, 4, 8, 8, generator=generator) * (1 + sigma_value ** 2) ** 0.5
        sigma = torch.full((2,), sigma_value)
        comfy_denoised = model.apply_model(x, sigma, c_crossattn=context)
        timestep = ms.timestep(sigma).float()
        eps = d_unet(x / (sigma_value ** 2 + 1) ** 0.5, timestep, encoder_hidden_states=context).sample
        diff = (comfy_denoised - (x - eps * sigma_value)).abs().max().item()
        checks["unet"].append({"sigma": sigma_value, "timestep": float(timestep[0]), "max_abs_diff": diff,
                               "denoised_abs_max": comfy_denoised.abs().max().item()})
        print(f"check UNet (denoised, sigma {sigma_value:.4f}, t {int(timestep[0])}): max abs diff {diff:.3g}")
    for name, latent in [("img2img_latent", inputs["img2img_latent"]),
                         ("random", torch.randn(1, 4, 8, 8, generator=generator) / pm.SD15_SCALE_FACTOR)]:
        comfy_image = vae.decode(latent)
        d_image = ((d_vae.decode(latent).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
        diff = (comfy_image - d_image).abs().max().item()
        checks["vae"].append({"latent": name, "max_abs_diff": diff, "image_std": comfy_image.std().item()})
        print(f"check VAE decode ({name}): max abs diff {diff:.3g}")
    worst = max(c["max_abs_diff"] for c in checks["unet"] + checks["vae"])
    if worst >= TOLERANCE:
        raise SystemExit(f"ComfyUI's model does not match diffusers' ({worst:.3g} >= {TOLERANCE})")
    del d_unet, d_vae
    if options.cases:
        return run_cases(options, nodes, patcher, vae, pm, torch, np, save_file, checks)

    samplers = list(comfy.samplers.KSampler.SAMPLERS)
    schedulers = list(comfy.samplers.KSampler.SCHEDULERS)
    run_samplers = options.samplers.split(",") if options.samplers else samplers
    run_schedulers = options.schedulers.split(",") if options.schedulers else schedulers

    # ---- Sigmas ----------------------------------------------------------------------------
    sigmas = {"model_sampling": {
        "class": f"{type(ms).__module__}.{type(ms).__name__} ({model.model_type.name})",
        "beta_schedule": "linear (ComfyUI's name: linspace(sqrt(start), sqrt(end), 1000, float64) ** 2, "
                         "i.e. diffusers' scaled_linear)",
        "linear_start": ms.linear_start, "linear_end": ms.linear_end, "timesteps": ms.num_timesteps,
        "sigma_min": float(ms.sigma_min), "sigma_max": float(ms.sigma_max), "sigmas": floats(ms.sigmas)},
        "calculate_sigmas": {}, "calculate_sigmas_errors": {}}
    for scheduler in schedulers:
        sigmas["calculate_sigmas"][scheduler] = {}
        for steps in SIGMA_STEPS:
            try:
                sigmas["calculate_sigmas"][scheduler][str(steps)] = floats(
                    comfy.samplers.calculate_sigmas(ms, scheduler, steps))
            except Exception as error:  # noqa: BLE001 - recorded
                sigmas["calculate_sigmas_errors"][f"{scheduler}/{steps}"] = repr(error)
    discard = sorted(comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS)
    ksampler_sigmas = {}
    for denoise in (1.0, pm.IMG2IMG_DENOISE):
        by_scheduler = {}
        for scheduler in schedulers:
            groups = {}
            for sampler in samplers:
                values = floats(comfy.samplers.KSampler(patcher, steps=pm.STEPS, device=cpu, sampler=sampler,
                                                        scheduler=scheduler, denoise=denoise).sigmas)
                group = "discard_penultimate" if sampler in discard else "standard"
                if group in groups and groups[group] != values:
                    raise SystemExit(f"KSampler sigmas differ within {group}: {sampler}/{scheduler}")
                groups[group] = values
            by_scheduler[scheduler] = groups
        ksampler_sigmas[f"denoise_{denoise}"] = by_scheduler
    sigmas["ksampler"] = {
        "steps": pm.STEPS, "samplers_discarding_penultimate_sigma": discard,
        "note": "comfy.samplers.KSampler(...).sigmas: every sampler not in samplers_discarding_penultimate_sigma "
                "gets 'standard'; denoise < 1 computes int(steps / denoise) steps (+1 for the discarding "
                "samplers) and keeps the last steps + 1 sigmas",
        **ksampler_sigmas}

    # ---- Inputs ----------------------------------------------------------------------------
    empty = torch.zeros(1, 4, pm.HEIGHT // 8, pm.WIDTH // 8)  # EmptyLatentImage
    noise = comfy.sample.prepare_noise(empty, pm.SEED)
    tensors_in = {**{k: v.contiguous() for k, v in inputs.items()}, "noise_seed42": noise.contiguous()}
    positive = [[inputs["positive"], {}]]
    negative = [[inputs["negative"], {}]]

    # ---- Sampling --------------------------------------------------------------------------
    calls = {"n": 0}
    model.diffusion_model.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    signal.signal(signal.SIGALRM, _alarm)

    def run(sampler, scheduler, latent, denoise):
        calls["n"] = 0
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, options.timeout)
        try:
            out = nodes.common_ksampler(patcher, pm.SEED, pm.STEPS, pm.CFG, sampler, scheduler, positive, negative,
                                        {"samples": latent.clone()}, denoise=denoise)[0]["samples"]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return out.float().contiguous(), time.perf_counter() - start, calls["n"]

    run("euler", "normal", empty, 1.0)  # warm-up (first load of the model)
    latents, runs, skipped, images = {}, {}, [], {}
    modes = [("txt2img", empty, 1.0), ("img2img", inputs["img2img_latent"], pm.IMG2IMG_DENOISE)]
    for sampler in run_samplers:
        for scheduler in run_schedulers:
            for mode, latent, denoise in modes:
                key = f"{mode}/{sampler}/{scheduler}"
                try:
                    try:
                        out, seconds, unet_calls = run(sampler, scheduler, latent, denoise)
                    except Timeout:  # once more, in case the machine was busy
                        out, seconds, unet_calls = run(sampler, scheduler, latent, denoise)
                except Timeout:
                    skipped.append({"key": key, "reason": f"took more than {options.timeout:g} s (twice)"})
                    print(f"skip {key}: timeout")
                    continue
                except Exception as error:  # noqa: BLE001 - recorded
                    skipped.append({"key": key, "reason": f"{type(error).__name__}: {error}"})
                    print(f"skip {key}: {type(error).__name__}: {error}")
                    continue
                finite = bool(torch.isfinite(out).all())
                latents[key] = out
                runs[key] = {"seconds": round(seconds, 4), "unet_calls": unet_calls, "finite": finite,
                             "std": out.std().item()}
                if finite:
                    picture = vae.decode(out)
                    pixels = np.clip(255.0 * picture.cpu().numpy(), 0, 255).astype(np.uint8)  # nodes.SaveImage
                    images[key] = pixels[0]
        done = [k for k in runs if k.split("/")[1] == sampler]
        print(f"{sampler}: {len(done)} runs, {sum(runs[k]['seconds'] for k in done):.1f} s", flush=True)

    # ---- Writing ---------------------------------------------------------------------------
    out_dir = options.out
    png_dir = out_dir / "png"
    out_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(exist_ok=True)
    for old in png_dir.glob("*.png"):
        old.unlink()
    save_file(tensors_in, str(out_dir / "inputs.safetensors"))
    save_file(latents, str(out_dir / "latents.safetensors"))
    (out_dir / "sigmas.json").write_text(json.dumps(sigmas, indent=1) + "\n")

    def png_name(key):
        return key.replace("/", "-") + ".png"

    # All PNGs if they fit the budget; else every sampler with the schedulers normal, karras,
    # simple and exponential, and euler / euler_ancestral / dpmpp_2m with every scheduler.
    encoded = {}
    for key, pixels in images.items():
        path = png_dir / png_name(key)
        Image.fromarray(pixels).save(path, compress_level=9)
        encoded[key] = path.stat().st_size
    png_subset = "all"
    if sum(encoded.values()) > PNG_BUDGET_BYTES:
        keep_schedulers = {"normal", "karras", "simple", "exponential"}
        keep_samplers = {"euler", "euler_ancestral", "dpmpp_2m"}
        png_subset = ("every sampler with the schedulers normal, karras, simple and exponential; the samplers "
                      "euler, euler_ancestral and dpmpp_2m with every scheduler")
        for key in list(encoded):
            _, sampler, scheduler = key.split("/")
            if scheduler not in keep_schedulers and sampler not in keep_samplers:
                (png_dir / png_name(key)).unlink()
                del encoded[key]

    per_sampler = {}
    for sampler in run_samplers:
        keys = [k for k in runs if k.split("/")[1] == sampler and k.startswith("txt2img/")]
        if not keys:
            continue
        per_step = [runs[k]["seconds"] / pm.STEPS for k in keys]
        normal = runs.get(f"txt2img/{sampler}/normal", {})
        per_sampler[sampler] = {"seconds_per_step_median": round(statistics.median(per_step), 5),
                                "unet_calls_txt2img_normal": normal.get("unet_calls"),
                                "runs": len([k for k in runs if k.split("/")[1] == sampler])}

    import platform

    meta = {
        "comfyui": {"repository": COMFY_FORK, "commit": COMFY_COMMIT, "date": "2026-01-07",
                    "version": _comfy_version(comfy_root), "path": str(comfy_root)},
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "HF_HUB_OFFLINE=1 /tmp/comfy-venv/bin/python bench/comfy_reference.py --comfyui /tmp/ComfyUI",
        "checkpoint": {"writer": "tests.parity_model.write_parity_checkpoint", "weight_seed": pm.WEIGHT_SEED,
                       "sha256": sha256(checkpoint), "bytes": checkpoint.stat().st_size,
                       "comfy_unet_config": {k: v for k, v in model_config.unet_config.items()
                                             if isinstance(v, (int, float, str, bool, list, type(None)))},
                       "comfy_vae_ddconfig": pm.COMFY_VAE_DDCONFIG,
                       "comfy_detects_model": None if detected is None else type(detected).__name__,
                       "note": "ComfyUI only detects SD15 at model_channels 320 / context_dim 768, so the model "
                               "is built as comfy.supported_models.SD15(detect_unet_config(...)) with num_heads 8; "
                               "the VAE as comfy.sd.VAE(config=...) with comfy_vae_ddconfig"},
        "checks": {"tolerance": TOLERANCE, **checks},
        "settings": {"seed": pm.SEED, "steps": pm.STEPS, "cfg": pm.CFG, "width": pm.WIDTH, "height": pm.HEIGHT,
                     "batch_size": 1, "img2img_denoise": pm.IMG2IMG_DENOISE, "input_seed": pm.INPUT_SEED,
                     "context_dim": pm.CONTEXT_DIM, "latent_scale_factor": pm.SD15_SCALE_FACTOR,
                     "txt2img_latent": "zeros 1x4x8x8 (EmptyLatentImage)",
                     "img2img_latent": "inputs.safetensors img2img_latent",
                     "conditioning": "positive/negative of inputs.safetensors as [[tensor, {}]]",
                     "call": "nodes.common_ksampler(model, seed, steps, cfg, sampler, scheduler, positive, "
                             "negative, {'samples': latent}, denoise=denoise)",
                     "timeout_seconds": options.timeout},
        "samplers": samplers, "schedulers": schedulers,
        "samplers_run": run_samplers, "schedulers_run": run_schedulers,
        "samplers_discarding_penultimate_sigma": discard,
        "skipped": skipped,
        "non_finite": [k for k, r in runs.items() if not r["finite"]],
        "png": {"conversion": "np.clip(255 * image, 0, 255).astype(np.uint8) of ComfyUI's VAE decode "
                              "(nodes.SaveImage), saved without metadata", "subset": png_subset,
                "count": len(encoded)},
        "per_sampler_note": "rough, one run each on this CPU with --threads torch threads: seconds_per_step_median "
                            "is the median over schedulers of a txt2img run's seconds / steps (sampling only, no VAE); "
                            "unet_calls counts UNet forward passes (cond and uncond go in one batch: one call)",
        "per_sampler": per_sampler,
        "runs": runs,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    # ---- Summary ---------------------------------------------------------------------------
    print()
    print(f"{'sampler':32} {'ok':>4} {'s/step':>8} {'UNet calls':>10}  skipped")
    for sampler in run_samplers:
        ok = len([k for k in runs if k.split("/")[1] == sampler])
        info = per_sampler.get(sampler, {})
        skips = [s["key"] for s in skipped if s["key"].split("/")[1] == sampler]
        print(f"{sampler:32} {ok:>4} {info.get('seconds_per_step_median', float('nan')):>8.4f} "
              f"{str(info.get('unet_calls_txt2img_normal')):>10}  {len(skips) or ''}")
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    print(f"\n{len(runs)} runs, {len(skipped)} skipped, {len(encoded)} PNGs ({png_subset}); "
          f"{out_dir} is {total / 1e6:.2f} MB")
    print("checks: UNet max abs diff {:.3g}, VAE max abs diff {:.3g}".format(
        max(c["max_abs_diff"] for c in checks["unet"]), max(c["max_abs_diff"] for c in checks["vae"])))
    temp.cleanup()
    return 0


class FixedPhraseClip:
    """A CLIP for ComfyUI's GLIGENTextBoxApply that gives a fixed pooled embedding: the parity
    conditioning is made of fixed tensors, not of text."""

    def __init__(self, pooled):
        self.pooled = pooled

    def tokenize(self, text):
        return text

    def encode_from_tokens(self, tokens, return_pooled=False):
        assert return_pooled == "unprojected", return_pooled  # what GLIGEN reads
        return None, self.pooled


def run_cases(options, nodes, patcher, vae, pm, torch, np, save_file, checks) -> int:
    """ComfyUI's latents and 8-bit pictures for the conditioning and sampling cases."""
    import comfy_extras.nodes_model_advanced as advanced_nodes

    inputs = pm.case_inputs()
    empty = torch.zeros(1, 4, pm.HEIGHT // 8, pm.WIDTH // 8)
    tensors, described = {"alt": inputs["alt"].contiguous()}, {}
    for name, case in pm.CONDITIONING_CASES.items():
        positive = pm.case_conditioning(case.get("positive", [{"embedding": "positive"}]), inputs)
        negative = pm.case_conditioning(case.get("negative", [{"embedding": "negative"}]), inputs)
        latent = {"samples": (inputs["img2img_latent"] if case.get("latent") == "img2img" else empty).clone()}
        if case.get("noise_mask") == "left":
            latent["noise_mask"] = pm.left_mask()
        sampler, scheduler = case.get("sampler", "euler"), case.get("scheduler", "normal")
        cfg = case.get("cfg", pm.CFG)
        advanced = case.get("advanced")
        model = patcher
        for node_type, values in case.get("patches", []):
            model = getattr(advanced_nodes, node_type)().patch(model, *values)[0]
        if "hypernetwork" in case:
            import tempfile as _tempfile

            from comfy_extras.nodes_hypernetwork import load_hypernetwork_patch

            path = pm.write_parity_hypernetwork(Path(_tempfile.mkdtemp()) / "parity.pt")
            model = model.clone()
            patch = load_hypernetwork_patch(str(path), case["hypernetwork"])
            model.set_model_attn1_patch(patch)
            model.set_model_attn2_patch(patch)
        if "gligen" in case:
            import tempfile as _tempfile

            import comfy.sd

            path = pm.write_parity_gligen(Path(_tempfile.mkdtemp()) / "parity-gligen.safetensors")
            gligen = comfy.sd.load_gligen(str(path))
            phrases = pm.gligen_phrases(len(case["gligen"]))
            for index, (width, height, x, y) in enumerate(case["gligen"]):
                clip = FixedPhraseClip(phrases[index:index + 1])
                positive = nodes.GLIGENTextBoxApply().append(positive, clip, gligen, f"phrase {index}", width, height,
                                                             x, y)[0]
        if advanced:
            out = nodes.common_ksampler(model, pm.SEED, pm.STEPS, cfg, sampler, scheduler, positive, negative, latent,
                                        denoise=1.0, disable_noise=not advanced["add_noise"],
                                        start_step=advanced["start"], last_step=advanced["end"],
                                        force_full_denoise=not advanced["leftover_noise"])[0]["samples"]
        else:
            out = nodes.common_ksampler(model, pm.SEED, pm.STEPS, cfg, sampler, scheduler, positive, negative, latent,
                                        denoise=case.get("denoise", 1.0))[0]["samples"]
        tensors[name] = out.float().contiguous()
        pixels = np.clip(255.0 * vae.decode(out).cpu().numpy(), 0, 255).astype(np.uint8)
        tensors[f"{name}/png"] = torch.from_numpy(pixels[0].copy())
        described[name] = {"sampler": sampler, "scheduler": scheduler, "cfg": cfg, "std": out.std().item()}
        print(f"case {name}: std {out.std().item():.3f}")
    options.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(options.out / "cases.safetensors"))
    (options.out / "cases.json").write_text(json.dumps({
        "comfyui": {"repository": COMFY_FORK, "commit": COMFY_COMMIT},
        "command": "HF_HUB_OFFLINE=1 /tmp/comfy-venv/bin/python bench/comfy_reference.py --comfyui /tmp/ComfyUI "
                   "--cases",
        "checks": checks, "cases": described,
        "note": "each case as tests.parity_model.CONDITIONING_CASES describes it, sampled by nodes.common_ksampler "
                "with seed, steps and cfg of tests.parity_model; '<name>/png' is the 8-bit picture (uint8 H×W×3) "
                "as nodes.SaveImage makes it"}, indent=1) + "\n")
    return 0


def _comfy_version(root: Path) -> str | None:
    try:
        text = (root / "comfyui_version.py").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return None


if __name__ == "__main__":
    sys.exit(main())
