"""Node search: type a few letters of a node's title, type name or category."""

from __future__ import annotations

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


def ranked(registry: Registry, query: str) -> list[str]:
    """Type names matching the query, best first (title starts with it, then contains it,
    then the fuzzy matches)."""
    scored = []
    for cls in registry:
        haystack = f"{cls.title} {cls.type_name} {cls.category}"
        if not query or matches(query, haystack):
            title = cls.title.lower()
            score = 0 if title.startswith(query.lower()) else 1 if query.lower() in haystack.lower() else 2
            scored.append((score, cls.title.lower(), cls.type_name))
    return [type_name for _, _, type_name in sorted(scored)]


class NodeSearch(QDialog):
    """A line to type in and the matching node types; Enter adds the highlighted one."""

    def __init__(self, registry: Registry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add node")
        self.registry = registry
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
        for type_name in ranked(self.registry, text):
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
