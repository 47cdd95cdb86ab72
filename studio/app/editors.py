"""One editor per input type, shared by the inspector and the field editor on the canvas.

``editor_for(spec, value)`` gives a :class:`FieldEditor`: the widget, the value it shows,
and ``commit()``, which hands over whatever the user typed even while the widget still has
the focus (Run, Save and Copy call it first, so what is on screen is what runs).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.graph.sockets import BOOLEAN, FLOAT, INT, InputSpec

INT32 = (-2**31, 2**31 - 1)
# ComfyUI's seeds go up to 2⁶⁴−1 (15- and 20-digit seeds are common in shared files).
INT64_SPAN = (-2**63, 2**64 - 1)


def help_text(text: str) -> str:
    """A docstring as prose: the indentation of its continuation lines removed."""
    return inspect.cleandoc(text or "")


class BigIntSpinBox(QAbstractSpinBox):
    """A spin box for whole numbers beyond 32 bits (QSpinBox stops at 2³¹−1): the value is a
    Python int, typed and shown in full."""

    valueChanged = Signal(object)

    def __init__(self, minimum: int, maximum: int, step: int = 1) -> None:
        super().__init__()
        self._minimum, self._maximum, self._step = minimum, maximum, max(1, step)
        self._value = max(minimum, min(0, maximum))
        self.setKeyboardTracking(False)
        self.lineEdit().setText(str(self._value))
        self.editingFinished.connect(self.interpretText)

    def minimum(self) -> int:
        return self._minimum

    def maximum(self) -> int:
        return self._maximum

    def value(self) -> int:
        return self._value

    def setValue(self, value: int) -> None:  # noqa: N802 (Qt's naming)
        value = max(self._minimum, min(int(value), self._maximum))
        changed = value != self._value
        self._value = value
        if self.lineEdit().text() != str(value):
            self.lineEdit().setText(str(value))
        if changed:
            self.valueChanged.emit(value)

    def interpretText(self) -> None:  # noqa: N802
        text = self.lineEdit().text().strip().replace(",", "").replace("_", "")
        try:
            self.setValue(int(text))
        except ValueError:
            self.lineEdit().setText(str(self._value))

    def stepBy(self, steps: int) -> None:  # noqa: N802
        self.setValue(self._value + steps * self._step)

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:  # noqa: N802
        flags = QAbstractSpinBox.StepNone
        if self._value > self._minimum:
            flags |= QAbstractSpinBox.StepDownEnabled
        if self._value < self._maximum:
            flags |= QAbstractSpinBox.StepUpEnabled
        return flags

    def validate(self, text: str, position: int) -> object:
        stripped = text.strip().replace(",", "").replace("_", "")
        if stripped in ("", "-"):
            return QValidator.Intermediate
        try:
            number = int(stripped)
        except ValueError:
            return QValidator.Invalid
        if self._minimum <= number <= self._maximum:
            return QValidator.Acceptable
        return QValidator.Intermediate


def _int_range(spec: InputSpec) -> tuple[int, int]:
    low = int(spec.min) if spec.min is not None else INT64_SPAN[0]
    high = int(spec.max) if spec.max is not None else INT64_SPAN[1]
    return max(low, INT64_SPAN[0]), min(high, INT64_SPAN[1])


class FieldEditor(QObject):
    """An input's editor widget; ``committed`` carries each value the user settles on.

    ``files``: the names a file field can take (installed models, input pictures): it becomes
    a drop-down of them, with a name that is not there marked missing. ``picture``: a function
    giving the path of a picture name, for a thumbnail and a file picker beside the drop-down."""

    committed = Signal(object)

    def __init__(self, spec: InputSpec, value: Any, files: list[str] | None = None,
                 picture: Any = None, import_picture: Any = None) -> None:
        super().__init__()
        self.spec = spec
        self.files, self.picture, self.import_picture = files, picture, import_picture
        self.thumbnail: QLabel | None = None
        self.input_widget = self._build(spec, value)
        self.widget = self._with_picture(self.input_widget) if picture is not None else self.input_widget
        self.input_widget.setToolTip(help_text(spec.tooltip))
        self._shown = self.value()

    # -- what the widget holds ---------------------------------------------------------------
    def value(self) -> Any:
        widget = self.input_widget
        if isinstance(widget, QComboBox):
            data = widget.currentData()
            return data if data is not None else widget.currentText()
        if isinstance(widget, BigIntSpinBox):
            widget.interpretText()
            return widget.value()
        if isinstance(widget, QSpinBox):
            widget.interpretText()
            return int(widget.value())
        if isinstance(widget, QDoubleSpinBox):
            widget.interpretText()
            return float(widget.value())
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QPlainTextEdit):
            return widget.toPlainText()
        return widget.text()  # QLineEdit

    def show_value(self, value: Any) -> None:
        """Show a value set elsewhere (canvas, undo), without reporting it as an edit."""
        widget = self.input_widget
        widget.blockSignals(True)
        try:
            if isinstance(widget, QComboBox):
                index = widget.findData(str(value))
                if index < 0:
                    index = widget.findText(str(value))
                if index < 0:
                    widget.addItem(self._missing_label(str(value)), str(value))
                    index = widget.count() - 1
                widget.setCurrentIndex(index)
            elif isinstance(widget, (BigIntSpinBox, QSpinBox)):
                widget.setValue(int(value or 0))
            elif isinstance(widget, QDoubleSpinBox):
                widget.setValue(float(value or 0.0))
            elif isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            elif isinstance(widget, QPlainTextEdit):
                if widget.toPlainText() != str(value if value is not None else ""):
                    widget.setPlainText(str(value if value is not None else ""))
            elif widget.text() != str(value if value is not None else ""):
                widget.setText(str(value if value is not None else ""))
        finally:
            widget.blockSignals(False)
        self._shown = self.value()
        self._show_thumbnail()

    def commit(self) -> None:
        """Report what the widget holds if it differs from what was last shown or reported
        (called on editing finished, on focus out, and before anything reads the graph)."""
        value = self.value()
        if value != self._shown:
            self._shown = value
            self.committed.emit(value)

    # -- building ----------------------------------------------------------------------------
    @staticmethod
    def _missing_label(name: str) -> str:
        return f"⚠ {name} (missing)" if name else "(none chosen)"

    def _build(self, spec: InputSpec, value: Any) -> QWidget:
        if self.files is not None:
            box = QComboBox()
            current = "" if value is None else str(value)
            if current not in self.files:
                box.addItem(self._missing_label(current), current)
            for name in self.files:
                box.addItem(name, name)
            box.setCurrentIndex(max(0, box.findData(current)))
            box.setMinimumContentsLength(12)
            box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            box.currentIndexChanged.connect(lambda _index: (self.commit(), self._show_thumbnail()))
            return box
        choices = spec.choice_list()
        if choices is not None:
            box = QComboBox()
            box.addItems(choices if value in choices or value is None else [str(value), *choices])
            box.setCurrentText(str(value))
            box.currentTextChanged.connect(lambda _text: self.commit())
            return box
        if spec.type == INT:
            low, high = _int_range(spec)
            step = int(spec.step or 1)
            if INT32[0] <= low and high <= INT32[1]:
                spin: QSpinBox | BigIntSpinBox = QSpinBox()
                spin.setRange(low, high)
                spin.setSingleStep(step)
            else:
                spin = BigIntSpinBox(low, high, step)
            return self._committing_spin(spin, int(value or 0))
        if spec.type == FLOAT:
            double = QDoubleSpinBox()
            double.setDecimals(3)
            double.setRange(spec.min if spec.min is not None else -1e9, spec.max if spec.max is not None else 1e9)
            double.setSingleStep(float(spec.step or 0.1))
            return self._committing_spin(double, float(value or 0.0))
        if spec.type == BOOLEAN:
            check = QCheckBox()
            check.setChecked(bool(value))
            check.toggled.connect(lambda _on: self.commit())
            return check
        if spec.multiline:
            text = _CommittingTextEdit(self, str(value if value is not None else ""))
            text.setMinimumHeight(90)
            return text
        line = QLineEdit(str(value if value is not None else ""))
        line.editingFinished.connect(self.commit)
        return line


    def _committing_spin(self, spin: QSpinBox | QDoubleSpinBox | BigIntSpinBox, value: int | float) -> QWidget:
        """A number field showing ``value`` that commits when a value is settled (no keyboard
        tracking: typing 512 is one commit, not three), wide enough to read."""
        spin.setValue(value)  # an int for the integer boxes, which the caller passes
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(lambda _number: self.commit())
        spin.setMinimumWidth(90)
        return spin

    def _with_picture(self, field: QWidget) -> QWidget:
        """The drop-down with a file picker beside it and the picture under it."""
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(field, 1)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a picture file (it is copied into the input folder)")
        browse.clicked.connect(self._browse)
        row.addWidget(browse)
        layout.addLayout(row)
        self.thumbnail = QLabel()
        self.thumbnail.setMinimumHeight(0)
        layout.addWidget(self.thumbnail)
        self.browse_button = browse
        self._show_thumbnail()
        return box

    def _show_thumbnail(self) -> None:
        if self.thumbnail is None or self.picture is None:
            return
        path = self.picture(str(self.value()))
        image = QImage(str(path)) if path is not None else QImage()
        if image.isNull():
            self.thumbnail.clear()
            self.thumbnail.setText("" if path is not None else "no such picture in the input folders")
            return
        self.thumbnail.setPixmap(QPixmap.fromImage(image.scaled(200, 140, Qt.KeepAspectRatio,
                                                                Qt.SmoothTransformation)))

    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self.widget, "Choose a picture", "",
                                              "Pictures (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)")
        if name and self.import_picture is not None:
            chosen = self.import_picture(Path(name))
            if chosen:
                self.show_value(chosen)
                self._shown = None
                self.commit()


class _CommittingTextEdit(QPlainTextEdit):
    """A prompt box that hands its text over when it loses the focus."""

    def __init__(self, editor: FieldEditor, text: str) -> None:
        super().__init__(text)
        self._editor = editor
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.WidgetWidth)

    def focusOutEvent(self, event: Any) -> None:  # noqa: N802
        self._editor.commit()
        super().focusOutEvent(event)


def editor_for(spec: InputSpec, value: Any, files: list[str] | None = None, picture: Any = None,
               import_picture: Any = None) -> FieldEditor:
    """The editor an input's type calls for, showing ``value`` (a drop-down of ``files`` for a
    file field)."""
    return FieldEditor(spec, value, files, picture, import_picture)


__all__ = ["BigIntSpinBox", "FieldEditor", "editor_for", "help_text"]
