"""The sampling algorithms, in σ space, with ComfyUI's names and noise seeding.

Each algorithm takes a *denoiser* ``D(x, σ) → x̂₀`` (the model with guidance applied), the
starting latent at ``sigmas[0]`` and the σ list, and walks the list down. They are the
published methods — Euler/Heun/DPM-2 (Karras et al. 2022, alg. 2), DPM-Solver and DPM-Solver++
(Lu et al. 2022), their SDE variants, LMS, UniPC (Zhao et al. 2023), ER-SDE (Cui et al. 2023),
RES (Zhang et al. 2023), CFG++ (Chung et al. 2024), DDPM and LCM steps — written for the
exact arithmetic ComfyUI's copies use (k-diffusion's), so a shared workflow reproduces its
picture. What ComfyUI does that the papers leave open is followed too:

* the per-step noise of ancestral samplers is Gaussian from a CPU generator seeded with
  seed + 1 (ComfyUI's CPU behaviour; drawing on the CPU also makes the picture the same on any
  device);
* the SDE samplers (``dpmpp_sde``, ``dpmpp_2m_sde``, ``dpmpp_3m_sde``) take their noise from a
  Brownian tree (torchsde) over [σmin, σmax] seeded with the seed, so the noise between two
  σ is consistent however the steps are cut;
* in a *seed batch* (several jobs that differ only in their seed, sampled as one latent batch:
  :attr:`SamplerContext.seed_rows`) each job's rows get their own generator and their own
  tree, so every picture is the one its job gives alone;
* ``ddim`` is Euler (the DDIM update with η = 0 is Euler's in σ space); ``uni_pc`` is UniPC's
  B₁(h) variant and ``uni_pc_bh2`` its B₂(h), both at order 3 with the last σ moved to 0.001.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from studio.runtime.schedules import FlowModelSampling, ModelSampling

# torchsde warns when a float32 σ lies a rounding error outside the tree's interval; the
# value it returns is the boundary's, which is right.
warnings.filterwarnings("ignore", message="Should have (ta|tb)<=t1", module=r"torchsde\..*")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def step_noise_sampler(x: torch.Tensor, seed: int | None,
                       seed_rows: tuple[tuple[int | None, int], ...] = ()) -> NoiseSampler:
    """Fresh Gaussian noise shaped like ``x`` at every call, from a CPU generator seeded with
    seed + 1 (ComfyUI on the CPU), moved to ``x``'s device. With ``seed_rows`` (a seed batch:
    ``(seed, rows)`` per job, in order) each job's rows come from a generator of its own, so
    they are the rows that job draws alone."""
    rows = seed_rows or ((seed, x.shape[0]),)
    generators = []
    for row_seed, count in rows:
        generator = torch.Generator(device="cpu")
        if row_seed is None:
            generator.seed()
        else:
            generator.manual_seed(row_seed + 1)
        generators.append((generator, (count, *x.shape[1:])))

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        parts = [torch.randn(shape, dtype=torch.float32, generator=generator) for generator, shape in generators]
        noise = parts[0] if len(parts) == 1 else torch.cat(parts)
        return noise.to(device=x.device, dtype=x.dtype)
    return sample


class BrownianTreeNoise:
    """Noise from one Brownian motion W over [σmin, σmax] (torchsde's Brownian tree, on the
    CPU): the call for (σ, σ') returns (W(σ') − W(σ)) / √|σ' − σ|, unit Gaussian noise that is
    the same for the same interval whatever the steps around it. In a seed batch each job's
    rows have a tree of their own, seeded with that job's seed."""

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor, seed: int | None,
                 seed_rows: tuple[tuple[int | None, int], ...] = ()):
        import torchsde

        low, high = torch.as_tensor(sigma_min).detach().cpu(), torch.as_tensor(sigma_max).detach().cpu()
        self.sign = 1
        if low > high:
            low, high, self.sign = high, low, -1
        self.device, self.dtype = x.device, x.dtype
        self.trees = []
        for row_seed, count in seed_rows or ((seed, x.shape[0]),):
            entropy = row_seed if row_seed is not None else int(torch.randint(0, 2 ** 63 - 1, ()).item())
            start = torch.zeros((count, *x.shape[1:]), dtype=x.dtype, device="cpu")
            self.trees.append(torchsde.BrownianTree(low, start, high, entropy=entropy))

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        sign = 1
        if t0 > t1:
            t0, t1, sign = t1, t0, -1
        t0, t1 = t0.detach().cpu().float(), t1.detach().cpu().float()
        parts = [tree(t0, t1) for tree in self.trees]
        w = parts[0] if len(parts) == 1 else torch.cat(parts)
        w = w.to(device=self.device, dtype=self.dtype) * (self.sign * sign)
        return w / (torch.as_tensor(sigma_next) - torch.as_tensor(sigma)).abs().sqrt()


@dataclass
class SamplerContext:
    """What an algorithm may use besides the denoiser: the model's σ parameterisation, the
    seed for its noise, a per-step report, and (for CFG++) the last unguided estimate."""

    model_sampling: ModelSampling
    seed: int | None = None
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] = lambda index, x, denoised: None
    unconditional: Callable[[], torch.Tensor | None] = lambda: None
    options: dict[str, Any] = field(default_factory=dict)
    # A seed batch: ``(seed, rows)`` for each job whose latents lie one after another in x
    # (empty: the whole batch is one job's, seeded with ``seed``).
    seed_rows: tuple[tuple[int | None, int], ...] = ()

    def step_noise(self, x: torch.Tensor) -> NoiseSampler:
        return step_noise_sampler(x, self.seed, self.seed_rows)

    def brownian_noise(self, x: torch.Tensor, sigmas: torch.Tensor) -> NoiseSampler:
        return BrownianTreeNoise(x, sigmas[sigmas > 0].min(), sigmas.max(), self.seed, self.seed_rows)

    @property
    def is_flow(self) -> bool:
        return isinstance(self.model_sampling, FlowModelSampling)


