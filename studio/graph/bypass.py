"""What a bypassed node passes on: for each output, the first input of the same type.

Shared by the engine (which validates what bypassed nodes pass on and plans them away) and
the ComfyUI API export (which writes consumers wired straight past them), so all agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.graph.connect import SpecLookup
from studio.graph.model import LinkSource, Node, NodeMode, Workflow


def bypass_source(spec_of: SpecLookup, node: Node, output_name: str) -> tuple[str, Any] | None:
    """What a bypassed ``node`` passes out of ``output_name``: ``("link", LinkSource)`` or
    ``("value", value)``; None when it has no input of that output's type."""
    spec = spec_of(node.type)
    if spec is None:
        return None
    out = spec.output(output_name)
    if out is None:
        return None
    for input_spec in spec.inputs:
        if input_spec.type != out.type:
            continue
        link: LinkSource | None = node.links.get(input_spec.name)
        if link is not None:
            return ("link", link)
        if input_spec.has_widget:
            value = node.values.get(input_spec.name, input_spec.default)
            if value is not None:
                return ("value", value)
    return None


@dataclass(frozen=True)
class Reached:
    """The wire comes from output ``output`` of node ``node_id``, which is not bypassed (or
    is not in the workflow at all: a wire to nowhere, for the caller to name)."""

    node_id: str
    output: str


@dataclass(frozen=True)
class PassedValue:
    """A bypassed node passes on a value typed on it."""

    value: Any


@dataclass(frozen=True)
class Unmatched:
    """Bypassed ``node`` has no input of the type of its ``output`` to pass on."""

    node: Node
    output: str


@dataclass(frozen=True)
class BypassLoop:
    """Bypassed nodes pass each other's outputs round in a loop (``node`` is one of them)."""

    node: Node


BypassEnd = Reached | PassedValue | Unmatched | BypassLoop


def follow_bypass(workflow: Workflow, spec_of: SpecLookup, node_id: str, output: str) -> BypassEnd:
    """Where output ``output`` of node ``node_id`` really comes from, once every bypassed node
    on the way is passed through (each passing on what :func:`bypass_source` says): the first
    node that is not bypassed, a value, or why neither (a bypassed node with nothing of the
    type, or a loop). The planner and validation both walk with it, so they agree."""
    seen: set[str] = set()
    while True:
        node = workflow.nodes.get(node_id)
        if node is None or node.mode is not NodeMode.BYPASS:
            return Reached(node_id, output)
        if node_id in seen:
            return BypassLoop(node)
        seen.add(node_id)
        passed = bypass_source(spec_of, node, output)
        if passed is None:
            return Unmatched(node, output)
        kind, payload = passed
        if kind == "value":
            return PassedValue(payload)
        node_id, output = payload.node, payload.output
