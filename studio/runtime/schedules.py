"""Noise levels: how a model maps noise level (sigma) to its timestep, and the sigma schedules
ComfyUI's schedulers produce.

Everything the samplers do happens in sigma space (Karras et al. 2022): a latent at noise level
σ is ``clean + σ·noise``. A *model sampling* says how a network sees that latent (its input
scaling, its timestep for a σ, how to turn its output into a clean estimate); a *schedule* is
the descending list of σ a sampler walks, ending at 0. The figures and dtypes follow ComfyUI's
so that a shared workflow gets the σ list it got there (to float32 rounding; the parity test
checks every scheduler against lists ComfyUI itself produced).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from studio.runtime.names import Prediction  # noqa: F401 (declared there, without torch; imported from here too)


def _denoised(prediction: str, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor, data: float,
              timestep: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The clean estimate from a network's output, by what the output means."""
    if prediction in (Prediction.SAMPLE, Prediction.IMG_TO_IMG):
        return output
    shaped = _reshape(sigma, output.ndim)
    if prediction == Prediction.V:
        return x * data ** 2 / (shaped ** 2 + data ** 2) - output * shaped * data / (shaped ** 2 + data ** 2) ** 0.5
    if prediction == Prediction.EDM:
        return x * data ** 2 / (shaped ** 2 + data ** 2) + output * shaped * data / (shaped ** 2 + data ** 2) ** 0.5
    clean = x - output * shaped
    if prediction == Prediction.LCM:
        # the consistency model's boundary condition: at small t the estimate is mostly x itself
        t = _reshape(timestep(torch.as_tensor(sigma)).float(), output.ndim) * 10.0
        skip = 0.5 ** 2 / (t ** 2 + 0.5 ** 2)
        out = t / (t ** 2 + 0.5 ** 2) ** 0.5
        return out * clean + skip * x
    return clean


def _reshape(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    sigma = torch.as_tensor(sigma)
    return sigma.reshape(()) if sigma.numel() == 1 else sigma.reshape(sigma.shape[:1] + (1,) * (ndim - 1))


class _SigmaGrid:
    """The range of a model's noise grid (``sigmas``, ascending)."""

    sigmas: torch.Tensor

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]


