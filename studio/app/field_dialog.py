"""Editing one field from the canvas (double-click on it): a small dialog holding the same
editor the inspector shows for that input."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QWidget

from studio.app.editors import editor_for
from studio.graph.sockets import InputSpec


class FieldDialog(QDialog):
    def __init__(self, parent: QWidget | None, spec: InputSpec, value: Any, files: list[str] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(spec.name)
        self.editor = editor_for(spec, value, files)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QFormLayout(self)
        layout.addRow(spec.name, self.editor.widget)
        layout.addRow(buttons)
        self.editor.widget.setFocus()


def ask_value(parent: QWidget | None, spec: InputSpec, value: Any,
              files: list[str] | None = None) -> tuple[bool, Any]:
    """(accepted, the value the editor holds)."""
    dialog = FieldDialog(parent, spec, value, files)
    accepted = dialog.exec() == QDialog.Accepted
    return accepted, dialog.editor.value()
