"""Running graphs from the window: the queue of runs (a RunQueue model), the runner thread,
and what the engine's events change on screen: node states, pictures, one progress figure
for the queue panel and the status bar, and which results are out of date after an edit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QObject
from PySide6.QtGui import QImage

from studio.app.node_status import NodeStatus
from studio.app.run_queue import RunEntry, RunQueue, RunState
from studio.app.runner import Runner
from studio.engine import NodeFailed, NodeFinished, NodeProgress, NodeStarted, RunStarted, RunStatus

if TYPE_CHECKING:
    from studio.app.window import MainWindow


class RunController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.runner = Runner(window.engine)
        self.runner.setParent(self)
        self.runner.event.connect(self._on_event)
        self.runner.finished.connect(self._on_finished)
        self.queue = RunQueue()
        self.queue.subscribe(self._queue_changed)
        self.last_report: Any = None
        # The keys of the run in progress (each tab keeps those of the results it shows).
        self._run_keys: dict[str, str] = {}
        self.run_document: Any = None

    def run(self, workflow: Any, name: str) -> RunEntry:
        entry = self.queue.add(workflow, name)
        entry.origin = self.window.current
        self._start_next()
        return entry

    def _start_next(self) -> None:
        window = self.window
        if self.runner.busy:
            return
        entry = self.queue.start_next()
        if entry is None:
            return
        self._run_keys = window.engine.cache_keys(entry.workflow)
        # The tab the run was queued from gets its states and pictures, whichever is shown.
        self.run_document = getattr(entry, "origin", None) or window.current
        self.runner.engine = window.engine
        self.runner.start(entry.workflow)
        self.run_scene.clear_status()
        window.progress.setVisible(True)
        window.progress.setValue(0)
        window.statusBar().showMessage(f"Running #{entry.number}…")

    @property
    def run_scene(self) -> Any:
        document = getattr(self, "run_document", None) or self.window.current
        return document.scene if shiboken6.isValid(document.scene) else self.window.scene

    @property
    def result_keys(self) -> dict[str, str]:
        return self.window.current.result_keys

    def cancel(self) -> None:
        """Esc: stop the running graph; pressed again while it stops, empty the queue too."""
        entry = self.queue.cancel_current()
        if entry is not None:
            self.runner.cancel()
            self.window.statusBar().showMessage(f"Cancelling #{entry.number}…")

    def _queue_changed(self) -> None:
        window = self.window
        window.queue_panel.show_queue(self.queue)
        window.cancel_action.setEnabled(self.queue.can_cancel)
        current = self.queue.current
        if current is not None and current.status is RunState.RUNNING:
            window.progress.setValue(int(current.progress * 1000))

    def _step_weights(self, planned: list[str]) -> dict[str, float]:
        """Each planned node's share of the run: its step count when it has one (samplers)."""
        weights = {}
        current = self.queue.current
        workflow = current.workflow if current is not None else None
        registry = self.window.registry
        for node_id in planned:
            weight = 1.0
            node = workflow.nodes.get(node_id) if workflow is not None else None
            cls = registry.get(node.type) if node is not None else None
            spec = cls.spec().input("steps") if cls is not None else None
            if spec is not None and "steps" not in node.links:
                steps = node.values.get("steps", spec.default)
                if isinstance(steps, (int, float)) and not isinstance(steps, bool):
                    weight = float(steps)
            weights[node_id] = weight
        return weights

    def _on_event(self, event: Any) -> None:
        scene = self.run_scene
        if isinstance(event, RunStarted):
            self.queue.planned(self._step_weights(list(event.planned)))
            for node_id in event.planned:
                scene.set_status(node_id, NodeStatus.QUEUED)
        elif isinstance(event, NodeStarted):
            scene.set_status(event.node_id, NodeStatus.RUNNING)
        elif isinstance(event, NodeProgress):
            fraction = event.step / max(1, event.total)
            scene.set_status(event.node_id, NodeStatus.RUNNING, fraction)
            if event.preview is not None:
                scene.set_preview(event.node_id, image_from_array(event.preview))
            self.queue.node_progress(event.node_id, fraction)
        elif isinstance(event, NodeFinished):
            scene.set_status(event.node_id, NodeStatus.CACHED if event.cached else NodeStatus.DONE)
            self.queue.node_progress(event.node_id, 1.0, finished=True)
            if event.node_id in self._run_keys and self.run_document is not None:
                self.run_document.result_keys[event.node_id] = self._run_keys[event.node_id]
        elif isinstance(event, NodeFailed):
            scene.set_status(event.node_id, NodeStatus.ERROR, message=event.message)

    def _on_finished(self, report: Any) -> None:
        window = self.window
        scene = self.run_scene
        self.last_report = report
        self.queue.finish(report)
        window.gallery.add_files([Path(path) for _, path in report.files])
        for node_id, path in report.files:
            scene.set_preview(node_id, QImage(str(path)))
        window.problems.show_report(report, window.label_of)
        window.progress.setVisible(False)
        if report.status == RunStatus.INVALID:
            for problem in report.problems:
                if problem.node_id:
                    scene.set_status(problem.node_id, NodeStatus.ERROR, message=problem.message)
            text = f"{len(report.problems)} problem(s): {report.problems[0]}" if report.problems else "invalid"
        elif report.status == RunStatus.OK:
            text = f"Done in {report.total_seconds:.1f} s" + (f": {report.files[-1][1]}" if report.files else "")
        else:
            text = f"Run {report.status}" + (f": {report.errors[0]}" if report.errors else "")
        warnings = len(report.warnings)
        if warnings and report.status != RunStatus.INVALID:
            text += f" ({warnings} warning{'s' if warnings > 1 else ''} in Problems)"
        window.statusBar().showMessage(text)
        # The graph may have been edited while it ran: compare against it now.
        window.live_check.schedule(window.workflow)
        self._start_next()


def image_from_array(array: Any) -> QImage:
    """A QImage from an IMAGE-like preview (1 × H × W × 3, 0..1) of any array library."""
    values = array.detach().cpu().numpy() if hasattr(array, "detach") else array
    import numpy as np

    pixels = np.ascontiguousarray((np.clip(np.asarray(values)[0, ..., :3], 0, 1) * 255).astype(np.uint8))
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, width * 3, QImage.Format_RGB888).copy()
