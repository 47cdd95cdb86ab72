"""Custom sampling nodes on the tiny SD 1.5 model: the parts put together give KSampler's
picture, and each part does what its name says."""

from __future__ import annotations

import pytest
import torch

from studio.engine import Engine
from studio.graph import Workflow
from studio.runtime.device import DevicePolicy
from studio.runtime.services import create_services

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


@pytest.fixture
def engine(registry, model_settings):
    return Engine(registry, model_settings, services=create_services(model_settings, CPU))


class Graph:
    """A workflow built by name, with the tiny model, two prompts and an empty latent."""

    def __init__(self):
        self.workflow = Workflow()
        self.ids: dict[str, str] = {}
        self.add("loader", "CheckpointLoaderSimple", ckpt_name="tiny-sd15")
        self.add("positive", "CLIPTextEncode", text="a red circle")
        self.add("negative", "CLIPTextEncode", text="blurry")
        self.add("latent", "EmptyLatentImage", width=64, height=64, batch_size=1)
        self.wire("loader.CLIP", "positive.clip")
        self.wire("loader.CLIP", "negative.clip")

    def add(self, name, type_name, **values):
        self.ids[name] = self.workflow.add_node(type_name, values).id

    def wire(self, source, target):
        (node, output), (other, input_name) = source.split("."), target.split(".")
        self.workflow.connect(self.ids[node], output, self.ids[other], input_name)

    def latent(self, engine, name, output=0):
        report = engine.run(self.workflow, [self.ids[name]])
        assert report.ok, report.problems or [e.traceback for e in report.errors]
        return report.results[self.ids[name]][output]["samples"]


def ksampler(engine, sampler="euler", scheduler="karras", steps=6, seed=7, cfg=6.0):
    graph = Graph()
    graph.add("sampler", "KSampler", seed=seed, steps=steps, cfg=cfg, sampler_name=sampler, scheduler=scheduler,
              denoise=1.0)
    for source, target in [("loader.MODEL", "sampler.model"), ("positive.CONDITIONING", "sampler.positive"),
                           ("negative.CONDITIONING", "sampler.negative"), ("latent.LATENT", "sampler.latent_image")]:
        graph.wire(source, target)
    return graph.latent(engine, "sampler")


def custom_advanced(graph, sampler_node, sigmas_source, noise_node, name="custom", latent="latent.LATENT",
                    guider="guider.GUIDER"):
    graph.add(name, "SamplerCustomAdvanced")
    graph.wire(f"{noise_node}.NOISE", f"{name}.noise")
    graph.wire(guider, f"{name}.guider")
    graph.wire(f"{sampler_node}.SAMPLER", f"{name}.sampler")
    graph.wire(sigmas_source, f"{name}.sigmas")
    graph.wire(latent, f"{name}.latent_image")


def parts(graph, sampler="euler", scheduler="karras", steps=6, seed=7, cfg=6.0):
    graph.add("select", "KSamplerSelect", sampler_name=sampler)
    graph.add("schedule", "BasicScheduler", scheduler=scheduler, steps=steps, denoise=1.0)
    graph.add("noise", "RandomNoise", noise_seed=seed)
    graph.add("guider", "CFGGuider", cfg=cfg)
    graph.wire("loader.MODEL", "schedule.model")
    for source, target in [("loader.MODEL", "guider.model"), ("positive.CONDITIONING", "guider.positive"),
                           ("negative.CONDITIONING", "guider.negative")]:
        graph.wire(source, target)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m_sde", "euler_ancestral"])
def test_the_parts_give_ksamplers_latent(engine, sampler):
    expected = ksampler(engine, sampler)
    graph = Graph()
    parts(graph, sampler)
    custom_advanced(graph, "select", "schedule.SIGMAS", "noise")
    assert torch.equal(graph.latent(engine, "custom"), expected)

    graph = Graph()
    parts(graph, sampler)
    graph.add("custom", "SamplerCustom", add_noise=True, noise_seed=7, cfg=6.0)
    for source, target in [("loader.MODEL", "custom.model"), ("positive.CONDITIONING", "custom.positive"),
                           ("negative.CONDITIONING", "custom.negative"), ("select.SAMPLER", "custom.sampler"),
                           ("schedule.SIGMAS", "custom.sigmas"), ("latent.LATENT", "custom.latent_image")]:
        graph.wire(source, target)
    assert torch.equal(graph.latent(engine, "custom"), expected)


