"""Runs the engine on a worker thread and turns its events into Qt signals, so the window
never freezes; progress is passed on at most ten times a second per node."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from studio.engine import CancelToken, Engine, NodeProgress
from studio.graph import Workflow


class RunWorker(QObject):
    event = Signal(object)
    finished = Signal(object)

    def __init__(self, engine: Engine, workflow: Workflow, cancel: CancelToken) -> None:
        super().__init__()
        self.engine, self.workflow, self.cancel = engine, workflow, cancel
        self._last_progress: dict[str, float] = {}

    def run(self) -> None:
        report = self.engine.run(self.workflow, cancel=self.cancel, on_event=self._forward)
        self.finished.emit(report)

    def _forward(self, event: Any) -> None:
        if isinstance(event, NodeProgress) and event.step != event.total:
            now = time.monotonic()
            if now - self._last_progress.get(event.node_id, 0.0) < 0.1:
                return
            self._last_progress[event.node_id] = now
        self.event.emit(event)


class Runner(QObject):
    """One run at a time; ``start`` returns False while one is going."""

    event = Signal(object)
    finished = Signal(object)

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.thread: QThread | None = None
        self.worker: RunWorker | None = None
        self.cancel_token: CancelToken | None = None

    @property
    def busy(self) -> bool:
        return self.thread is not None

    def start(self, workflow: Workflow) -> bool:
        if self.busy:
            return False
        self.cancel_token = CancelToken()
        self.thread = QThread()
        # The run gets its own copy: edits made while it runs do not change what it renders.
        self.worker = RunWorker(self.engine, workflow.copy(), self.cancel_token)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.event.connect(self.event)
        self.worker.finished.connect(self._done)
        self.thread.start()
        return True

    def cancel(self) -> None:
        if self.cancel_token is not None:
            self.cancel_token.cancel()

    def _done(self, report: Any) -> None:
        assert self.thread is not None
        self.thread.quit()
        self.thread.wait()
        self.thread = None
        self.worker = None
        self.finished.emit(report)
