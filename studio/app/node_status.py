"""What the canvas shows of a node's part in the latest run (the bar under its title)."""

from __future__ import annotations

import enum


class NodeStatus(enum.StrEnum):
    """A node's state in the run shown; a ``str``, so theme colours are looked up by value."""

    NONE = ""  # not part of the run shown (or no run yet)
    QUEUED = "queued"
    RUNNING = "running"
    CACHED = "cached"  # served from the result cache
    DONE = "done"
    ERROR = "error"  # failed, or has a problem that stopped the run

    @property
    def shows_result(self) -> bool:
        """Whether the node's picture and result are the run's own (so not out of date)."""
        return self in (NodeStatus.RUNNING, NodeStatus.DONE, NodeStatus.CACHED)
