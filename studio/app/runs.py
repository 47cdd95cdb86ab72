"""The run queue with its history, and the gallery of outputs with a full-size view and an
A/B comparison of two pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QScrollArea, QSlider, QVBoxLayout, QWidget)

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
    """Every picture the runs wrote, newest first; double-click for full size, select two and
    Compare for an A/B wipe."""

    def __init__(self) -> None:
        super().__init__()
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

    def add_files(self, paths: list[Path]) -> None:
        for path in paths:
            if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
                continue
            item = QListWidgetItem(thumbnail(Path(path)), Path(path).name)
            item.setData(Qt.UserRole, str(path))
            item.setToolTip(str(path))
            self.list.insertItem(0, item)

    def paths(self) -> list[Path]:
        return [Path(self.list.item(i).data(Qt.UserRole)) for i in range(self.list.count())]

    def open_viewer(self, path: Path) -> QDialog:
        dialog = ImageViewer(path, self)
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
        dialog.wipe, dialog.slider = wipe, slider  # type: ignore[attr-defined]
        dialog.resize(720, 760)
        self._keep(dialog)
        return dialog

    def _keep(self, dialog: QDialog) -> None:
        self.dialogs = [d for d in self.dialogs if d.isVisible()] + [dialog]
        dialog.show()


class ImageViewer(QDialog):
    """A picture at full size (scrollable), with its path as the title."""

    def __init__(self, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(str(path))
        self.image = QImage(str(path))
        label = QLabel()
        label.setPixmap(QPixmap.fromImage(self.image))
        scroll = QScrollArea()
        scroll.setWidget(label)
        scroll.setAlignment(Qt.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll)
        self.resize(min(1200, self.image.width() + 60), min(900, self.image.height() + 60))


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
