"""The run queue as a model, without Qt: each press of Run is an entry that waits, runs and
ends in a state; one progress figure per run, which the queue panel and the status bar both
show. The window feeds it engine events and the runner's report; views read it."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class RunState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    # Cancel was asked for; the engine stops at its next check.
    CANCELLING = "cancelling"
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INVALID = "invalid"

    @property
    def active(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING, RunState.CANCELLING)

    @classmethod
    def of_report(cls, status: str) -> RunState:
        """The end state for an engine report's status (ok, failed, cancelled, invalid)."""
        return cls(status)


class RunProgress:
    """How far a run is, from its events: each planned node weighs 1, except nodes that
    count steps (samplers, upscalers), which weigh their step count, so a run that has
    loaded its model and encoded its prompt is not shown as three-quarters done."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = {node_id: max(1.0, float(weight)) for node_id, weight in weights.items()}
        self.total = sum(self.weights.values()) or 1.0
        self.done: dict[str, float] = {}

    def node_progress(self, node_id: str, fraction: float) -> None:
        if node_id in self.weights:
            self.done[node_id] = max(self.done.get(node_id, 0.0), min(1.0, fraction))

    def node_finished(self, node_id: str) -> None:
        self.node_progress(node_id, 1.0)

    @property
    def fraction(self) -> float:
        return sum(self.weights[n] * f for n, f in self.done.items()) / self.total


@dataclass
class RunEntry:
    """One press of Run: waiting, running, or finished with its report."""

    number: int
    workflow: Any
    name: str
    status: RunState = RunState.QUEUED
    progress: float = 0.0
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)
    message: str = ""
    # Where it was queued from (the app's tab), for the views; the model does not read it.
    origin: Any = None

    def text(self) -> str:
        if self.status is RunState.QUEUED:
            return f"#{self.number} {self.name} — queued"
        if self.status is RunState.RUNNING:
            return f"#{self.number} {self.name} — running {self.progress:.0%}"
        if self.status is RunState.CANCELLING:
            return f"#{self.number} {self.name} — cancelling…"
        files = f", {len(self.files)} image{'s' if len(self.files) != 1 else ''}" if self.files else ""
        tail = f": {self.message}" if self.message else ""
        return f"#{self.number} {self.name} — {self.status.value} in {self.seconds:.1f} s{files}{tail}"


class RunQueue:
    """Entries in the order Run was pressed; at most one running. Listeners hear of every
    change (the panel redraws, the window enables Cancel)."""

    def __init__(self) -> None:
        self.entries: list[RunEntry] = []
        self.progress: RunProgress | None = None
        self._number = 0
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- queries -----------------------------------------------------------------------------
    @property
    def current(self) -> RunEntry | None:
        return next((e for e in self.entries if e.status in (RunState.RUNNING, RunState.CANCELLING)), None)

    def queued(self) -> list[RunEntry]:
        return [e for e in self.entries if e.status is RunState.QUEUED]

    @property
    def can_cancel(self) -> bool:
        return any(e.status.active for e in self.entries)

    def ordered(self) -> list[RunEntry]:
        """Running first, then queued, then the history newest first."""
        return ([e for e in self.entries if e.status in (RunState.RUNNING, RunState.CANCELLING)] + self.queued()
                + [e for e in reversed(self.entries) if not e.status.active])

    # -- changes -----------------------------------------------------------------------------
    def add(self, workflow: Any, name: str) -> RunEntry:
        self._number += 1
        entry = RunEntry(self._number, workflow, name)
        self.entries.append(entry)
        self._changed()
        return entry

    def start_next(self) -> RunEntry | None:
        """Mark the oldest queued entry running (when none runs) and return it."""
        if self.current is not None or not self.queued():
            return None
        entry = self.queued()[0]
        entry.status = RunState.RUNNING
        entry.progress = 0.0
        self.progress = None
        self._changed()
        return entry

    def planned(self, weights: dict[str, float]) -> None:
        self.progress = RunProgress(weights)

    def node_progress(self, node_id: str, fraction: float, finished: bool = False) -> None:
        entry = self.current
        if self.progress is None or entry is None:
            return
        self.progress.node_progress(node_id, 1.0 if finished else fraction)
        entry.progress = self.progress.fraction
        self._changed()

    def cancel_current(self) -> RunEntry | None:
        """Ask the running entry to stop; a second Cancel while it is stopping empties the
        queue behind it as well."""
        entry = self.current
        if entry is None:
            if self.queued():
                self.remove_queued(e.number for e in self.queued())
            return None
        if entry.status is RunState.CANCELLING:
            self.remove_queued(e.number for e in self.queued())
        entry.status = RunState.CANCELLING
        self._changed()
        return entry

    def finish(self, report: Any) -> RunEntry | None:
        entry = self.current
        if entry is None:
            return None
        entry.status = RunState.of_report(report.status)
        if entry.status is RunState.OK:
            entry.progress = 1.0
        entry.seconds = report.total_seconds
        entry.files = [Path(path) for _, path in report.files]
        entry.message = str(report.errors[0]) if report.errors else ""
        entry.workflow = None  # the history keeps what it shows, not the graph
        self.progress = None
        self._changed()
        return entry

    def remove_queued(self, numbers: Iterable[int]) -> None:
        chosen = set(numbers)
        self.entries[:] = [e for e in self.entries if not (e.number in chosen and e.status is RunState.QUEUED)]
        self._changed()

    def clear_history(self) -> None:
        self.entries[:] = [e for e in self.entries if e.status.active]
        self._changed()
