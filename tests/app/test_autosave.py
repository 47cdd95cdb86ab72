"""Autosave and recovery: a real kill -9 while editing, then the next start offers the graph."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from studio.app.autosave import load_recovered, recoverable
from studio.settings import PROJECT_ROOT

EDIT_THEN_CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from studio.app.main import _application
    from studio.app.undo import UndoAdapter
    from studio.graph.commands import SetValue
    from studio.app.window import MainWindow
    from studio.engine import Engine
    from studio.registry import build_registry
    from studio.settings import Settings, WORKFLOWS_DIR
    from PySide6.QtCore import QTimer

    app = _application()
    settings = Settings(autosave_dir=Path(sys.argv[1]), output_dir=Path(sys.argv[1]) / "out")
    registry = build_registry()
    window = MainWindow(registry, settings, Engine(registry, settings))
    window.open_file(WORKFLOWS_DIR / "film_grain.json")
    window.show()
    window.undo_stack.push(UndoAdapter(SetValue(window.workflow, "3", "seed", 777)))
    window.undo_stack.push(UndoAdapter(SetValue(window.workflow, "3", "strength", 0.2)))
    # Let the autosave timer fire once, then die the hard way, mid-session.
    QTimer.singleShot(4000, lambda: os.kill(os.getpid(), signal.SIGKILL))
    app.exec()
""")


def test_after_kill_9_the_autosaved_graph_is_offered_back(tmp_path):
    folder = tmp_path / "autosave"
    result = subprocess.run([sys.executable, "-c", EDIT_THEN_CRASH, str(folder)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr
    [item] = recoverable(folder)
    assert item.original is not None and item.original.name == "film_grain.json"
    workflow = load_recovered(item)
    assert workflow.nodes["3"].values == {"seed": 777, "strength": 0.2}


def test_a_clean_close_leaves_nothing_to_recover(window, settings):  # noqa: F811
    from studio.app.undo import UndoAdapter
    from studio.graph.commands import SetValue

    window.undo_stack.push(UndoAdapter(SetValue(window.workflow, "3", "seed", 5)))
    assert window.autosave()
    assert len(recoverable(settings.autosave_dir)) == 1
    assert not window.autosave()  # nothing new since the last copy
    window.close()
    assert recoverable(settings.autosave_dir) == []


def test_recovery_is_offered_on_start_and_opens_the_copy(window, settings, monkeypatch):  # noqa: F811
    from PySide6.QtWidgets import QMessageBox

    from studio.app.main import offer_recovery
    from studio.app.undo import UndoAdapter
    from studio.graph.commands import SetValue

    window.undo_stack.push(UndoAdapter(SetValue(window.workflow, "3", "seed", 4242)))
    window.autosave()
    window.autosaver.path = window.autosaver.path.with_name("other.json")  # as if another session's copy
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *args, **kwargs: QMessageBox.Yes))
    window.undo_stack.undo()
    assert window.workflow.nodes["3"].values["seed"] == 42
    assert offer_recovery(window)
    assert window.workflow.nodes["3"].values["seed"] == 4242
    assert recoverable(settings.autosave_dir) == []
