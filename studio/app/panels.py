"""The dock panels around the canvas: the node library to drag from, the inspector of the
selected node, and the problems of the last run (click one to select its node)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QMimeData, Qt, QTimer, Signal
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit,
                               QListWidget, QListWidgetItem, QPlainTextEdit, QSpinBox, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from studio.app.search import matches
from studio.graph.sockets import BOOLEAN, FLOAT, INT
from studio.registry import Registry

# What a node dragged from the library carries: its type name.
NODE_MIME = "application/x-seed-studio-node-type"


class NodeTree(QTreeWidget):
    """Categories and their node types; a type can be dragged onto the canvas."""

    def __init__(self) -> None:
        super().__init__()
        self.setHeaderHidden(True)
        self.setDragEnabled(True)
        self.setDragDropMode(QTreeWidget.DragOnly)

    def mimeData(self, items: list[QTreeWidgetItem]) -> QMimeData:
        data = QMimeData()
        type_names = [item.data(0, Qt.UserRole) for item in items if item.data(0, Qt.UserRole)]
        if type_names:
            data.setData(NODE_MIME, type_names[0].encode("utf-8"))
            data.setText(type_names[0])
        return data

    def mimeTypes(self) -> list[str]:
        return [NODE_MIME]

    def startDrag(self, actions: Any) -> None:
        item = self.currentItem()
        if item is None or not item.data(0, Qt.UserRole):
            return
        drag = QDrag(self)
        drag.setMimeData(self.mimeData([item]))
        drag.exec(Qt.CopyAction)


class NodeLibrary(QWidget):
    """Every node type by category, with a filter line; drag one onto the canvas, or press
    Enter / double-click to add it at the centre of the view."""

    add_requested = Signal(str)

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter nodes…")
        self.filter.setClearButtonEnabled(True)
        self.tree = NodeTree()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree)
        self.filter.textChanged.connect(self.refresh)
        self.tree.itemActivated.connect(self._activated)
        self.refresh("")

    def refresh(self, query: str) -> None:
        self.tree.clear()
        categories: dict[str, QTreeWidgetItem] = {}
        for cls in sorted(self.registry, key=lambda c: (c.category, c.title.lower())):
            if query and not matches(query, f"{cls.title} {cls.type_name} {cls.category}"):
                continue
            parent = categories.get(cls.category)
            if parent is None:
                parent = categories[cls.category] = QTreeWidgetItem(self.tree, [cls.category])
                parent.setFlags(parent.flags() & ~Qt.ItemIsDragEnabled)
            item = QTreeWidgetItem(parent, [cls.title])
            item.setData(0, Qt.UserRole, cls.type_name)
            item.setToolTip(0, f"{cls.type_name}\n\n{cls.help_text()}")
        if query:
            self.tree.expandAll()

    def item_for(self, type_name: str) -> QTreeWidgetItem | None:
        for index in range(self.tree.topLevelItemCount()):
            category = self.tree.topLevelItem(index)
            for child in range(category.childCount()):
                if category.child(child).data(0, Qt.UserRole) == type_name:
                    return category.child(child)
        return None

    def _activated(self, item: QTreeWidgetItem) -> None:
        type_name = item.data(0, Qt.UserRole)
        if type_name:
            self.add_requested.emit(type_name)


class Inspector(QWidget):
    """The selected node's title, type, documentation and an editor per value; each edit is
    one undoable step (through the canvas)."""

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry
        self.scene: Any = None
        self.node_id: str | None = None
        self.heading = QLabel("Nothing selected")
        self.heading.setWordWrap(True)
        self.form = QFormLayout()
        self.docs = QLabel()
        self.docs.setWordWrap(True)
        self.docs.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.heading)
        layout.addLayout(self.form)
        layout.addWidget(self.docs)
        layout.addStretch(1)
        self.editors: dict[str, QWidget] = {}
        # A timer the inspector owns (not QTimer.singleShot), so it dies with the inspector.
        self.refresh_timer = QTimer(self)
        self.refresh_timer.setSingleShot(True)
        self.refresh_timer.setInterval(0)
        self.refresh_timer.timeout.connect(self.refresh)

    def schedule_refresh(self) -> None:
        self.refresh_timer.start()

    def show_node(self, scene: Any, node_id: str | None) -> None:
        self.scene, self.node_id = scene, node_id
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors = {}
        node = scene.workflow.nodes.get(node_id) if scene is not None and node_id else None
        cls = self.registry.get(node.type) if node is not None else None
        if node is None:
            self.heading.setText("Nothing selected")
            self.docs.setText("")
            return
        self.heading.setText(f"<b>{node.label}</b><br><span style='color:#9aa0a6'>{node.type} #{node.id}</span>")
        self.docs.setText(cls.help_text() if cls else "This node type is not installed; its values are kept.")
        if cls is None:
            return
        for spec in cls.spec().inputs:
            if not spec.has_widget or spec.name in node.links:
                continue
            editor = self._editor(spec, node.values.get(spec.name, spec.default))
            editor.setToolTip(spec.tooltip)
            self.editors[spec.name] = editor
            self.form.addRow(spec.name, editor)

    def refresh(self) -> None:
        """Show the values again after an edit elsewhere (canvas, undo)."""
        self.show_node(self.scene, self.node_id)

    def update_value(self, name: str, value: Any) -> None:
        """Show a value changed elsewhere (canvas, undo) in its editor, without emitting an edit."""
        editor = self.editors.get(name)
        if editor is None:
            return
        editor.blockSignals(True)
        try:
            if isinstance(editor, QComboBox):
                if editor.findText(str(value)) < 0:
                    editor.addItem(str(value))
                editor.setCurrentText(str(value))
            elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                editor.setValue(value)
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QPlainTextEdit):
                if editor.toPlainText() != str(value):
                    editor.setPlainText(str(value))
            elif isinstance(editor, QLineEdit) and editor.text() != str(value):
                editor.setText(str(value))
        finally:
            editor.blockSignals(False)

    def _editor(self, spec: Any, value: Any) -> QWidget:
        name = spec.name
        choices = spec.choice_list()
        if choices is not None:
            box = QComboBox()
            box.addItems(choices if value in choices or value is None else [str(value), *choices])
            box.setCurrentText(str(value))
            box.currentTextChanged.connect(lambda text: self._set(name, text))
            return box
        if spec.type == INT:
            spin = QSpinBox()
            spin.setRange(max(int(spec.min) if spec.min is not None else -2**31, -2**31),
                          min(int(spec.max) if spec.max is not None else 2**31 - 1, 2**31 - 1))
            spin.setSingleStep(int(spec.step or 1))
            spin.setValue(int(value or 0))
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(lambda number: self._set(name, int(number)))
            return spin
        if spec.type == FLOAT:
            spin = QDoubleSpinBox()
            spin.setDecimals(3)
            spin.setRange(spec.min if spec.min is not None else -1e9, spec.max if spec.max is not None else 1e9)
            spin.setSingleStep(float(spec.step or 0.1))
            spin.setValue(float(value or 0.0))
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(lambda number: self._set(name, float(number)))
            return spin
        if spec.type == BOOLEAN:
            check = QCheckBox()
            check.setChecked(bool(value))
            check.toggled.connect(lambda on: self._set(name, bool(on)))
            return check
        if spec.multiline:
            text = QPlainTextEdit(str(value or ""))
            text.setFixedHeight(90)
            text.focusOutEvent = lambda event, t=text: (self._set(name, t.toPlainText()),
                                                        QPlainTextEdit.focusOutEvent(t, event))
            return text
        line = QLineEdit(str(value or ""))
        line.editingFinished.connect(lambda: self._set(name, line.text()))
        return line

    def _set(self, name: str, value: Any) -> None:
        if self.scene is None or self.node_id not in self.scene.workflow.nodes:
            return
        self.scene.set_value(self.node_id, name, value)


class ProblemsPanel(QListWidget):
    """The problems, errors and warnings of the last run; clicking one selects its node."""

    node_chosen = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.itemClicked.connect(self._clicked)
        self.itemActivated.connect(self._clicked)

    def show_report(self, report: Any, label_of: Any) -> None:
        self.clear()
        def located(problem: Any) -> str:
            return f"{problem.input}: {problem.message}" if problem.input else problem.message

        entries = [(problem.node_id, located(problem)) for problem in getattr(report, "problems", [])]
        entries += [(error.node_id, error.message) for error in getattr(report, "errors", [])]
        # Warnings (problems away from what ran) come last, marked as such.
        entries += [(warning.node_id, f"warning: {located(warning)}") for warning in getattr(report, "warnings", [])]
        for node_id, message in entries:
            where = label_of(node_id) if node_id else "Workflow"
            item = QListWidgetItem(f"{where}: {message}")
            item.setData(Qt.UserRole, node_id)
            item.setToolTip(message)
            self.addItem(item)

    def _clicked(self, item: QListWidgetItem) -> None:
        node_id = item.data(Qt.UserRole)
        if node_id:
            self.node_chosen.emit(node_id)