SamplerFunction = Callable[[Denoiser, torch.Tensor, torch.Tensor, SamplerContext], torch.Tensor]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's derivative dx/dσ at (x, σ)."""
    return (x - denoised) / sigma


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0):
    """Split a step σ → σ' into a deterministic step to σ↓ and fresh noise of size σ↑,
    with σ↓² + σ↑² = σ'²."""
    if not eta:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2) ** 0.5)
    sigma_down = (sigma_next ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def _ones(x: torch.Tensor) -> torch.Tensor:
    return x.new_ones([x.shape[0]])


def _estimate(D: Denoiser, x: torch.Tensor, sigma: torch.Tensor, index: int, ctx: SamplerContext) -> torch.Tensor:
    """Step ``index``'s clean estimate at ``x`` (σ for every row), reported to ``ctx.on_step``
    (progress, preview, cancelling): the call every step loop starts with, so each algorithm
    below spells only its own update."""
    denoised = D(x, sigma * _ones(x))
    ctx.on_step(index, x, denoised)
    return denoised


# --- First and second order, deterministic -------------------------------------------------

def euler(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """Euler's method on the probability-flow ODE: one model call per step."""
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


def heun(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022): each Euler step corrected by the slope
    at its end, two model calls per step (Euler alone on a last step to σ 0)."""
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], D(x_2, sigmas[i + 1] * _ones(x)))
            x = x + (d + d_2) / 2 * dt
    return x


def dpm_2(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """DPM-Solver-2: each step takes the slope at its midpoint in log σ (Euler alone on a last
    step to σ 0)."""
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            # midpoint in log σ
            sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, D(x_2, sigma_mid * _ones(x)))
            x = x + d_2 * (sigmas[i + 1] - sigmas[i])
    return x


def _lms_coefficient(order: int, t, i: int, j: int) -> float:
    # ∫ over [t_i, t_{i+1}] of the Lagrange basis polynomial j through the last `order` σ.
    from scipy import integrate

    def basis(tau):
        product = 1.0
        for k in range(order):
            if j != k:
                product *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return product
    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


def lms(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, order: int = 4) -> torch.Tensor:
    """Linear multistep: the last ``order`` slopes combined with weights integrated over σ."""
    sigmas_cpu = sigmas.detach().cpu().numpy()
    derivatives: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        derivatives.append(to_d(x, sigmas[i], denoised))
        if len(derivatives) > order:
            derivatives.pop(0)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            current = min(i + 1, order)
            coefficients = [_lms_coefficient(current, sigmas_cpu, i, j) for j in range(current)]
            x = x + sum(c * d for c, d in zip(coefficients, reversed(derivatives), strict=False))
    return x


def ipndm(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, max_order: int = 4) -> torch.Tensor:
    """Improved pseudo-numerical (Adams–Bashforth) steps of up to fourth order."""
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t, t_next = sigmas[i], sigmas[i + 1]
        denoised = _estimate(D, x, t, i, ctx)
        d = (x - denoised) / t
        order = min(max_order, i + 1)
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + (t_next - t) * d
        elif order == 2:
            x_next = x + (t_next - t) * (3 * d - history[-1]) / 2
        elif order == 3:
            x_next = x + (t_next - t) * (23 * d - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            x_next = x + (t_next - t) * (55 * d - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        if len(history) == max_order - 1:
            history = history[1:] + [d]
        else:
            history.append(d)
        x = x_next
    return x


def dpmpp_2m(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): second order from the previous step's clean
    estimate, one model call per step."""
    previous = None
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        if previous is None or sigmas[i + 1] == 0:
            x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * denoised
        else:
            r = (t - sigmas[i - 1].log().neg()) / h
            corrected = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * corrected
        previous = denoised
    return x


# --- Ancestral (fresh noise each step) -----------------------------------------------------

def euler_ancestral(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext,
                    eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """Euler steps down to σ_down, then fresh noise up to the next σ (``eta`` scales
    how much is drawn anew); flow models re-noise by their own rule."""
    noise = ctx.step_noise(x)
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        if ctx.is_flow:
            x = _flow_ancestral_update(x, denoised, sigmas[i], sigmas[i + 1], eta, s_noise, noise)
            continue
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = denoised
        else:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def _flow_ancestral_update(x, denoised, sigma, sigma_next, eta, s_noise, noise):
    # For x = (1-σ)·x₀ + σ·ε: step down to σ↓ along the straight line, then re-noise so the
    # marginal at σ' is right.
    if sigma_next == 0:
        return denoised
    sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    alpha_next, alpha_down = 1 - sigma_next, 1 - sigma_down
    renoise = (sigma_next ** 2 - sigma_down ** 2 * alpha_next ** 2 / alpha_down ** 2) ** 0.5
    ratio = sigma_down / sigma
    x = ratio * x + (1 - ratio) * denoised
    if eta > 0:
        x = (alpha_next / alpha_down) * x + noise(sigma, sigma_next) * s_noise * renoise
    return x


def dpm_2_ancestral(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext,
                    eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver-2 steps down to σ_down, then fresh noise up to the next σ."""
    noise = ctx.step_noise(x)
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        if ctx.is_flow:
            sigma_down = sigmas[i + 1] * (1 + (sigmas[i + 1] / sigmas[i] - 1) * eta)
            alpha_next, alpha_down = 1 - sigmas[i + 1], 1 - sigma_down
            sigma_up = (sigmas[i + 1] ** 2 - sigma_down ** 2 * alpha_next ** 2 / alpha_down ** 2) ** 0.5
        else:
            sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, D(x_2, sigma_mid * _ones(x)))
            x = x + d_2 * (sigma_down - sigmas[i])
            if ctx.is_flow:
                x = (alpha_next / alpha_down) * x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
            else:
                x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def dpmpp_2s_ancestral(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext,
                       eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2S), single-step second order, down to σ_down, then fresh noise up
    to the next σ."""
    if ctx.is_flow:
        raise NotImplementedError("dpmpp_2s_ancestral is not available for flow models yet")
    noise = ctx.step_noise(x)
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            # DPM-Solver++(2S): one midpoint evaluation in log-SNR time
            t, t_next = sigmas[i].log().neg(), sigma_down.log().neg()
            h = t_next - t
            s = t + h / 2
            x_2 = (s.neg().exp() / t.neg().exp()) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = D(x_2, s.neg().exp() * _ones(x))
            x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def euler_ancestral_cfg_pp(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext,
                           eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """CFG++: step along the *unguided* noise estimate from the guided clean estimate."""
    noise = ctx.step_noise(x)
    ms = ctx.model_sampling
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        unconditional = ctx.unconditional()
        if unconditional is None:
            unconditional = denoised
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        alpha_s = sigmas[i] * ms.half_log_snr(sigmas[i]).exp()
        alpha_t = sigmas[i + 1] * ms.half_log_snr(sigmas[i + 1]).exp()
        d = to_d(x, sigmas[i], alpha_s * unconditional)
        sigma_down, sigma_up = ancestral_step(sigmas[i] / alpha_s, sigmas[i + 1] / alpha_t, eta)
        x = alpha_t * denoised + alpha_t * sigma_down * d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def euler_cfg_pp(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    return euler_ancestral_cfg_pp(D, x, sigmas, ctx, eta=0.0, s_noise=0.0)


def _res_multistep(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, eta: float,
                   cfg_pp: bool, s_noise: float = 1.0) -> torch.Tensor:
    """RES: a second-order exponential multistep method (Zhang et al. 2023, arXiv 2308.02157)."""
    noise = ctx.step_noise(x)

    def phi1(t):
        return torch.expm1(t) / t

    def phi2(t):
        return (phi1(t) - 1.0) / t

    old_sigma_down = old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        unconditional = ctx.unconditional() if cfg_pp else None
        if cfg_pp and unconditional is None:
            unconditional = denoised
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], unconditional) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old = sigmas[i].log().neg(), old_sigma_down.log().neg()
            t_next, t_prev = sigma_down.log().neg(), sigmas[i - 1].log().neg()
            h = t_next - t
            c2 = (t_prev - t_old) / h
            b1 = torch.nan_to_num(phi1(-h) - phi2(-h) / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2(-h) / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - unconditional)
                x = h.neg().exp() * x + h * (b1 * unconditional + b2 * old_denoised)
            else:
                x = h.neg().exp() * x + h * (b1 * denoised + b2 * old_denoised)
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        old_denoised = unconditional if cfg_pp else denoised
        old_sigma_down = sigma_down
    return x


def res_multistep(D, x, sigmas, ctx):
    return _res_multistep(D, x, sigmas, ctx, eta=0.0, cfg_pp=False)


def res_multistep_cfg_pp(D, x, sigmas, ctx):
    return _res_multistep(D, x, sigmas, ctx, eta=0.0, cfg_pp=True)


def res_multistep_ancestral(D, x, sigmas, ctx):
    return _res_multistep(D, x, sigmas, ctx, eta=1.0, cfg_pp=False)


def res_multistep_ancestral_cfg_pp(D, x, sigmas, ctx):
    return _res_multistep(D, x, sigmas, ctx, eta=1.0, cfg_pp=True)


# --- SDE solvers (Brownian-tree noise) -----------------------------------------------------

def dpmpp_sde(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext,
              eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5) -> torch.Tensor:
    """DPM-Solver++ (stochastic, two evaluations per step)."""
    if len(sigmas) <= 1:
        return x
    noise = ctx.brownian_noise(x, sigmas)
    ms = ctx.model_sampling
    sigmas = ms.offset_first_sigma(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = ms.half_log_snr(sigmas[i]), ms.half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        lambda_s_1 = lambda_s + r * h
        fac = 1 / (2 * r)
        sigma_s_1 = ms.sigma_from_half_log_snr(lambda_s_1)
        alpha_s = sigmas[i] * lambda_s.exp()
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        # first stage, to the intermediate λ
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        x_2 = (alpha_s_1 / alpha_s) * (-h_).exp() * x - alpha_s_1 * (-h_).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x_2 = x_2 + alpha_s_1 * noise(sigmas[i], sigma_s_1) * s_noise * su
        denoised_2 = D(x_2, sigma_s_1 * _ones(x))
        # second stage, to the next σ
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        mixed = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * mixed
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


def _dpmpp_multistep_sde(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, order: int,
                         eta: float = 1.0, s_noise: float = 1.0, solver: str = "midpoint") -> torch.Tensor:
    """DPM-Solver++(2M) SDE and (3M) SDE."""
    if len(sigmas) <= 1:
        return x
    noise = ctx.brownian_noise(x, sigmas)
    ms = ctx.model_sampling
    sigmas = ms.offset_first_sigma(sigmas)
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = ms.half_log_snr(sigmas[i]), ms.half_log_snr(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if order == 2:
                if denoised_1 is not None:
                    r = h_1 / h
                    if solver == "heun":
                        x = x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - denoised_1)
                    else:
                        x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - denoised_1)
            elif h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
            elif h_1 is not None:
                r = h_1 / h
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + (alpha_t * phi_2) * ((denoised - denoised_1) / r)
            if eta > 0 and s_noise > 0:
                x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def dpmpp_2m_sde(D, x, sigmas, ctx):
    return _dpmpp_multistep_sde(D, x, sigmas, ctx, order=2)


def dpmpp_2m_sde_heun(D, x, sigmas, ctx):
    return _dpmpp_multistep_sde(D, x, sigmas, ctx, order=2, solver="heun")


def dpmpp_3m_sde(D, x, sigmas, ctx):
    return _dpmpp_multistep_sde(D, x, sigmas, ctx, order=3)


def er_sde(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, s_noise: float = 1.0,
           max_stage: int = 3) -> torch.Tensor:
    """ER-SDE-Solver-3 (Cui et al. 2023, VP form) with its default noise scaler."""
    noise = ctx.step_noise(x)

    def scaler(value):
        return value * ((value ** 0.3).exp() + 10.0)

    points = 200.0
    point_index = torch.arange(0, points, dtype=torch.float32, device=x.device)
    ms = ctx.model_sampling
    sigmas = ms.offset_first_sigma(sigmas)
    lambdas = ms.half_log_snr(sigmas).neg().exp()  # σ_t / α_t
    old_denoised = old_denoised_d = None
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = lambdas[i], lambdas[i + 1]
            alpha_s, alpha_t = sigmas[i] / lambda_s, sigmas[i + 1] / lambda_t
            r = scaler(lambda_t) / scaler(lambda_s)
            x = (alpha_t / alpha_s) * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = lambda_t - lambda_s
                step = -dt / points
                positions = lambda_t + point_index * step
                scaled = scaler(positions)
                s = torch.sum(1 / scaled) * step
                denoised_d = (denoised - old_denoised) / (lambda_s - lambdas[i - 1])
                x = x + alpha_t * (dt + s * scaler(lambda_t)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((positions - lambda_s) / scaled) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((lambda_s - lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt ** 2) / 2 + s_u * scaler(lambda_t)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                spread = (lambda_t ** 2 - lambda_s ** 2 * r ** 2).sqrt().nan_to_num(nan=0.0)
                x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * spread
        old_denoised = denoised
    return x


# --- Steps that re-noise from the clean estimate -------------------------------------------

def ddpm(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """Ho et al.'s ancestral DDPM step, between arbitrary σ of the schedule."""
    noise = ctx.step_noise(x)
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        x_vp = x / torch.sqrt(1.0 + sigma ** 2.0)
        eps = (x - denoised) / sigma
        alpha_cumprod = 1 / ((sigma * sigma) + 1)
        alpha_cumprod_prev = 1 / ((sigma_prev * sigma_prev) + 1)
        alpha = alpha_cumprod / alpha_cumprod_prev
        mu = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - alpha_cumprod).sqrt())
        if sigma_prev > 0:
            mu = mu + ((1 - alpha) * (1. - alpha_cumprod_prev) / (1. - alpha_cumprod)).sqrt() * noise(sigma, sigma_prev)
            mu = mu * torch.sqrt(1.0 + sigma_prev ** 2.0)
        x = mu
    return x


def lcm(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """Latent consistency: jump to the clean estimate, then re-noise to the next σ."""
    noise = ctx.step_noise(x)
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        x = denoised
        if sigmas[i + 1] > 0:
            x = ctx.model_sampling.noise_scaling(sigmas[i + 1], noise(sigmas[i], sigmas[i + 1]), x)
    return x


# --- DPM-Solver (Lu et al. 2022), fast and adaptive ----------------------------------------

class _DPMSolver:
    """DPM-Solver-1/2/3 steps in t = −log σ, with noise predictions cached per step."""

    def __init__(self, D: Denoiser):
        self.D = D

    @staticmethod
    def t(sigma):
        return -sigma.log()

    @staticmethod
    def sigma(t):
        return t.neg().exp()

    def eps(self, cache, key, x, t):
        if key in cache:
            return cache[key], cache
        sigma = self.sigma(t) * _ones(x)
        eps = (x - self.D(x, sigma)) / self.sigma(t)
        return eps, {key: eps, **cache}

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        return x - self.sigma(t_next) * h.expm1() * eps, cache

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        x_2 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
        return x_2, cache

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - self.sigma(s2) * (r2 * h).expm1() * eps
              - self.sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2, cache = self.eps(cache, "eps_r2", u2, s2)
        x_3 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        return x_3, cache


def _sigma_range(sigmas: torch.Tensor) -> tuple[float, float]:
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    return float(sigma_min), float(sigmas[0])


def dpm_fast(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """DPM-Solver-fast: the step count split into third-order steps evenly spaced in log σ
    between the schedule's ends (the schedule's inner σ are not used)."""
    if len(sigmas) <= 1:
        return x
    sigma_min, sigma_max = _sigma_range(sigmas)
    solver = _DPMSolver(D)
    nfe = len(sigmas) - 1
    t_start, t_end = solver.t(torch.tensor(sigma_max)), solver.t(torch.tensor(sigma_min))
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        cache: dict = {}
        t, t_next = ts[i], ts[i + 1]
        eps, cache = solver.eps(cache, "eps", x, t)
        ctx.on_step(i, x, x - solver.sigma(t) * eps)
        step = {1: solver.step_1, 2: solver.step_2, 3: solver.step_3}[order]
        x, cache = step(x, t, t_next, cache)
    return x


def dpm_adaptive(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, order: int = 3,
                 rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05, accept_safety: float = 0.81
                 ) -> torch.Tensor:
    """DPM-Solver-23 with an integral step-size controller: the step count is ignored, steps
    are taken until the embedded error estimate is small enough."""
    if len(sigmas) <= 1:
        return x
    sigma_min, sigma_max = _sigma_range(sigmas)
    solver = _DPMSolver(D)
    t_start, t_end = solver.t(torch.tensor(sigma_max)), solver.t(torch.tensor(sigma_min))
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    h = h_init
    exponent = 1.0 / order  # integral control only (ComfyUI's defaults: p = d = 0, i = 1)
    s, x_prev, index = t_start, x, 0
    while s < t_end - 1e-5:
        cache: dict = {}
        t = torch.minimum(t_end, s + h)
        eps, cache = solver.eps(cache, "eps", x, s)
        denoised = x - solver.sigma(s) * eps
        if order == 2:
            x_low, cache = solver.step_1(x, s, t, cache)
            x_high, cache = solver.step_2(x, s, t, cache)
        else:
            x_low, cache = solver.step_2(x, s, t, cache, r1=1 / 3)
            x_high, cache = solver.step_3(x, s, t, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        factor = 1 + math.atan((1 / (float(error) + 1e-8)) ** exponent - 1)
        if factor >= accept_safety:
            x_prev, x, s = x_low, x_high, t
        h *= factor
        ctx.on_step(index, x, denoised)
        index += 1
    return x


# --- UniPC (Zhao et al. 2023), in variance-preserving form ---------------------------------

def _vp_log_alpha(sigma):
    return 0.5 * torch.log(1 / ((sigma * sigma) + 1))


def _vp_lambda(sigma):
    log_alpha = _vp_log_alpha(sigma)
    return log_alpha - 0.5 * torch.log(1. - torch.exp(2. * log_alpha))


def _unipc(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, variant: str) -> torch.Tensor:
    """Multistep UniPC with the data-prediction model, predictor and corrector, order 3 with
    lower orders at the start and the end."""
    times = sigmas.clone()
    if times[-1] == 0:
        times[-1] = 0.001  # the VP form cannot reach σ = 0
    steps = len(times) - 1
    order = min(3, len(times) - 2)
    dims = x.dim()

    def data_prediction(x_vp, t):
        # the model sees x at σ; its noise estimate turned back into a VP clean estimate
        sigma = t.view(t.shape[:1] + (1,) * (dims - 1))
        scaled = x_vp * ((sigma ** 2 + 1.0) ** 0.5)
        eps = (scaled - D(scaled, t)) / sigma
        alpha, std = torch.exp(_vp_log_alpha(t)), torch.sqrt(1. - torch.exp(2. * _vp_log_alpha(t)))
        return (x_vp - std.view(sigma.shape) * eps) / alpha.view(sigma.shape)

    def update(x_vp, models, times_prev, t, step_order, use_corrector):
        lambda_prev_0, lambda_t = _vp_lambda(times_prev[-1]), _vp_lambda(t)
        model_prev_0 = models[-1]
        sigma_prev_0 = torch.sqrt(1. - torch.exp(2. * _vp_log_alpha(times_prev[-1])))
        sigma_t = torch.sqrt(1. - torch.exp(2. * _vp_log_alpha(t)))
        alpha_t = torch.exp(_vp_log_alpha(t))
        h = lambda_t - lambda_prev_0
        rks, differences = [], []
        for k in range(1, step_order):
            rk = ((_vp_lambda(times_prev[-(k + 1)]) - lambda_prev_0) / h)[0]
            rks.append(rk)
            differences.append((models[-(k + 1)] - model_prev_0) / rk)
        rks.append(1.)
        rks_t = torch.tensor(rks, device=x_vp.device)
        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial = 1
        B_h = hh if variant == "bh1" else torch.expm1(hh)
        rows, b = [], []
        for k in range(1, step_order + 1):
            rows.append(torch.pow(rks_t, k - 1))
            b.append(h_phi_k * factorial / B_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        R = torch.stack(rows)
        b_t = torch.tensor(b, device=x_vp.device)
        D1s = torch.stack(differences, dim=1) if differences else None
        if D1s is not None:
            rhos_p = (torch.tensor([0.5], device=x_vp.device) if step_order == 2
                      else torch.linalg.solve(R[:-1, :-1], b_t[:-1]))
        if use_corrector:
            rhos_c = torch.tensor([0.5], device=x_vp.device) if step_order == 1 else torch.linalg.solve(R, b_t)
        expand = (...,) + (None,) * (dims - 1)
        base = (sigma_t / sigma_prev_0)[expand] * x_vp - (alpha_t * h_phi_1)[expand] * model_prev_0
        predicted = torch.tensordot(D1s, rhos_p, dims=([1], [0])) if D1s is not None else 0
        x_t = base - (alpha_t * B_h)[expand] * predicted
        model_t = None
        if use_corrector:
            model_t = data_prediction(x_t, t)
            corrected = torch.tensordot(D1s, rhos_c[:-1], dims=([1], [0])) if D1s is not None else 0
            x_t = base - (alpha_t * B_h)[expand] * (corrected + rhos_c[-1] * (model_t - model_prev_0))
        return x_t, model_t

    x = x / torch.sqrt(1.0 + times[0] ** 2.0)
    batch = x.shape[0]
    models: list[torch.Tensor] = []
    times_prev: list[torch.Tensor] = []
    for step_index in range(steps):
        if step_index == 0:
            t = times[0].expand(batch)
            models, times_prev = [data_prediction(x, t)], [t]
        elif step_index < order:
            t = times[step_index].expand(batch)
            x, model_x = update(x, models, times_prev, t, step_index, use_corrector=True)
            models.append(model_x if model_x is not None else data_prediction(x, t))
            times_prev.append(t)
        else:
            final = 1 if step_index == steps - 1 else 0
            for step in range(step_index, step_index + 1 + final):
                t = times[step].expand(batch)
                step_order = min(order, steps + 1 - step)
                x, model_x = update(x, models, times_prev, t, step_order, use_corrector=step != steps)
                for k in range(order - 1):
                    times_prev[k], models[k] = times_prev[k + 1], models[k + 1]
                times_prev[-1] = t
                if step < steps:
                    models[-1] = model_x if model_x is not None else data_prediction(x, t)
        ctx.on_step(step_index, x, models[-1])
    return x / torch.exp(_vp_log_alpha(times[-1]))


def uni_pc(D, x, sigmas, ctx):
    return _unipc(D, x, sigmas, ctx, "bh1")


def uni_pc_bh2(D, x, sigmas, ctx):
    return _unipc(D, x, sigmas, ctx, "bh2")


# --- More second-order and exponential-integrator methods ----------------------------------

def heunpp2(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """Heun++: Heun's step averaged with one more Euler look-ahead, weights by σ/σmax."""
    end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == end:
            x = x + d * dt
        elif sigmas[i + 2] == end:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], D(x_2, sigmas[i + 1] * _ones(x)))
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], D(x_2, sigmas[i + 1] * _ones(x)))
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = to_d(x_3, sigmas[i + 2], D(x_3, sigmas[i + 2] * _ones(x)))
            w2, w3 = sigmas[i + 1] / (3 * sigmas[0]), sigmas[i + 2] / (3 * sigmas[0])
            x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


def ipndm_v(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext,
            max_order: int = 4) -> torch.Tensor:
    """iPNDM with coefficients for variable step sizes (Zhang & Chen's variable-step Adams)."""
    t_steps = sigmas
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = _estimate(D, x, t_cur, i, ctx)
        d = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + (t_next - t_cur) * d
        else:
            h_n, h_n_1 = t_next - t_cur, t_cur - t_steps[i - 1]
            if order == 2:
                c1, c2 = (2 + h_n / h_n_1) / 2, -(h_n / h_n_1) / 2
                x_next = x + h_n * (c1 * d + c2 * history[-1])
            else:
                h_n_2 = t_steps[i - 1] - t_steps[i - 2]
                temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
                if order == 3:
                    c1 = (2 + h_n / h_n_1) / 2 + temp1
                    c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1
                    c3 = temp1 * h_n_1 / h_n_2
                    x_next = x + h_n * (c1 * d + c2 * history[-1] + c3 * history[-2])
                else:
                    h_n_3 = t_steps[i - 2] - t_steps[i - 3]
                    ratio = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3))
                    temp2 = (((1 - h_n / (3 * (h_n + h_n_1))) / 2
                              + (1 - h_n / (2 * (h_n + h_n_1))) * h_n / (6 * (h_n + h_n_1 + h_n_2)))
                             * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2))
                             / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3)))
                    c1 = (2 + h_n / h_n_1) / 2 + temp1 + temp2
                    c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1 - (1 + h_n_1 / h_n_2 + ratio) * temp2
                    c3 = temp1 * h_n_1 / h_n_2 + (h_n_1 / h_n_2 + ratio * (1 + h_n_2 / h_n_3)) * temp2
                    c4 = -temp2 * ratio * h_n_1 / h_n_2
                    x_next = x + h_n * (c1 * d + c2 * history[-1] + c3 * history[-2] + c4 * history[-3])
        if len(history) == max_order - 1:
            history = history[1:] + [d]
        else:
            history.append(d)
        x = x_next
    return x


