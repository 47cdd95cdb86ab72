"""The run queue with its history, and the gallery of outputs with a full-size view and an
A/B comparison of two pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from studio.app.file_choices import IMAGE_SUFFIXES
from studio.app.run_queue import RunQueue, RunState


class RunQueuePanel(QWidget):
    """The current run, the queued ones and the history; Cancel stops the current run or
    removes the selected queued one."""

    cancel_current = Signal()
    remove_queued = Signal(int)
    clear_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.list = QListWidget()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running graph, or take the selected queued run off the queue")
        self.clear_button = QPushButton("Clear history")
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.queue: RunQueue | None = None
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._cancel)
        self.clear_button.clicked.connect(self.clear_history)

    def show_queue(self, queue: RunQueue) -> None:
        """Draw the queue's entries: running first, then queued, then the history."""
        self.queue = queue
        selected = self.selected_number()
        self.list.clear()
        for entry in queue.ordered():
            item = QListWidgetItem(entry.text())
            item.setData(Qt.UserRole, entry.number)
            if entry.status in (RunState.FAILED, RunState.INVALID):
                item.setForeground(QColor("#ef6b6b"))
            self.list.addItem(item)
            if entry.number == selected:
                self.list.setCurrentItem(item)
        self.cancel_button.setEnabled(queue.can_cancel)

    def selected_number(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.UserRole) if item is not None else None

    def _cancel(self) -> None:
        number = self.selected_number()
        entry = next((e for e in self.queue.entries if e.number == number), None) if self.queue else None
        if entry is not None and entry.status is RunState.QUEUED:
            self.remove_queued.emit(entry.number)
        else:
            self.cancel_current.emit()

    def clear_history(self) -> None:
        if self.queue is not None:
            self.queue.clear_history()


def thumbnail(path: Path, side: int = 96) -> QIcon:
    image = QImage(str(path))
    if image.isNull():
        return QIcon()
    return QIcon(QPixmap.fromImage(image.scaled(side, side, Qt.KeepAspectRatio, Qt.SmoothTransformation)))


class Gallery(QWidget):
    """Every picture the runs wrote (and, after a restart, those already in the output
    folder), newest first; double-click for a zoomable view, select two and Compare for an A/B
    wipe and the values that differ between the graphs that made them."""

    open_graph_requested = Signal(Path)
    # How many earlier pictures are listed at start-up (the newest ones).
    EARLIER = 300

    def __init__(self, graph_of: Any = None, defaults_of: Any = None) -> None:
        super().__init__()
        # graph_of(path) -> Workflow | None: the graph embedded in a picture (for the diff);
        # defaults_of(type) -> {input: default}, so a value left at its default equals it written out.
        self.graph_of, self.defaults_of = graph_of, defaults_of
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.IconMode)
        self.list.setIconSize(QSize(96, 96))
        self.list.setResizeMode(QListWidget.Adjust)
        self.list.setSelectionMode(QListWidget.ExtendedSelection)
        self.list.setMovement(QListWidget.Static)
        self.compare_button = QPushButton("Compare A/B")
        self.compare_button.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addWidget(self.compare_button)
        self.list.itemActivated.connect(lambda item: self.open_viewer(Path(item.data(Qt.UserRole))))
        self.list.itemSelectionChanged.connect(
            lambda: self.compare_button.setEnabled(len(self.list.selectedItems()) == 2))
        self.compare_button.clicked.connect(self.compare_selected)
        self.dialogs: list[QDialog] = []
        self.list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)

    def _context_menu(self, at: Any) -> None:
        from PySide6.QtWidgets import QMenu

        item = self.list.itemAt(at)
        if item is None:
            return
        menu = QMenu(self)
        path = Path(item.data(Qt.UserRole))
        menu.addAction("Open the graph that made it", lambda: self.open_graph_requested.emit(path))
        menu.addAction("View", lambda: self.open_viewer(path))
        menu.exec(self.list.viewport().mapToGlobal(at))

    def load_folder(self, folder: Path) -> int:
        """List the pictures already in the output folder (newest first), as after a restart."""
        if not folder.is_dir():
            return 0
        found = []
        for path in folder.rglob("*"):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() \
                    and not any(part.startswith(".") for part in path.relative_to(folder).parts):
                found.append((path.stat().st_mtime, path))
        newest = [path for _, path in sorted(found)[-self.EARLIER:]]
        self.add_files(newest)  # each goes to the top: the newest ends first
        return len(newest)

    def add_files(self, paths: list[Path]) -> None:
        for path in paths:
            if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            item = QListWidgetItem(thumbnail(Path(path)), Path(path).name)
            item.setData(Qt.UserRole, str(path))
            item.setToolTip(str(path))
            self.list.insertItem(0, item)

    def paths(self) -> list[Path]:
        return [Path(self.list.item(i).data(Qt.UserRole)) for i in range(self.list.count())]

    def open_viewer(self, path: Path) -> QDialog:
        dialog = ImageViewer(path, self)
        dialog.open_graph.clicked.connect(lambda: self.open_graph_requested.emit(path))
        self._keep(dialog)
        return dialog

    def compare_selected(self) -> QDialog | None:
        chosen = [Path(item.data(Qt.UserRole)) for item in self.list.selectedItems()]
        if len(chosen) != 2:
            return None
        dialog = QDialog(self)
        dialog.setWindowTitle(f"A: {chosen[0].name}   B: {chosen[1].name}")
        wipe = CompareView(QImage(str(chosen[0])), QImage(str(chosen[1])))
        slider = QSlider(Qt.Horizontal)
        slider.setRange(0, 1000)
        slider.setValue(500)
        slider.valueChanged.connect(lambda value: wipe.set_split(value / 1000))
        layout = QVBoxLayout(dialog)
        layout.addWidget(wipe, 1)
        layout.addWidget(slider)
        table = self._difference_table(chosen[0], chosen[1])
        layout.addWidget(table)
        dialog.wipe, dialog.slider, dialog.differences = wipe, slider, table  # type: ignore[attr-defined]
        dialog.resize(760, 900)
        self._keep(dialog)
        return dialog

    def _difference_table(self, a: Path, b: Path) -> QWidget:
        """What differs between the graphs that made two pictures (seed, prompt, steps…)."""
        from PySide6.QtWidgets import QTableWidget, QTableWidgetItem

        from studio.graph.diff import differences

        graphs = [self.graph_of(path) if self.graph_of is not None else None for path in (a, b)]
        if None in graphs:
            label = QLabel("One of the pictures carries no graph, so their values cannot be compared.")
            label.setWordWrap(True)
            return label
        found = differences(graphs[0], graphs[1], self.defaults_of)
        table = QTableWidget(len(found), 4)
        table.setHorizontalHeaderLabels(["Node", "Value", "A", "B"])
        for row, difference in enumerate(found):
            for column, text in enumerate((difference.node, difference.what, difference.a, difference.b)):
                table.setItem(row, column, QTableWidgetItem("—" if text is None else str(text)))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.setMaximumHeight(200)
        if not found:
            table.setToolTip("The two graphs are the same")
        return table

    def _keep(self, dialog: QDialog) -> None:
        self.dialogs = [d for d in self.dialogs if d.isVisible()] + [dialog]
        dialog.show()


