"""What the FLUX and SD3.5 node tests share: one engine over a folder of tiny model files
(each file loaded once per module), the graph builder's ``add`` and wiring, and a render."""

from __future__ import annotations

import pytest
import torch

from studio.engine import Engine
from studio.graph import Workflow
from studio.runtime.device import DevicePolicy
from studio.runtime.services import create_services

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


def engine_over(registry, model_root, folder) -> Engine:
    """An engine on the CPU whose model folders are ``model_root``, writing under ``folder``."""
    from studio.settings import Settings

    settings = Settings(output_dir=folder / "output", input_dirs=(), temp_dir=folder / "temp",
                        autosave_dir=folder / "autosave", cache_bytes=256 * 1024**2, model_roots=(model_root,))
    return Engine(registry, settings, services=create_services(settings, CPU))


def model_fixtures(family: str):
    """The fixtures ``<family>_files`` (the tiny files, written once per session by
    tests.flux_models' ``<family>_files_once``) and ``<family>_engine`` (one engine over them
    for the module, so each file is loaded once); a test module assigns both to names."""

    @pytest.fixture(scope="session", name=f"{family}_files")
    def files(tmp_path_factory):
        from tests import flux_models

        return getattr(flux_models, f"{family}_files_once")(tmp_path_factory)

    @pytest.fixture(scope="module", name=f"{family}_engine")
    def engine(registry, request, tmp_path_factory):
        root = request.getfixturevalue(f"{family}_files").root
        return engine_over(registry, root, tmp_path_factory.mktemp(f"{family}_engine"))

    return files, engine


class GraphBuilder:
    """A workflow with nodes by test name (``ids``) and links by (name, output) pairs."""

    def __init__(self) -> None:
        self.workflow = Workflow()
        self.ids: dict[str, str] = {}

    def add(self, name: str, type_name: str, values: dict | None = None) -> None:
        self.ids[name] = self.workflow.add_node(type_name, values or {}).id

    def checkpoint(self, name: str) -> tuple[tuple[str, str], ...]:
        """A CheckpointLoaderSimple for ``name``: its MODEL, CLIP and VAE outputs."""
        self.add("checkpoint", "CheckpointLoaderSimple", {"ckpt_name": name})
        return ("checkpoint", "MODEL"), ("checkpoint", "CLIP"), ("checkpoint", "VAE")

    def sampling(self, seed: int, steps: int, cfg: float, scheduler: str, size: int) -> None:
        """The square EmptySD3LatentImage, an euler KSampler and the VAEDecode."""
        self.add("latent", "EmptySD3LatentImage", {"width": size, "height": size, "batch_size": 1})
        self.add("sampler", "KSampler", {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
                                         "scheduler": scheduler, "denoise": 1.0})
        self.add("decode", "VAEDecode")

    def finish(self, model, clip, vae, positive=("prompt", "CONDITIONING")) -> tuple[Workflow, dict[str, str]]:
        """Wire the text encoders "prompt" and "negative", the sampling nodes, ``model``,
        ``clip``, ``vae`` and the ``positive`` conditioning: the finished graph."""
        return self.connect([
            (clip, "prompt", "clip"), (clip, "negative", "clip"), (model, "sampler", "model"),
            (positive, "sampler", "positive"), (("negative", "CONDITIONING"), "sampler", "negative"),
            (("latent", "LATENT"), "sampler", "latent_image"), (("sampler", "LATENT"), "decode", "samples"),
            (vae, "decode", "vae")])

    def connect(self, links) -> tuple[Workflow, dict[str, str]]:
        """``links``: ((source name, output), target name, input name) each; the finished graph."""
        for (source, output), target, input_name in links:
            self.workflow.connect(self.ids[source], output, self.ids[target], input_name)
        return self.workflow, self.ids


def render(engine, workflow, ids):
    """The picture of the graph's ``decode`` node (the run must succeed)."""
    report = engine.run(workflow, [ids["decode"]])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    return report.results[ids["decode"]][0]
