"""The main window: the canvas, the node library, inspector and problems panels, the file and
edit actions with standard shortcuts, Run and Cancel, and a status bar."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import qtawesome as qta
import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QImage, QKeySequence, QUndoStack
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox, QProgressBar

from studio.app import theme
from studio.app.autosave import AUTOSAVE_SECONDS, Autosaver
from studio.app.preferences import Preferences, SettingsDialog
from studio.app.canvas import CanvasScene, CanvasView
from studio.app.panels import Inspector, NodeLibrary, ProblemsPanel
from studio.app.runs import Gallery, RunEntry, RunQueuePanel
from studio.app.runner import Runner
from studio.engine import Engine, NodeFailed, NodeFinished, NodeProgress, NodeStarted, RunStarted
from studio.graph import Workflow, WorkflowFormatError, save
from studio.graph.files import open_workflow
from studio.registry import Registry
from studio.settings import Settings


class MainWindow(QMainWindow):
    def __init__(self, registry: Registry, settings: Settings, engine: Engine, workflow: Workflow | None = None,
                 path: Path | None = None, engine_factory: Callable[[Settings], Engine] | None = None) -> None:
        super().__init__()
        self.registry, self.settings, self.engine = registry, settings, engine
        # Builds an engine for changed settings (the app's entry point gives it the model services).
        self.engine_factory = engine_factory or (lambda changed: Engine(registry, changed))
        self.preferences = Preferences.for_settings(settings)
        theme.apply(self.preferences.theme)
        self.undo_stack = QUndoStack(self)
        self.runner = Runner(engine)
        self.runner.setParent(self)
        self.runner.event.connect(self._on_event)
        self.runner.finished.connect(self._on_finished)
        # The view does not own its scene; the window does (see set_workflow). Every Qt
        # object here has a parent: one left to Python's garbage collector may be deleted on
        # the engine's worker thread, leaving its timers behind on this one.
        self._scene = CanvasScene(Workflow(), registry, self.undo_stack)
        self._scene.setParent(self)
        self.view = CanvasView(self._scene)
        self.setCentralWidget(self.view)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self.last_report: Any = None
        self.runs: list[RunEntry] = []
        self.current_run: RunEntry | None = None
        self._run_number = 0
        self.planned: list[str] = []
        self.autosaver = Autosaver(settings.autosave_dir)
        self._autosaved_index = 0
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start(AUTOSAVE_SECONDS * 1000)
        self._unsubscribe: Any = None
        self._build_docks()
        self._build_actions()
        self.setAcceptDrops(True)
        self.resize(1400, 900)
        self.set_workflow(workflow or Workflow(), path)

    # -- documents -----------------------------------------------------------------------
    @property
    def scene(self) -> CanvasScene:
        return self._scene

    @property
    def workflow(self) -> Workflow:
        return self.scene.workflow

    def set_workflow(self, workflow: Workflow, path: Path | None) -> None:
        previous = self._scene
        previous.detach()
        self.undo_stack.clear()
        scene = CanvasScene(workflow, self.registry, self.undo_stack)
        # Owned by the window, and the old scene deleted only once the view has let go of it.
        scene.setParent(self)
        self.view.setScene(scene)
        self._scene = scene
        previous.blockSignals(True)
        previous.deleteLater()
        scene.selectionChanged.connect(self._selection_changed)
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = self._scene.workflow.subscribe(self._model_changed)
        self.inspector.show_node(self._scene, None)
        self.problems.clear()
        self.path = path
        self._autosaved_index = 0
        self.setWindowTitle(f"{path.name if path else 'Untitled'} — Seed Studio")
        self.view.fit()

    def open_file(self, path: Path) -> bool:
        try:
            workflow, report = open_workflow(path, self.registry.spec)
        except WorkflowFormatError as error:
            QMessageBox.warning(self, "Cannot open the workflow", str(error))
            return False
        self.set_workflow(workflow, path if report.source_format == "native" else None)
        self.preferences.add_recent(path)
        if report.unknown_types:
            self.statusBar().showMessage("Node types Seed Studio lacks (kept as placeholders): "
                                         + ", ".join(report.unknown_types), 10000)
        return True

    def _open(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open workflow", "", "Workflows (*.json *.png)")
        if name:
            self.open_file(Path(name))

    def _save(self, choose: bool = False) -> None:
        path = self.path
        if path is None or choose:
            name, _ = QFileDialog.getSaveFileName(self, "Save workflow", "", "Workflows (*.json)")
            if not name:
                return
            path = Path(name)
        save(self.workflow, path)
        self.preferences.add_recent(path)
        self.path = path
        self.undo_stack.setClean()
        self.setWindowTitle(f"{path.name} — Seed Studio")

    # -- clipboard -------------------------------------------------------------------------
    CLIPBOARD_TYPE = "application/x-seed-studio-nodes"

    def copy(self) -> bool:
        import json

        from PySide6.QtCore import QMimeData
        from PySide6.QtWidgets import QApplication

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
            return self.scene.paste(data, keep_incoming)
        except (ValueError, KeyError, WorkflowFormatError) as error:
            self.statusBar().showMessage(f"Cannot paste: {error}", 5000)
            return []

    def duplicate(self) -> list[str]:
        data = self.scene.copy_selected()
        return self.scene.paste(data, keep_incoming=True) if data else []

    # -- autosave and closing ------------------------------------------------------------
    def autosave(self) -> bool:
        """Copy the graph to the autosave folder if it changed since the last copy."""
        if self.undo_stack.index() == self._autosaved_index or self.undo_stack.isClean():
            return False
        self.autosaver.save(self.workflow, self.path)
        self._autosaved_index = self.undo_stack.index()
        return True

    def closeEvent(self, event) -> None:
        if not self.undo_stack.isClean():
            answer = QMessageBox.question(self, "Unsaved changes", "Save the changes to this workflow first?",
                                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel)
            if answer == QMessageBox.Cancel:
                event.ignore()
                return
            if answer == QMessageBox.Save:
                self._save()
                if not self.undo_stack.isClean():
                    event.ignore()
                    return
        self.autosave_timer.stop()
        self.autosaver.discard()
        event.accept()

    # -- drag and drop: a workflow file or a rendered PNG opens ----------------------------
    def dragEnterEvent(self, event) -> None:
        if any(url.toLocalFile().lower().endswith((".json", ".png")) for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in (".json", ".png") and self.open_file(path):
                event.acceptProposedAction()
                return

    # -- panels --------------------------------------------------------------------------
    def _build_docks(self) -> None:
        self.library = NodeLibrary(self.registry)
        self.library.add_requested.connect(self.add_node_at_centre)
        self.inspector = Inspector(self.registry)
        self.problems = ProblemsPanel()
        self.problems.node_chosen.connect(self.select_node)
        self.queue_panel = RunQueuePanel()
        self.queue_panel.cancel_current.connect(self.runner.cancel)
        self.queue_panel.remove_queued.connect(self.cancel_queued)
        self.gallery = Gallery()
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
                         [230, 280], Qt.Horizontal)
        self.resizeDocks([self.findChild(QDockWidget, "dock-problems")], [110], Qt.Vertical)

    def add_node_at_centre(self, type_name: str) -> str:
        centre = self.view.mapToScene(self.view.viewport().rect().center())
        return self.scene.add_node(type_name, (centre.x(), centre.y()))

    def select_node(self, node_id: str) -> None:
        item = self.scene.nodes.get(node_id)
        if item is None:
            return
        self.scene.clearSelection()
        item.setSelected(True)
        self.view.centerOn(item)

    def _selection_changed(self) -> None:
        if not shiboken6.isValid(self._scene) or not shiboken6.isValid(self.inspector):
            return  # the window is being torn down
        chosen = self.scene.selected_ids()
        self.inspector.show_node(self.scene, chosen[0] if len(chosen) == 1 else None)

    def _model_changed(self, event: str, payload: dict[str, Any]) -> None:
        node = payload.get("node") or getattr(payload.get("link"), "target", None)
        node_id = node if isinstance(node, str) else getattr(node, "id", None)
        if self.inspector.node_id is None or node_id != self.inspector.node_id:
            return
        if event == "value_changed":
            self.inspector.update_value(payload.get("input", ""), payload.get("value"))
        else:
            # Later, not now: the change may come from one of the inspector's own editors.
            self.inspector.schedule_refresh()

    # -- actions -------------------------------------------------------------------------
    def _build_actions(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        menus = {name: self.menuBar().addMenu(name) for name in ("&File", "&Edit", "&Arrange", "&Run", "&View")}

        def action(menu: str, text: str, shortcut: Any, slot: Any, icon: str = "") -> QAction:
            item = QAction(text, self)
            if icon:
                item.setIcon(qta.icon(icon, color="#dcdde0"))
                toolbar.addAction(item)
            if shortcut:
                item.setShortcut(QKeySequence(shortcut))
            item.triggered.connect(slot)
            self.addAction(item)
            menus[menu].addAction(item)
            return item

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
        undo = self.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcut(QKeySequence.Undo)
        undo.setIcon(qta.icon("mdi6.undo", color="#dcdde0"))
        redo = self.undo_stack.createRedoAction(self, "Redo")
        redo.setShortcut(QKeySequence.Redo)
        redo.setIcon(qta.icon("mdi6.redo", color="#dcdde0"))
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
        for text, how in (("Align left edges", "align-left"), ("Align top edges", "align-top"),
                          ("Distribute horizontally", "distribute-horizontally"),
                          ("Distribute vertically", "distribute-vertically")):
            action("&Arrange", text, None, lambda _=False, how=how: self.scene.arrange_selected(how))
        toolbar.addSeparator()
        self.run_action = action("&Run", "Run", "Ctrl+Return", self.run, "mdi6.play")
        self.cancel_action = action("&Run", "Cancel", "Escape", self.runner.cancel, "mdi6.stop")
        self.cancel_action.setEnabled(False)
        action("&View", "Fit to window", "Home", self.view.fit, "mdi6.fit-to-screen-outline")
        for dock in self.findChildren(QDockWidget):
            menus["&View"].addAction(dock.toggleViewAction())

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.preferences.recent_files():
            item = self.recent_menu.addAction(str(path))
            item.setEnabled(path.is_file())
            item.triggered.connect(lambda _=False, path=path: self.open_file(path))
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
            self.runner.engine = self.engine

    def set_theme(self, name: str) -> None:
        theme.apply(name)
        self.scene.setBackgroundBrush(theme.BACKGROUND)
        for item in self.scene.nodes.values():
            item.update()
        self.view.viewport().update()

    def connect_selected(self) -> bool:
        connected = self.scene.connect_selected()
        if not connected and self.scene.last_refusal:
            self.statusBar().showMessage(self.scene.last_refusal, 5000)
        return connected

    def select_all(self) -> None:
        for item in self.scene.nodes.values():
            item.setSelected(True)

    # -- running -------------------------------------------------------------------------
    def run(self) -> RunEntry:
        """Queue the graph as it is now; it starts at once when nothing else is running."""
        self._run_number += 1
        entry = RunEntry(self._run_number, self.workflow.copy(),
                         self.path.stem if self.path else self.workflow.meta.get("name", "Untitled"))
        self.runs.append(entry)
        self._start_next()
        self.queue_panel.show_entries(self.runs)
        return entry

    def _start_next(self) -> None:
        if self.runner.busy:
            return
        entry = next((e for e in self.runs if e.status == "queued"), None)
        if entry is None:
            return
        self.runner.start(entry.workflow)
        entry.status = "running"
        self.current_run = entry
        self.scene.clear_status()
        self.cancel_action.setEnabled(True)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.statusBar().showMessage(f"Running #{entry.number}…")

    def cancel_queued(self, number: int) -> None:
        self.runs[:] = [e for e in self.runs if not (e.number == number and e.status == "queued")]
        self.queue_panel.show_entries(self.runs)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, RunStarted):
            self.planned = list(event.planned)
            self.progress.setMaximum(max(1, len(self.planned)))
            for node_id in event.planned:
                self.scene.set_status(node_id, "queued")
        elif isinstance(event, NodeStarted):
            self.scene.set_status(event.node_id, "running")
        elif isinstance(event, NodeProgress):
            self.scene.set_status(event.node_id, "running", event.step / max(1, event.total))
            if event.preview is not None:
                self.scene.set_preview(event.node_id, image_from_array(event.preview))
            if self.current_run is not None and self.planned:
                done = self.progress.value() + event.step / max(1, event.total)
                self.current_run.progress = done / len(self.planned)
                self.queue_panel.show_entries(self.runs)
        elif isinstance(event, NodeFinished):
            self.scene.set_status(event.node_id, "cached" if event.cached else "done")
            self.progress.setValue(self.progress.value() + 1)
        elif isinstance(event, NodeFailed):
            self.scene.set_status(event.node_id, "error", message=event.message)

    def _on_finished(self, report: Any) -> None:
        self.last_report = report
        entry, self.current_run = self.current_run, None
        if entry is not None:
            entry.status = "failed" if report.status == "error" else report.status
            entry.seconds = report.total_seconds
            entry.files = [Path(path) for _, path in report.files]
            entry.message = str(report.errors[0]) if report.errors else ""
            entry.workflow = None  # the history keeps what it shows, not the graph
        self.gallery.add_files([Path(path) for _, path in report.files])
        for node_id, path in report.files:
            self.scene.set_preview(node_id, QImage(str(path)))
        self.problems.show_report(report, lambda node_id: self.workflow.nodes[node_id].label
                                  if node_id in self.workflow.nodes else f"#{node_id}")
        self.cancel_action.setEnabled(False)
        self.progress.setVisible(False)
        if report.status == "invalid":
            for problem in report.problems:
                if problem.node_id:
                    self.scene.set_status(problem.node_id, "error", message=problem.message)
            text = f"{len(report.problems)} problem(s): {report.problems[0]}" if report.problems else "invalid"
        elif report.status == "ok":
            text = f"Done in {report.total_seconds:.1f} s" + (f": {report.files[-1][1]}" if report.files else "")
        else:
            text = f"Run {report.status}" + (f": {report.errors[0]}" if report.errors else "")
        warnings = len(report.warnings)
        if warnings and report.status != "invalid":
            text += f" ({warnings} warning{'s' if warnings > 1 else ''} in Problems)"
        self.statusBar().showMessage(text)
        self._start_next()
        self.queue_panel.show_entries(self.runs)


def image_from_array(array: Any) -> QImage:
    """A QImage from an IMAGE-like preview (1 × H × W × 3, 0..1) of any array library."""
    values = array.detach().cpu().numpy() if hasattr(array, "detach") else array
    import numpy as np

    pixels = np.ascontiguousarray((np.clip(np.asarray(values)[0, ..., :3], 0, 1) * 255).astype(np.uint8))
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, width * 3, QImage.Format_RGB888).copy()
