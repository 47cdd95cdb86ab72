"""What the engine reports while it runs. The Qt app turns these into signals, the CLI into
progress lines or JSON; the engine does not know which."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from studio.engine.report import RunReport


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    planned: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class NodeStarted:
    run_id: str
    node_id: str
    node_type: str


@dataclass(frozen=True)
class NodeProgress:
    run_id: str
    node_id: str
    step: int
    total: int
    # An optional small preview (an IMAGE-like object from the node); views may ignore it.
    preview: Any = None


@dataclass(frozen=True)
class NodeFinished:
    run_id: str
    node_id: str
    node_type: str
    seconds: float
    cached: bool


@dataclass(frozen=True)
class NodeFailed:
    run_id: str
    node_id: str
    node_type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    report: RunReport


Event = RunStarted | NodeStarted | NodeProgress | NodeFinished | NodeFailed | RunFinished
EventSink = Callable[[Event], None]
