"""The files a model or picture field can name: the installed models of its kind (ComfyUI's
folder names) and the pictures in the input folders, kept up to date by watching the folders,
so the fields are drop-downs of what is there, and a missing file is marked as missing."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, Signal

from nodes.io import IMAGE_SUFFIXES
from studio.graph.comfy.definitions import MODEL_INPUTS
from studio.runtime.models import ModelFolders
from studio.settings import Settings

IMAGE_INPUTS = {("LoadImage", "image"), ("LoadImageMask", "image")}
# IMAGE_SUFFIXES (re-exported): the pictures LoadImage reads; the app lists, picks and accepts
# dropped files by the same rule.


class FileChoices(QObject):
    """Lists per field kind, cached until a watched folder changes (``changed`` is emitted)."""

    changed = Signal()

    def __init__(self, settings: Settings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(self._folder_changed)
        self.use(settings)

    def use(self, settings: Settings) -> None:
        """Follow another set of folders (the settings changed)."""
        self.settings = settings
        self.folders = ModelFolders.from_settings(settings)
        self.cache: dict[str, list[str]] = {}
        if self.watcher.directories():
            self.watcher.removePaths(self.watcher.directories())
        watched = [folder for kind in set(MODEL_INPUTS.values()) for folder in self.folders.folders_for(kind)]
        watched += list(settings.image_search_dirs)
        existing = sorted({str(folder) for folder in watched if Path(folder).is_dir()})
        if existing:
            self.watcher.addPaths(existing)

    def _folder_changed(self, _path: str) -> None:
        self.cache.clear()
        self.changed.emit()

    def kind_of(self, node_type: str, input_name: str) -> str | None:
        if (node_type, input_name) in IMAGE_INPUTS:
            return "input images"
        return MODEL_INPUTS.get((node_type, input_name))

    def choices(self, node_type: str, input_name: str) -> list[str] | None:
        """The names a field can take, or None when it is not a file field."""
        kind = self.kind_of(node_type, input_name)
        if kind is None:
            return None
        if kind not in self.cache:
            if kind == "input images":
                names: set[str] = set()
                for folder in self.settings.image_search_dirs:
                    if folder.is_dir():
                        names.update(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                     if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
                self.cache[kind] = sorted(names)
            else:
                self.cache[kind] = self.folders.list(kind)
        return list(self.cache[kind])

    def image_path(self, name: str) -> Path | None:
        for folder in self.settings.image_search_dirs:
            candidate = folder / name
            if candidate.is_file():
                return candidate
        return None
