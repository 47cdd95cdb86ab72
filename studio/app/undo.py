"""The one bridge between the graph's Qt-free commands and Qt's undo stack."""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand, QUndoStack

from studio.graph.commands import Command


class UndoAdapter(QUndoCommand):
    """A graph command on a QUndoStack: redo is ``do``, undo is ``undo``."""

    def __init__(self, command: Command) -> None:
        super().__init__(command.text)
        self.command = command

    def redo(self) -> None:
        self.command.do()

    def undo(self) -> None:
        self.command.undo()


def push(stack: QUndoStack, command: Command) -> Command:
    """Do ``command`` and put it on the stack; returns it (for the ids it made)."""
    stack.push(UndoAdapter(command))
    return command
