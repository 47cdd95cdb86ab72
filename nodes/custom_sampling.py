"""Custom sampling: a sampler taken apart into its σ list, algorithm, noise and guider, with
ComfyUI's node names, inputs and defaults (its ``comfy_extras/nodes_custom_sampler``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.graph.sockets import (
    BOOLEAN,
    CONDITIONING,
    FLOAT,
    GUIDER,
    INT,
    LATENT,
    MODEL,
    NOISE,
    SAMPLER,
    SIGMAS,
    STRING,
)
from studio.lazy import lazy_module
from studio.node_api import SEED_MAX, Input, NodeBase, Output
from studio.runtime.names import SAMPLER_NAMES, SCHEDULER_NAMES

if TYPE_CHECKING:
    from studio.runtime.checkpoints import DiffusionModel
    from studio.runtime.sampling import CFGGuider, SamplerChoice

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")

SIGMA_MAX, SIGMA_MIN = 14.614642, 0.0291675  # SD's range, ComfyUI's defaults for the σ nodes


def _sigma_input(name: str, default: float) -> Input:
    return Input(name, FLOAT, default=default, min=0.0, max=5000.0, step=0.01)


def _steps(default: int = 20) -> Input:
    return Input("steps", INT, default=default, min=1, max=10000)


# The inputs every σ-range scheduler (Karras, exponential, polyexponential) starts with.
_STEPS_AND_RANGE = (_steps(), _sigma_input("sigma_max", SIGMA_MAX), _sigma_input("sigma_min", SIGMA_MIN))


def _amount(name: str, default: float) -> Input:
    return Input(name, FLOAT, default=default, min=0.0, max=100.0, step=0.01)


# --- σ lists ---------------------------------------------------------------------------------

class BasicScheduler(NodeBase):
    """The σ list a KSampler would walk: `steps` steps of the model's schedule, or with
    `denoise` below 1 the last `steps` of a longer one."""

    type_name = "BasicScheduler"
    category = "sampling/custom_sampling/schedulers"
    title = "BasicScheduler"
    inputs = (Input("model", MODEL), Input("scheduler", STRING, default="simple", choices=SCHEDULER_NAMES),
              _steps(), Input("denoise", FLOAT, default=1.0, min=0.0, max=1.0, step=0.01))
    outputs = (Output("SIGMAS", SIGMAS),)

    def run(self, ctx, model: DiffusionModel, scheduler: str, steps: int, denoise: float) -> tuple:
        from studio.runtime.sampling import model_sampling
        from studio.runtime.schedules import scheduler_sigmas

        total = steps
        if denoise < 1.0:
            if denoise <= 0.0:
                return (torch.zeros(0),)
            total = int(steps / denoise)
        return (scheduler_sigmas(model_sampling(model), scheduler, total)[-(steps + 1):],)


class KarrasScheduler(NodeBase):
    """Karras et al.'s σ spacing (denser at low noise as ρ grows)."""

    type_name = "KarrasScheduler"
    category = "sampling/custom_sampling/schedulers"
    title = "KarrasScheduler"
    inputs = (*_STEPS_AND_RANGE,
              Input("rho", FLOAT, default=7.0, min=0.0, max=100.0, step=0.01))
    outputs = (Output("SIGMAS", SIGMAS),)

    def run(self, ctx, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple:
        from studio.runtime.schedules import karras_sigmas

        return (karras_sigmas(steps, sigma_min, sigma_max, rho),)


class ExponentialScheduler(NodeBase):
    """σ evenly spaced in log σ."""

    type_name = "ExponentialScheduler"
    category = "sampling/custom_sampling/schedulers"
    title = "ExponentialScheduler"
    inputs = _STEPS_AND_RANGE
    outputs = (Output("SIGMAS", SIGMAS),)

    def run(self, ctx, steps: int, sigma_max: float, sigma_min: float) -> tuple:
        from studio.runtime.schedules import exponential_sigmas

        return (exponential_sigmas(steps, sigma_min, sigma_max),)


class PolyexponentialScheduler(NodeBase):
    """log σ following a polynomial of degree ρ from σmax down to σmin."""

    type_name = "PolyexponentialScheduler"
    category = "sampling/custom_sampling/schedulers"
    title = "PolyexponentialScheduler"
    inputs = (*_STEPS_AND_RANGE,
              Input("rho", FLOAT, default=1.0, min=0.0, max=100.0, step=0.01))
    outputs = (Output("SIGMAS", SIGMAS),)

    def run(self, ctx, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple:
        from studio.runtime.schedules import polyexponential_sigmas

        return (polyexponential_sigmas(steps, sigma_min, sigma_max, rho),)


class SDTurboScheduler(NodeBase):
    """SD/SDXL Turbo's few steps: timesteps 999, 899, … (fewer with `denoise` below 1)."""

    type_name = "SDTurboScheduler"
    category = "sampling/custom_sampling/schedulers"
    title = "SDTurboScheduler"
    inputs = (Input("model", MODEL), Input("steps", INT, default=1, min=1, max=10),
              Input("denoise", FLOAT, default=1.0, min=0.0, max=1.0, step=0.01))
    outputs = (Output("SIGMAS", SIGMAS),)

    def run(self, ctx, model: DiffusionModel, steps: int, denoise: float) -> tuple:
        from studio.runtime.sampling import model_sampling

        start = 10 - int(10 * denoise)
        timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start:start + steps]
        sigmas = model_sampling(model).sigma(timesteps)
        return (torch.cat([sigmas, sigmas.new_zeros([1])]),)


class BetaSamplingScheduler(NodeBase):
    """Timesteps at the quantiles of a Beta(α, β) distribution (denser at both ends)."""

    type_name = "BetaSamplingScheduler"
    category = "sampling/custom_sampling/schedulers"
    title = "BetaSamplingScheduler"
    inputs = (Input("model", MODEL), _steps(), Input("alpha", FLOAT, default=0.6, min=0.0, max=50.0, step=0.01),
              Input("beta", FLOAT, default=0.6, min=0.0, max=50.0, step=0.01))
    outputs = (Output("SIGMAS", SIGMAS),)

    def run(self, ctx, model: DiffusionModel, steps: int, alpha: float, beta: float) -> tuple:
        from studio.runtime.sampling import model_sampling
        from studio.runtime.schedules import beta_sigmas

        return (beta_sigmas(model_sampling(model), steps, alpha, beta),)


class SplitSigmas(NodeBase):
    """Cuts a σ list at a step: the high part ends where the low part begins (for handing a
    latent from one sampler to another)."""

    type_name = "SplitSigmas"
    category = "sampling/custom_sampling/sigmas"
    title = "SplitSigmas"
    inputs = (Input("sigmas", SIGMAS), Input("step", INT, default=0, min=0, max=10000))
    outputs = (Output("high_sigmas", SIGMAS), Output("low_sigmas", SIGMAS))

    def run(self, ctx, sigmas: torch.Tensor, step: int) -> tuple:
        return (sigmas[:step + 1], sigmas[step:])


class SplitSigmasDenoise(NodeBase):
    """Cuts a σ list so the low part holds `denoise` of its steps."""

    type_name = "SplitSigmasDenoise"
    category = "sampling/custom_sampling/sigmas"
    title = "SplitSigmasDenoise"
    inputs = (Input("sigmas", SIGMAS), Input("denoise", FLOAT, default=1.0, min=0.0, max=1.0, step=0.01))
    outputs = (Output("high_sigmas", SIGMAS), Output("low_sigmas", SIGMAS))

    def run(self, ctx, sigmas: torch.Tensor, denoise: float) -> tuple:
        steps = max(sigmas.shape[-1] - 1, 0)
        low = round(steps * denoise)
        # ComfyUI's slicing, kept: with denoise 0 the high part is empty too
        return (sigmas[:-low] if low else sigmas[:0], sigmas[-(low + 1):])


class FlipSigmas(NodeBase):
    """Reverses a σ list (to walk from a picture back towards noise); a leading 0 becomes
    0.0001, where the log-σ samplers can start."""

    type_name = "FlipSigmas"
    category = "sampling/custom_sampling/sigmas"
    title = "FlipSigmas"
    inputs = (Input("sigmas", SIGMAS),)
    outputs = (Output("SIGMAS", SIGMAS),)

    def run(self, ctx, sigmas: torch.Tensor) -> tuple:
        if len(sigmas) == 0:
            return (sigmas,)
        flipped = sigmas.flip(0).clone()
        if flipped[0] == 0:
            flipped[0] = 0.0001
        return (flipped,)


# --- Samplers --------------------------------------------------------------------------------

class KSamplerSelect(NodeBase):
    """A sampler by name, with its default options."""

    type_name = "KSamplerSelect"
    category = "sampling/custom_sampling/samplers"
    title = "KSamplerSelect"
    inputs = (Input("sampler_name", STRING, default="euler", choices=SAMPLER_NAMES),)
    outputs = (Output("SAMPLER", SAMPLER),)

    def run(self, ctx, sampler_name: str) -> tuple:
        from studio.runtime.sampling import SamplerChoice

        return (SamplerChoice(sampler_name),)


class SamplerEulerAncestral(NodeBase):
    """Euler ancestral with its noise amount (eta) and noise scale."""

    type_name = "SamplerEulerAncestral"
    category = "sampling/custom_sampling/samplers"
    title = "SamplerEulerAncestral"
    inputs = (_amount("eta", 1.0), _amount("s_noise", 1.0))
    outputs = (Output("SAMPLER", SAMPLER),)

    def run(self, ctx, eta: float, s_noise: float) -> tuple:
        from studio.runtime.sampling import SamplerChoice

        return (SamplerChoice("euler_ancestral").with_options(eta=eta, s_noise=s_noise),)


class SamplerDPMPP_2M_SDE(NodeBase):
    """DPM-Solver++(2M) SDE with its second-order correction (midpoint or Heun), eta and
    noise scale. The Brownian noise is drawn on the CPU either way, so pictures do not depend
    on the device."""

    type_name = "SamplerDPMPP_2M_SDE"
    category = "sampling/custom_sampling/samplers"
    title = "SamplerDPMPP_2M_SDE"
    inputs = (Input("solver_type", STRING, default="midpoint", choices=("midpoint", "heun")), _amount("eta", 1.0),
              _amount("s_noise", 1.0), Input("noise_device", STRING, default="gpu", choices=("gpu", "cpu")))
    outputs = (Output("SAMPLER", SAMPLER),)

    def run(self, ctx, solver_type: str, eta: float, s_noise: float, noise_device: str) -> tuple:
        from studio.runtime.sampling import SamplerChoice

        return (SamplerChoice("dpmpp_2m_sde").with_options(solver=solver_type, eta=eta, s_noise=s_noise),)


class SamplerDPMPP_SDE(NodeBase):
    """DPM-Solver++ SDE (two model calls a step) with eta, noise scale and the intermediate
    step's position r."""

    type_name = "SamplerDPMPP_SDE"
    category = "sampling/custom_sampling/samplers"
    title = "SamplerDPMPP_SDE"
    inputs = (_amount("eta", 1.0), _amount("s_noise", 1.0), _amount("r", 0.5),
              Input("noise_device", STRING, default="gpu", choices=("gpu", "cpu")))
    outputs = (Output("SAMPLER", SAMPLER),)

    def run(self, ctx, eta: float, s_noise: float, r: float, noise_device: str) -> tuple:
        from studio.runtime.sampling import SamplerChoice

        return (SamplerChoice("dpmpp_sde").with_options(eta=eta, s_noise=s_noise, r=r),)


class SamplerLMS(NodeBase):
    """Linear multistep of a chosen order."""

    type_name = "SamplerLMS"
    category = "sampling/custom_sampling/samplers"
    title = "SamplerLMS"
    inputs = (Input("order", INT, default=4, min=1, max=100),)
    outputs = (Output("SAMPLER", SAMPLER),)

    def run(self, ctx, order: int) -> tuple:
        from studio.runtime.sampling import SamplerChoice

        return (SamplerChoice("lms").with_options(order=order),)


# --- Noise -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Noise:
    """What flows through a NOISE socket: the starting noise for a latent, from a seed (drawn
    on the CPU as KSampler draws it), or none."""

    seed: int = 0
    enabled: bool = True

    def generate(self, latent: dict) -> torch.Tensor:
        from studio.runtime.sampling import initial_noise

        samples = latent["samples"]
        if not self.enabled:
            return torch.zeros(tuple(samples.shape))
        return initial_noise(tuple(samples.shape), self.seed, latent.get("batch_index"))


class RandomNoise(NodeBase):
    """Noise from a seed, the same as KSampler's for that seed."""

    type_name = "RandomNoise"
    category = "sampling/custom_sampling/noise"
    title = "RandomNoise"
    inputs = (Input("noise_seed", INT, default=0, min=0, max=SEED_MAX, seed=True),)
    outputs = (Output("NOISE", NOISE),)

    def run(self, ctx, noise_seed: int) -> tuple:
        return (Noise(noise_seed),)


class DisableNoise(NodeBase):
    """No noise: sampling starts from the latent as it is (to continue a partly denoised
    latent)."""

    type_name = "DisableNoise"
    category = "sampling/custom_sampling/noise"
    title = "DisableNoise"
    outputs = (Output("NOISE", NOISE),)

    def run(self, ctx) -> tuple:
        return (Noise(enabled=False),)


# --- Guiders ---------------------------------------------------------------------------------

class CFGGuiderNode(NodeBase):
    """The model guided by a prompt and away from a negative by `cfg`."""

    type_name = "CFGGuider"
    category = "sampling/custom_sampling/guiders"
    title = "CFGGuider"
    inputs = (Input("model", MODEL), Input("positive", CONDITIONING), Input("negative", CONDITIONING),
              Input("cfg", FLOAT, default=8.0, min=0.0, max=100.0, step=0.1))
    outputs = (Output("GUIDER", GUIDER),)

    def run(self, ctx, model: DiffusionModel, positive: list, negative: list, cfg: float) -> tuple:
        from studio.runtime.sampling import CFGGuider

        return (CFGGuider(model, positive, negative, cfg),)


class BasicGuider(NodeBase):
    """The model and one prompt, no negative (what FLUX and distilled models use)."""

    type_name = "BasicGuider"
    category = "sampling/custom_sampling/guiders"
    title = "BasicGuider"
    inputs = (Input("model", MODEL), Input("conditioning", CONDITIONING))
    outputs = (Output("GUIDER", GUIDER),)

    def run(self, ctx, model: DiffusionModel, conditioning: list) -> tuple:
        from studio.runtime.sampling import CFGGuider

        return (CFGGuider(model, conditioning, None, 1.0),)


class DualCFGGuiderNode(NodeBase):
    """Two prompts and a negative, each pair with its own guidance scale."""

    type_name = "DualCFGGuider"
    category = "sampling/custom_sampling/guiders"
    title = "DualCFGGuider"
    inputs = (Input("model", MODEL), Input("cond1", CONDITIONING), Input("cond2", CONDITIONING),
              Input("negative", CONDITIONING), Input("cfg_conds", FLOAT, default=8.0, min=0.0, max=100.0, step=0.1),
              Input("cfg_cond2_negative", FLOAT, default=8.0, min=0.0, max=100.0, step=0.1),
              Input("style", STRING, default="regular", choices=("regular", "nested")))
    outputs = (Output("GUIDER", GUIDER),)

    def run(self, ctx, model: DiffusionModel, cond1: list, cond2: list, negative: list, cfg_conds: float,
            cfg_cond2_negative: float, style: str) -> tuple:
        from studio.runtime.sampling import DualCFGGuider

        return (DualCFGGuider(model, cond1, cond2, negative, cfg_conds, cfg_cond2_negative, style == "nested"),)


# --- The samplers that take the parts --------------------------------------------------------

def _sample(ctx, model: DiffusionModel, guider: CFGGuider, sampler: SamplerChoice, sigmas: torch.Tensor,
            noise: Noise, latent: dict) -> tuple[dict, dict]:
    """The sampled LATENT and the last clean estimate (the sampled one when no step ran)."""
    from studio.runtime.sampling import sample_latent
    from studio.runtime.services import model_manager
    from studio.runtime.socket_values import Latent

    with model_manager(ctx.services).use(model.unet, patches=[(model.unet, patch) for patch in model.patches]):
        result = sample_latent(model, guider, sampler, sigmas.float(), noise.generate(latent),
                               Latent.from_node(latent), noise.seed, ctx.progress)
    return result.latent.to_node(), result.denoised.to_node()


class SamplerCustom(NodeBase):
    """A sampler from its parts: a σ list, an algorithm, the model with a prompt and a
    negative. Outputs the sampled latent and the last clean estimate."""

    type_name = "SamplerCustom"
    category = "sampling/custom_sampling"
    title = "SamplerCustom"
    inputs = (Input("model", MODEL), Input("add_noise", BOOLEAN, default=True),
              Input("noise_seed", INT, default=0, min=0, max=SEED_MAX, seed=True),
              Input("cfg", FLOAT, default=8.0, min=0.0, max=100.0, step=0.1), Input("positive", CONDITIONING),
              Input("negative", CONDITIONING), Input("sampler", SAMPLER), Input("sigmas", SIGMAS),
              Input("latent_image", LATENT))
    outputs = (Output("output", LATENT), Output("denoised_output", LATENT))

    def run(self, ctx, model: DiffusionModel, add_noise: bool, noise_seed: int, cfg: float, positive: list,
            negative: list, sampler: SamplerChoice, sigmas: torch.Tensor, latent_image: dict) -> tuple:
        from studio.runtime.sampling import CFGGuider

        noise = Noise(noise_seed, enabled=bool(add_noise))
        return _sample(ctx, model, CFGGuider(model, positive, negative, cfg), sampler, sigmas, noise, latent_image)


class SamplerCustomAdvanced(NodeBase):
    """A sampler from its parts, the model and prompts coming as a guider."""

    type_name = "SamplerCustomAdvanced"
    category = "sampling/custom_sampling"
    title = "SamplerCustomAdvanced"
    inputs = (Input("noise", NOISE), Input("guider", GUIDER), Input("sampler", SAMPLER), Input("sigmas", SIGMAS),
              Input("latent_image", LATENT))
    outputs = (Output("output", LATENT), Output("denoised_output", LATENT))

    def run(self, ctx, noise: Noise, guider: CFGGuider, sampler: SamplerChoice, sigmas: torch.Tensor,
            latent_image: dict) -> tuple:
        return _sample(ctx, guider.model, guider, sampler, sigmas, noise, latent_image)
