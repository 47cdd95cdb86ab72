"""What a run did: its status, the nodes it ran, served from the cache or skipped, the files
they wrote, their notes, and the errors and problems that stopped it. Made by
:mod:`studio.engine.execute`, carried by :class:`studio.engine.events.RunFinished`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.engine.validate import Problem


class RunStatus(enum.StrEnum):
    """How a run ended. A ``str``, so ``status == "ok"`` and JSON output read as before."""

    OK = "ok"
    # A node failed (the nodes that did not depend on it still ran).
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The workflow has problems (``RunReport.problems``): nothing ran.
    INVALID = "invalid"


@dataclass(frozen=True)
class NodeError:
    """A node that failed, with a sentence for the artist and the traceback for a bug report."""

    node_id: str
    node_type: str
    message: str
    traceback: str = ""
    # The operating system's error number when the node failed on a file (a full disk is
    # errno.ENOSPC): a batch stops on it rather than fail every job that follows.
    errno: int | None = None

    def __str__(self) -> str:
        return f"node #{self.node_id} ({self.node_type}): {self.message}"


@dataclass
class RunReport:
    """What a run did (see :class:`RunStatus` for how it ended)."""

    run_id: str
    status: RunStatus = RunStatus.OK
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: list[tuple[str, Path]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    errors: list[NodeError] = field(default_factory=list)
    # Validation errors (a run with any is "invalid") and warnings (listed, not stopping it).
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # The outputs of the nodes the run was asked for, by node id.
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": str(self.status),
            "executed": self.executed,
            "cached": self.cached,
            "skipped": self.skipped,
            "seconds": {node: round(seconds, 6) for node, seconds in self.seconds.items()},
            "outputs": [{"node": node, "path": str(path)} for node, path in self.files],
            "notes": [{"node": node, "message": message} for node, message in self.notes],
            "errors": [{"node_id": e.node_id, "node_type": e.node_type, "message": e.message}
                       for e in self.errors],
            "problems": [problem.to_dict() for problem in self.problems],
            "warnings": [warning.to_dict() for warning in self.warnings],
            "total_seconds": round(self.total_seconds, 6),
        }
