from __future__ import annotations

import pytest

from tests.node_context import FakeContext


@pytest.fixture
def ctx(settings) -> FakeContext:
    """A context for calling a node's run() directly (it records progress, notes and files)."""
    return FakeContext(settings)
