"""Autosave: every few seconds, each open graph with unsaved edits is copied (atomically) to
the autosave folder; a clean close removes the copy. Copies left at start-up mean the app did
not close cleanly, and are offered back."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from studio.fileio import atomic_write_text
from studio.graph import Workflow, WorkflowFormatError, dumps, loads

AUTOSAVE_SECONDS = 3


@dataclass(frozen=True)
class Recoverable:
    path: Path  # the autosave copy
    original: Path | None  # the file it was opened from, if any
    saved_at: float


class Autosaver:
    """Keeps one autosave file for one open graph."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"{secrets.token_hex(6)}.json"

    def save(self, workflow: Workflow, original: Path | None) -> None:
        import time

        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"original": str(original) if original else None, "saved_at": time.time(), "workflow": dumps(workflow)}
        atomic_write_text(self.path, json.dumps(record))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def recoverable(folder: Path) -> list[Recoverable]:
    """Autosave copies left by sessions that did not close cleanly, newest first."""
    found = []
    if folder.is_dir():
        for path in folder.glob("*.json"):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                found.append(Recoverable(path, Path(record["original"]) if record.get("original") else None,
                                         float(record["saved_at"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged copy is not offered
    return sorted(found, key=lambda item: item.saved_at, reverse=True)


def load_recovered(item: Recoverable) -> Workflow:
    try:
        return loads(json.loads(item.path.read_text(encoding="utf-8"))["workflow"], str(item.path))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise WorkflowFormatError("$", f"the autosaved copy cannot be read ({error})", str(item.path)) from None
