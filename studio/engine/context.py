"""What a node sees of the engine while it runs: progress, cancellation, files it wrote,
settings, and the services (model manager, …) the caller provided."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.settings import Settings


class RunCancelled(Exception):
    """Raised inside a run when its cancel token is set; the engine turns it into a
    cancelled report."""


class CancelToken:
    """Set from any thread; checked between nodes and inside every long loop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise RunCancelled()


class NodeContext:
    """Handed to ``NodeBase.run`` as ``ctx``."""

    def __init__(
        self,
        node_id: str,
        node_title: str,
        settings: Settings,
        services: Mapping[str, Any],
        cancel: CancelToken,
        on_progress: Callable[[int, int, Any], None],
        embedded_texts: Callable[[], dict[str, str]],
    ) -> None:
        self.node_id = node_id
        self.node_title = node_title
        self.settings = settings
        self.services = services
        self._cancel = cancel
        self._on_progress = on_progress
        self._embedded_texts = embedded_texts
        self.files: list[Path] = []
        self.notes: list[str] = []

    def check_cancelled(self) -> None:
        """Raise :class:`RunCancelled` if the run was cancelled; call it inside long loops."""
        self._cancel.raise_if_cancelled()

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        """Report ``step`` of ``total`` done (and check for cancellation)."""
        self._cancel.raise_if_cancelled()
        self._on_progress(step, total, preview)

    def note(self, message: str) -> None:
        """Tell the artist something about this run that is not an error (how much of a
        LoRA applied, say); it appears in the run report."""
        self.notes.append(message)

    def record_file(self, path: Path) -> None:
        """Note a file this node wrote, so the run report (and a cached re-run) lists it."""
        self.files.append(Path(path))

    @cached_property
    def embedded_texts(self) -> dict[str, str]:
        """Text to embed in written images so they reopen as the workflow that made them:
        the native JSON under ``seed-studio-workflow`` and, where the graph can be expressed
        for ComfyUI, its ``workflow`` (UI format) and ``prompt`` (API format)."""
        return self._embedded_texts()