def dpmpp_2s_ancestral_cfg_pp(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext,
                              eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """dpmpp_2s_ancestral with CFG++ (Chung et al. 2024): the re-noising follows the
    unguided estimate."""
    noise = ctx.step_noise(x)
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        unconditional = _unguided(ctx, denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = denoised + to_d(x, sigmas[i], unconditional) * sigma_down
        else:
            t, t_next = sigmas[i].log().neg(), sigma_down.log().neg()
            h = t_next - t
            s = t + h / 2
            shifted = x + (denoised - unconditional)
            x_2 = (s.neg().exp() / t.neg().exp()) * shifted - (-h * 0.5).expm1() * denoised
            denoised_2 = D(x_2, s.neg().exp() * _ones(x))
            # ComfyUI shifts by the unguided estimate of the latest model call, the midpoint's
            x = (t_next.neg().exp() / t.neg().exp()) * (x + (denoised - _unguided(ctx, denoised_2))) \
                - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def dpmpp_2m_cfg_pp(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """dpmpp_2m with CFG++: each step's noise direction is the unguided estimate's."""
    old_unconditional = None
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        unconditional = _unguided(ctx, denoised)
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        if old_unconditional is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * unconditional
        else:
            r = (t - sigmas[i - 1].log().neg()) / h
            mix = -torch.exp(-h) * unconditional - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_unconditional)
        x = denoised + mix + torch.exp(-h) * x
        old_unconditional = unconditional
    return x


def _gradient_estimation(D, x, sigmas, ctx, cfg_pp: bool, ge_gamma: float = 2.0):
    """Euler with the change of the derivative between steps added (Permenter & Yuan)."""
    old_d = None
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        d = to_d(x, sigmas[i], _unguided(ctx, denoised) if cfg_pp else denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def gradient_estimation(D, x, sigmas, ctx, ge_gamma: float = 2.0):
    return _gradient_estimation(D, x, sigmas, ctx, cfg_pp=False, ge_gamma=ge_gamma)


def gradient_estimation_cfg_pp(D, x, sigmas, ctx, ge_gamma: float = 2.0):
    return _gradient_estimation(D, x, sigmas, ctx, cfg_pp=True, ge_gamma=ge_gamma)


def _unguided(ctx: SamplerContext, denoised: torch.Tensor) -> torch.Tensor:
    unconditional = ctx.unconditional()
    return denoised if unconditional is None else unconditional


def _phi_1(h):
    return torch.expm1(h)


def _phi_2(h):
    return (torch.expm1(h) - h) / h


def seeds_2(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, eta: float = 1.0,
            s_noise: float = 1.0, r: float = 0.5, solver_type: str = "phi_1") -> torch.Tensor:
    """SEEDS-2 (Gonzalez et al. 2023): a stochastic exponential two-stage solver in
    data prediction and log-SNR time; with r = 1 and no noise, the exponential Heun method."""
    noise = ctx.step_noise(x)
    ms = ctx.model_sampling
    sigmas = ms.offset_first_sigma(sigmas)
    inject = eta > 0 and s_noise > 0
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = ms.half_log_snr(sigmas[i]), ms.half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        lambda_s_1 = torch.lerp(lambda_s, lambda_t, r)
        sigma_s_1 = ms.sigma_from_half_log_snr(lambda_s_1)
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        x_2 = sigma_s_1 / sigmas[i] * (-r * h * eta).exp() * x - alpha_s_1 * _phi_1(-r * h_eta) * denoised
        if inject:
            sde_noise = (-2 * r * h * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_s_1)
            x_2 = x_2 + sde_noise * sigma_s_1 * s_noise
        denoised_2 = D(x_2, sigma_s_1 * _ones(x))
        if solver_type == "phi_1":
            mixed = torch.lerp(denoised, denoised_2, fac)
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * _phi_1(-h_eta) * mixed
        else:
            b2 = _phi_2(-h_eta) / r
            b1 = _phi_1(-h_eta) - b2
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b2 * denoised_2)
        if inject:
            segment = (r - 1) * h * eta
            sde_noise = (sde_noise * segment.exp()
                         + segment.mul(2).expm1().neg().sqrt() * noise(sigma_s_1, sigmas[i + 1]))
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


def exp_heun_2_x0(D, x, sigmas, ctx):
    return seeds_2(D, x, sigmas, ctx, eta=0.0, s_noise=0.0, r=1.0, solver_type="phi_2")


def exp_heun_2_x0_sde(D, x, sigmas, ctx, eta: float = 1.0, s_noise: float = 1.0):
    return seeds_2(D, x, sigmas, ctx, eta=eta, s_noise=s_noise, r=1.0, solver_type="phi_2")


def seeds_3(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, eta: float = 1.0,
            s_noise: float = 1.0, r_1: float = 1. / 3, r_2: float = 2. / 3) -> torch.Tensor:
    """SEEDS-3: the three-stage stochastic exponential solver."""
    noise = ctx.step_noise(x)
    ms = ctx.model_sampling
    sigmas = ms.offset_first_sigma(sigmas)
    inject = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x, sigmas[i], i, ctx)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = ms.half_log_snr(sigmas[i]), ms.half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        lambda_s_1, lambda_s_2 = torch.lerp(lambda_s, lambda_t, r_1), torch.lerp(lambda_s, lambda_t, r_2)
        sigma_s_1, sigma_s_2 = ms.sigma_from_half_log_snr(lambda_s_1), ms.sigma_from_half_log_snr(lambda_s_2)
        alpha_s_1, alpha_s_2 = sigma_s_1 * lambda_s_1.exp(), sigma_s_2 * lambda_s_2.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        x_2 = sigma_s_1 / sigmas[i] * (-r_1 * h * eta).exp() * x - alpha_s_1 * _phi_1(-r_1 * h_eta) * denoised
        if inject:
            sde_noise = (-2 * r_1 * h * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_s_1)
            x_2 = x_2 + sde_noise * sigma_s_1 * s_noise
        denoised_2 = D(x_2, sigma_s_1 * _ones(x))
        a3_2 = r_2 / r_1 * _phi_2(-r_2 * h_eta)
        a3_1 = _phi_1(-r_2 * h_eta) - a3_2
        x_3 = sigma_s_2 / sigmas[i] * (-r_2 * h * eta).exp() * x - alpha_s_2 * (a3_1 * denoised + a3_2 * denoised_2)
        if inject:
            segment = (r_1 - r_2) * h * eta
            sde_noise = sde_noise * segment.exp() + segment.mul(2).expm1().neg().sqrt() * noise(sigma_s_1, sigma_s_2)
            x_3 = x_3 + sde_noise * sigma_s_2 * s_noise
        denoised_3 = D(x_3, sigma_s_2 * _ones(x))
        b3 = _phi_2(-h_eta) / r_2
        b1 = _phi_1(-h_eta) - b3
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_3)
        if inject:
            segment = (r_2 - 1) * h * eta
            sde_noise = (sde_noise * segment.exp()
                         + segment.mul(2).expm1().neg().sqrt() * noise(sigma_s_2, sigmas[i + 1]))
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


