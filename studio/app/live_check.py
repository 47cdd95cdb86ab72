"""Checking the graph while it is edited: a moment after each edit (and on open), validate a
copy of it on a background thread and compute each node's cache key, so the problems panel
and the canvas show what is wrong before Run, and results that a re-run would recompute are
marked out of date."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from studio.graph import Workflow

# Long enough that typing in a field checks once, short enough to feel immediate.
DEBOUNCE_MS = 200


@dataclass(frozen=True)
class CheckResult:
    generation: int
    problems: list[Any] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    failure: str = ""


class LiveCheck(QObject):
    checked = Signal(object)

    def __init__(self, parent: QObject, engine: Callable[[], Any]) -> None:
        super().__init__(parent)
        self.engine = engine
        self.workflow: Workflow | None = None
        self.generation = 0
        self.latest: CheckResult | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.check_now)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-check")
        self._results.connect(self._deliver)

    # A private signal carries results from the pool's thread to this (the GUI) thread.
    _results = Signal(object)

    def schedule(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.timer.start()

    def check_now(self) -> None:
        if self.workflow is None:
            return
        self.generation += 1
        copy, generation, engine = self.workflow.copy(), self.generation, self.engine()
        self.pool.submit(self._check, engine, copy, generation)

    def _check(self, engine: Any, workflow: Workflow, generation: int) -> None:
        try:
            result = CheckResult(generation, engine.validate(workflow), engine.cache_keys(workflow))
        except Exception as error:  # noqa: BLE001 - a check must never take the app down; say it failed
            result = CheckResult(generation, failure=f"the graph could not be checked: {error}")
        self._results.emit(result)

    def _deliver(self, result: CheckResult) -> None:
        if result.generation == self.generation:  # an older check, overtaken by an edit: dropped
            self.latest = result
            self.checked.emit(result)

    def shutdown(self) -> None:
        self.timer.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)
