"""PySide6 6.12.0 on CPython 3.11 drops a reference to None on every void-returning call and
aborts the interpreter after a few thousand (DEVELOPERS.md, "Qt on these machines"). The pin in
pyproject.toml keeps it out; this test catches a binding that brings it back."""

from __future__ import annotations

import sys

import pytest

QtWidgets = pytest.importorskip("PySide6.QtWidgets")
from PySide6.QtGui import QColor, QPen  # noqa: E402


def test_void_calls_do_not_leak_references_to_none(qapp):
    item = QtWidgets.QGraphicsRectItem(0, 0, 10, 10)
    pen = QPen(QColor("#ff8800"))
    before = sys.getrefcount(None)
    for index in range(10_000):
        item.setPen(pen)
        item.setPos(index, index)
    # A faulty binding loses one reference per call: 20,000 here.
    assert sys.getrefcount(None) >= before - 100
