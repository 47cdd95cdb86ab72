from __future__ import annotations

import pytest

from studio.engine import CancelToken, NodeContext


@pytest.fixture
def ctx(settings) -> NodeContext:
    """A context for calling a node's run() directly."""
    return NodeContext("1", "", settings, {}, CancelToken(), lambda step, total, preview: None,
                       lambda: {"seed-studio-workflow": '{"format": "seed-studio-workflow", "version": 1, "nodes": {}}'})
