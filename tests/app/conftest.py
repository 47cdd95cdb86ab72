"""The app's shared fixture: the main window, offscreen, holding a copy of a shipped workflow."""

from __future__ import annotations

import pytest

from studio.app.window import MainWindow
from studio.engine import Engine
from studio.graph.png import workflow_texts
from studio.settings import WORKFLOWS_DIR


@pytest.fixture
def window(qtbot, registry, settings, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    # Closing with unsaved edits asks; tests answer "discard" instead of blocking on a dialog.
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *args, **kwargs: QMessageBox.Discard))
    main = MainWindow(registry, settings, Engine(registry, settings, image_metadata=workflow_texts))
    qtbot.addWidget(main)
    # A copy: a test that saves must not write over the shipped workflow.
    copy = tmp_path / "film_grain.json"
    copy.write_bytes((WORKFLOWS_DIR / "film_grain.json").read_bytes())
    main.open_file(copy)
    main.show()
    qtbot.waitExposed(main)
    yield main
    # Data left on the clipboard would be destroyed after the test QApplication, at
    # interpreter exit, which crashes the process.
    from PySide6.QtWidgets import QApplication

    QApplication.clipboard().clear()
