"""One engine for the demo-model tests, loading the shipped weights through the ordinary model
folders (the demo models are always listed), on the CPU, offline."""

from __future__ import annotations

import pytest
import torch

from studio.engine import Engine
from studio.graph import Workflow, load
from studio.runtime.device import DevicePolicy
from studio.runtime.services import create_services
from studio.settings import WORKFLOWS_DIR, Settings


@pytest.fixture(scope="session")
def demo_engine(registry, tmp_path_factory) -> Engine:
    root = tmp_path_factory.mktemp("demo")
    settings = Settings(output_dir=root / "output", input_dirs=(root / "input",), temp_dir=root / "temp",
                        autosave_dir=root / "autosave", model_roots=(root / "models",), cache_bytes=64 * 1024**2)
    return Engine(registry, settings, services=create_services(settings, DevicePolicy(torch.device("cpu"),
                                                                                      torch.float32)))


def render(engine: Engine, workflow: Workflow, target: str = "5", **values) -> torch.Tensor:
    """Run a workflow up to ``target`` after setting ``values`` ("node.input": value); the
    first output of that node."""
    for key, value in values.items():
        node_id, _, name = key.partition(".")
        workflow.set_value(node_id, name, value)
    report = engine.run(workflow, [target])
    assert report.ok, report.problems or [error.traceback for error in report.errors]
    return report.results[target][0]


def default_workflow() -> Workflow:
    return load(WORKFLOWS_DIR / "default.json")


def render_many(engine: Engine, prompts: list[str], seeds: list[int], negatives: list[str] | None = None,
                cfg: float = 5.0) -> torch.Tensor:
    """The default workflow's pictures (B×H×W×C) for many prompts, each with its seed, in one
    sampler call: each prompt is encoded through the graph (its CLIPTextEncode node), then the
    workflow's KSampler settings (euler, normal, 20 steps) run once over a latent batch whose
    rows each have their prompt (and negative prompt: empty when not given) and start from
    their seed's noise, and VAEDecode decodes them
    together. Each picture is its graph render's to float rounding
    (``test_many_prompts_in_one_call_draw_what_the_graph_draws`` holds it to that); 50
    prompts take a fraction of 50 graph runs' time."""
    from studio.runtime.sampling import CFGGuider, initial_noise, ksampler_sigmas, model_sampling, sample_latent
    from studio.runtime.socket_values import Latent
    from studio.runtime.vae_codec import decode_latent

    workflow = default_workflow()
    sampler = workflow.nodes["4"].values
    negatives = negatives or [""] * len(prompts)
    assert len(prompts) == len(seeds) == len(negatives)
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("euler", "normal")

    def encoded(text: str) -> torch.Tensor:
        ((embedding, _extras),) = render(engine, workflow, "2", **{"2.text": text})
        return embedding

    positive = [[torch.cat([encoded(text) for text in prompts]), {}]]
    negative_conditioning = [[torch.cat([encoded(text) for text in negatives]), {}]]
    manager = engine.services.models
    checkpoint = manager.load_checkpoint(workflow.nodes["1"].values["ckpt_name"])
    model = checkpoint.model
    size = workflow.nodes["7"].values
    shape = (1, 4, size["height"] // 8, size["width"] // 8)
    noise = torch.cat([initial_noise(shape, seed) for seed in seeds])
    sigmas = ksampler_sigmas(model_sampling(model), "euler", "normal", sampler["steps"])
    with manager.use(model.unet):
        result = sample_latent(model, CFGGuider(model, positive, negative_conditioning, cfg), "euler", sigmas,
                               noise, Latent(torch.zeros(len(seeds), *shape[1:])), seeds[0],
                               lambda *args: None, seed_rows=[(seed, 1) for seed in seeds])
    return decode_latent(manager, checkpoint.vae, result.latent.samples)
