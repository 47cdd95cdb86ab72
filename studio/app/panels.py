"""The dock panels around the canvas: the node library to drag from, the inspector of the
selected node, and the problems of the last run (click one to select its node)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QMimeData, Qt, QTimer, Signal
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.app.editors import FieldEditor, editor_for, help_text
from studio.app.search import matches
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
            parent = self._category_item(categories, cls.category)
            item = QTreeWidgetItem(parent, [cls.title])
            item.setData(0, Qt.UserRole, cls.type_name)
            item.setToolTip(0, f"{cls.type_name}\n\n{help_text(cls.help_text())}")
        if query:
            self.tree.expandAll()

    def _category_item(self, categories: dict[str, QTreeWidgetItem], path: str) -> QTreeWidgetItem:
        """The tree item of a category, nested by its "/" parts (advanced → conditioning)."""
        if path in categories:
            return categories[path]
        parent_path, _, name = path.rpartition("/")
        parent = self._category_item(categories, parent_path) if parent_path else None
        item = QTreeWidgetItem(parent if parent is not None else self.tree, [name])
        item.setFlags(item.flags() & ~Qt.ItemIsDragEnabled)
        categories[path] = item
        return item

    def item_for(self, type_name: str) -> QTreeWidgetItem | None:
        found = self.tree.findItems("*", Qt.MatchWildcard | Qt.MatchRecursive)
        return next((item for item in found if item.data(0, Qt.UserRole) == type_name), None)

    def _activated(self, item: QTreeWidgetItem) -> None:
        type_name = item.data(0, Qt.UserRole)
        if type_name:
            self.add_requested.emit(type_name)


class Inspector(QScrollArea):
    """The selected node's title, type, documentation and an editor per value; each edit is
    one undoable step (through the canvas). It scrolls rather than squeezing its editors, and
    with several nodes selected it says which."""

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry
        self.scene: Any = None
        self.node_id: str | None = None
        self.selection: list[str] = []
        self.heading = QLabel("Nothing selected")
        self.heading.setWordWrap(True)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.docs = QLabel()
        self.docs.setWordWrap(True)
        self.docs.setTextInteractionFlags(Qt.TextSelectableByMouse)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.heading)
        layout.addLayout(self.form)
        layout.addSpacing(8)
        layout.addWidget(self.docs)
        layout.addStretch(1)
        self.setWidget(body)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setMinimumWidth(260)
        self.editors: dict[str, QWidget] = {}
        self.field_editors: dict[str, FieldEditor] = {}
        # Set by the window: the files a model or picture field can name, and how a picture
        # chosen from elsewhere is brought into the input folder.
        self.file_choices: Any = None
        self.import_picture: Any = None
        # A timer the inspector owns (not QTimer.singleShot), so it dies with the inspector.
        self.refresh_timer = QTimer(self)
        self.refresh_timer.setSingleShot(True)
        self.refresh_timer.setInterval(0)
        self.refresh_timer.timeout.connect(self.refresh)

    def schedule_refresh(self) -> None:
        self.refresh_timer.start()

    def show_selection(self, scene: Any, node_ids: list[str]) -> None:
        """One node: its editors. Several: who they are. None: say so."""
        if len(node_ids) == 1:
            self.show_node(scene, node_ids[0])
            return
        self.show_node(scene, None)
        self.selection = list(node_ids)
        if node_ids and scene is not None:
            names = [scene.workflow.nodes[n].label for n in node_ids if n in scene.workflow.nodes]
            shown = "<br>".join(names[:12]) + ("<br>…" if len(names) > 12 else "")
            self.heading.setText(f"<b>{len(node_ids)} nodes selected</b><br>"
                                 f"<span style='color:#9aa0a6'>{shown}</span>")
            self._common_fields(scene, node_ids)

    def _common_fields(self, scene: Any, node_ids: list[str]) -> None:
        """Editors for the fields every selected node has (same name and type, not wired):
        a value set here is set on all of them, as one undoable step. A field whose values
        differ shows the first node's and says so."""
        nodes = [scene.workflow.nodes[n] for n in node_ids if n in scene.workflow.nodes]
        classes = [self.registry.get(node.type) for node in nodes]
        if not nodes or None in classes:
            return
        first = [spec for spec in classes[0].spec().inputs if spec.has_widget]
        for spec in first:
            if not all(any(other.name == spec.name and other.type == spec.type and other.has_widget
                           for other in cls.spec().inputs) for cls in classes[1:]):
                continue
            if any(spec.name in node.links for node in nodes):
                continue
            values = [node.values.get(spec.name, spec.default) for node in nodes]
            editor = editor_for(spec, values[0])
            editor.committed.connect(lambda value, name=spec.name: self._set_all(name, value))
            self.field_editors[spec.name] = editor
            self.editors[spec.name] = editor.widget
            label = spec.name if len(set(map(repr, values))) == 1 else f"{spec.name} (differs)"
            self.form.addRow(label, editor.widget)

    def _set_all(self, name: str, value: Any) -> None:
        if self.scene is not None:
            self.scene.set_value_on_all([n for n in self.selection if n in self.scene.workflow.nodes], name, value)

    def show_node(self, scene: Any, node_id: str | None) -> None:
        self.commit()
        self.scene, self.node_id = scene, node_id
        self.selection = [node_id] if node_id else []
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors, self.field_editors = {}, {}
        node = scene.workflow.nodes.get(node_id) if scene is not None and node_id else None
        cls = self.registry.get(node.type) if node is not None else None
        if node is None:
            self.heading.setText("Nothing selected")
            self.docs.setText("")
            return
        self.heading.setText(f"<b>{node.label}</b><br><span style='color:#9aa0a6'>{node.type} #{node.id}</span>")
        self.docs.setText(help_text(cls.help_text()) if cls else
                          "This node type is not installed; its wires and values are kept as they were.")
        if cls is None:
            for name, value in node.values.items():
                kept = QLabel(str(value))
                kept.setWordWrap(True)
                self.form.addRow(name, kept)
            return
        for spec in cls.spec().inputs:
            if not spec.has_widget or spec.name in node.links:
                continue
            files = self.file_choices.choices(node.type, spec.name) if self.file_choices is not None else None
            picture = (self.file_choices.image_path
                       if files is not None and self.file_choices.kind_of(node.type, spec.name) == "input images"
                       else None)
            editor = editor_for(spec, node.values.get(spec.name, spec.default), files, picture, self.import_picture)
            editor.committed.connect(lambda value, name=spec.name: self._set(name, value))
            self.field_editors[spec.name] = editor
            self.editors[spec.name] = editor.widget
            self.form.addRow(spec.name, editor.widget)
            if spec.seed:
                self.form.addRow("  after each run", self._seed_control_box(node))

    def _seed_control_box(self, node: Any) -> QComboBox:
        from studio.graph.seeds import CONTROLS, seed_control

        box = QComboBox()
        box.addItems(list(CONTROLS))
        box.setCurrentText(seed_control(node))
        box.setToolTip("What the seed does after each queued run, as ComfyUI's control after generate")
        box.currentTextChanged.connect(lambda control: self.scene.set_seed_control(self.node_id, control))
        self.seed_control = box
        return box

    def refresh(self) -> None:
        """Show the values again after an edit elsewhere (canvas, undo)."""
        if self.node_id is not None:
            self.show_node(self.scene, self.node_id)

    def commit(self) -> None:
        """Hand over what is typed in any editor (even one still being typed in)."""
        for editor in list(self.field_editors.values()):
            editor.commit()

    def update_value(self, name: str, value: Any) -> None:
        """Show a value changed elsewhere (canvas, undo) in its editor, without emitting an edit."""
        editor = self.field_editors.get(name)
        if editor is not None:
            editor.show_value(value)

    def show_default(self, name: str) -> None:
        """A field went back to its default (its own value was removed, e.g. by undo)."""
        node = self.scene.workflow.nodes.get(self.node_id) if self.scene is not None else None
        cls = self.registry.get(node.type) if node is not None else None
        spec = cls.spec().input(name) if cls else None
        if spec is not None:
            self.update_value(name, spec.default)

    def _set(self, name: str, value: Any) -> None:
        if self.scene is None or self.node_id not in self.scene.workflow.nodes:
            return
        self.scene.set_value(self.node_id, name, value)


class _Found:
    """Problems found by a check, shaped like a run report's."""

    def __init__(self, problems: list[Any], warnings: list[Any]) -> None:
        self.problems, self.warnings, self.errors = problems, warnings, []


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

    def show_problems(self, problems: list[Any], label_of: Any, failure: str = "") -> None:
        """The problems a check of the graph as it is now found (before any run)."""
        errors = [p for p in problems if p.is_error]
        warnings = [p for p in problems if not p.is_error]
        self.show_report(_Found(errors, warnings), label_of)
        if failure:
            self.addItem(QListWidgetItem(f"Workflow: {failure}"))

    def _clicked(self, item: QListWidgetItem) -> None:
        node_id = item.data(Qt.UserRole)
        if node_id:
            self.node_chosen.emit(node_id)
