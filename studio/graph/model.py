"""The workflow: node instances, the links between their sockets, groups, and node modes.

This is the single source of truth that the canvas draws, the engine reads and files
serialise. It is plain data with a small observer hook (napari style) so that views can
follow edits without the model knowing about them. No Qt, no torch, no I/O.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


def node_sort_key(node_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then the rest alphabetically: the one stable order of
    nodes for reports, plans and selections."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


class NodeMode(str, enum.Enum):
    """How the engine treats a node: run it, pass its inputs through, or leave it out."""

    NORMAL = "normal"
    # Each output takes the first input of the same type, so a node can be switched off
    # without rewiring (a LoRA, an upscale step).
    BYPASS = "bypass"
    # The node and everything that needs its outputs are skipped.
    MUTE = "mute"


@dataclass(frozen=True)
class LinkSource:
    """Where an input's value comes from: an output of another node."""

    node: str
    output: str
    # Fields a newer version or another tool wrote on the link; kept so saving loses nothing.
    extra: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Link:
    """A wire, seen from both ends (a view over the target node's ``links``)."""

    source: str
    output: str
    target: str
    input: str


@dataclass
class Node:
    """One node instance: its type, its field values and where its wired inputs come from."""

    id: str
    type: str
    values: dict[str, Any] = field(default_factory=dict)
    links: dict[str, LinkSource] = field(default_factory=dict)
    title: str = ""
    position: tuple[float, float] = (0.0, 0.0)
    size: tuple[float, float] | None = None
    mode: NodeMode = NodeMode.NORMAL
    color: str | None = None
    collapsed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What to call this node in a message: its title if it has one, and its id."""
        if self.title:
            return f"{self.title!r} (#{self.id} {self.type})"
        return f"#{self.id} {self.type}"


@dataclass
class Group:
    """A titled frame around a region of the canvas; nodes inside move with it."""

    id: str
    title: str = "Group"
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 400.0, 300.0)
    color: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class GraphEditError(ValueError):
    """An edit that would leave the workflow inconsistent (unknown node, duplicate id)."""


Listener = Callable[[str, dict[str, Any]], None]


class Workflow:
    """A graph of nodes. Every edit goes through a method here so listeners hear of it."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.groups: dict[str, Group] = {}
        self.meta: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self._listeners: list[Listener] = []

    # -- observation -------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, payload)`` after every edit; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: str, **payload: Any) -> None:
        for listener in list(self._listeners):
            listener(event, payload)

    # -- queries -----------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise GraphEditError(f"there is no node #{node_id}") from None

    def links(self) -> Iterator[Link]:
        """Every wire, in node id then input order."""
        for node in self.nodes.values():
            for input_name, source in node.links.items():
                yield Link(source.node, source.output, node.id, input_name)

    def links_from(self, node_id: str) -> list[Link]:
        return [link for link in self.links() if link.source == node_id]

    def find_node(self, reference: str) -> Node:
        """A node by id, or by a title that exactly one node has."""
        if reference in self.nodes:
            return self.nodes[reference]
        matches = [node for node in self.nodes.values() if node.title == reference]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(f"#{node.id}" for node in matches)
            raise GraphEditError(f"the title {reference!r} is shared by nodes {ids}; use an id")
        raise GraphEditError(f"no node has the id or title {reference!r}")

    def new_id(self) -> str:
        """The next free id: one past the largest numeric id, so ids are never reused
        while their node exists and stay stable across saves."""
        numeric = [int(node_id) for node_id in self.nodes if node_id.isdigit()]
        numeric += [int(group_id) for group_id in self.groups if group_id.isdigit()]
        return str(max(numeric, default=0) + 1)

    # -- edits -------------------------------------------------------------------------
    def add_node(
        self,
        type_name: str,
        values: dict[str, Any] | None = None,
        *,
        title: str = "",
        position: tuple[float, float] = (0.0, 0.0),
        node_id: str | None = None,
    ) -> Node:
        node_id = node_id or self.new_id()
        if node_id in self.nodes:
            raise GraphEditError(f"node id #{node_id} is already used")
        node = Node(node_id, type_name, dict(values or {}), title=title, position=position)
        self.nodes[node_id] = node
        self._emit("node_added", node=node)
        return node

    def insert_node(self, node: Node) -> None:
        """Put back a node object as it is (undo of a delete, paste)."""
        if node.id in self.nodes:
            raise GraphEditError(f"node id #{node.id} is already used")
        self.nodes[node.id] = node
        self._emit("node_added", node=node)

    def remove_node(self, node_id: str) -> tuple[Node, list[Link]]:
        """Remove a node and every wire touching it; returns both so an undo can restore."""
        node = self.node(node_id)
        outgoing = self.links_from(node_id)
        for link in outgoing:
            if link.target != node_id:
                del self.nodes[link.target].links[link.input]
        del self.nodes[node_id]
        self._emit("node_removed", node=node, links=outgoing)
        return node, outgoing

    def connect(self, source: str, output: str, target: str, input_name: str) -> LinkSource | None:
        """Wire ``source.output`` into ``target.input_name``; returns the link it replaced.

        Whether the wire makes sense (types, cycles) is :func:`can_connect`'s question; the
        model only keeps itself consistent.
        """
        self.node(source)
        target_node = self.node(target)
        previous = target_node.links.get(input_name)
        target_node.links[input_name] = LinkSource(source, output)
        self._emit("link_added", link=Link(source, output, target, input_name), replaced=previous)
        return previous

    def disconnect(self, target: str, input_name: str) -> LinkSource | None:
        target_node = self.node(target)
        previous = target_node.links.pop(input_name, None)
        if previous is not None:
            link = Link(previous.node, previous.output, target, input_name)
            self._emit("link_removed", link=link)
        return previous

    def set_value(self, node_id: str, input_name: str, value: Any) -> Any:
        """Set a field value; returns the old one (``None`` if it had none)."""
        node = self.node(node_id)
        previous = node.values.get(input_name)
        node.values[input_name] = value
        self._emit("value_changed", node=node, input=input_name, value=value, previous=previous)
        return previous

    def set_mode(self, node_id: str, mode: NodeMode) -> NodeMode:
        node = self.node(node_id)
        previous, node.mode = node.mode, NodeMode(mode)
        self._emit("mode_changed", node=node, mode=node.mode, previous=previous)
        return previous

    def set_title(self, node_id: str, title: str) -> str:
        node = self.node(node_id)
        previous, node.title = node.title, title
        self._emit("title_changed", node=node, title=title, previous=previous)
        return previous

    def move_node(self, node_id: str, position: tuple[float, float]) -> tuple[float, float]:
        node = self.node(node_id)
        previous, node.position = node.position, (float(position[0]), float(position[1]))
        self._emit("node_moved", node=node, position=node.position, previous=previous)
        return previous

    def add_group(self, title: str, bounds: tuple[float, float, float, float]) -> Group:
        group = Group(self.new_id(), title, bounds)
        self.groups[group.id] = group
        self._emit("group_added", group=group)
        return group

    def remove_group(self, group_id: str) -> Group:
        group = self.groups.pop(group_id)
        self._emit("group_removed", group=group)
        return group

    def copy(self) -> Workflow:
        """A deep copy with no listeners (for overrides, sweeps and background runs)."""
        clone = Workflow()
        clone.nodes = copy.deepcopy(self.nodes)
        clone.groups = copy.deepcopy(self.groups)
        clone.meta = copy.deepcopy(self.meta)
        clone.extra = copy.deepcopy(self.extra)
        return clone
