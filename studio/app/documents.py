"""One open workflow in the window (a tab): its graph on its own canvas scene, its own undo
stack and autosave copy, the file it came from, and the cache keys of the results shown in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtGui import QUndoStack

from studio.app.autosave import Autosaver


class Document:
    def __init__(self, parent: Any, autosave_dir: Path) -> None:
        self.undo_stack = QUndoStack(parent)
        self.autosaver = Autosaver(autosave_dir)
        self.autosaved_index = 0
        self.scene: Any = None
        self.path: Path | None = None
        self.display_name = "Untitled"
        # The graph came from an autosave: it has changes no file holds, whatever the undo stack says.
        self.recovered = False
        # node id → the cache key its shown result was made with.
        self.result_keys: dict[str, str] = {}
        self.unsubscribe: Any = None

    @property
    def modified(self) -> bool:
        return self.recovered or not self.undo_stack.isClean()

    @property
    def pristine(self) -> bool:
        """An untouched new tab, which an opened file may take over."""
        return (self.path is None and not self.modified and self.scene is not None
                and not self.scene.workflow.nodes)