@dataclass
class DiscreteModelSampling(_SigmaGrid):
    """A model trained on a fixed grid of noise levels (SD 1.x, 2.x, XL): σ_t from the
    ``scaled_linear`` beta schedule, the timestep of a σ is the nearest grid point, and the
    σ of a fractional timestep is interpolated in log σ."""

    prediction: str = Prediction.EPSILON
    beta_start: float = 0.00085
    beta_end: float = 0.012
    timesteps: int = 1000
    zero_terminal_snr: bool = False
    sigma_data: float = 1.0
    sigmas: torch.Tensor = field(init=False, repr=False)
    log_sigmas: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # In float64 and stored as float32, as the LDM code (and so every UI built on it) does.
        betas = torch.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, self.timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        if self.zero_terminal_snr:
            sigmas = _rescale_zero_terminal_snr(sigmas)
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()

    @classmethod
    def from_scheduler_config(cls, config: dict) -> DiscreteModelSampling:
        """From a diffusers ``scheduler_config`` (what every checkpoint loader gives)."""
        schedule = config.get("beta_schedule", "scaled_linear")
        if schedule != "scaled_linear":  # what every SD 1.x, 2.x and XL checkpoint uses
            raise ValueError(f"beta schedule {schedule!r} is not supported (scaled_linear is)")
        start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
        return cls(prediction=config.get("prediction_type", Prediction.EPSILON), beta_start=start, beta_end=end,
                   timesteps=int(config.get("num_train_timesteps", 1000)),
                   zero_terminal_snr=bool(config.get("rescale_betas_zero_snr", False)))

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The grid timestep nearest to σ (in log σ), as a float tensor of σ's shape."""
        sigma = torch.as_tensor(sigma)
        distances = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return distances.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        t = torch.clamp(torch.as_tensor(timestep).float(), min=0, max=len(self.sigmas) - 1)
        low, high, weight = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - weight) * self.log_sigmas[low] + weight * self.log_sigmas[high]).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """σ at a fraction of the way through sampling (ControlNet and area timing)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * (self.timesteps - 1))))

    def sigma_to_percent(self, sigma: float) -> float:
        """The inverse of :meth:`percent_to_sigma` (continuous in the timestep)."""
        log_sigma = math.log(max(float(sigma), 1e-12))
        logs = self.log_sigmas
        if log_sigma <= float(logs[0]):
            return 1.0
        if log_sigma >= float(logs[-1]):
            return 0.0
        high = int(torch.searchsorted(logs, torch.tensor(log_sigma)))
        low = high - 1
        index = low + (log_sigma - float(logs[low])) / (float(logs[high]) - float(logs[low]))
        return min(max(1.0 - self._timestep_of_index(index) / (self.timesteps - 1), 0.0), 1.0)

    def _timestep_of_index(self, index: float) -> float:
        """The (fractional) timestep of a (fractional) index into :attr:`sigmas`."""
        return index

    # How the network sees a latent at σ, and what its output means.
    def model_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.prediction == Prediction.IMG_TO_IMG:
            return x
        sigma = _reshape(sigma, x.ndim)
        return x / (sigma ** 2 + self.sigma_data ** 2) ** 0.5

    def denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _denoised(self.prediction, sigma, output, x, self.sigma_data, self.timestep)

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        """The latent at σ made from a clean latent and unit noise. Starting from pure noise
        (``max_denoise``), the variance is 1 + σ², the marginal a model trained with
        x = clean + σ·noise sees there."""
        sigma = _reshape(sigma, noise.ndim)
        scale = torch.sqrt(1.0 + sigma ** 2.0) if max_denoise else sigma
        return noise * scale + latent

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent

    def half_log_snr(self, sigma: torch.Tensor) -> torch.Tensor:
        """λ = log(α/σ) for this parameterisation (α = 1 here)."""
        return torch.as_tensor(sigma).log().neg()

    def sigma_from_half_log_snr(self, half_log_snr: torch.Tensor) -> torch.Tensor:
        return half_log_snr.neg().exp()

    def offset_first_sigma(self, sigmas: torch.Tensor) -> torch.Tensor:
        return sigmas


@dataclass
class DistilledModelSampling(DiscreteModelSampling):
    """A model distilled onto 50 of the 1000 timesteps (LCM): only every 20th σ of the grid,
    the timestep of the nearest one being its last (19, 39, … 999)."""

    original_timesteps: int = 50
    skip: int = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.skip = self.timesteps // self.original_timesteps
        full = self.sigmas
        valid = torch.zeros(self.original_timesteps, dtype=torch.float32)
        for index in range(self.original_timesteps):
            valid[self.original_timesteps - 1 - index] = full[self.timesteps - 1 - index * self.skip]
        self.sigmas, self.log_sigmas = valid, valid.log()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        nearest = super().timestep(sigma)
        return nearest * self.skip + (self.skip - 1)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        grid = (torch.as_tensor(timestep).float() - (self.skip - 1)) / self.skip
        return super().sigma(grid)

    def _timestep_of_index(self, index: float) -> float:
        return index * self.skip + (self.skip - 1)


@dataclass
class ContinuousEDMModelSampling:
    """A model trained on continuous noise levels σ in [σmin, σmax] (EDM, Playground v2.5,
    CosXL): its timestep is ¼·log σ."""

    prediction: str = Prediction.V
    sigma_min: float = 0.002
    sigma_max: float = 120.0
    sigma_data: float = 1.0
    sigmas: torch.Tensor = field(init=False, repr=False)
    log_sigmas: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.sigmas = torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), 1000).exp()
        self.log_sigmas = self.sigmas.log()
        self.sigma_min, self.sigma_max = self.sigmas[0], self.sigmas[-1]  # type: ignore[assignment]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return 0.25 * torch.as_tensor(sigma).log()

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return (torch.as_tensor(timestep) / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        low = math.log(float(self.sigma_min))
        return math.exp((math.log(float(self.sigma_max)) - low) * (1.0 - percent) + low)

    def sigma_to_percent(self, sigma: float) -> float:
        low, high = math.log(float(self.sigma_min)), math.log(float(self.sigma_max))
        fraction = (math.log(max(float(sigma), 1e-12)) - low) / (high - low)
        return min(max(1.0 - fraction, 0.0), 1.0)

    def model_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x / (_reshape(sigma, x.ndim) ** 2 + self.sigma_data ** 2) ** 0.5

    def denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _denoised(self.prediction, sigma, output, x, self.sigma_data)

    noise_scaling = DiscreteModelSampling.noise_scaling
    inverse_noise_scaling = DiscreteModelSampling.inverse_noise_scaling
    half_log_snr = DiscreteModelSampling.half_log_snr
    sigma_from_half_log_snr = DiscreteModelSampling.sigma_from_half_log_snr
    offset_first_sigma = DiscreteModelSampling.offset_first_sigma


def _rescale_zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    # Lin et al. 2023: shift and scale √ᾱ so the last timestep has zero SNR; the last ᾱ is then
    # set to a tiny value so σ stays finite.
    root = (1 / (sigmas * sigmas + 1)).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    alphas_bar = root ** 2
    alphas_bar[-1] = 4.8973451890853435e-08
    return ((1 - alphas_bar) / alphas_bar) ** 0.5


@dataclass
class FlowModelSampling(_SigmaGrid):
    """A rectified-flow model (SD3, FLUX): x_σ = (1-σ)·clean + σ·noise with σ in [0, 1],
    optionally time-shifted (``shift``), the timestep being σ × ``multiplier``."""

    shift: float = 1.0
    multiplier: float = 1000.0
    timesteps: int = 1000
    sigma_data: float = 1.0
    prediction: str = Prediction.FLOW
    sigmas: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ts = torch.arange(1, self.timesteps + 1, 1) / self.timesteps * self.multiplier
        self.sigmas = self.sigma(ts)

    def _shift(self, t: torch.Tensor) -> torch.Tensor:
        if self.shift == 1.0:
            return t
        return self.shift * t / (1 + (self.shift - 1) * t)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(sigma) * self.multiplier

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return self._shift(torch.as_tensor(timestep) / self.multiplier)

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return float(self._shift(torch.tensor(1.0 - percent)))

    def sigma_to_percent(self, sigma: float) -> float:
        sigma = min(max(float(sigma), 0.0), 1.0)
        # invert the shift: t = σ / (shift - (shift-1)·σ)
        t = sigma / (self.shift - (self.shift - 1) * sigma) if self.shift != 1.0 else sigma
        return 1.0 - t

    def model_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x

    def denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x - output * _reshape(sigma, output.ndim)

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        sigma = _reshape(sigma, noise.ndim)
        return sigma * noise + (1.0 - sigma) * latent

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent / (1.0 - _reshape(sigma, latent.ndim))

    def half_log_snr(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(sigma).logit().neg()  # log((1-σ)/σ)

    def sigma_from_half_log_snr(self, half_log_snr: torch.Tensor) -> torch.Tensor:
        return half_log_snr.neg().sigmoid()

    def offset_first_sigma(self, sigmas: torch.Tensor) -> torch.Tensor:
        # σ = 1 has λ = -∞; the log-SNR samplers start just below it.
        if len(sigmas) > 1 and sigmas[0] >= 1:
            sigmas = sigmas.clone()
            sigmas[0] = self.percent_to_sigma(1e-4)
        return sigmas


ModelSampling = DiscreteModelSampling | FlowModelSampling | ContinuousEDMModelSampling


# --- Schedules -----------------------------------------------------------------------------

def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: evenly spaced in σ^(1/ρ)."""
    ramp = torch.linspace(0, 1, steps)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((max_inv + ramp * (min_inv - max_inv)) ** rho)


