"""Node search: type a few letters of a node's title, type name or category."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from studio.registry import Registry


def matches(query: str, text: str) -> bool:
    """Fuzzy: the query's letters appear in order in the text (case-insensitive)."""
    position = 0
    text = text.lower()
    for letter in query.lower().replace(" ", ""):
        position = text.find(letter, position)
        if position < 0:
            return False
        position += 1
    return True


def match_score(query: str, title: str, haystack: str) -> int | None:
    """How well a node matches what was typed, lower is better (None: no match): the title
    itself, then a word of the title starting with it, then the title containing it, then the
    type name or category containing it, then its letters in order in the title, then
    anywhere. So "invert" lists Invert Image first, not Int or VAE Encode for Inpainting."""
    query, title, haystack = query.lower().strip(), title.lower(), haystack.lower()
    if not query:
        return 0
    if title == query:
        return 0
    words = title.replace("(", " ").replace("/", " ").split()
    if title.startswith(query) or any(word.startswith(query) for word in words):
        return 1
    if query in title:
        return 2
    if query in haystack:
        return 3
    if matches(query, title):
        return 4
    if matches(query, haystack):
        return 5
    return None


def ranked(registry: Registry, query: str, accepts: Callable[[Any], bool] | None = None) -> list[str]:
    """Type names matching the query, best first; ``accepts`` keeps only some node classes
    (those with a socket a dragged wire fits)."""
    scored = []
    for cls in registry:
        if accepts is not None and not accepts(cls):
            continue
        score = match_score(query, cls.title, f"{cls.title} {cls.type_name} {cls.category}")
        if score is not None:
            scored.append((score, cls.title.lower(), cls.type_name))
    return [type_name for *_, type_name in sorted(scored)]


class NodeSearch(QDialog):
    """A line to type in and the matching node types; Enter adds the highlighted one."""

    def __init__(self, registry: Registry, parent: QWidget | None = None,
                 accepts: Callable[[Any], bool] | None = None, title: str = "Add node") -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.registry = registry
        self.accepts = accepts
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search nodes…")
        self.results = QListWidget()
        layout = QVBoxLayout(self)
        layout.addWidget(self.query)
        layout.addWidget(self.results)
        self.query.textChanged.connect(self.refresh)
        self.query.returnPressed.connect(self.accept)
        self.results.itemActivated.connect(lambda _item: self.accept())
        self.resize(420, 380)
        self.refresh("")

    def refresh(self, text: str) -> None:
        self.results.clear()
        for type_name in ranked(self.registry, text, self.accepts):
            cls = self.registry.get(type_name)
            item = QListWidgetItem(f"{cls.title}    —    {cls.category}")
            item.setData(Qt.UserRole, type_name)
            item.setToolTip(cls.help_text())
            self.results.addItem(item)
        self.results.setCurrentRow(0)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key_Down, Qt.Key_Up):
            self.results.keyPressEvent(event)
            return
        super().keyPressEvent(event)

    def chosen(self) -> str | None:
        item = self.results.currentItem()
        return item.data(Qt.UserRole) if item is not None else None