class ImageViewer(QDialog):
    """A picture in a zoomable, pannable view sized to the window: the wheel zooms at the
    cursor, dragging pans, double-click switches between fit and 1:1."""

    def __init__(self, path: Path, parent: QWidget | None = None) -> None:
        from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene

        super().__init__(parent)
        self.setWindowTitle(str(path))
        self.image = QImage(str(path))
        self.scene = QGraphicsScene(self)
        self.item = QGraphicsPixmapItem(QPixmap.fromImage(self.image))
        self.item.setTransformationMode(Qt.SmoothTransformation)
        self.scene.addItem(self.item)
        self.view = _ZoomView(self.scene)
        self.open_graph = QPushButton("Open the graph that made it")
        self.open_graph.setEnabled(path.suffix.lower() == ".png")
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_graph)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)
        window = parent.window() if parent is not None else None
        room = window.size() if window is not None and window.width() > 400 else QSize(1200, 900)
        self.resize(int(room.width() * 0.8), int(room.height() * 0.85))

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.view.fit()


class _ZoomView(QGraphicsView):
    def __init__(self, scene: Any) -> None:
        super().__init__(scene)
        self.setDragMode(QGraphicsView.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setBackgroundBrush(QColor("#1e1f22"))

    def fit(self) -> None:
        """The whole picture as large as the view allows (small ones enlarged, pixels kept sharp)."""
        self.resetTransform()
        rect = self.scene().itemsBoundingRect()
        self.fitInView(rect, Qt.KeepAspectRatio)
        self._sharpen()

    def _sharpen(self) -> None:
        # Enlarged several times, a picture is shown in crisp pixels, not a blur.
        for item in self.scene().items():
            if hasattr(item, "setTransformationMode"):
                item.setTransformationMode(Qt.FastTransformation if self.zoom > 2 else Qt.SmoothTransformation)

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def wheelEvent(self, event: Any) -> None:
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        if 0.02 <= self.zoom * factor <= 64:
            self.scale(factor, factor)
            self._sharpen()

    def mouseDoubleClickEvent(self, event: Any) -> None:
        if abs(self.zoom - 1.0) > 1e-3:
            self.resetTransform()
            self._sharpen()
        else:
            self.fit()


class CompareView(QWidget):
    """Picture A left of the split line and picture B right of it, scaled alike to fit."""

    def __init__(self, a: QImage, b: QImage) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.split = 0.5
        self.setMinimumSize(256, 256)

    def set_split(self, fraction: float) -> None:
        self.split = min(1.0, max(0.0, fraction))
        self.update()

    def image_rect(self) -> QRectF:
        size = self.a.size().scaled(self.size(), Qt.KeepAspectRatio)
        return QRectF((self.width() - size.width()) / 2, (self.height() - size.height()) / 2,
                      size.width(), size.height())

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.SmoothPixmapTransform)
        target = self.image_rect()
        x = target.left() + target.width() * self.split
        painter.save()
        painter.setClipRect(QRectF(target.left(), target.top(), x - target.left(), target.height()))
        painter.drawImage(target, self.a)
        painter.restore()
        painter.save()
        painter.setClipRect(QRectF(x, target.top(), target.right() - x, target.height()))
        painter.drawImage(target, self.b)
        painter.restore()
        painter.setPen(QPen(QColor("#ffffff"), 2))
        painter.drawLine(QPointF(x, target.top()), QPointF(x, target.bottom()))
        painter.end()