def _deis_coefficients(sigmas: torch.Tensor, max_order: int, points: int = 10000) -> list[list[torch.Tensor]]:
    """DEIS's "tab" coefficients: σ mapped to the time of a VP SDE (EDM's range, 0.002…80,
    ε = 0.001), then each step's exponential integral of the Lagrange polynomials through the
    last ``order`` times, summed on ``points`` samples (Zhang & Chen 2023)."""
    eps_s, sigma_min, sigma_max = 1e-3, 0.002, 80
    beta_d = 2 * (torch.log(torch.tensor(sigma_min) ** 2 + 1) / eps_s - torch.log(torch.tensor(sigma_max) ** 2 + 1)) \
        / (eps_s - 1)
    beta_min = torch.log(torch.tensor(sigma_max) ** 2 + 1) - 0.5 * beta_d
    times = ((beta_min ** 2 + 2 * beta_d * (sigmas.detach().cpu() ** 2 + 1).log()).sqrt() - beta_min) / beta_d
    beta_0, beta_1 = beta_min, beta_d + beta_min
    coefficients: list[list[torch.Tensor]] = []
    for i, (t_cur, t_next) in enumerate(zip(times[:-1], times[1:], strict=True)):
        order = min(i + 1, max_order)
        if order == 1:
            coefficients.append([])
            continue
        taus = torch.linspace(t_cur, t_next, points)
        dtau = (t_next - t_cur) / points
        alpha = torch.exp(-0.5 * taus ** 2 * (beta_1 - beta_0) - taus * beta_0)
        d_log_alpha = -(taus * (beta_1 - beta_0)) - beta_0
        integrand = -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))
        previous = times[[i - k for k in range(order)]]
        row = []
        for j in range(order):
            basis = 1
            for k in range(order):
                if k != j:
                    basis = basis * (taus - previous[k]) / (previous[j] - previous[k])
            row.append(torch.sum(integrand * basis) * dtau)
        coefficients.append(row)
    return coefficients


