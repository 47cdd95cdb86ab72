"""The workflow: node instances, the links between their sockets, groups, and node modes.

This is the single source of truth that the canvas draws, the engine reads and files
serialise. It is plain data with a small observer hook (napari style) so that views can
follow edits without the model knowing about them. No Qt, no torch, no I/O.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from types import EllipsisType
from typing import Any

from studio.graph import events as ev


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
    # The reroute point the wire last passes through before the input (each reroute names its
    # parent, so a wire can bend through several), as ComfyUI's links do.
    reroute: str | None = None
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


@dataclass
class Reroute:
    """A point a wire bends through; ``parent`` is the reroute before it on the way from the
    source (None when the wire comes straight from the output)."""

    id: str
    position: tuple[float, float] = (0.0, 0.0)
    parent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class GraphEditError(ValueError):
    """An edit that would leave the workflow inconsistent (unknown node, duplicate id)."""


Listener = Callable[[ev.GraphEvent], None]


def _put(mapping: dict[str, Any], key: str, value: Any, index: int | None) -> None:
    """Set ``mapping[key]``; a new key goes in at ``index`` (the end when None), so an undo
    puts an entry back where it was and the saved file comes out byte for byte the same."""
    if key in mapping or index is None or index >= len(mapping):
        mapping[key] = value
        return
    items = list(mapping.items())
    items.insert(max(index, 0), (key, value))
    mapping.clear()
    mapping.update(items)


class Workflow:
    """A graph of nodes. Every edit goes through a method here, and each emits one event
    (``studio.graph.events``) after the change, so observers follow edits one by one."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.groups: dict[str, Group] = {}
        self.reroutes: dict[str, Reroute] = {}
        self.meta: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self._listeners: list[Listener] = []

    # -- observation -------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` after every edit; returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: ev.GraphEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    # -- queries -----------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise GraphEditError(f"there is no node #{node_id}") from None

    def group(self, group_id: str) -> Group:
        try:
            return self.groups[group_id]
        except KeyError:
            raise GraphEditError(f"there is no group #{group_id}") from None

    def reroute(self, reroute_id: str) -> Reroute:
        try:
            return self.reroutes[reroute_id]
        except KeyError:
            raise GraphEditError(f"there is no reroute #{reroute_id}") from None

    def links(self) -> Iterator[Link]:
        """Every wire, in node id then input order."""
        for node in self.nodes.values():
            for input_name, source in node.links.items():
                yield Link(source.node, source.output, node.id, input_name)

    def links_from(self, node_id: str) -> list[Link]:
        """The wires out of a node (compared before any Link is built: this runs per deleted node)."""
        return [Link(source.node, source.output, node.id, name) for node in self.nodes.values()
                for name, source in node.links.items() if source.node == node_id]

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
        numeric = [int(key) for keys in (self.nodes, self.groups, self.reroutes) for key in keys if key.isdigit()]
        return str(max(numeric, default=0) + 1)

    # -- nodes -------------------------------------------------------------------------
    def add_node(
        self,
        type_name: str,
        values: dict[str, Any] | None = None,
        *,
        title: str = "",
        position: tuple[float, float] = (0.0, 0.0),
        node_id: str | None = None,
    ) -> Node:
        node = Node(node_id or self.new_id(), type_name, dict(values or {}), title=title,
                    position=(float(position[0]), float(position[1])))
        self.insert_node(node)
        return node

    def insert_node(self, node: Node, index: int | None = None) -> None:
        """Put a node object in as it is (undo of a delete, paste), at ``index`` in the
        node order when given. Its wires must come from nodes in the graph."""
        if node.id in self.nodes:
            raise GraphEditError(f"node id #{node.id} is already used")
        missing = sorted({source.node for source in node.links.values()} - set(self.nodes) - {node.id})
        if missing:
            raise GraphEditError(f"node #{node.id} is wired from nodes not in the graph: {missing}")
        _put(self.nodes, node.id, node, index)
        self._emit(ev.NodeAdded(node))

    def remove_node(self, node_id: str) -> tuple[Node, list[Link]]:
        """Remove a node and every wire touching it; returns both (the wires into it stay
        on the node object, those out of it are returned)."""
        node = self.node(node_id)
        outgoing = self.links_from(node_id)
        for link in outgoing:
            if link.target != node_id:
                del self.nodes[link.target].links[link.input]
        del self.nodes[node_id]
        self._emit(ev.NodeRemoved(node, tuple(outgoing)))
        return node, outgoing

    def set_value(self, node_id: str, input_name: str, value: Any) -> Any:
        """Set a field value; returns the old one (``None`` if it had none)."""
        node = self.node(node_id)
        had_previous = input_name in node.values
        previous = node.values.get(input_name)
        node.values[input_name] = value
        self._emit(ev.ValueChanged(node_id, input_name, value, previous, had_previous))
        return previous

    def unset_value(self, node_id: str, input_name: str) -> Any:
        """Remove a field's own value, so it shows and runs with its declared default;
        returns the value it had (``None`` if none)."""
        node = self.node(node_id)
        if input_name not in node.values:
            return None
        previous = node.values.pop(input_name)
        self._emit(ev.ValueUnset(node_id, input_name, previous))
        return previous

    def set_mode(self, node_id: str, mode: NodeMode) -> NodeMode:
        node = self.node(node_id)
        previous, node.mode = node.mode, NodeMode(mode)
        self._emit(ev.ModeChanged(node_id, node.mode, previous))
        return previous

    def set_title(self, node_id: str, title: str) -> str:
        node = self.node(node_id)
        previous, node.title = node.title, title
        self._emit(ev.TitleChanged(node_id, title, previous))
        return previous

    def move_node(self, node_id: str, position: tuple[float, float]) -> tuple[float, float]:
        node = self.node(node_id)
        previous, node.position = node.position, (float(position[0]), float(position[1]))
        self._emit(ev.NodeMoved(node_id, node.position, previous))
        return previous

    def set_color(self, node_id: str, color: str | None) -> str | None:
        node = self.node(node_id)
        previous, node.color = node.color, color
        self._emit(ev.NodeColorChanged(node_id, color, previous))
        return previous

    def set_seed_control(self, node_id: str, control: str) -> str:
        """What the node's seed does after each queued run (fixed, increment, decrement,
        randomize); returns the control it had."""
        from studio.graph.seeds import CONTROL_KEY, CONTROLS, seed_control

        if control not in CONTROLS:
            raise GraphEditError(f"a seed control is one of {', '.join(CONTROLS)}, not {control!r}")
        node = self.node(node_id)
        previous = seed_control(node)
        had = CONTROL_KEY in node.extra
        node.extra[CONTROL_KEY] = control
        if not had and control == previous:
            del node.extra[CONTROL_KEY]  # nothing to record
        self._emit(ev.SeedControlChanged(node_id, control, previous))
        return previous

    def set_collapsed(self, node_id: str, collapsed: bool) -> bool:
        node = self.node(node_id)
        previous, node.collapsed = node.collapsed, bool(collapsed)
        self._emit(ev.NodeCollapsed(node_id, node.collapsed))
        return previous

    # -- wires -------------------------------------------------------------------------
    def connect(self, source: str, output: str, target: str, input_name: str) -> LinkSource | None:
        """Wire ``source.output`` into ``target.input_name``; returns the link it replaced.

        Whether the wire makes sense (types, cycles) is :func:`can_connect`'s question; the
        model only keeps itself consistent.
        """
        return self.attach(target, input_name, LinkSource(source, output))

    def attach(self, target: str, input_name: str, source: LinkSource, index: int | None = None) -> LinkSource | None:
        """Feed an input from ``source`` as it is (with its reroute and kept fields); a new
        wire goes in at ``index`` of the node's inputs. Returns the wire it replaced."""
        self.node(source.node)
        if source.reroute is not None:
            self.reroute(source.reroute)
        target_node = self.node(target)
        previous = target_node.links.get(input_name)
        _put(target_node.links, input_name, source, index)
        self._emit(ev.LinkAdded(Link(source.node, source.output, target, input_name), previous))
        return previous

    def disconnect(self, target: str, input_name: str) -> LinkSource | None:
        target_node = self.node(target)
        previous = target_node.links.pop(input_name, None)
        if previous is not None:
            self._emit(ev.LinkRemoved(Link(previous.node, previous.output, target, input_name)))
        return previous

    def set_link_reroute(self, target: str, input_name: str, reroute_id: str | None) -> str | None:
        """Make a wire pass through a reroute point (its last before the input), or none."""
        node = self.node(target)
        if input_name not in node.links:
            raise GraphEditError(f"{node.label} has no wire into {input_name!r}")
        if reroute_id is not None:
            self.reroute(reroute_id)
        link = node.links[input_name]
        node.links[input_name] = replace(link, reroute=reroute_id)
        self._emit(ev.LinkRerouted(target, input_name, reroute_id, link.reroute))
        return link.reroute

    # -- groups ------------------------------------------------------------------------
    def add_group(self, title: str, bounds: tuple[float, float, float, float], color: str | None = None) -> Group:
        group = Group(self.new_id(), title, tuple(float(v) for v in bounds), color)  # type: ignore[arg-type]
        self.insert_group(group)
        return group

    def insert_group(self, group: Group, index: int | None = None) -> None:
        if group.id in self.groups:
            raise GraphEditError(f"group id #{group.id} is already used")
        _put(self.groups, group.id, group, index)
        self._emit(ev.GroupAdded(group))

    def remove_group(self, group_id: str) -> Group:
        group = self.group(group_id)
        del self.groups[group_id]
        self._emit(ev.GroupRemoved(group))
        return group

    def change_group(self, group_id: str, *, title: str | None = None,
                     bounds: tuple[float, float, float, float] | None = None,
                     color: str | None | EllipsisType = ...) -> Group:
        """Retitle, move/resize or recolour a group (``color=None`` removes its colour);
        returns a copy of the group as it was."""
        group = self.group(group_id)
        previous = replace(group, extra=dict(group.extra))
        if title is not None:
            group.title = title
        if bounds is not None:
            group.bounds = tuple(float(v) for v in bounds)  # type: ignore[assignment]
        if not isinstance(color, EllipsisType):  # ``...``: the colour stays as it is
            group.color = color
        self._emit(ev.GroupChanged(group, previous))
        return previous

    # -- reroutes ----------------------------------------------------------------------
    def add_reroute(self, position: tuple[float, float], parent: str | None = None) -> Reroute:
        reroute = Reroute(self.new_id(), (float(position[0]), float(position[1])), parent)
        self.insert_reroute(reroute)
        return reroute

    def insert_reroute(self, reroute: Reroute, index: int | None = None) -> None:
        if reroute.id in self.reroutes:
            raise GraphEditError(f"reroute id #{reroute.id} is already used")
        if reroute.parent is not None:
            self.reroute(reroute.parent)
        _put(self.reroutes, reroute.id, reroute, index)
        self._emit(ev.RerouteAdded(reroute))

    def remove_reroute(self, reroute_id: str) -> Reroute:
        """Remove a reroute point; it must carry no wire and be no other point's parent."""
        reroute = self.reroute(reroute_id)
        users = [f"#{node.id}.{name}" for node in self.nodes.values()
                 for name, link in node.links.items() if link.reroute == reroute_id]
        users += [f"reroute #{other.id}" for other in self.reroutes.values() if other.parent == reroute_id]
        if users:
            raise GraphEditError(f"reroute #{reroute_id} is still used by {', '.join(users)}")
        del self.reroutes[reroute_id]
        self._emit(ev.RerouteRemoved(reroute))
        return reroute

    def move_reroute(self, reroute_id: str, position: tuple[float, float]) -> tuple[float, float]:
        reroute = self.reroute(reroute_id)
        previous, reroute.position = reroute.position, (float(position[0]), float(position[1]))
        self._emit(ev.RerouteMoved(reroute_id, reroute.position, previous))
        return previous

    def copy(self) -> Workflow:
        """A deep copy with no listeners (for overrides, sweeps and background runs)."""
        clone = Workflow()
        clone.nodes = copy.deepcopy(self.nodes)
        clone.groups = copy.deepcopy(self.groups)
        clone.reroutes = copy.deepcopy(self.reroutes)
        clone.meta = copy.deepcopy(self.meta)
        clone.extra = copy.deepcopy(self.extra)
        return clone
