"""What differs between two workflows (the graphs that made two pictures): values, modes,
wires, and nodes only one of them has, matched by node id as both came from one graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.graph.model import Node, Workflow, node_sort_key


@dataclass(frozen=True)
class Difference:
    node: str  # a label for the node ("'Prompt' (#2 CLIPTextEncode)")
    what: str  # the input name, "mode", "wire into …", or "node"
    a: Any
    b: Any


def _value(node: Node, name: str, defaults: dict[str, Any]) -> Any:
    return node.values.get(name, defaults.get(name))


def differences(a: Workflow, b: Workflow, defaults_of: Any = None) -> list[Difference]:
    """Every difference, in node order. ``defaults_of(type) -> {input: default}`` lets a value
    left at its default equal the same value written out."""
    found: list[Difference] = []
    for node_id in sorted(set(a.nodes) | set(b.nodes), key=node_sort_key):
        left, right = a.nodes.get(node_id), b.nodes.get(node_id)
        if left is None or right is None or left.type != right.type:
            found.append(Difference((left or right).label, "node",  # type: ignore[union-attr]
                                    left.type if left else None, right.type if right else None))
            continue
        defaults = defaults_of(left.type) if defaults_of is not None else {}
        for name in dict.fromkeys([*left.values, *right.values]):
            if name in left.links or name in right.links:
                continue
            va, vb = _value(left, name, defaults), _value(right, name, defaults)
            if va != vb:
                found.append(Difference(left.label, name, va, vb))
        if left.mode != right.mode:
            found.append(Difference(left.label, "mode", left.mode.value, right.mode.value))
        for name in dict.fromkeys([*left.links, *right.links]):
            la, lb = left.links.get(name), right.links.get(name)
            ends = [None if link is None else f"#{link.node}.{link.output}" for link in (la, lb)]
            if ends[0] != ends[1]:
                found.append(Difference(left.label, f"wire into {name}", ends[0], ends[1]))
    return found