def deis(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, max_order: int = 3) -> torch.Tensor:
    """Diffusion exponential integrator sampler, multistep up to third order."""
    coefficients = _deis_coefficients(sigmas, max_order)
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = _estimate(D, x, t_cur, i, ctx)
        d = (x - denoised) / t_cur
        order = 1 if t_next <= 0 else min(max_order, i + 1)
        if order == 1:
            x_next = x + (t_next - t_cur) * d
        else:
            row = coefficients[i]
            x_next = x + row[0] * d + sum(row[k] * history[-k] for k in range(1, order))
        if len(history) == max_order - 1:
            history = history[1:] + [d]
        else:
            history.append(d)
        x = x_next
    return x


def _stochastic_adams_coefficients(sigma_next: torch.Tensor, lambdas: torch.Tensor, lambda_s: torch.Tensor,
                                   lambda_t: torch.Tensor, tau: float) -> torch.Tensor:
    """SA-Solver's b_i (Xue et al. 2023, eqs. 15 and 18): the integrals over [λ_s, λ_t] of
    e^{(1+τ²)(λ−λ_t)} times each Lagrange polynomial through ``lambdas``, times α_t."""
    order = lambdas.shape[0]
    c = 1 + tau ** 2
    h = lambda_t - lambda_s
    # J_p = (1+τ²)·∫ e^{(1+τ²)x} x^p dx / e^{(1+τ²)t}. Integrating by parts p times gives
    # J_p = Σ_{q≤p} (−1)^{p−q} (p!/q!) c^{−(p−q)} T_q with T_q = t^q − s^q e^{−c·h}, evaluated as
    # one matrix product (as ComfyUI does: these systems are ill-conditioned when the λ are
    # close, so the order of the arithmetic shows in the result).
    p = torch.arange(order, dtype=lambda_s.dtype)
    terms = lambda_t ** p - lambda_s ** p * (-c * h).exp()
    depth = p.unsqueeze(1) - p.unsqueeze(0)
    log_factorial = (p + 1).lgamma()
    log_weights = log_factorial.unsqueeze(1) - log_factorial.unsqueeze(0)
    if tau > 0:
        log_weights = log_weights - depth * math.log(c)
    signs = torch.where(depth % 2 == 0, 1.0, -1.0)
    moments = (log_weights.exp() * signs).tril() @ terms
    vandermonde = torch.vander(lambdas, order, increasing=True).T
    integrals = torch.linalg.solve(vandermonde, moments)
    return sigma_next * lambda_t.exp() * integrals


