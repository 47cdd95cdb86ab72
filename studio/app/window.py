"""The main window: the canvas, the node library, inspector and problems panels, the file and
edit actions with standard shortcuts, Run and Cancel, and a status bar.

It wires observers to the graph model (canvas, inspector, live check, autosave) and to the
run queue model (queue panel, progress bar, Cancel); documents (open, new, save, recovery)
always ask before dropping unsaved work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import qtawesome as qta
import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence, QUndoGroup
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from studio.app import theme
from studio.app.autosave import AUTOSAVE_SECONDS
from studio.app.canvas import CanvasScene
from studio.app.documents import Document
from studio.app.file_choices import IMAGE_SUFFIXES, FileChoices
from studio.app.live_check import CheckResult, LiveCheck
from studio.app.panels import Inspector, NodeLibrary, ProblemsPanel
from studio.app.preferences import Preferences, SettingsDialog
from studio.app.run_controller import RunController
from studio.app.run_queue import RunEntry, RunQueue
from studio.app.runs import Gallery, RunQueuePanel
from studio.app.view import CanvasView
from studio.engine import Engine
from studio.graph import Workflow, WorkflowFormatError, save
from studio.graph import events as ev
from studio.graph.files import open_workflow
from studio.graph.model import NodeMode
from studio.graph.png import workflow_texts
from studio.registry import Registry
from studio.settings import Settings


class MainWindow(QMainWindow):
    def __init__(self, registry: Registry, settings: Settings, engine: Engine, workflow: Workflow | None = None,
                 path: Path | None = None, engine_factory: Callable[[Settings], Engine] | None = None) -> None:
        super().__init__()
        self.registry, self.settings, self.engine = registry, settings, engine
        # Builds an engine for changed settings (the app's entry point gives it the model services).
        self.engine_factory = engine_factory or (
            lambda changed: Engine(registry, changed, image_metadata=workflow_texts))
        self.preferences = Preferences.for_settings(settings)
        theme.apply(self.preferences.theme)
        # One document per tab, each with its own undo stack; the group's actions follow the
        # current one.
        self.undo_group = QUndoGroup(self)
        self.documents: list[Document] = []
        self.current = self._new_document_state()
        # The view does not own its scenes; the window does (see set_workflow). Every Qt
        # object here has a parent: one left to Python's garbage collector may be deleted on
        # the engine's worker thread, leaving its timers behind on this one.
        self.current.scene = CanvasScene(Workflow(), registry, self.current.undo_stack)
        self.current.scene.setParent(self)
        self.view = CanvasView(self.current.scene)
        self.tab_bar = QTabBar()
        self.tab_bar.setTabsClosable(True)
        self.tab_bar.setMovable(False)
        self.tab_bar.setExpanding(False)
        self.tab_bar.setDocumentMode(True)
        self.tab_bar.addTab("Untitled")
        self.tab_bar.currentChanged.connect(self._tab_chosen)
        self.tab_bar.tabCloseRequested.connect(self.close_tab)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.tab_bar)
        column.addWidget(self.view, 1)
        self.setCentralWidget(central)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self.live_check = LiveCheck(self, lambda: self.engine)
        self.live_check.checked.connect(self._checked)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start(AUTOSAVE_SECONDS * 1000)
        self.runs_control = RunController(self)
        self.runner = self.runs_control.runner
        self.file_choices = FileChoices(settings, self)
        self._build_docks()
        self.inspector.file_choices = self.file_choices
        self.inspector.import_picture = self.import_picture
        self.file_choices.changed.connect(self.inspector.schedule_refresh)
        self._build_actions()
        self.setAcceptDrops(True)
        self.resize(1400, 900)
        self.set_workflow(workflow or Workflow(), path)

    # -- documents (tabs) ------------------------------------------------------------------
    def _new_document_state(self) -> Document:
        document = Document(self, self.settings.autosave_dir)
        self.undo_group.addStack(document.undo_stack)
        self.undo_group.setActiveStack(document.undo_stack)
        # A bound slot, not a lambda: Qt drops the connection when the window is deleted.
        document.undo_stack.cleanChanged.connect(self._clean_changed)
        self.documents.append(document)
        return document

    def _document_property(name: str, writable: bool = True) -> property:  # noqa: N805  (run at class creation)
        """The current tab's attribute ``name``, read (and written) through the window."""
        def write(self: MainWindow, value: Any) -> None:
            setattr(self.current, name, value)
        return property(lambda self: getattr(self.current, name), write if writable else None)

    scene = _scene = _document_property("scene", writable=False)
    undo_stack = _document_property("undo_stack", writable=False)
    autosaver = _document_property("autosaver", writable=False)

    @property
    def workflow(self) -> Workflow:
        return self.scene.workflow

    path = _document_property("path")
    display_name = _document_property("display_name")
    recovered = _document_property("recovered")
    _autosaved_index = _document_property("autosaved_index")

    def new_tab(self, workflow: Workflow | None = None, path: Path | None = None, name: str | None = None) -> Document:
        """Open a workflow (an empty one by default) in a tab of its own."""
        self.commit_edits()
        previous = self.current
        document = self._new_document_state()
        document.scene = previous.scene  # replaced at once by set_workflow, which detaches it
        self.current = document
        self.tab_bar.blockSignals(True)
        self.tab_bar.addTab("Untitled")
        self.tab_bar.setCurrentIndex(len(self.documents) - 1)
        self.tab_bar.blockSignals(False)
        self._set_scene(CanvasScene(Workflow(), self.registry, document.undo_stack), detach=None)
        self.set_workflow(workflow or Workflow(), path, name)
        return document

    def _tab_chosen(self, index: int) -> None:
        if 0 <= index < len(self.documents) and self.documents[index] is not self.current:
            self.commit_edits()
            self.current = self.documents[index]
            self.undo_group.setActiveStack(self.current.undo_stack)
            self.view.setScene(self.current.scene)
            self.inspector.show_selection(self.scene, self.scene.selected_ids())
            self._update_title()
            self.view.fit()
            self.live_check.schedule(self.workflow)

    def close_tab(self, index: int) -> bool:
        """Close a tab (asking first if it has unsaved changes); the last one is replaced by
        an empty one."""
        self.tab_bar.setCurrentIndex(index)
        self._tab_chosen(index)
        if not self.maybe_save():
            return False
        document = self.documents.pop(index)
        document.autosaver.discard()
        if document.unsubscribe is not None:
            document.unsubscribe()
        document.scene.detach()
        self.undo_group.removeStack(document.undo_stack)
        self.tab_bar.blockSignals(True)
        self.tab_bar.removeTab(index)
        self.tab_bar.blockSignals(False)
        if not self.documents:
            self.current = self._new_document_state()
            self.current.scene = document.scene
            self.tab_bar.addTab("Untitled")
            self.set_workflow(Workflow(), None)
        else:
            self.current = document  # so that _tab_chosen sees a change
            self._tab_chosen(self.tab_bar.currentIndex())
        document.scene.deleteLater()
        return True

    def _set_scene(self, scene: CanvasScene, detach: CanvasScene | None) -> None:
        scene.setParent(self)
        self.view.setScene(scene)
        self.current.scene = scene
        if detach is not None:
            detach.detach()
            detach.blockSignals(True)
            detach.deleteLater()

    def set_workflow(self, workflow: Workflow, path: Path | None, name: str | None = None) -> None:
        """Show ``workflow`` (saved at ``path``, a native file; ``name`` is what to call it
        when it has no such path, e.g. an imported ComfyUI file)."""
        previous = self.current.scene
        self.undo_stack.clear()
        scene = CanvasScene(workflow, self.registry, self.undo_stack)
        # Owned by the window, and the old scene deleted only once the view has let go of it.
        self._set_scene(scene, detach=previous)
        scene.selectionChanged.connect(self._selection_changed)
        scene.file_choices = self.file_choices
        if self.current.unsubscribe is not None:
            self.current.unsubscribe()
        self.current.unsubscribe = scene.workflow.subscribe(self._model_changed)
        self.inspector.show_node(scene, None)
        self.problems.clear()
        self.current.result_keys.clear()
        self.path = path
        self.display_name = path.name if path else (name or "Untitled")
        self.recovered = False
        self._autosaved_index = 0
        self.statusBar().clearMessage()
        self._update_title()
        if self.view.isVisible():
            self.view.fit()
        self.live_check.schedule(workflow)

    def is_modified(self) -> bool:
        return self.recovered or not self.undo_stack.isClean()

    def _clean_changed(self, _clean: bool) -> None:
        self._update_title()

    def _update_title(self) -> None:
        # "[*]" is where Qt shows the unsaved-changes marker.
        self.setWindowTitle(f"{self.display_name}[*] — Seed Studio")
        self.setWindowModified(self.is_modified())
        for index, document in enumerate(self.documents):
            self.tab_bar.setTabText(index, document.display_name + (" •" if document.modified else ""))

    def maybe_save(self) -> bool:
        """Before the graph is replaced or closed: if it has unsaved changes, ask Save /
        Discard / Cancel. True when it is fine to go on."""
        self.commit_edits()
        if not self.is_modified():
            return True
        answer = QMessageBox.question(self, "Unsaved changes", f"Save the changes to {self.display_name} first?",
                                      QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel)
        if answer == QMessageBox.Cancel:
            return False
        if answer == QMessageBox.Save:
            return self._save()
        self.autosaver.discard()  # the user chose to drop these changes
        return True

    def open_file(self, path: Path, ask: bool = True) -> bool:
        """Open a workflow or a picture with one in this tab (asking first when it has unsaved
        changes; an untouched new tab just takes it)."""
        if ask and not self.current.pristine and not self.maybe_save():
            return False
        try:
            workflow, report = open_workflow(path, self.registry.spec)
        except WorkflowFormatError as error:
            QMessageBox.warning(self, "Cannot open the workflow", str(error))
            return False
        native = report.source_format == "native"
        self.set_workflow(workflow, path if native else None, name=path.name)
        self.preferences.add_recent(path)
        if report.unknown_types:
            self.statusBar().showMessage("Node types Seed Studio lacks (kept as placeholders): "
                                         + ", ".join(report.unknown_types))
        else:
            self.statusBar().showMessage(f"Opened {path.name}", 5000)
        return True

    def new_workflow(self) -> bool:
        """File → New: an empty workflow in a new tab (nothing open is dropped)."""
        self.new_tab()
        return True

    def recover(self, workflow: Workflow, original: Path | None) -> None:
        """Show an autosaved graph: named as the file it was opened from, and unsaved."""
        self.set_workflow(workflow, original if original is not None and original.suffix == ".json" else None,
                          name=original.name if original else None)
        self.recovered = True
        self._update_title()

    def _open(self) -> None:
        if not self.maybe_save():
            return
        name, _ = QFileDialog.getOpenFileName(self, "Open workflow", "", "Workflows (*.json *.png)")
        if name:
            self.open_file(Path(name), ask=False)

    def _save(self, choose: bool = False) -> bool:
        """Save (asking for a name when there is none, or with ``choose``); True when saved."""
        self.commit_edits()
        path = self.path
        if path is None or choose:
            suggested = str(self.path or Path(Path(self.display_name).stem + ".json"))
            name, _ = QFileDialog.getSaveFileName(self, "Save workflow", suggested, "Workflows (*.json)")
            if not name:
                return False
            path = with_json_suffix(Path(name))
        try:
            save(self.workflow, path)
        except OSError as error:
            QMessageBox.warning(self, "Cannot save the workflow", f"{path}: {error.strerror or error}")
            return False
        self.preferences.add_recent(path)
        self.path = path
        self.display_name = path.name
        self.recovered = False
        self.undo_stack.setClean()
        self.autosaver.discard()
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def commit_edits(self) -> None:
        """Hand over what is being typed in an editor (the inspector's), so that Run, Save,
        Copy and export see the value on screen, not the one before it."""
        self.inspector.commit()

    # -- clipboard -------------------------------------------------------------------------
    CLIPBOARD_TYPE = "application/x-seed-studio-nodes"

    def copy(self) -> bool:
        import json

        from PySide6.QtCore import QMimeData
        from PySide6.QtWidgets import QApplication

        self.commit_edits()
        data = self.scene.copy_selected()
        if data is None:
            return False
        mime = QMimeData()
        text = json.dumps(data)
        mime.setData(self.CLIPBOARD_TYPE, text.encode())
        mime.setText(text)
        QApplication.clipboard().setMimeData(mime)
        return True

    def cut(self) -> None:
        if self.copy():
            self.scene.delete_selected()

    def paste(self, keep_incoming: bool) -> list[str]:
        from PySide6.QtWidgets import QApplication

        from studio.graph.format import parse_json

        mime = QApplication.clipboard().mimeData()
        if mime is None or not mime.hasFormat(self.CLIPBOARD_TYPE):
            return []
        try:
            # parse_json: what the clipboard holds is refused as a file would be if it could
            # never be saved again.
            data = parse_json(bytes(mime.data(self.CLIPBOARD_TYPE)), "the clipboard")
            return self.scene.paste(data, keep_incoming, at=self._paste_point())
        except (ValueError, KeyError, WorkflowFormatError) as error:
            self.statusBar().showMessage(f"Cannot paste: {error}", 5000)
            return []

    def _paste_point(self) -> tuple[float, float]:
        """Where pasted nodes go: at the mouse when it is over the canvas, else mid-view."""
        from PySide6.QtGui import QCursor

        viewport = self.view.viewport()
        local = viewport.mapFromGlobal(QCursor.pos())
        if not viewport.rect().contains(local):
            local = viewport.rect().center()
        point = self.view.mapToScene(local)
        return (point.x(), point.y())

    def duplicate(self) -> list[str]:
        self.commit_edits()
        data = self.scene.copy_selected()
        return self.scene.paste(data, keep_incoming=True) if data else []

    # -- autosave and closing ------------------------------------------------------------
    def autosave(self) -> bool:
        """Copy each tab's graph to the autosave folder if it changed since its last copy."""
        saved = False
        for document in self.documents:
            stack = document.undo_stack
            if stack.index() == document.autosaved_index or stack.isClean():
                continue
            document.autosaver.save(document.scene.workflow, document.path)
            document.autosaved_index = stack.index()
            saved = True
        return saved

    def closeEvent(self, event) -> None:
        for index, document in enumerate(list(self.documents)):
            if document.modified:
                self.tab_bar.setCurrentIndex(index)
                self._tab_chosen(index)
                if not self.maybe_save():
                    event.ignore()
                    return
        self.autosave_timer.stop()
        for document in self.documents:
            document.autosaver.discard()
        self.live_check.shutdown()
        event.accept()

    # -- drag and drop: a workflow file or a rendered PNG opens; a picture adds a LoadImage --
    PICTURE_SUFFIXES = IMAGE_SUFFIXES

    def dragEnterEvent(self, event) -> None:
        if any(url.toLocalFile().lower().endswith((".json", *self.PICTURE_SUFFIXES))
               for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            path = Path(url.toLocalFile())
            suffix = path.suffix.lower()
            if suffix == ".json" or (suffix == ".png" and has_workflow(path)):
                if self.open_file(path):
                    event.acceptProposedAction()
                return
            if suffix in self.PICTURE_SUFFIXES:
                local = self.view.viewport().mapFrom(self, event.position().toPoint())
                point = self.view.mapToScene(local)
                if self.add_picture(path, (point.x(), point.y())) is not None:
                    event.acceptProposedAction()
                return

    def import_picture(self, path: Path) -> str | None:
        """A picture as LoadImage names it: its name in an input folder, copied into the first
        one when it is elsewhere (LoadImage reads only from the input folders)."""
        import shutil

        resolved = path.resolve()
        for folder in self.settings.image_search_dirs:
            try:
                return resolved.relative_to(folder.resolve()).as_posix()
            except ValueError:
                continue
        target_dir = self.settings.input_dirs[0]
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / path.name
            number = 1
            while target.exists():  # never overwrite a picture already there
                target = target_dir / f"{path.stem}-{number}{path.suffix}"
                number += 1
            shutil.copyfile(path, target)
        except OSError as error:
            QMessageBox.warning(self, "Cannot use the picture", f"{path}: {error.strerror or error}")
            return None
        self.statusBar().showMessage(f"Copied {path.name} into the input folder {target_dir}", 5000)
        return target.name

    def defaults_of(self, type_name: str) -> dict[str, Any]:
        cls = self.registry.get(type_name)
        return {spec.name: spec.default for spec in cls.spec().inputs} if cls else {}

    def graph_of_picture(self, path: Path) -> Workflow | None:
        try:
            workflow, _ = open_workflow(path, self.registry.spec)
        except WorkflowFormatError:
            return None
        return workflow

    def add_picture(self, path: Path, at: tuple[float, float]) -> str | None:
        """Dropping a picture on the canvas: a LoadImage for it, where it was dropped."""
        name = self.import_picture(path)
        if name is None:
            return None
        return self.scene.add_node("LoadImage", at, {"image": name})

    # -- panels --------------------------------------------------------------------------
    def _build_docks(self) -> None:
        self.library = NodeLibrary(self.registry)
        self.library.add_requested.connect(self.add_node_at_centre)
        self.inspector = Inspector(self.registry)
        self.problems = ProblemsPanel()
        self.problems.node_chosen.connect(self.select_node)
        self.queue_panel = RunQueuePanel()
        self.queue_panel.cancel_current.connect(self.cancel)
        self.queue_panel.remove_queued.connect(self.cancel_queued)
        self.gallery = Gallery(graph_of=self.graph_of_picture, defaults_of=self.defaults_of)
        self.gallery.open_graph_requested.connect(lambda path: self.open_file(path))
        self.gallery.load_folder(self.settings.output_dir)
        docks = {}
        for title, widget, area in (("Nodes", self.library, Qt.LeftDockWidgetArea),
                                    ("Inspector", self.inspector, Qt.RightDockWidgetArea),
                                    ("Gallery", self.gallery, Qt.RightDockWidgetArea),
                                    ("Problems", self.problems, Qt.BottomDockWidgetArea),
                                    ("Queue", self.queue_panel, Qt.BottomDockWidgetArea)):
            dock = docks[title] = QDockWidget(title, self)
            dock.setObjectName(f"dock-{title.lower()}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
        self.tabifyDockWidget(docks["Problems"], docks["Queue"])
        docks["Problems"].raise_()
        self.resizeDocks([self.findChild(QDockWidget, "dock-nodes"), self.findChild(QDockWidget, "dock-inspector")],
                         [210, 320], Qt.Horizontal)
        self.resizeDocks([self.findChild(QDockWidget, "dock-problems")], [110], Qt.Vertical)

    def add_node_at_centre(self, type_name: str) -> str:
        """Add a node in the middle of the view (at the nearest free place there), selected."""
        centre = self.view.mapToScene(self.view.viewport().rect().center())
        node_id = self.scene.add_node(type_name, (centre.x() - 115, centre.y() - 60))
        self.view.stop_keeping_fit()
        self.view.ensureVisible(self.scene.nodes[node_id], 20, 20)
        return node_id

    def select_node(self, node_id: str) -> None:
        item = self.scene.nodes.get(node_id)
        if item is None:
            return
        self.scene.clearSelection()
        item.setSelected(True)
        self.view.stop_keeping_fit()
        self.view.centerOn(item)

    def _selection_changed(self) -> None:
        if not shiboken6.isValid(self._scene) or not shiboken6.isValid(self.inspector):
            return  # the window is being torn down
        self.inspector.show_selection(self.scene, self.scene.selected_ids())

    def _model_changed(self, event: ev.GraphEvent) -> None:
        if isinstance(event, ev.SEMANTIC_EVENTS):
            self.live_check.schedule(self.workflow)
        node_id = ev.node_of(event)
        if self.inspector.node_id is None or node_id != self.inspector.node_id:
            return
        if isinstance(event, ev.ValueChanged):
            self.inspector.update_value(event.input, event.value)
        elif isinstance(event, ev.ValueUnset):
            self.inspector.show_default(event.input)
        elif isinstance(event, ev.NodeRemoved):
            self.inspector.show_node(self.scene, None)
        elif not isinstance(event, ev.NodeMoved):
            # Later, not now: the change may come from one of the inspector's own editors.
            self.inspector.schedule_refresh()

    def _checked(self, result: CheckResult) -> None:
        """A background check of the graph as it is now: mark problems, out-of-date results."""
        if not shiboken6.isValid(self._scene):
            return
        errors = {}
        for problem in result.problems:
            if problem.is_error:
                for node_id in (problem.node_id, *problem.node_ids):
                    if node_id and node_id not in errors:
                        errors[node_id] = str(problem)
        self.scene.set_problems(errors)
        self.scene.set_stale({node_id for node_id, key in self.result_keys.items() if result.keys.get(node_id) != key})
        if not self.runner.busy:
            self.problems.show_problems(result.problems, self.label_of, result.failure)

    def label_of(self, node_id: str) -> str:
        node = self.workflow.nodes.get(node_id)
        return node.label if node is not None else f"#{node_id}"

    # -- actions -------------------------------------------------------------------------
    def _build_actions(self) -> None:
        # action → its icon's name, so a theme change recolours the icons (legible on light too).
        self.icon_names: dict[QAction, str] = {}
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        menus = {name: self.menuBar().addMenu(name)
                 for name in ("&File", "&Edit", "&Node", "&Arrange", "&Run", "&View", "&Help")}
        self.menus = menus

        def action(menu: str, text: str, shortcut: Any, slot: Any, icon: str = "") -> QAction:
            item = QAction(text, self)
            if icon:
                item.setIcon(qta.icon(icon, color=theme.TEXT.name()))
                self.icon_names[item] = icon
                toolbar.addAction(item)
            if shortcut:
                item.setShortcut(QKeySequence(shortcut))
            item.triggered.connect(slot)
            self.addAction(item)
            menus[menu].addAction(item)
            return item

        action("&File", "New", QKeySequence.New, self.new_workflow, "mdi6.file-outline")
        close_tab = action("&File", "Close tab", None, lambda: self.close_tab(self.tab_bar.currentIndex()))
        close_keys = QKeySequence.keyBindings(QKeySequence.Close)
        close_tab.setShortcuts(close_keys + [key for key in (QKeySequence("Ctrl+W"),) if key not in close_keys])
        action("&File", "Open…", QKeySequence.Open, self._open, "mdi6.folder-open-outline")
        action("&File", "Save", QKeySequence.Save, lambda: self._save(), "mdi6.content-save-outline")
        action("&File", "Save As…", QKeySequence.SaveAs, lambda: self._save(choose=True))
        self.recent_menu = menus["&File"].addMenu("Open Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        menus["&File"].addSeparator()
        action("&File", "Settings…", QKeySequence.Preferences if not QKeySequence(QKeySequence.Preferences).isEmpty()
               else "Ctrl+,", self.open_settings)
        menus["&File"].addSeparator()
        action("&File", "Quit", QKeySequence.Quit, self.close)
        undo = self.undo_group.createUndoAction(self, "Undo")
        undo.setShortcut(QKeySequence.Undo)
        undo.setIcon(qta.icon("mdi6.undo", color=theme.TEXT.name()))
        self.icon_names[undo] = "mdi6.undo"
        redo = self.undo_group.createRedoAction(self, "Redo")
        # Ctrl+Shift+Z (the platform's Redo) and Ctrl+Y, as most Windows and Linux programs.
        redo_keys = QKeySequence.keyBindings(QKeySequence.Redo)
        redo.setShortcuts(redo_keys + [key for key in (QKeySequence("Ctrl+Y"), QKeySequence("Ctrl+Shift+Z"))
                                       if key not in redo_keys])
        redo.setIcon(qta.icon("mdi6.redo", color=theme.TEXT.name()))
        self.icon_names[redo] = "mdi6.redo"
        for item in (undo, redo):
            self.addAction(item)
            toolbar.addAction(item)
            menus["&Edit"].addAction(item)
        menus["&Edit"].addSeparator()
        for text, shortcut, slot in (("Copy", QKeySequence.Copy, self.copy),
                                     ("Cut", QKeySequence.Cut, self.cut),
                                     ("Paste", QKeySequence.Paste, lambda: self.paste(False)),
                                     ("Paste with incoming wires", "Ctrl+Shift+V", lambda: self.paste(True)),
                                     ("Duplicate", "Ctrl+D", self.duplicate),
                                     ("Delete", QKeySequence.Delete, lambda: self.scene.delete_selected()),
                                     ("Delete with reconnect", "Ctrl+Delete",
                                      lambda: self.scene.delete_selected(reconnect=True)),
                                     ("Connect selected nodes", "Ctrl+L", self.connect_selected),
                                     ("Select all", QKeySequence.SelectAll, self.select_all)):
            action("&Edit", text, shortcut, slot)
        self.node_actions = {}
        for key, text, shortcut, slot in (
                ("bypass", "Bypass", "Ctrl+B", lambda: self.scene.toggle_mode_selected(NodeMode.BYPASS)),
                ("mute", "Mute", "Ctrl+M", lambda: self.scene.toggle_mode_selected(NodeMode.MUTE)),
                ("collapse", "Collapse or expand", "Alt+C", lambda: self.scene.toggle_collapsed_selected()),
                ("rename", "Rename…", "F2", self.rename_selected),
                ("group", "Group selected nodes", "Ctrl+G", self.group_selected)):
            self.node_actions[key] = action("&Node", text, shortcut, slot)
        self.colour_menu = menus["&Node"].addMenu("Colour")
        for name, colour in NODE_COLOURS.items():
            item = self.colour_menu.addAction(name)
            item.triggered.connect(lambda _=False, colour=colour: self.scene.color_selected(colour))
        for text, how in (("Align left edges", "align-left"), ("Align top edges", "align-top"),
                          ("Distribute horizontally", "distribute-horizontally"),
                          ("Distribute vertically", "distribute-vertically")):
            action("&Arrange", text, None, lambda _=False, how=how: self.scene.arrange_selected(how))
        toolbar.addSeparator()
        self.run_action = action("&Run", "Run", "Ctrl+Return", self.run, "mdi6.play")
        self.cancel_action = action("&Run", "Cancel", "Escape", self.cancel, "mdi6.stop")
        self.cancel_action.setEnabled(False)
        action("&View", "Fit to window", "Home", self.view.fit, "mdi6.fit-to-screen-outline")
        self.minimap_action = action("&View", "Minimap", None, lambda: None)
        self.minimap_action.setCheckable(True)
        self.minimap_action.setChecked(True)
        self.minimap_action.toggled.connect(self.view.minimap.setVisible)
        for dock in self.findChildren(QDockWidget):
            menus["&View"].addAction(dock.toggleViewAction())
        action("&Help", "Keyboard shortcuts", "F1", self.show_shortcuts)
        action("&Help", "About Seed Studio", None, self.show_about)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.preferences.recent_files():
            item = self.recent_menu.addAction(str(path))
            item.setEnabled(path.is_file())
            item.triggered.connect(lambda _=False, path=path: self.open_file(path))  # asks first
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("No recent files").setEnabled(False)

    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings, self.preferences.theme, self)
        dialog.accepted.connect(lambda: self.apply_settings(dialog))
        dialog.open()
        return dialog

    def apply_settings(self, dialog: SettingsDialog) -> None:
        self.preferences.save_settings(dialog.chosen_roots(), Path(dialog.output_dir.text()).expanduser(),
                                       dialog.low_vram.isChecked())
        self.preferences.theme = dialog.theme.currentText()
        self.set_theme(dialog.theme.currentText())
        changed = self.preferences.apply(self.settings)
        if changed != self.settings:
            self.settings = changed
            if self.runner.busy:
                self.statusBar().showMessage("The new settings apply from the next run", 5000)
            self.engine = self.engine_factory(changed)
            self.file_choices.use(changed)
            self.runner.engine = self.engine

    def set_theme(self, name: str) -> None:
        theme.apply(name)
        for item, icon in self.icon_names.items():
            item.setIcon(qta.icon(icon, color=theme.TEXT.name()))
        self.scene.setBackgroundBrush(theme.BACKGROUND)
        for item in self.scene.nodes.values():
            item.update()
        self.view.viewport().update()

    def rename_selected(self) -> bool:
        """F2: a new title for the selected node (empty gives its type's name back)."""
        from PySide6.QtWidgets import QInputDialog

        chosen = self.scene.selected_ids()
        if len(chosen) != 1:
            return False
        node = self.workflow.nodes[chosen[0]]
        title, ok = QInputDialog.getText(self, "Rename node", f"Title of {node.label}:", text=node.title)
        return bool(ok) and self.scene.rename_node(node.id, title.strip())

    def rename_group(self, group_id: str) -> bool:
        from PySide6.QtWidgets import QInputDialog

        group = self.workflow.groups[group_id]
        title, ok = QInputDialog.getText(self, "Rename group", "Title of the group:", text=group.title)
        if not ok or title.strip() == group.title:
            return False
        self.scene.change_group(group_id, title=title.strip())
        return True

    def group_selected(self) -> str | None:
        group_id = self.scene.group_selected()
        if group_id is None:
            self.statusBar().showMessage("Select the nodes to group first", 5000)
        return group_id

    def shortcut_list(self) -> list[tuple[str, str]]:
        """(action, keys) for every menu action with a shortcut, and the canvas's own keys."""
        found = []
        for menu in self.menus.values():
            for item in menu.actions():
                keys = ", ".join(sequence.toString(QKeySequence.NativeText) for sequence in item.shortcuts())
                if keys:
                    found.append((item.text().replace("&", "").rstrip("…"), keys))
        found += CANVAS_KEYS
        return found

    def show_shortcuts(self) -> Any:
        from PySide6.QtWidgets import QDialog, QTableWidget, QTableWidgetItem, QVBoxLayout

        rows = self.shortcut_list()
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Action", "Keys"])
        for row, (text, keys) in enumerate(rows):
            table.setItem(row, 0, QTableWidgetItem(text))
            table.setItem(row, 1, QTableWidgetItem(keys))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        QVBoxLayout(dialog).addWidget(table)
        dialog.resize(520, 620)
        dialog.show()
        self.shortcuts_dialog = dialog
        return dialog

    def show_about(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("seed-studio")
        except PackageNotFoundError:
            number = "(not installed)"
        QMessageBox.about(self, "About Seed Studio",
                          f"<b>Seed Studio</b> {number}<br>A node-graph tool for diffusion image generation: "
                          "offline, on your own GPU or CPU, and able to open ComfyUI's workflows.")

    def connect_selected(self) -> bool:
        connected = self.scene.connect_selected()
        if not connected and self.scene.last_refusal:
            self.statusBar().showMessage(self.scene.last_refusal, 5000)
        return connected

    def select_all(self) -> None:
        for item in self.scene.nodes.values():
            item.setSelected(True)

    # -- running (see RunController) ------------------------------------------------------
    @property
    def runs(self) -> list[RunEntry]:
        return self.runs_control.queue.entries

    @property
    def queue(self) -> RunQueue:
        return self.runs_control.queue

    @property
    def current_run(self) -> RunEntry | None:
        return self.runs_control.queue.current

    @property
    def last_report(self) -> Any:
        return self.runs_control.last_report

    @last_report.setter
    def last_report(self, report: Any) -> None:
        self.runs_control.last_report = report

    @property
    def result_keys(self) -> dict[str, str]:
        return self.runs_control.result_keys

    def run(self) -> RunEntry:
        """Queue the graph as it is on screen now; it starts at once when nothing else runs."""
        self.commit_edits()
        entry = self.runs_control.run(self.workflow.copy(), Path(self.display_name).stem)
        # As ComfyUI: the run takes the seeds as they are, then seeds set to move on do.
        self.scene.advance_seeds()
        return entry

    def cancel(self) -> None:
        self.runs_control.cancel()

    def cancel_queued(self, number: int) -> None:
        self.runs_control.queue.remove_queued([number])


# ComfyUI's node colour palette (title colours), so coloured imported nodes look the same.
NODE_COLOURS = {"No colour": None, "Red": "#553333", "Brown": "#593930", "Green": "#335533", "Blue": "#333355",
                "Pale blue": "#3f5159", "Cyan": "#335555", "Purple": "#553355", "Yellow": "#665533",
                "Black": "#222222"}
# ComfyUI's group colours.
GROUP_COLOURS = {"Grey": None, "Red": "#b06634", "Brown": "#8a6a4f", "Green": "#4f8a4f", "Blue": "#4f6a8a",
                 "Pale blue": "#3f789e", "Cyan": "#4f8a8a", "Purple": "#8a4f8a", "Yellow": "#b58b2a"}
# Keys the canvas handles itself (not menu actions), for the shortcut list.
CANVAS_KEYS = [("Add a node (search)", "Tab, or double-click the canvas"), ("Fit the graph", "Home, ."),
               ("Move the selection", "Arrows (Shift: further)"), ("Select the next node that way", "Alt+Arrows"),
               ("Add a reroute point", "Double-click a wire"), ("Pan", "Middle mouse button"),
               ("Zoom", "Mouse wheel")]


def has_workflow(path: Path) -> bool:
    """Whether a PNG carries a workflow (one rendered by Seed Studio or ComfyUI)."""
    from studio.graph.png import WORKFLOW_TEXT_KEYS, PngTextError, read_png_text

    try:
        # Only the chunks before the pixels are read, and a text budget applies (hostile files).
        with open(path, "rb") as stream:
            head = stream.read(64 * 1024 * 1024)
        return bool(read_png_text(head, WORKFLOW_TEXT_KEYS))
    except (OSError, PngTextError):
        return False


def with_json_suffix(path: Path) -> Path:
    """A workflow file name as Open lists it: ``.json`` added when it has no suffix."""
    return path if path.suffix.lower() == ".json" else path.with_name(path.name + ".json")


