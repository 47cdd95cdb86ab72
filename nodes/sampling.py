"""The samplers: KSampler and KSamplerAdvanced, with ComfyUI's names and defaults."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.graph.sockets import CONDITIONING, FLOAT, INT, LATENT, MODEL, STRING
from studio.node_api import SEED_MAX, Input, NodeBase, Output
from studio.runtime.names import SAMPLER_NAMES, SCHEDULER_NAMES

if TYPE_CHECKING:
    from studio.runtime.checkpoints import DiffusionModel
    from studio.runtime.sampling import SamplingJob

# What both samplers take, in ComfyUI's order (between their seed and their own inputs).
SAMPLING_INPUTS = (
    Input("steps", INT, default=20, min=1, max=10000),
    Input("cfg", FLOAT, default=8.0, min=0.0, max=100.0, step=0.1),
    Input("sampler_name", STRING, default="euler", choices=SAMPLER_NAMES),
    Input("scheduler", STRING, default="normal", choices=SCHEDULER_NAMES),
    Input("positive", CONDITIONING),
    Input("negative", CONDITIONING),
    Input("latent_image", LATENT),
)


def _run(ctx, model: DiffusionModel, job: SamplingJob) -> dict:
    from dataclasses import replace

    from studio.runtime.sampling import SamplingJob, sample, sample_seed_batch, seed_batch_size, seed_batchable
    from studio.runtime.services import model_manager

    # What the seed batcher compares a held result with: the latent as wired in (the empty one
    # made below is a new object at every run).
    wired_latent = job.latent
    channels = getattr(model.unet, "latent_channels", None)  # FLUX's and SD3's 16
    samples = job.latent["samples"]
    # Refused with a sentence (the engine names the node) before anything big is allocated
    # when it cannot fit in the memory of the device it would run on.
    from studio.runtime.memory_estimate import check_sampler_memory

    policy = getattr(ctx.services.models, "policy", None)
    check_sampler_memory("", model.unet, (samples.shape[0], channels or samples.shape[1], *samples.shape[2:]),
                         job.cfg, device=getattr(policy, "device", None))
    if channels and samples.shape[1] != channels and not samples.any():
        # An empty latent of another model's channels (EmptyLatentImage's 4): as ComfyUI
        # does, an empty one of this model's.
        shape = (samples.shape[0], channels, *samples.shape[2:])
        job = replace(job, latent={**job.latent, "samples": samples.new_zeros(shape)})

    with model_manager(ctx.services).use(model.unet, patches=[(model.unet, patch) for patch in model.patches]):
        batcher = ctx.services.seed_batches
        if batcher is None or not batcher.enabled or not seed_batchable(model, job):
            return sample(model, job, ctx.progress)
        # A seed batch: this job's seed with the coming jobs' (see studio.runtime.seed_batches).
        signature = ((model, job.positive, job.negative, wired_latent),
                     tuple(getattr(job, name) for name in SamplingJob.__dataclass_fields__
                           if name not in ("positive", "negative", "latent", "seed")))
        return batcher.sample(ctx.node_id, job.seed, signature,
                              lambda seeds: sample_seed_batch(model, job, seeds, ctx.progress),
                              lambda: seed_batch_size(model, job.latent["samples"].shape))


class KSampler(NodeBase):
    """Denoises a latent, guided by the positive and negative conditioning. `denoise` below
    1 keeps part of the input latent (image-to-image); a noise mask limits the change to an
    area (inpainting). The noise comes from the seed, the same on every device."""

    type_name = "KSampler"
    category = "sampling"
    title = "KSampler"
    inputs = (
        Input("model", MODEL),
        Input("seed", INT, default=0, min=0, max=SEED_MAX, seed=True),
        *SAMPLING_INPUTS,
        Input("denoise", FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
    )
    outputs = (Output("LATENT", LATENT),)
    # Jobs that differ only in this input are sampled together (studio.runtime.seed_batches).
    batch_seed_input = "seed"

    def run(self, ctx, model: DiffusionModel, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
            positive: list, negative: list, latent_image: dict, denoise: float) -> tuple:
        from studio.runtime.sampling import SamplingJob

        job = SamplingJob(positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise)
        return (_run(ctx, model, job),)


class KSamplerAdvanced(NodeBase):
    """KSampler with control over the step range: run steps start_at_step to end_at_step of
    a `steps`-step schedule, with or without adding noise first, and optionally hand the
    leftover noise to another sampler (base → refiner)."""

    type_name = "KSamplerAdvanced"
    category = "sampling"
    title = "KSampler (Advanced)"
    inputs = (
        Input("model", MODEL),
        Input("add_noise", STRING, default="enable", choices=("enable", "disable")),
        Input("noise_seed", INT, default=0, min=0, max=SEED_MAX, seed=True),
        *SAMPLING_INPUTS,
        Input("start_at_step", INT, default=0, min=0, max=10000),
        Input("end_at_step", INT, default=10000, min=0, max=10000),
        Input("return_with_leftover_noise", STRING, default="disable", choices=("disable", "enable")),
    )
    outputs = (Output("LATENT", LATENT),)
    batch_seed_input = "noise_seed"

    def run(self, ctx, model: DiffusionModel, add_noise: str, noise_seed: int, steps: int, cfg: float,
            sampler_name: str, scheduler: str, positive: list, negative: list, latent_image: dict,
            start_at_step: int, end_at_step: int, return_with_leftover_noise: str) -> tuple:
        from studio.runtime.sampling import SamplingJob

        job = SamplingJob(positive, negative, latent_image, noise_seed, steps, cfg, sampler_name, scheduler,
                          start_step=start_at_step, end_step=end_at_step, add_noise=add_noise == "enable",
                          leftover_noise=return_with_leftover_noise == "enable")
        return (_run(ctx, model, job),)
