"""Sampling: ComfyUI's sampler and scheduler names, run with diffusers' schedulers.

The loop is the one diffusers' pipelines run (scale input, predict noise, guide, step), with
what a node graph adds: img2img by starting part-way (``denoise``), inpainting by keeping the
unmasked region on the original's noise path, KSamplerAdvanced's step ranges, a progress
callback (with a cheap latent preview) that also checks for cancellation at every step, and
the initial noise drawn on the CPU from the seed so the same seed gives the same image on
any device.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from studio.runtime.checkpoints import DiffusionModel
from studio.runtime.controlnet import control_residuals

# sampler_name → (diffusers scheduler class, its options)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "ddim": ("DDIMScheduler", {"set_alpha_to_one": False}),
    "uni_pc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
# scheduler → the scheduler option that gives that spacing of noise levels
SCHEDULERS: dict[str, dict[str, Any]] = {
    "normal": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "simple": {"timestep_spacing": "trailing"},
    "ddim_uniform": {"timestep_spacing": "leading"},
    "beta": {"use_beta_sigmas": True},
}
# Linear maps from latent channels to RGB, for previews without the VAE (ComfyUI's figures).
PREVIEW_FACTORS = {
    "sd15": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
              [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
              [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
}
PREVIEW_FACTORS["sd2"] = PREVIEW_FACTORS["sd15"]


def _scheduler_class(name: str) -> type | None:
    import diffusers

    if name == "DPMSolverSDEScheduler" and importlib.util.find_spec("torchsde") is None:
        return None
    return getattr(diffusers, name, None)


def available_samplers() -> list[str]:
    """The sampler names this installation can honour."""
    return [name for name, (cls, _) in SAMPLERS.items() if _scheduler_class(cls) is not None]


def unsupported_combination(sampler: str, scheduler: str) -> str | None:
    """Why a sampler cannot use a scheduler (a sentence), or None when it can."""
    cls = _scheduler_class(SAMPLERS[sampler][0])
    if cls is None:
        return f"the {sampler} sampler needs a package that is not installed"
    parameters = inspect.signature(cls.__init__).parameters
    for option in SCHEDULERS[scheduler]:
        if option not in parameters:
            return f"the {sampler} sampler cannot space its steps the {scheduler!r} way"
    return None


def make_scheduler(model: DiffusionModel, sampler: str, scheduler: str) -> Any:
    reason = unsupported_combination(sampler, scheduler)
    if reason:
        raise ValueError(reason)
    class_name, options = SAMPLERS[sampler]
    cls = _scheduler_class(class_name)
    return cls.from_config(model.scheduler_config, **options, **SCHEDULERS[scheduler])  # type: ignore[union-attr]


def initial_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise for a whole latent batch, drawn on the CPU from the seed (as ComfyUI does)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def latent_preview(latent: torch.Tensor, family: str) -> torch.Tensor:
    """A quick RGB look at a latent (1 × h × w × 3, 0..1) for progress displays."""
    factors, bias = PREVIEW_FACTORS.get(family, PREVIEW_FACTORS["sd15"])
    matrix = torch.tensor(factors, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent[0].float().cpu(), matrix) + torch.tensor(bias)
    return ((rgb + 1) / 2).clamp(0, 1)[None]


@dataclass
class SamplingJob:
    """Everything one KSampler run needs besides the model."""

    positive: list[tuple[torch.Tensor, dict[str, Any]]]
    negative: list[tuple[torch.Tensor, dict[str, Any]]]
    latent: dict[str, Any]
    seed: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    denoise: float = 1.0
    start_step: int | None = None
    end_step: int | None = None
    add_noise: bool = True
    leftover_noise: bool = False


ProgressCallback = Callable[[int, int, Any], None]


def _sdxl_time_ids(extras: dict[str, Any], height: int, width: int) -> list[float]:
    return [extras.get("height", height), extras.get("width", width), extras.get("crop_h", 0),
            extras.get("crop_w", 0), extras.get("target_height", height), extras.get("target_width", width)]


def _batched(conditioning: list[tuple[torch.Tensor, dict[str, Any]]], batch: int, device: torch.device,
             dtype: torch.dtype) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    out = []
    for embedding, extras in conditioning:
        embedding = embedding.to(device, dtype)
        if embedding.shape[0] != batch:
            embedding = embedding[:1].expand(batch, -1, -1)
        out.append((embedding, extras))
    return out


def _pad_to_same_length(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Prompts of different lengths (77 vs 154 tokens) still batch: repeat the shorter's
    # chunks, as ComfyUI does, which leaves its meaning unchanged.
    if a.shape[1] == b.shape[1]:
        return a, b
    length = max(a.shape[1], b.shape[1])

    def stretch(t: torch.Tensor) -> torch.Tensor:
        repeats = -(-length // t.shape[1])
        return t.repeat(1, repeats, 1)[:, :length]
    return stretch(a), stretch(b)


def sample(model: DiffusionModel, job: SamplingJob, progress: ProgressCallback) -> dict[str, Any]:
    """Denoise ``job.latent`` and return the new LATENT (unscaled, as VAEDecode expects)."""
    unet = model.unet
    device, dtype = unet.device, unet.dtype
    original = job.latent["samples"].float()
    batch, _, height, width = original.shape
    if job.denoise <= 0 or job.steps <= 0:
        return {**job.latent}
    scheduler = make_scheduler(model, job.sampler, job.scheduler)
    total = job.steps if job.start_step is not None else max(job.steps, int(job.steps / job.denoise))
    scheduler.set_timesteps(total, device=device)
    order = getattr(scheduler, "order", 1)
    first = job.start_step if job.start_step is not None else total - job.steps
    last = min(job.end_step, total) if job.end_step is not None else total
    if first >= last:
        return {**job.latent}
    timesteps = scheduler.timesteps[first * order:last * order]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(first * order)

    scale = model.latent_scale
    clean = original.to(device) * scale
    noise = initial_noise(tuple(original.shape), job.seed).to(device)
    if not job.add_noise:
        x = clean
    elif first == 0 and job.denoise >= 1.0:
        x = clean + noise * scheduler.init_noise_sigma
    else:
        x = scheduler.add_noise(clean, noise, timesteps[:1])
    mask = job.latent.get("noise_mask")
    if mask is not None:
        mask = mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        mask = F.interpolate(mask, size=(height, width), mode="bilinear").to(device)
        mask = mask.expand(batch, -1, -1, -1) if mask.shape[0] == 1 else mask[:batch]

    positive = _batched(job.positive, batch, device, dtype)
    negative = _batched(job.negative, batch, device, dtype)
    guided = job.cfg != 1.0
    step_generator = torch.Generator(device="cpu").manual_seed(job.seed)
    pixel_height, pixel_width = height * 8, width * 8

    def entry_weight(extras: dict[str, Any]) -> torch.Tensor | float:
        # ConditioningSetArea: the entry counts only inside its rectangle, by its strength.
        area = extras.get("area")
        strength = float(extras.get("strength", 1.0))
        if area is None:
            return strength
        area_height, area_width, top, left = area
        weight = torch.zeros(1, 1, height, width, device=device)
        weight[:, :, top:top + area_height, left:left + area_width] = strength
        return weight

    def added_conditions(extras: dict[str, Any], rows: int) -> dict[str, Any]:
        if model.family != "sdxl":
            return {}
        pooled = extras.get("pooled_output")
        pooled = (pooled if pooled is not None else torch.zeros(1, 1280)).to(device, dtype)
        time_ids = torch.tensor([_sdxl_time_ids(extras, pixel_height, pixel_width)], device=device, dtype=dtype)
        return {"added_cond_kwargs": {"text_embeds": pooled[:1].expand(rows, -1),
                                      "time_ids": time_ids.expand(rows, -1)}}

    # The usual case, one plain prompt each side: one UNet call on a batch of two, as
    # diffusers' pipelines do (on a GPU that is nearly twice as fast as two calls).
    plain = (guided and len(positive) == len(negative) == 1
             and "area" not in positive[0][1] and "area" not in negative[0][1]
             and not positive[0][1].get("control") and not negative[0][1].get("control")
             and positive[0][1].get("strength", 1.0) == negative[0][1].get("strength", 1.0) == 1.0)
    if plain:
        both = torch.cat(_pad_to_same_length(negative[0][0], positive[0][0]))
        both_extras: dict[str, Any] = {}
        if model.family == "sdxl":
            sides = [added_conditions(entries[0][1], batch)["added_cond_kwargs"] for entries in (negative, positive)]
            both_extras = {"added_cond_kwargs": {key: torch.cat([side[key] for side in sides])
                                                 for key in ("text_embeds", "time_ids")}}

    def predict(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if plain:
            prediction = unet(torch.cat([latents, latents]), t, encoder_hidden_states=both, return_dict=False,
                              **both_extras)[0]
            unconditional, conditional = prediction.chunk(2)
            return unconditional + job.cfg * (conditional - unconditional)
        predictions = []
        for entries in [positive, negative] if guided else [positive]:
            total_prediction: torch.Tensor | None = None
            total_weight: torch.Tensor | float = 0.0
            for embedding, extras in entries:
                other = negative[0][0] if entries is positive and guided else None
                if other is not None:
                    embedding, _ = _pad_to_same_length(embedding, other)
                kwargs = added_conditions(extras, batch)
                if extras.get("control"):
                    kwargs.update(control_residuals(extras["control"], fraction[0], latents, t, embedding, kwargs))
                prediction = unet(latents, t, encoder_hidden_states=embedding, return_dict=False, **kwargs)[0]
                weight = entry_weight(extras)
                weighted = prediction * weight
                total_prediction = weighted if total_prediction is None else total_prediction + weighted
                total_weight = total_weight + weight
            if isinstance(total_weight, torch.Tensor):
                # Where no entry applies the prediction stays 0, as in ComfyUI.
                predictions.append(total_prediction / total_weight.clamp(min=1e-8))
            else:
                predictions.append(total_prediction / max(total_weight, 1e-8))
        if not guided:
            return predictions[0]
        conditional, unconditional = predictions
        return unconditional + job.cfg * (conditional - unconditional)

    count = len(timesteps)
    fraction = [0.0]  # how far through the whole schedule this step is (for ControlNet ranges)
    with torch.no_grad():
        for index, t in enumerate(timesteps):
            fraction[0] = (first + index // order) / total
            model_input = scheduler.scale_model_input(x, t)
            noise_prediction = predict(model_input.to(dtype), t).float()
            step_kwargs = {"generator": step_generator} if "generator" in inspect.signature(
                scheduler.step).parameters else {}
            step_output = scheduler.step(noise_prediction, t, x, **step_kwargs)
            x = step_output.prev_sample
            if mask is not None:
                if index + 1 < count:
                    keep = scheduler.add_noise(clean, noise, timesteps[index + 1:index + 2])
                else:
                    keep = clean
                x = x * mask + keep * (1 - mask)
            if getattr(scheduler, "order", 1) == 1 or index % order == order - 1 or index == count - 1:
                progress(index + 1, count, latent_preview(x / scale, model.family))
    stopped_early = last < total
    estimate = getattr(step_output, "pred_original_sample", None)
    if stopped_early and not job.leftover_noise and estimate is not None:
        # Stopping part-way without handing on the noise: finish at the model's estimate of
        # the clean latent, as ComfyUI's KSamplerAdvanced does.
        x = estimate if mask is None else estimate * mask + clean * (1 - mask)
    return {**job.latent, "samples": (x / scale).cpu()}
