"""Seed batches: jobs that differ only in their seed, sampled as one latent batch, give each
job the picture it gives alone — for every sampler, with their initial and per-step noise."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from studio.runtime.samplers import SAMPLERS
from studio.runtime.sampling import SamplingJob, sample, sample_seed_batch, seed_batch_size, seed_batchable
from studio.runtime.seed_batches import SeedBatcher

SEEDS = (11, 5, 11 + 2 ** 40)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from studio.runtime.checkpoints import load_diffusers_folder
    from studio.runtime.device import DevicePolicy
    from tests.tiny_models import build_sd15

    folder = build_sd15(tmp_path_factory.mktemp("sd15") / "tiny")
    return load_diffusers_folder(folder, DevicePolicy(torch.device("cpu"), torch.float32), "tiny")


def _job(sampler, seed=0, latent=None, **changes):
    torch.manual_seed(0)
    values = dict(positive=[(torch.randn(1, 77, 32), {})], negative=[(torch.randn(1, 77, 32), {})],
                  latent=latent or {"samples": torch.zeros(1, 4, 8, 8)}, seed=seed, steps=4, cfg=5.0,
                  sampler=sampler, scheduler="karras")
    values.update(changes)
    return SamplingJob(**values)


def _pixels(checkpoint, latent):
    vae = checkpoint.vae.vae
    with torch.no_grad():
        image = vae.decode(latent["samples"] * checkpoint.vae.scaling_factor, return_dict=False)[0]
    return ((image + 1) / 2).clamp(0, 1)


def _assert_batched_equals_alone(checkpoint, job, seeds=SEEDS):
    model = checkpoint.model
    batched = sample_seed_batch(model, job, seeds, lambda *a: None)
    assert len(batched) == len(seeds)
    for seed, result in zip(seeds, batched, strict=True):
        alone = sample(model, SamplingJob(**{**job.__dict__, "seed": seed}), lambda *a: None)
        assert result["samples"].shape == alone["samples"].shape
        # the tiny random model's latents run to hundreds: float rounding of a batched UNet
        # call, relative to their size
        scale = max(1.0, float(alone["samples"].abs().max()))
        assert (result["samples"] - alone["samples"]).abs().max() < 1e-5 * scale, seed
        assert (_pixels(checkpoint, result) - _pixels(checkpoint, alone)).abs().max() < 1e-4, seed
    # and the seeds really gave different pictures
    assert (batched[0]["samples"] - batched[1]["samples"]).abs().max() > 1e-3


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_gives_each_seed_of_a_batch_its_picture_alone(tiny, sampler):
    job = _job(sampler)
    if not seed_batchable(tiny.model, job):
        assert sampler == "dpm_adaptive"  # its step sizes follow the whole batch's error
        return
    _assert_batched_equals_alone(tiny, job)


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde", "ddim"])
def test_jobs_of_several_latents_inpainting_and_img2img_batch_too(tiny, sampler):
    original = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0
    _assert_batched_equals_alone(tiny, _job(sampler, latent={"samples": original, "noise_mask": mask},
                                            denoise=0.7), seeds=(3, 4))
    _assert_batched_equals_alone(tiny, _job(sampler, latent={"samples": original, "batch_index": [4, 2]}),
                                 seeds=(3, 4))


def test_advanced_steps_without_added_noise_batch_on_their_step_noise(tiny):
    job = _job("euler_ancestral", latent={"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator()
                                                                 .manual_seed(1))},
               add_noise=False, start_step=1, end_step=3, leftover_noise=True)
    _assert_batched_equals_alone(tiny, job, seeds=(1, 2))


def test_what_reads_the_whole_batch_is_sampled_alone(tiny):
    model = tiny.model
    assert not seed_batchable(model, _job("dpm_adaptive"))
    assert not seed_batchable(model, _job("euler", positive=[(torch.randn(2, 77, 32), {})]))
    assert not seed_batchable(model, _job("euler", positive=[(torch.randn(1, 77, 32), {"control": object()})]))
    # unCLIP draws its image embedding's noise from the seed, once per call
    assert not seed_batchable(replace(model, family="sd2_unclip"), _job("euler"))
    assert seed_batchable(model, _job("euler"))


def test_the_batch_size_follows_free_memory(tiny, monkeypatch):
    from studio.runtime import sampling

    monkeypatch.setattr(sampling, "free_memory_bytes", lambda device: 64 << 30)
    assert seed_batch_size(tiny.model, (1, 4, 8, 8)) == 16
    monkeypatch.setattr(sampling, "free_memory_bytes", lambda device: 1 << 20)
    assert seed_batch_size(tiny.model, (1, 4, 8, 8)) == 1
    monkeypatch.setattr(sampling, "free_memory_bytes", lambda device: 64 << 30)
    assert 1 <= seed_batch_size(tiny.model, (1, 4, 128, 128)) < 16


def test_the_batcher_samples_coming_seeds_once_and_serves_them_in_turn():
    batcher = SeedBatcher(size=3)
    drawn = []

    def sample_many(seeds):
        drawn.append(tuple(seeds))
        return [f"latent {seed}" for seed in seeds]

    model, latent = object(), object()
    signature = ((model, latent), (20, "euler"))
    seeds = [7, 8, 9, 10]
    results = []
    for index, seed in enumerate(seeds):
        batcher.expect({"4": seeds[index:]})
        results.append(batcher.sample("4", seed, signature, sample_many))
    assert results == [f"latent {seed}" for seed in seeds]
    assert drawn == [(7, 8, 9), (10,)]
    assert batcher.served == 2


def test_held_latents_are_not_served_when_anything_else_changed():
    batcher = SeedBatcher()
    sample_many = lambda seeds: [(seed, len(seeds)) for seed in seeds]  # noqa: E731
    first = ((object(),), (20,))
    batcher.expect({"4": [1, 2]})
    assert batcher.sample("4", 1, first, sample_many, auto_size=lambda: 4) == (1, 2)
    batcher.expect({"4": [2, 3, 4]})
    # another model object (the checkpoint was reloaded): sampled again, and alone for the rest
    # of this seed batch rather than ahead once more at every job
    second = ((object(),), (20,))
    assert batcher.sample("4", 2, second, sample_many, auto_size=lambda: 4) == (2, 1)
    batcher.expect({"4": [3, 4]})
    assert batcher.sample("4", 3, second, sample_many, auto_size=lambda: 4) == (3, 1)
    batcher.expect({"4": [7, 8]})  # the next seed batch samples ahead again
    assert batcher.sample("4", 7, second, sample_many, auto_size=lambda: 4) == (7, 2)
    off = SeedBatcher(size=1)
    off.expect({"4": [1, 2]})
    assert off.sample("4", 1, first, sample_many) == (1, 1)


@pytest.fixture(scope="module", params=["flux", "sd3"])
def transformer_model(request):
    """A tiny FLUX.1-dev or SD3.5 transformer as the MODEL socket carries it, with prompts of its
    widths (T5 states, and the pooled CLIP prompt; FLUX's distilled guidance)."""
    from studio.runtime.flux import flux_model
    from studio.runtime.sd3 import sd3_model
    from tests.flux_models import CLIP_WIDTH, SD3_G_WIDTH, SD3_T5_WIDTH, T5_WIDTH, tiny_flux, tiny_sd3

    torch.manual_seed(3)
    if request.param == "flux":
        model = flux_model(tiny_flux(dev=True, seed=0), "tiny-flux")
        states, pooled, extras = T5_WIDTH, CLIP_WIDTH, {"guidance": 3.5}
    else:
        model = sd3_model(tiny_sd3(seed=0), "tiny-sd3")
        states, pooled, extras = SD3_T5_WIDTH, CLIP_WIDTH + SD3_G_WIDTH, {}

    def prompt():
        return [(torch.randn(1, 6, states), {"pooled_output": torch.randn(1, pooled), **extras})]

    return model, prompt(), prompt()


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_sde"])
def test_flux_and_sd3_give_each_seed_of_a_batch_its_picture_alone(transformer_model, sampler):
    model, positive, negative = transformer_model
    job = SamplingJob(positive, negative, {"samples": torch.zeros(1, 16, 8, 8)}, 0, 4, 2.0, sampler, "simple")
    assert seed_batchable(model, job)
    batched = sample_seed_batch(model, job, SEEDS, lambda *a: None)
    for seed, result in zip(SEEDS, batched, strict=True):
        alone = sample(model, replace(job, seed=seed), lambda *a: None)["samples"]
        scale = max(1.0, float(alone.abs().max()))
        assert (result["samples"] - alone).abs().max() < 1e-5 * scale, seed
    assert (batched[0]["samples"] - batched[1]["samples"]).abs().max() > 1e-3


def test_a_transformer_batch_is_sized_by_its_tokens_and_width(monkeypatch):
    """FLUX.1's real size (24 heads of 128, bf16) at 1024² (128² latent cells, 4,096 tokens):
    a few GB a row, so a GPU with 100 GB free takes about a dozen jobs a call, one with 8 GB
    one; and twice the side costs more than twice as much per job."""
    from types import SimpleNamespace

    from studio.runtime import sampling

    config = SimpleNamespace(num_attention_heads=24, attention_head_dim=128)
    flux = SimpleNamespace(family="flux", unet=SimpleNamespace(config=config, dtype=torch.bfloat16,
                                                               device=torch.device("cpu")))
    monkeypatch.setattr(sampling, "free_memory_bytes", lambda device: 100 << 30)
    many = seed_batch_size(flux, (1, 16, 128, 128))
    assert 6 <= many <= 16
    assert seed_batch_size(flux, (1, 16, 256, 256)) < many / 2
    monkeypatch.setattr(sampling, "free_memory_bytes", lambda device: 8 << 30)
    assert seed_batch_size(flux, (1, 16, 128, 128)) == 1
