"""What the workflow tells its observers after each edit: one frozen dataclass per kind.

Every edit method of :class:`~studio.graph.model.Workflow` emits exactly one of these, after
the model has changed. Views (canvas, inspector, problems, autosave) match on the class and
update the one thing the event names; nothing has to guess a payload's shape. Undo commands
do not read events: they keep what they need themselves (see ``studio.graph.commands``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.graph.model import Group, Link, LinkSource, Node, NodeMode, Reroute


@dataclass(frozen=True)
class NodeAdded:
    node: Node


@dataclass(frozen=True)
class NodeRemoved:
    node: Node
    # The wires that left this node and were removed with it (those into it stay on ``node``).
    links: tuple[Link, ...]


@dataclass(frozen=True)
class LinkAdded:
    link: Link
    # The wire that fed this input before, if any.
    replaced: LinkSource | None


@dataclass(frozen=True)
class LinkRemoved:
    link: Link


@dataclass(frozen=True)
class LinkRerouted:
    """A wire now passes through another reroute point (or none)."""

    target: str
    input: str
    reroute: str | None
    previous: str | None


@dataclass(frozen=True)
class ValueChanged:
    node_id: str
    input: str
    value: Any
    previous: Any
    # False when the field had no value of its own before (it showed its default).
    had_previous: bool


@dataclass(frozen=True)
class ValueUnset:
    """A field went back to its declared default (its own value was removed)."""

    node_id: str
    input: str
    previous: Any


@dataclass(frozen=True)
class ModeChanged:
    node_id: str
    mode: NodeMode
    previous: NodeMode


@dataclass(frozen=True)
class TitleChanged:
    node_id: str
    title: str
    previous: str


@dataclass(frozen=True)
class NodeMoved:
    node_id: str
    position: tuple[float, float]
    previous: tuple[float, float]


@dataclass(frozen=True)
class NodeColorChanged:
    node_id: str
    color: str | None
    previous: str | None


@dataclass(frozen=True)
class NodeCollapsed:
    node_id: str
    collapsed: bool


@dataclass(frozen=True)
class SeedControlChanged:
    node_id: str
    control: str
    previous: str


@dataclass(frozen=True)
class GroupAdded:
    group: Group


@dataclass(frozen=True)
class GroupRemoved:
    group: Group


@dataclass(frozen=True)
class GroupChanged:
    """A group's title, bounds or colour changed; ``previous`` is a copy of it before."""

    group: Group
    previous: Group


@dataclass(frozen=True)
class RerouteAdded:
    reroute: Reroute


@dataclass(frozen=True)
class RerouteRemoved:
    reroute: Reroute


@dataclass(frozen=True)
class RerouteMoved:
    reroute_id: str
    position: tuple[float, float]
    previous: tuple[float, float]


GraphEvent = (NodeAdded | NodeRemoved | LinkAdded | LinkRemoved | LinkRerouted | ValueChanged | ValueUnset
              | ModeChanged | TitleChanged | NodeMoved | NodeColorChanged | NodeCollapsed
              | SeedControlChanged | GroupAdded | GroupRemoved | GroupChanged | RerouteAdded | RerouteRemoved
              | RerouteMoved)
Listener = Callable[[GraphEvent], None]

# Events that change what the engine would compute (the others are layout only).
SEMANTIC_EVENTS = (NodeAdded, NodeRemoved, LinkAdded, LinkRemoved, ValueChanged, ValueUnset, ModeChanged)


def node_of(event: GraphEvent) -> str | None:
    """The node an event is about (the target of a wire), if it is about one."""
    if isinstance(event, (NodeAdded, NodeRemoved)):
        return event.node.id
    if isinstance(event, (LinkAdded, LinkRemoved)):
        return event.link.target
    if isinstance(event, LinkRerouted):
        return event.target
    return getattr(event, "node_id", None)