def test_split_sigmas_hand_a_latent_to_a_second_sampler_unchanged(engine):
    """High σ with noise, then low σ without: one deterministic walk cut in two."""
    graph = Graph()
    parts(graph, "euler")
    graph.add("split", "SplitSigmas", step=3)
    graph.add("no_noise", "DisableNoise")
    graph.wire("schedule.SIGMAS", "split.sigmas")
    custom_advanced(graph, "select", "split.high_sigmas", "noise", name="first")
    custom_advanced(graph, "select", "split.low_sigmas", "no_noise", name="second", latent="first.output")
    assert torch.allclose(graph.latent(engine, "second"), ksampler(engine, "euler"), atol=1e-5)


def test_karras_scheduler_with_the_models_range_is_basic_schedulers_karras(engine):
    graph = Graph()
    parts(graph)
    graph.add("karras", "KarrasScheduler", steps=6, sigma_max=14.614642, sigma_min=0.0291675, rho=7.0)
    report = engine.run(graph.workflow, [graph.ids["karras"], graph.ids["schedule"]])
    ours, basic = report.results[graph.ids["karras"]][0], report.results[graph.ids["schedule"]][0]
    assert torch.allclose(ours, basic, rtol=1e-5, atol=1e-6)


def test_sigma_nodes(registry, ctx):
    from nodes.custom_sampling import FlipSigmas, SplitSigmasDenoise

    sigmas = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])
    high, low = SplitSigmasDenoise().run(ctx, sigmas, 0.5)
    # two of the four steps go low; the parts share the σ where they meet
    assert torch.equal(high, sigmas[:3]) and torch.equal(low, sigmas[2:])
    (flipped,) = FlipSigmas().run(ctx, sigmas)
    assert flipped.tolist() == pytest.approx([0.0001, 1.0, 2.0, 5.0, 10.0])
    assert sigmas[-1] == 0  # the input is not changed


def test_sd_turbo_schedule_is_one_step_from_the_top(engine):
    graph = Graph()
    graph.add("turbo", "SDTurboScheduler", steps=1, denoise=1.0)
    graph.wire("loader.MODEL", "turbo.model")
    report = engine.run(graph.workflow, [graph.ids["turbo"]])
    sigmas = report.results[graph.ids["turbo"]][0]
    assert len(sigmas) == 2 and sigmas[-1] == 0 and float(sigmas[0]) == pytest.approx(14.6146, rel=1e-4)


def test_euler_ancestral_without_noise_is_euler(engine):
    graph = Graph()
    parts(graph, "euler")
    graph.add("ancestral", "SamplerEulerAncestral", eta=0.0, s_noise=1.0)
    custom_advanced(graph, "ancestral", "schedule.SIGMAS", "noise")
    assert torch.allclose(graph.latent(engine, "custom"), ksampler(engine, "euler"), atol=1e-5)


def test_dual_cfg_with_one_prompt_twice_is_plain_cfg(engine):
    graph = Graph()
    parts(graph, "euler")
    graph.add("dual", "DualCFGGuider", cfg_conds=3.0, cfg_cond2_negative=6.0, style="regular")
    for source, target in [("loader.MODEL", "dual.model"), ("positive.CONDITIONING", "dual.cond1"),
                           ("positive.CONDITIONING", "dual.cond2"), ("negative.CONDITIONING", "dual.negative")]:
        graph.wire(source, target)
    custom_advanced(graph, "select", "schedule.SIGMAS", "noise", guider="dual.GUIDER")
    dual, plain = graph.latent(engine, "custom"), ksampler(engine, "euler", cfg=6.0)
    # same arithmetic up to the order of float operations (separate UNet calls vs one batch)
    assert (dual - plain).abs().max() < 1e-5 * plain.abs().max()


def test_basic_guider_is_cfg_one(engine):
    graph = Graph()
    parts(graph, "euler")
    graph.add("basic", "BasicGuider")
    graph.wire("loader.MODEL", "basic.model")
    graph.wire("positive.CONDITIONING", "basic.conditioning")
    custom_advanced(graph, "select", "schedule.SIGMAS", "noise", guider="basic.GUIDER")
    assert torch.allclose(graph.latent(engine, "custom"), ksampler(engine, "euler", cfg=1.0), atol=1e-5)
