"""The sampler core on its own: σ schedules, the algorithms, seeding, KSampler's σ lists,
inpainting, on the tiny SD 1.5 model and on denoisers whose answer is known."""

from __future__ import annotations

import pytest
import torch

from studio.runtime.samplers import SAMPLERS, SamplerContext, step_noise_sampler
from studio.runtime.sampling import SamplingJob, initial_noise, ksampler_sigmas, sample, step_range
from studio.runtime.schedules import SCHEDULERS, DiscreteModelSampling, FlowModelSampling, Prediction, scheduler_sigmas

SD = DiscreteModelSampling()


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("steps", [1, 2, 8, 30])
def test_every_schedule_descends_from_the_top_to_zero(scheduler, steps):
    sigmas = scheduler_sigmas(SD, scheduler, steps)
    assert sigmas[-1] == 0
    assert (sigmas[:-1] > 0).all()
    assert (sigmas[1:] < sigmas[:-1]).all()
    assert float(sigmas[0]) <= float(SD.sigma_max) * (1 + 1e-6)
    # beta drops repeated timesteps, so it may be shorter; ddim_uniform takes every
    # (1000 // steps)-th timestep, which can be more than asked (ComfyUI's quirk, kept)
    if scheduler == "beta":
        assert len(sigmas) <= steps + 1
    elif scheduler == "ddim_uniform":
        assert len(sigmas) == len(range(1, 1000, 1000 // steps)) + 1
    else:
        assert len(sigmas) == steps + 1


def test_the_model_grid_is_sd_s():
    # SD's published σ range for its scaled-linear betas (0.00085 … 0.012, 1000 steps).
    assert float(SD.sigma_min) == pytest.approx(0.0292, abs=1e-4)
    assert float(SD.sigma_max) == pytest.approx(14.6146, abs=1e-4)
    assert int(SD.timestep(SD.sigmas[500])) == 500
    assert float(SD.sigma(torch.tensor(500.0))) == pytest.approx(float(SD.sigmas[500]), rel=1e-6)


def test_percent_and_sigma_are_inverse():
    for percent in (0.1, 0.25, 0.5, 0.9):
        assert SD.sigma_to_percent(SD.percent_to_sigma(percent)) == pytest.approx(percent, abs=1e-4)
    flow = FlowModelSampling(shift=3.0)
    for percent in (0.1, 0.5, 0.9):
        assert flow.sigma_to_percent(flow.percent_to_sigma(percent)) == pytest.approx(percent, abs=1e-6)


def test_ksampler_sigmas_follow_denoise_and_the_samplers_that_drop_a_step():
    full = ksampler_sigmas(SD, "euler", "karras", 10)
    assert len(full) == 11
    partial = ksampler_sigmas(SD, "euler", "karras", 5, denoise=0.5)
    assert len(partial) == 6 and torch.equal(partial, full[-6:])
    dropped = ksampler_sigmas(SD, "dpm_2", "karras", 10)
    eleven = scheduler_sigmas(SD, "karras", 11)
    assert len(dropped) == 11 and torch.equal(dropped, torch.cat([eleven[:-2], eleven[-1:]]))
    assert len(ksampler_sigmas(SD, "euler", "normal", 4, denoise=0.0)) == 0


def test_a_step_range_slices_and_finishes_at_zero_unless_noise_is_handed_on():
    sigmas = ksampler_sigmas(SD, "euler", "normal", 10)
    first_half = step_range(sigmas, 0, 5, force_full_denoise=False)
    assert len(first_half) == 6 and first_half[-1] == sigmas[5]
    assert step_range(sigmas, 0, 5, force_full_denoise=True)[-1] == 0
    assert torch.equal(step_range(sigmas, 5, 10000, force_full_denoise=True), sigmas[5:])
    assert step_range(sigmas, 10, 10000, force_full_denoise=True) is None


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("ms", [SD, FlowModelSampling(shift=3.0)], ids=["eps", "flow"])
def test_every_sampler_lands_on_the_answer_of_a_perfect_denoiser(name, ms):
    """A denoiser that always knows the clean latent: every algorithm must end on it (up to
    the small σ that DPM-Solver-fast/adaptive and UniPC stop at)."""
    if isinstance(ms, FlowModelSampling) and name == "dpmpp_2s_ancestral":
        pytest.skip("not yet for flow models")
    if isinstance(ms, FlowModelSampling) and name in ("dpm_fast", "dpm_adaptive", "ddpm", "uni_pc", "uni_pc_bh2",
                                                      "lcm", "euler_cfg_pp", "euler_ancestral_cfg_pp"):
        pytest.skip("ComfyUI runs these in the ε parameterisation only")
    clean = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigmas = ksampler_sigmas(ms, name, "karras" if isinstance(ms, DiscreteModelSampling) else "simple", 12)
    x = ms.noise_scaling(sigmas[0], noise, torch.zeros_like(clean), max_denoise=True)
    steps = []
    context = SamplerContext(ms, seed=3, on_step=lambda index, x, denoised: steps.append(index),
                             unconditional=lambda: clean)
    out = SAMPLERS[name].function(lambda x, sigma: clean.clone(), x, sigmas, context)
    out = ms.inverse_noise_scaling(sigmas[-1], out)
    tolerance = 0.2 if name in ("dpm_fast", "dpm_adaptive") else 0.02 if name.startswith("uni_pc") else 1e-4
    assert (out - clean).abs().max() < tolerance
    assert steps, "the sampler reported no step"


def test_step_noise_is_seed_plus_one_on_the_cpu_generator():
    x = torch.zeros(1, 4, 8, 8)
    draw = step_noise_sampler(x, seed=7)
    expected = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(draw(torch.tensor(1.0), torch.tensor(0.5)), expected)


def test_initial_noise_of_a_batch_entry_is_that_entrys_noise_in_the_whole_batch():
    whole = initial_noise((4, 4, 8, 8), seed=5)
    assert torch.equal(initial_noise((2, 4, 8, 8), seed=5, batch_index=[3, 1]), whole[[3, 1]])


def test_v_prediction_turns_output_into_the_clean_estimate():
    v_model = DiscreteModelSampling(prediction=Prediction.V)
    clean, noise = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    sigma = torch.tensor(2.0)
    x = clean + sigma * noise
    # v = α·ε − σ_vp·x₀ in the variance-preserving frame, with α = 1/√(1+σ²), σ_vp = σ·α
    alpha = 1 / (1 + sigma ** 2) ** 0.5
    v = alpha * noise - sigma * alpha * clean
    assert torch.allclose(v_model.denoised(sigma, v, x), clean, atol=1e-5)


# --- On the tiny SD 1.5 model ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from studio.runtime.checkpoints import load_diffusers_folder
    from studio.runtime.device import DevicePolicy
    from tests.tiny_models import build_sd15

    folder = build_sd15(tmp_path_factory.mktemp("sd15") / "tiny")
    return load_diffusers_folder(folder, DevicePolicy(torch.device("cpu"), torch.float32), "tiny")


def _job(model, sampler, seed, latent=None, **changes):
    torch.manual_seed(0)
    positive = [(torch.randn(1, 77, 32), {})]
    negative = [(torch.randn(1, 77, 32), {})]
    latent = latent or {"samples": torch.zeros(1, 4, 8, 8)}
    values = dict(positive=positive, negative=negative, latent=latent, seed=seed, steps=4, cfg=5.0,
                  sampler=sampler, scheduler="karras")
    values.update(changes)
    return SamplingJob(**values)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_same_seed_same_latent_for_every_sampler(tiny_model, sampler):
    """Including the SDE samplers, whose noise diffusers drew from an unseeded generator."""
    model = tiny_model.model
    first = sample(model, _job(model, sampler, 11), lambda *a: None)["samples"]
    again = sample(model, _job(model, sampler, 11), lambda *a: None)["samples"]
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    if SAMPLERS[sampler].stochastic:
        # with the same starting noise, another seed still changes the per-step noise
        other = sample(model, _job(model, sampler, 12), lambda *a: None)["samples"]
        assert (other - first).abs().max() > 1e-4


def test_inpainting_keeps_the_unmasked_area(tiny_model):
    model = tiny_model.model
    original = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0  # change the left half only
    latent = {"samples": original, "noise_mask": mask}
    out = sample(model, _job(model, "euler", 3, latent=latent), lambda *a: None)["samples"]
    assert torch.allclose(out[..., 4:], original[..., 4:], atol=1e-5)
    assert (out[..., :4] - original[..., :4]).abs().mean() > 0.1


def test_progress_reports_every_step_with_a_preview(tiny_model):
    model = tiny_model.model
    seen = []
    sample(model, _job(model, "heun", 1, steps=5), lambda done, total, preview: seen.append((done, total,
                                                                                             preview.shape)))
    assert [done for done, _, _ in seen] == [1, 2, 3, 4, 5]
    assert all(total == 5 and shape == (1, 8, 8, 3) for _, total, shape in seen)
