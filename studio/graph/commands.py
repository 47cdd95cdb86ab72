"""Every edit of a workflow as an undoable command: plain objects with ``do`` and ``undo``.

The app wraps each in one thin QUndoCommand (``studio.app.undo``); the graph layer knows
nothing of Qt. A command keeps what its undo needs when it is done (the old value, where an
entry stood in its dict, the wire a connection replaced), so that undo puts the workflow
back exactly: the saved file after ``do`` then ``undo`` is byte for byte the one before, and
``do`` again (redo) gives the same file as the first ``do``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from studio.graph.clipboard import pasted_nodes
from studio.graph.model import Group, LinkSource, Node, NodeMode, Reroute, Workflow


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


class Command:
    """One undoable edit. Subclasses set ``text`` (shown in Edit → Undo …)."""

    text = "Edit"

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow

    def do(self) -> None:
        raise NotImplementedError

    def undo(self) -> None:
        raise NotImplementedError


class Macro(Command):
    """Several commands as one step: done in order, undone in reverse."""

    def __init__(self, workflow: Workflow, text: str, commands: Sequence[Command]) -> None:
        super().__init__(workflow)
        self.text = text
        self.commands = list(commands)

    def do(self) -> None:
        for command in self.commands:
            command.do()

    def undo(self) -> None:
        for command in reversed(self.commands):
            command.undo()


# -- nodes -------------------------------------------------------------------------------
class AddNode(Command):
    """Add a node of a type (its fields start at their defaults unless ``values`` says)."""

    def __init__(self, workflow: Workflow, type_name: str, position: tuple[float, float],
                 values: dict[str, Any] | None = None, title: str = "") -> None:
        super().__init__(workflow)
        self.text = f"Add {type_name}"
        self.type_name, self.position, self.values, self.title = type_name, position, dict(values or {}), title
        self.node_id: str | None = None

    def do(self) -> None:
        node = self.workflow.add_node(self.type_name, self.values, title=self.title, position=self.position,
                                      node_id=self.node_id)
        self.node_id = node.id

    def undo(self) -> None:
        assert self.node_id is not None
        self.workflow.remove_node(self.node_id)


@dataclass
class _Removed:
    node: Node
    index: int
    # (target, input, the wire, its place among the target's inputs) for each wire out.
    outgoing: list[tuple[str, str, LinkSource, int]] = field(default_factory=list)


class RemoveNodes(Command):
    """Delete nodes and their wires; undo puts back the same nodes (ids, order) and wires."""

    def __init__(self, workflow: Workflow, node_ids: Iterable[str]) -> None:
        super().__init__(workflow)
        self.node_ids = list(node_ids)
        self.text = f"Delete {_plural(len(self.node_ids), 'node')}"
        self.removed: list[_Removed] = []

    def do(self) -> None:
        self.removed = []
        for node_id in self.node_ids:
            if node_id not in self.workflow.nodes:
                continue
            entry = _Removed(self.workflow.nodes[node_id], list(self.workflow.nodes).index(node_id))
            for link in self.workflow.links_from(node_id):
                if link.target != node_id:
                    inputs = self.workflow.nodes[link.target].links
                    entry.outgoing.append((link.target, link.input, inputs[link.input], list(inputs).index(link.input)))
            self.workflow.remove_node(node_id)
            self.removed.append(entry)

    def undo(self) -> None:
        for entry in reversed(self.removed):
            self.workflow.insert_node(entry.node, entry.index)
            for target, input_name, source, index in entry.outgoing:
                self.workflow.attach(target, input_name, source, index)


class MoveNodes(Command):
    """Move nodes to new positions (one drag of a selection is one command)."""

    def __init__(self, workflow: Workflow, moves: dict[str, tuple[tuple[float, float], tuple[float, float]]]) -> None:
        super().__init__(workflow)
        self.moves = moves  # node id → (before, after)
        self.text = f"Move {_plural(len(moves), 'node')}"

    def do(self) -> None:
        for node_id, (_, after) in self.moves.items():
            self.workflow.move_node(node_id, after)

    def undo(self) -> None:
        for node_id, (before, _) in self.moves.items():
            self.workflow.move_node(node_id, before)


class _PerNode(Command):
    """Set one attribute on several nodes; undo gives each its own previous value back."""

    def __init__(self, workflow: Workflow, node_ids: Iterable[str], value: Any) -> None:
        super().__init__(workflow)
        self.node_ids, self.value = list(node_ids), value
        self.previous: dict[str, Any] = {}

    def apply(self, node_id: str, value: Any) -> Any:
        raise NotImplementedError

    def do(self) -> None:
        self.previous = {node_id: self.apply(node_id, self.value) for node_id in self.node_ids}

    def undo(self) -> None:
        for node_id in reversed(self.node_ids):
            self.apply(node_id, self.previous[node_id])


class SetMode(_PerNode):
    """Bypass, mute or un-mute nodes."""

    def __init__(self, workflow: Workflow, node_ids: Iterable[str], mode: NodeMode) -> None:
        super().__init__(workflow, node_ids, NodeMode(mode))
        self.text = f"{self.value.value.capitalize()} {_plural(len(self.node_ids), 'node')}"

    def apply(self, node_id: str, value: Any) -> Any:
        return self.workflow.set_mode(node_id, value)


class SetTitle(_PerNode):
    def __init__(self, workflow: Workflow, node_id: str, title: str) -> None:
        super().__init__(workflow, [node_id], title)
        self.text = "Rename node"

    def apply(self, node_id: str, value: Any) -> Any:
        return self.workflow.set_title(node_id, value)


class SetColor(_PerNode):
    def __init__(self, workflow: Workflow, node_ids: Iterable[str], color: str | None) -> None:
        super().__init__(workflow, node_ids, color)
        self.text = "Colour nodes"

    def apply(self, node_id: str, value: Any) -> Any:
        return self.workflow.set_color(node_id, value)


class SetCollapsed(_PerNode):
    def __init__(self, workflow: Workflow, node_ids: Iterable[str], collapsed: bool) -> None:
        super().__init__(workflow, node_ids, collapsed)
        self.text = f"{'Collapse' if collapsed else 'Expand'} {_plural(len(self.node_ids), 'node')}"

    def apply(self, node_id: str, value: Any) -> Any:
        return self.workflow.set_collapsed(node_id, value)


class SetSeedControl(_PerNode):
    def __init__(self, workflow: Workflow, node_id: str, control: str) -> None:
        super().__init__(workflow, [node_id], control)
        self.text = f"Seed after each run: {control}"
        self.had_own: dict[str, bool] = {}

    def do(self) -> None:
        self.had_own = {n: "seed_control" in self.workflow.nodes[n].extra for n in self.node_ids}
        super().do()

    def undo(self) -> None:
        super().undo()
        for node_id, had in self.had_own.items():
            if not had:  # the file had no control of its own: none again
                self.workflow.nodes[node_id].extra.pop("seed_control", None)

    def apply(self, node_id: str, value: Any) -> Any:
        return self.workflow.set_seed_control(node_id, value)


# -- values ------------------------------------------------------------------------------
class SetValue(Command):
    """Set a field; undoing the first edit of a field takes its own value away again (it
    shows its default), it does not leave ``None`` behind."""

    def __init__(self, workflow: Workflow, node_id: str, input_name: str, value: Any) -> None:
        super().__init__(workflow)
        self.node_id, self.input_name, self.value = node_id, input_name, value
        self.text = f"Set {input_name}"
        self.had_value = False
        self.previous: Any = None

    def do(self) -> None:
        values = self.workflow.node(self.node_id).values
        self.had_value, self.previous = self.input_name in values, values.get(self.input_name)
        self.workflow.set_value(self.node_id, self.input_name, self.value)

    def undo(self) -> None:
        if self.had_value:
            self.workflow.set_value(self.node_id, self.input_name, self.previous)
        else:
            self.workflow.unset_value(self.node_id, self.input_name)


# -- wires -------------------------------------------------------------------------------
class Connect(Command):
    """Wire an output into an input (replacing what was wired there)."""

    def __init__(self, workflow: Workflow, source: str, output: str, target: str, input_name: str) -> None:
        super().__init__(workflow)
        self.source, self.output, self.target, self.input_name = source, output, target, input_name
        self.text = f"Connect {output} → {input_name}"
        self.replaced: LinkSource | None = None

    def do(self) -> None:
        self.replaced = self.workflow.connect(self.source, self.output, self.target, self.input_name)

    def undo(self) -> None:
        if self.replaced is not None:
            self.workflow.attach(self.target, self.input_name, self.replaced)  # in place
        else:
            self.workflow.disconnect(self.target, self.input_name)


class Disconnect(Command):
    def __init__(self, workflow: Workflow, target: str, input_name: str) -> None:
        super().__init__(workflow)
        self.target, self.input_name = target, input_name
        self.text = f"Disconnect {input_name}"
        self.removed: LinkSource | None = None
        self.index = 0

    def do(self) -> None:
        links = self.workflow.node(self.target).links
        self.index = list(links).index(self.input_name) if self.input_name in links else len(links)
        self.removed = self.workflow.disconnect(self.target, self.input_name)

    def undo(self) -> None:
        if self.removed is not None:
            self.workflow.attach(self.target, self.input_name, self.removed, self.index)


# -- groups ------------------------------------------------------------------------------
class AddGroup(Command):
    def __init__(self, workflow: Workflow, title: str, bounds: tuple[float, float, float, float],
                 color: str | None = None) -> None:
        super().__init__(workflow)
        self.title, self.bounds, self.color = title, bounds, color
        self.text = "Add group"
        self.group: Group | None = None

    def do(self) -> None:
        if self.group is None:
            self.group = self.workflow.add_group(self.title, self.bounds, self.color)
        else:
            self.workflow.insert_group(self.group)

    def undo(self) -> None:
        assert self.group is not None
        self.workflow.remove_group(self.group.id)


class RemoveGroup(Command):
    """Remove a group frame (the nodes inside stay)."""

    def __init__(self, workflow: Workflow, group_id: str) -> None:
        super().__init__(workflow)
        self.group_id = group_id
        self.text = "Delete group"
        self.group: Group | None = None
        self.index = 0

    def do(self) -> None:
        self.index = list(self.workflow.groups).index(self.group_id)
        self.group = self.workflow.remove_group(self.group_id)

    def undo(self) -> None:
        assert self.group is not None
        self.workflow.insert_group(self.group, self.index)


class ChangeGroup(Command):
    """Retitle, move/resize or recolour a group."""

    def __init__(self, workflow: Workflow, group_id: str, **changes: Any) -> None:
        super().__init__(workflow)
        self.group_id, self.changes = group_id, changes
        self.text = "Edit group"
        self.previous: Group | None = None

    def do(self) -> None:
        self.previous = self.workflow.change_group(self.group_id, **self.changes)

    def undo(self) -> None:
        assert self.previous is not None
        self.workflow.change_group(self.group_id, title=self.previous.title, bounds=self.previous.bounds,
                                   color=self.previous.color)


# -- reroutes ----------------------------------------------------------------------------
class AddReroute(Command):
    """A reroute point, optionally with wires passing through it."""

    def __init__(self, workflow: Workflow, position: tuple[float, float],
                 wires: Iterable[tuple[str, str]] = (), parent: str | None = None) -> None:
        super().__init__(workflow)
        self.position, self.wires, self.parent = position, list(wires), parent
        self.text = "Add reroute"
        self.reroute: Reroute | None = None
        self.previous: dict[tuple[str, str], str | None] = {}

    def do(self) -> None:
        if self.reroute is None:
            self.reroute = self.workflow.add_reroute(self.position, self.parent)
        else:
            self.workflow.insert_reroute(self.reroute)
        self.previous = {(target, name): self.workflow.set_link_reroute(target, name, self.reroute.id)
                         for target, name in self.wires}

    def undo(self) -> None:
        assert self.reroute is not None
        for (target, name), previous in reversed(self.previous.items()):
            self.workflow.set_link_reroute(target, name, previous)
        self.workflow.remove_reroute(self.reroute.id)


class MoveReroute(Command):
    def __init__(self, workflow: Workflow, reroute_id: str, before: tuple[float, float],
                 after: tuple[float, float]) -> None:
        super().__init__(workflow)
        self.reroute_id, self.before, self.after = reroute_id, before, after
        self.text = "Move reroute"

    def do(self) -> None:
        self.workflow.move_reroute(self.reroute_id, self.after)

    def undo(self) -> None:
        self.workflow.move_reroute(self.reroute_id, self.before)


# -- clipboard ---------------------------------------------------------------------------
class PasteNodes(Command):
    """Add copied nodes with new ids, shifted by ``offset``; wires among them are kept, and
    with ``keep_incoming`` so are the wires that fed them from nodes still in the graph."""

    def __init__(self, workflow: Workflow, clipboard: dict[str, Any], offset: tuple[float, float],
                 keep_incoming: bool = False) -> None:
        super().__init__(workflow)
        self.clipboard, self.offset, self.keep_incoming = clipboard, offset, keep_incoming
        self.text = f"Paste {_plural(len(clipboard.get('nodes', {})), 'node')}"
        self.new_ids: dict[str, str] = {}

    def do(self) -> None:
        nodes, wires, self.new_ids = pasted_nodes(self.workflow, self.clipboard, self.offset, self.keep_incoming,
                                                  self.new_ids or None)
        for node in nodes:
            self.workflow.insert_node(node)
        for target, input_name, source in wires:
            self.workflow.attach(target, input_name, source)

    def undo(self) -> None:
        for new in reversed(list(self.new_ids.values())):
            if new in self.workflow.nodes:
                self.workflow.remove_node(new)