def _sa_solver(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, predictor_order: int = 3,
               corrector_order: int = 4, use_pece: bool = False, s_noise: float = 1.0, eta: float = 1.0
               ) -> torch.Tensor:
    """Stochastic Adams predictor-corrector; noise is injected (τ = η) only between 20% and
    80% of the schedule."""
    if len(sigmas) <= 1:
        return x
    noise_source = ctx.step_noise(x)
    ms = ctx.model_sampling
    sigmas = ms.offset_first_sigma(sigmas)
    lambdas = ms.half_log_snr(sigmas)
    start_sigma, end_sigma = ms.percent_to_sigma(0.2), ms.percent_to_sigma(0.8)

    def tau_at(sigma: torch.Tensor) -> float:
        return eta if eta > 0 and start_sigma >= float(sigma) >= end_sigma else 0.0

    max_order = max(predictor_order, corrector_order)
    x_pred = x
    h: Any = 0.0
    tau = 0.0
    noise: Any = 0.0
    predictions: list[torch.Tensor] = []
    lower_to_end = float(sigmas[-1]) == 0
    for i in range(len(sigmas) - 1):
        denoised = _estimate(D, x_pred, sigmas[i], i, ctx)
        predictions = (predictions + [denoised])[-max_order:]
        p_order = min(predictor_order, len(predictions))
        c_order = 0 if i == 0 or (sigmas[i + 1] == 0 and not use_pece) else min(corrector_order, len(predictions))
        if lower_to_end:
            p_order = min(p_order, len(sigmas) - 2 - i)
            c_order = min(c_order, len(sigmas) - 1 - i)
        if c_order == 0:
            x = x_pred
        else:
            b = _stochastic_adams_coefficients(sigmas[i], lambdas[i - c_order + 1:i + 1], lambdas[i - 1], lambdas[i],
                                               tau)
            stacked = torch.stack(predictions[-c_order:], dim=1)
            x = sigmas[i] / sigmas[i - 1] * (-(tau ** 2) * h).exp() * x + torch.tensordot(stacked, b, dims=([1], [0]))
            if tau > 0 and s_noise > 0:
                x = x + noise
            if use_pece:
                denoised = D(x, sigmas[i] * _ones(x))
                predictions[-1] = denoised
        if sigmas[i + 1] == 0:
            x_pred = denoised
        else:
            tau = tau_at(sigmas[i + 1])
            b = _stochastic_adams_coefficients(sigmas[i + 1], lambdas[i - p_order + 1:i + 1], lambdas[i],
                                               lambdas[i + 1], tau)
            stacked = torch.stack(predictions[-p_order:], dim=1)
            h = lambdas[i + 1] - lambdas[i]
            x_pred = (sigmas[i + 1] / sigmas[i] * (-(tau ** 2) * h).exp() * x
                      + torch.tensordot(stacked, b, dims=([1], [0])))
            if tau > 0 and s_noise > 0:
                noise = (noise_source(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * tau ** 2 * h).expm1().neg().sqrt() * s_noise)
                x_pred = x_pred + noise
    return x_pred


