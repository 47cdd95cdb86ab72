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
