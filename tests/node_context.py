"""A stand-in for the engine's context, for calling a node's ``run`` directly in a test."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.engine import RunCancelled
from studio.graph import Workflow, dumps
from studio.graph.png import WORKFLOW_TEXT_KEY
from studio.node_api import Services
from studio.settings import Settings


def _empty_workflow_texts() -> dict[str, str]:
    return {WORKFLOW_TEXT_KEY: dumps(Workflow())}


@dataclass
class FakeContext:
    """Everything a node may use of its run (:class:`studio.node_api.NodeContext`), with what
    the node did kept for the test to look at: each ``progress`` call in ``progress_calls``
    as ``(step, total, preview)``, notes in ``notes``, written files in ``files``.

    No model manager unless ``services`` brings one; images carry the native JSON of an empty
    workflow unless ``embedded_texts`` says otherwise; set ``cancelled`` to make the next
    ``check_cancelled`` or ``progress`` raise :class:`studio.engine.RunCancelled`, as a
    cancelled run's would.
    """

    settings: Settings
    services: Services = field(default_factory=Services)
    node_id: str = "1"
    embedded_texts: Mapping[str, str] = field(default_factory=_empty_workflow_texts)
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    progress_calls: list[tuple[int, int, Any]] = field(default_factory=list)

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise RunCancelled()

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        self.check_cancelled()
        self.progress_calls.append((step, total, preview))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def record_file(self, path: Path) -> None:
        self.files.append(Path(path))
