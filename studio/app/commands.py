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


def copy_nodes(workflow: Workflow, node_ids: list[str]) -> dict[str, Any]:
    """The chosen nodes as plain data for the clipboard: their fields, positions, the wires
    among them, and the wires that came into them from elsewhere."""
    from studio.graph.format import workflow_to_data

    chosen = set(node_ids)
    data = workflow_to_data(workflow)["nodes"]
    nodes = {node_id: data[node_id] for node_id in node_ids if node_id in data}
    return {"format": "seed-studio-nodes", "nodes": nodes,
            "outside": {node_id: {name: [link.node, link.output] for name, link in workflow.nodes[node_id].links.items()
                                  if link.node not in chosen} for node_id in nodes}}


class PasteNodes(QUndoCommand):
    """Add copied nodes with new ids, shifted by ``offset``; wires among them are kept, and
    with ``keep_incoming`` so are the wires that fed them from nodes still in the graph."""

    def __init__(self, workflow: Workflow, clipboard: dict[str, Any], offset: tuple[float, float],
                 keep_incoming: bool = False) -> None:
        super().__init__(f"Paste {len(clipboard.get('nodes', {}))} node(s)")
        self.workflow, self.clipboard, self.offset, self.keep_incoming = workflow, clipboard, offset, keep_incoming
        self.new_ids: dict[str, str] = {}

    def redo(self) -> None:
        from studio.graph.format import workflow_from_data

        nodes = self.clipboard["nodes"]
        if not self.new_ids:
            next_id = int(self.workflow.new_id())
            self.new_ids = {old: str(next_id + index) for index, old in enumerate(nodes)}
        remapped = {}
        for old, data in nodes.items():
            entry = dict(data, position=[data["position"][0] + self.offset[0], data["position"][1] + self.offset[1]])
            entry["links"] = {name: {**link, "node": self.new_ids[link["node"]]}
                              for name, link in data.get("links", {}).items() if link["node"] in self.new_ids}
            remapped[self.new_ids[old]] = entry
        pasted = workflow_from_data({"format": "seed-studio-workflow", "version": 1, "nodes": remapped})
        for node in pasted.nodes.values():
            self.workflow.insert_node(node)
        if self.keep_incoming:
            for old, inputs in self.clipboard.get("outside", {}).items():
                for name, (source, output) in inputs.items():
                    if source in self.workflow.nodes:
                        self.workflow.connect(source, output, self.new_ids[old], name)

    def undo(self) -> None:
        for new in self.new_ids.values():
            if new in self.workflow.nodes:
                self.workflow.remove_node(new)
