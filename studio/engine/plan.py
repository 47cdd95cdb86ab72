"""Planning: which nodes a run needs, in which order, and where each input comes from.

Bypassed nodes are planned away (their consumers are wired straight to what they pass
through), muted nodes and everything that needs them are skipped, and the rest is put in a
deterministic topological order (NetworkX, ties broken by node id).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import networkx as nx

from studio.graph.bypass import BypassLoop, PassedValue, Reached, follow_bypass
from studio.graph.model import Node, NodeMode, Workflow, node_sort_key
from studio.graph.sockets import FLOAT

if TYPE_CHECKING:
    from studio.node_api import NodeBase
    from studio.registry import Registry


class PlanError(ValueError):
    """The workflow cannot be planned (it should have been caught by validation)."""


# Named tuples rather than frozen dataclasses: planning makes one per input of every node,
# and these are several times cheaper to create.
class Upstream(NamedTuple):
    """An input fed by output number ``output_index`` of node ``node_id``."""

    node_id: str
    output_index: int


class Constant(NamedTuple):
    """An input fed by a value typed on the node (or passed through a bypassed node)."""

    value: Any


Source = Upstream | Constant


@dataclass
class PlannedNode:
    node: Node
    cls: type[NodeBase]
    sources: dict[str, Source]


@dataclass
class Plan:
    steps: list[PlannedNode]
    targets: tuple[str, ...]
    # Muted nodes and the nodes that needed their outputs.
    skipped: tuple[str, ...]


def default_targets(workflow: Workflow, registry: Registry) -> list[str]:
    """The output nodes (save, preview, …) that are switched on."""
    targets = []
    for node_id, node in workflow.nodes.items():
        cls = registry.get(node.type)
        if cls is not None and cls.is_output and node.mode is NodeMode.NORMAL:
            targets.append(node_id)
    return sorted(targets, key=node_sort_key)


def needed_nodes(workflow: Workflow, targets: Iterable[str]) -> set[str]:
    """The targets and everything wired upstream of them, following the wires as drawn."""
    needed: set[str] = set()
    stack = [target for target in targets if target in workflow.nodes]
    while stack:
        node_id = stack.pop()
        if node_id in needed:
            continue
        needed.add(node_id)
        for source in workflow.nodes[node_id].links.values():
            if source.node in workflow.nodes and source.node not in needed:
                stack.append(source.node)
    return needed


def _resolve_link(workflow: Workflow, registry: Registry, node_id: str, output: str) -> Source | None:
    """Follow a wire back through bypassed nodes to what really feeds it (None: a bypassed
    node with nothing of the type to pass on)."""
    end = follow_bypass(workflow, registry.spec, node_id, output)
    if isinstance(end, PassedValue):
        return Constant(end.value)
    if isinstance(end, BypassLoop):
        raise PlanError(f"bypassed nodes around {end.node.label} form a loop")
    if not isinstance(end, Reached):
        return None
    node = workflow.nodes.get(end.node_id)
    if node is None:
        raise PlanError(f"a bypassed node is linked to node #{end.node_id}, which does not exist")
    spec = registry.spec(node.type)
    index = spec.output_index(end.output) if spec is not None else None
    if index is None:
        raise PlanError(f"{node.label} has no output {end.output!r}")
    return Upstream(end.node_id, index)


def _coerce(value: Any, input_type: str) -> Any:
    # JSON gives 7 for 7.0; nodes declared FLOAT should not have to care.
    if input_type == FLOAT and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def make_plan(workflow: Workflow, registry: Registry, targets: Iterable[str] | None = None) -> Plan:
    """Plan a run of ``targets`` (the output nodes when None). Assumes a validated workflow."""
    target_ids = list(default_targets(workflow, registry) if targets is None else targets)
    for target in target_ids:
        if target not in workflow.nodes:
            raise PlanError(f"there is no node #{target} to run")

    sources: dict[str, dict[str, Source]] = {}
    required: dict[str, set[str]] = {}
    pending = [t for t in target_ids if workflow.nodes[t].mode is not NodeMode.BYPASS]
    while pending:
        node_id = pending.pop()
        if node_id in sources:
            continue
        node = workflow.nodes[node_id]
        cls = registry.get(node.type)
        if cls is None:
            raise PlanError(f"{node.label} is of an unknown type")
        resolved: dict[str, Source] = {}
        required[node_id] = set()
        if node.mode is not NodeMode.MUTE:
            for spec in cls.inputs:
                source: Source | None = None
                if spec.name in node.links:
                    link = node.links[spec.name]
                    if link.node not in workflow.nodes:
                        raise PlanError(f"{node.label} input {spec.name!r} is linked to a missing node")
                    source = _resolve_link(workflow, registry, link.node, link.output)
                elif spec.has_widget:
                    value = node.values.get(spec.name, spec.default)
                    source = Constant(value) if value is not None else None
                if source is None:
                    if not spec.optional:
                        raise PlanError(f"{node.label} input {spec.name!r} has nothing to read from")
                    continue
                if isinstance(source, Constant):
                    source = Constant(_coerce(source.value, spec.type))
                else:
                    pending.append(source.node_id)
                    if not spec.optional:
                        required[node_id].add(spec.name)
                resolved[spec.name] = source
        sources[node_id] = resolved

    graph = nx.DiGraph()
    graph.add_nodes_from(sources)
    for node_id, resolved in sources.items():
        for source in resolved.values():
            if isinstance(source, Upstream):
                graph.add_edge(source.node_id, node_id)
    try:
        order = list(nx.lexicographical_topological_sort(graph, key=node_sort_key))
    except nx.NetworkXUnfeasible:
        raise PlanError("the workflow has a loop") from None

    skipped: set[str] = set()
    steps: list[PlannedNode] = []
    for node_id in order:
        node = workflow.nodes[node_id]
        resolved = sources[node_id]
        if node.mode is NodeMode.MUTE or any(
                isinstance(resolved[name], Upstream) and resolved[name].node_id in skipped  # type: ignore[union-attr]
                for name in required[node_id]):
            skipped.add(node_id)
            continue
        # An optional input fed by a skipped node is simply absent.
        kept = {name: source for name, source in resolved.items()
                if not (isinstance(source, Upstream) and source.node_id in skipped)}
        steps.append(PlannedNode(node, registry.get(node.type), kept))  # type: ignore[arg-type]
    return Plan(steps, tuple(target_ids), tuple(sorted(skipped, key=node_sort_key)))