def sa_solver(D, x, sigmas, ctx):
    return _sa_solver(D, x, sigmas, ctx)


def sa_solver_pece(D, x, sigmas, ctx):
    return _sa_solver(D, x, sigmas, ctx, use_pece=True)


@dataclass(frozen=True)
class SamplerSpec:
    """A named sampler: its algorithm, and how KSampler prepares for it."""

    function: SamplerFunction
    # Take one more step and drop the last σ before 0 (DPM-2 and UniPC end badly on it).
    discard_penultimate_sigma: bool = False
    # Inpainting keeps the unmasked area on its own (seed + 1) noise rather than the initial.
    inpaint_random_noise: bool = False
    stochastic: bool = False
    # CFG++: the algorithm also reads the unguided estimate, so it is computed even at cfg 1.
    cfg_pp: bool = False
    # False for an algorithm whose steps depend on the whole batch (dpm_adaptive chooses its
    # step sizes from the error over every latent): its jobs are never sampled as one batch.
    seed_batchable: bool = True


# ComfyUI's sampler names, in its order (the first is the default). The `_gpu` variants differ
# there only in building the Brownian tree on the GPU; here the tree is always on the CPU.
SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec(euler),
    "euler_cfg_pp": SamplerSpec(euler_cfg_pp, cfg_pp=True),
    "euler_ancestral": SamplerSpec(euler_ancestral, stochastic=True),
    "euler_ancestral_cfg_pp": SamplerSpec(euler_ancestral_cfg_pp, stochastic=True, cfg_pp=True),
    "heun": SamplerSpec(heun),
    "heunpp2": SamplerSpec(heunpp2),
    "exp_heun_2_x0": SamplerSpec(exp_heun_2_x0),
    "exp_heun_2_x0_sde": SamplerSpec(exp_heun_2_x0_sde, stochastic=True),
    "dpm_2": SamplerSpec(dpm_2, discard_penultimate_sigma=True),
    "dpm_2_ancestral": SamplerSpec(dpm_2_ancestral, discard_penultimate_sigma=True, stochastic=True),
    "lms": SamplerSpec(lms),
    "dpm_fast": SamplerSpec(dpm_fast),
    "dpm_adaptive": SamplerSpec(dpm_adaptive, seed_batchable=False),
    "dpmpp_2s_ancestral": SamplerSpec(dpmpp_2s_ancestral, stochastic=True),
    "dpmpp_2s_ancestral_cfg_pp": SamplerSpec(dpmpp_2s_ancestral_cfg_pp, stochastic=True, cfg_pp=True),
    "dpmpp_sde": SamplerSpec(dpmpp_sde, stochastic=True),
    "dpmpp_sde_gpu": SamplerSpec(dpmpp_sde, stochastic=True),
    "dpmpp_2m": SamplerSpec(dpmpp_2m),
    "dpmpp_2m_cfg_pp": SamplerSpec(dpmpp_2m_cfg_pp, cfg_pp=True),
    "dpmpp_2m_sde": SamplerSpec(dpmpp_2m_sde, stochastic=True),
    "dpmpp_2m_sde_gpu": SamplerSpec(dpmpp_2m_sde, stochastic=True),
    "dpmpp_2m_sde_heun": SamplerSpec(dpmpp_2m_sde_heun, stochastic=True),
    "dpmpp_2m_sde_heun_gpu": SamplerSpec(dpmpp_2m_sde_heun, stochastic=True),
    "dpmpp_3m_sde": SamplerSpec(dpmpp_3m_sde, stochastic=True),
    "dpmpp_3m_sde_gpu": SamplerSpec(dpmpp_3m_sde, stochastic=True),
    "ddpm": SamplerSpec(ddpm, stochastic=True),
    "lcm": SamplerSpec(lcm, stochastic=True),
    "ipndm": SamplerSpec(ipndm),
    "ipndm_v": SamplerSpec(ipndm_v),
    "deis": SamplerSpec(deis),
    "res_multistep": SamplerSpec(res_multistep),
    "res_multistep_cfg_pp": SamplerSpec(res_multistep_cfg_pp, cfg_pp=True),
    "res_multistep_ancestral": SamplerSpec(res_multistep_ancestral, stochastic=True),
    "res_multistep_ancestral_cfg_pp": SamplerSpec(res_multistep_ancestral_cfg_pp, stochastic=True, cfg_pp=True),
    "gradient_estimation": SamplerSpec(gradient_estimation),
    "gradient_estimation_cfg_pp": SamplerSpec(gradient_estimation_cfg_pp, cfg_pp=True),
    "er_sde": SamplerSpec(er_sde, stochastic=True),
    "seeds_2": SamplerSpec(seeds_2, stochastic=True),
    "seeds_3": SamplerSpec(seeds_3, stochastic=True),
    "sa_solver": SamplerSpec(sa_solver, stochastic=True),
    "sa_solver_pece": SamplerSpec(sa_solver_pece, stochastic=True),
    "ddim": SamplerSpec(euler, inpaint_random_noise=True),
    "uni_pc": SamplerSpec(uni_pc, discard_penultimate_sigma=True),
    "uni_pc_bh2": SamplerSpec(uni_pc_bh2, discard_penultimate_sigma=True),
}
