"""Every edit of the graph as an undoable command (QUndoCommand): the canvas never changes
the model directly, so undo/redo covers everything."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QUndoCommand

from studio.graph import Workflow
from studio.graph.model import LinkSource


class MoveNodes(QUndoCommand):
    """Move nodes to new positions (one drag of a selection is one command)."""

    def __init__(self, workflow: Workflow, moves: dict[str, tuple[tuple[float, float], tuple[float, float]]]) -> None:
        super().__init__(f"Move {len(moves)} node{'s' if len(moves) != 1 else ''}")
        self.workflow = workflow
        self.moves = moves  # node id → (before, after)

    def redo(self) -> None:
        for node_id, (_, after) in self.moves.items():
            self.workflow.move_node(node_id, after)

    def undo(self) -> None:
        for node_id, (before, _) in self.moves.items():
            self.workflow.move_node(node_id, before)


class Connect(QUndoCommand):
    """Wire an output into an input (replacing what was wired there)."""

    def __init__(self, workflow: Workflow, source: str, output: str, target: str, input_name: str) -> None:
        super().__init__(f"Connect {output} → {input_name}")
        self.workflow = workflow
        self.args = (source, output, target, input_name)
        self.replaced: LinkSource | None = None

    def redo(self) -> None:
        self.replaced = self.workflow.connect(*self.args)

    def undo(self) -> None:
        source, output, target, input_name = self.args
        self.workflow.disconnect(target, input_name)
        if self.replaced is not None:
            self.workflow.connect(self.replaced.node, self.replaced.output, target, input_name)


class Disconnect(QUndoCommand):
    def __init__(self, workflow: Workflow, target: str, input_name: str) -> None:
        super().__init__(f"Disconnect {input_name}")
        self.workflow = workflow
        self.target, self.input_name = target, input_name
        self.removed: LinkSource | None = None

    def redo(self) -> None:
        self.removed = self.workflow.disconnect(self.target, self.input_name)

    def undo(self) -> None:
        if self.removed is not None:
            self.workflow.connect(self.removed.node, self.removed.output, self.target, self.input_name)


class SetValue(QUndoCommand):
    def __init__(self, workflow: Workflow, node_id: str, input_name: str, value: Any) -> None:
        super().__init__(f"Set {input_name}")
        self.workflow = workflow
        self.node_id, self.input_name, self.value = node_id, input_name, value
        self.had_value = input_name in workflow.node(node_id).values
        self.previous = workflow.node(node_id).values.get(input_name)

    def redo(self) -> None:
        self.workflow.set_value(self.node_id, self.input_name, self.value)

    def undo(self) -> None:
        if self.had_value:
            self.workflow.set_value(self.node_id, self.input_name, self.previous)
        else:
            self.workflow.set_value(self.node_id, self.input_name, self.previous)
            del self.workflow.node(self.node_id).values[self.input_name]


class AddNode(QUndoCommand):
    """Add a node of a type at a position (its fields start at their defaults)."""

    def __init__(self, workflow: Workflow, type_name: str, position: tuple[float, float]) -> None:
        super().__init__(f"Add {type_name}")
        self.workflow = workflow
        self.type_name, self.position = type_name, position
        self.node_id: str | None = None

    def redo(self) -> None:
        node = self.workflow.add_node(self.type_name, position=self.position, node_id=self.node_id)
        self.node_id = node.id

    def undo(self) -> None:
        if self.node_id is not None:
            self.workflow.remove_node(self.node_id)


class RemoveNodes(QUndoCommand):
    """Delete nodes and their wires; undo puts back the same nodes (same ids) and wires."""

    def __init__(self, workflow: Workflow, node_ids: list[str]) -> None:
        super().__init__(f"Delete {len(node_ids)} node{'s' if len(node_ids) != 1 else ''}")
        self.workflow = workflow
        self.node_ids = node_ids
        self.removed: list[tuple[Any, list[Any]]] = []

    def redo(self) -> None:
        self.removed = [self.workflow.remove_node(node_id) for node_id in self.node_ids
                        if node_id in self.workflow.nodes]

    def undo(self) -> None:
        for node, _ in self.removed:
            self.workflow.insert_node(node)
        for _, links in self.removed:
            for link in links:
                if link.source in self.workflow.nodes and link.target in self.workflow.nodes:
                    self.workflow.connect(link.source, link.output, link.target, link.input)
