"""Starting the desktop app, and ``studio --screenshot``."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.node_api import Services
from studio.settings import WORKFLOWS_DIR

if TYPE_CHECKING:
    from studio.runtime.model_manager import ModelManager


def _application(scale: float | None = None):
    os.environ.setdefault("QT_API", "pyside6")
    if scale:
        os.environ["QT_SCALE_FACTOR"] = str(scale)
    from PySide6.QtWidgets import QApplication

    from studio.app.theme import dark_palette

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Seed Studio")
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    return app


class LazyServices(Services):
    """The engine's services, with the model manager built on first use, or by ``warm_up``
    on a background thread once the window is up: the window appears before torch and
    diffusers are imported (they take seconds), and the first Run finds them ready."""

    def __init__(self, settings: Any) -> None:
        # Not the dataclass's __init__: ``models`` is a property that builds the manager.
        self.seed_batches = None
        self._settings = settings
        self._models: ModelManager | None = None
        self._lock = threading.Lock()

    @property  # type: ignore[override]
    def models(self) -> ModelManager:
        with self._lock:
            if self._models is None:
                from studio.runtime.services import create_services

                self._models = create_services(self._settings).models
            return self._models

    @property
    def built(self) -> bool:
        return self._models is not None

    # The dataclass's own would build the models to show or compare them.
    def __repr__(self) -> str:
        return f"LazyServices(built={self.built})"

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def warm_up(self) -> threading.Thread:
        def build() -> None:
            self.models  # noqa: B018  (built now, not at the first Run)
            import diffusers  # noqa: F401  (what the first model load needs, imported now)

        thread = threading.Thread(target=build, name="warm-up", daemon=True)
        thread.start()
        return thread


def _window(workflow_path: Path | None, strict: bool = False):
    """The main window on a workflow. ``strict`` (no one to answer a dialog): a workflow that
    cannot be opened raises WorkflowFormatError instead of showing a message box."""
    from studio.app.preferences import Preferences
    from studio.app.window import MainWindow
    from studio.engine import Engine
    from studio.graph.png import workflow_texts
    from studio.registry import build_registry
    from studio.settings import Settings

    settings = Settings.load()
    settings = Preferences.for_settings(settings).apply(settings)
    registry = build_registry(settings.plugin_dirs)

    def make_engine(chosen: Settings) -> Engine:
        return Engine(registry, chosen, services=LazyServices(chosen), image_metadata=workflow_texts)

    path = workflow_path or WORKFLOWS_DIR / "default.json"
    if strict:
        from studio.graph.files import open_workflow

        open_workflow(path, registry.spec)  # raises with the file and the place in it
    window = MainWindow(registry, settings, make_engine(settings), engine_factory=make_engine)
    window.open_file(path, ask=False)
    return window


def offer_recovery(window) -> bool:
    """If an earlier session did not close cleanly, offer its newest autosaved graph."""
    from PySide6.QtWidgets import QMessageBox

    from studio.app.autosave import load_recovered, recoverable

    found = recoverable(window.settings.autosave_dir)
    if not found:
        return False
    newest = found[0]
    name = newest.original.name if newest.original else "an unsaved workflow"
    answer = QMessageBox.question(window, "Recover work?", f"Seed Studio did not close cleanly. Recover the "
                                  f"autosaved copy of {name}?", QMessageBox.Yes | QMessageBox.No)
    if answer == QMessageBox.Yes:
        if not window.maybe_save():
            return False  # the copies stay for the next start
        window.recover(load_recovered(newest), newest.original)
    for item in found:
        item.path.unlink(missing_ok=True)
    return answer == QMessageBox.Yes


def run_app(workflow_path: Path | None = None) -> int:
    from PySide6.QtCore import QTimer

    app = _application()
    window = _window(workflow_path)
    window.show()
    # torch and diffusers are imported behind the shown window, not before it.
    QTimer.singleShot(0, lambda: window.engine.services.warm_up())
    offer_recovery(window)
    return app.exec()


def screenshot(target: Path, workflow_path: Path | None = None, scale: float = 1.0,
               size: tuple[int, int] | None = None) -> Path:
    """Open the main window on a workflow as a start-up does (window size, then show, then
    the first fit), write a PNG of it, and close."""
    app = _application(scale)
    window = _window(workflow_path, strict=True)
    if size is not None:
        window.resize(*size)
    window.show()
    from PySide6.QtTest import QTest

    # On a real display server the window is mapped asynchronously; draw only once it is.
    QTest.qWaitForWindowExposed(window, 5000)
    # The same first show as a real start-up: the view fits itself once it has its size.
    QTest.qWait(50)
    app.processEvents()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(target)):
        raise OSError(f"could not write {target}")
    window.close()
    return target