def exponential_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in log σ."""
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp())


def polyexponential_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """A polynomial in log σ (ρ = 1 is the exponential schedule)."""
    ramp = torch.linspace(1, 0, steps) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def kl_optimal_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in arctan σ (the KL-optimal schedule of Sabour et al. 2024)."""
    fraction = torch.arange(steps, dtype=torch.float).div_(steps - 1) if steps > 1 else torch.zeros(1)
    sigmas = fraction.new_zeros(steps + 1)
    sigmas[:-1] = (fraction * math.atan(sigma_min) + (1 - fraction) * math.atan(sigma_max)).tan_()
    return sigmas


def normal_sigmas(ms: ModelSampling, steps: int, sgm: bool = False) -> torch.Tensor:
    """Evenly spaced timesteps from the model's largest σ to its smallest (``sgm``: without
    the last, as Stability's sgm code spaces them), then 0."""
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    append_zero = True
    if sgm:
        timesteps = torch.linspace(float(start), float(end), steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(float(start), float(end), steps)
    sigmas = [float(ms.sigma(t)) for t in timesteps]
    if append_zero:
        sigmas.append(0.0)
    return torch.tensor(sigmas, dtype=torch.float32)


def simple_sigmas(ms: ModelSampling, steps: int) -> torch.Tensor:
    """Every (len/steps)-th of the model's own σ, from the top."""
    stride = len(ms.sigmas) / steps
    sigmas = [float(ms.sigmas[-(1 + int(index * stride))]) for index in range(steps)]
    return torch.tensor(sigmas + [0.0], dtype=torch.float32)


def ddim_uniform_sigmas(ms: ModelSampling, steps: int) -> torch.Tensor:
    """DDIM's uniform timestep grid (every len//steps-th timestep from 1)."""
    index = 1
    if math.isclose(float(ms.sigmas[index]), 0, abs_tol=0.00001):
        steps += 1
        sigmas: list[float] = []
    else:
        sigmas = [0.0]
    stride = max(len(ms.sigmas) // steps, 1)
    while index < len(ms.sigmas):
        sigmas.append(float(ms.sigmas[index]))
        index += stride
    return torch.tensor(sigmas[::-1], dtype=torch.float32)


def beta_sigmas(ms: ModelSampling, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Timesteps at the quantiles of a Beta(α, β) distribution (Lee et al. 2024): denser at
    both ends of the schedule. Repeated timesteps are dropped."""
    import numpy
    import scipy.stats

    last = len(ms.sigmas) - 1
    quantiles = 1 - numpy.linspace(0, 1, steps, endpoint=False)
    timesteps = numpy.rint(scipy.stats.beta.ppf(quantiles, alpha, beta) * last)
    sigmas: list[float] = []
    previous = -1.0
    for t in timesteps:
        if t != previous:
            sigmas.append(float(ms.sigmas[int(t)]))
        previous = t
    return torch.tensor(sigmas + [0.0], dtype=torch.float32)


def linear_quadratic_sigmas(ms: ModelSampling, steps: int, threshold_noise: float = 0.025,
                            linear_steps: int | None = None) -> torch.Tensor:
    """Mochi's schedule: linear for the first half, then quadratic, scaled to the model's σmax."""
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        linear_steps = steps // 2 if linear_steps is None else linear_steps
        linear = [index * threshold_noise / linear_steps for index in range(linear_steps)]
        step_difference = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quadratic_coefficient = step_difference / (linear_steps * quadratic_steps ** 2)
        linear_coefficient = threshold_noise / linear_steps - 2 * step_difference / (quadratic_steps ** 2)
        constant = quadratic_coefficient * (linear_steps ** 2)
        quadratic = [quadratic_coefficient * index ** 2 + linear_coefficient * index + constant
                     for index in range(linear_steps, steps)]
        schedule = [1.0 - value for value in linear + quadratic + [1.0]]
    return torch.tensor(schedule, dtype=torch.float32) * ms.sigma_max.cpu()


def _range(function: Callable[[int, float, float], torch.Tensor]) -> Callable[[ModelSampling, int], torch.Tensor]:
    return lambda ms, steps: function(steps, float(ms.sigma_min), float(ms.sigma_max))


# ComfyUI's scheduler names, in its order (the first is the default).
SCHEDULERS: dict[str, Callable[[ModelSampling, int], torch.Tensor]] = {
    "simple": simple_sigmas,
    "sgm_uniform": lambda ms, steps: normal_sigmas(ms, steps, sgm=True),
    "karras": _range(karras_sigmas),
    "exponential": _range(exponential_sigmas),
    "ddim_uniform": ddim_uniform_sigmas,
    "beta": beta_sigmas,
    "normal": normal_sigmas,
    "linear_quadratic": linear_quadratic_sigmas,
    "kl_optimal": _range(kl_optimal_sigmas),
}


def scheduler_sigmas(ms: ModelSampling, scheduler: str, steps: int) -> torch.Tensor:
    """The σ list (descending, ending at 0) of ``scheduler`` for ``steps`` steps."""
    try:
        function = SCHEDULERS[scheduler]
    except KeyError:
        raise ValueError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}") from None
    if steps < 1:
        return torch.zeros(0)
    return function(ms, steps)
