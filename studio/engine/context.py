"""What a node sees of the engine while it runs: progress, cancellation, files it wrote,
settings, the services (model manager, …) and the image metadata the caller provided.

:class:`RunContext` is the engine's implementation of :class:`studio.node_api.NodeContext`,
the protocol nodes are written against."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.graph.connect import SpecLookup
from studio.graph.model import Workflow

if TYPE_CHECKING:
    from studio.node_api import Services
    from studio.settings import Settings

ImageMetadata = Callable[[Workflow, SpecLookup], Mapping[str, str]]
"""What the caller of a run embeds in the images its nodes write (``ctx.embedded_texts``):
``{PNG text keyword: text}`` for the workflow being run and the registry's specs.
Seed Studio's own is :func:`studio.graph.png.workflow_texts` (its native JSON and ComfyUI's
two formats); the engine knows no format."""


class ImageMetadataError(RuntimeError):
    """The caller's :data:`ImageMetadata` failed; the node that asked for it fails with this."""


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


class RunContext:
    """Handed to ``NodeBase.run`` as ``ctx`` by the engine: a :class:`studio.node_api.NodeContext`
    that also collects what the node wrote and noted, for the run report."""

    def __init__(
        self,
        node_id: str,
        node_title: str,
        settings: Settings,
        services: Services,
        cancel: CancelToken,
        on_progress: Callable[[int, int, Any], None],
        embedded_texts: Callable[[], Mapping[str, str]],
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
    def embedded_texts(self) -> Mapping[str, str]:
        """Text to embed in written images so they reopen as the workflow that made them,
        as the caller's :data:`ImageMetadata` makes it (nothing when it gave none). Raises
        :class:`ImageMetadataError` when that failed."""
        return self._embedded_texts()
