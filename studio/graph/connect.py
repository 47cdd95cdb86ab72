"""The one place that decides whether a wire may exist.

The canvas asks while a wire is dragged (and shows the sentence as a tooltip), the importer
asks for each link it reads, and the validator asks for each link in the file, so all three
agree on what is allowed and say it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from studio.graph.model import Workflow
from studio.graph.sockets import NodeSpec, types_compatible

SpecLookup = Callable[[str], NodeSpec | None]


@dataclass(frozen=True)
class Verdict:
    """Whether a connection is allowed, and if not, a sentence for the artist."""

    allowed: bool
    reason: str = ""
    # What kind of refusal: missing_node, self_link, unknown_type, unknown_output,
    # unknown_input, type_mismatch or cycle.
    kind: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Verdict(True)


def reaches(workflow: Workflow, start: str, goal: str) -> bool:
    """Whether ``goal`` is downstream of ``start`` (following wires forwards)."""
    consumers: dict[str, list[str]] = {}
    for link in workflow.links():
        consumers.setdefault(link.source, []).append(link.target)
    seen = {start}
    stack = [start]
    while stack:
        current = stack.pop()
        if current == goal:
            return True
        for nxt in consumers.get(current, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def can_connect(
    workflow: Workflow,
    spec_of: SpecLookup,
    source: str,
    output: str,
    target: str,
    input_name: str,
    *,
    check_cycle: bool = True,
) -> Verdict:
    """Whether ``source.output`` may be wired into ``target.input_name``."""
    if source not in workflow.nodes:
        return Verdict(False, f"there is no node #{source}", "missing_node")
    if target not in workflow.nodes:
        return Verdict(False, f"there is no node #{target}", "missing_node")
    source_node, target_node = workflow.nodes[source], workflow.nodes[target]
    if source == target:
        return Verdict(False, "a node cannot feed itself", "self_link")
    source_spec, target_spec = spec_of(source_node.type), spec_of(target_node.type)
    if source_spec is None:
        return Verdict(False, f"{source_node.label} is of an unknown type", "unknown_type")
    if target_spec is None:
        return Verdict(False, f"{target_node.label} is of an unknown type", "unknown_type")
    out_spec = source_spec.output(output)
    if out_spec is None:
        return Verdict(False, f"{source_node.label} has no output {output!r}", "unknown_output")
    in_spec = target_spec.input(input_name)
    if in_spec is None:
        return Verdict(False, f"{target_node.label} has no input {input_name!r}", "unknown_input")
    if not types_compatible(out_spec.type, in_spec.type):
        return Verdict(False, f"{output} gives {out_spec.type}, but {input_name} needs {in_spec.type}",
                       "type_mismatch")
    if check_cycle and reaches(workflow, target, source):
        return Verdict(False, f"{target_node.label} already feeds {source_node.label}: this wire would make a loop",
                       "cycle")
    return ALLOWED


def first_free_connection(workflow: Workflow, spec_of: SpecLookup, source: str, target: str
                          ) -> tuple[str, str] | None:
    """(output, input): the source's first output that the target's first free input of a
    matching type accepts — what keyboard-only connecting wires up."""
    source_spec, target_spec = spec_of(workflow.node(source).type), spec_of(workflow.node(target).type)
    if source_spec is None or target_spec is None:
        return None
    linked = workflow.node(target).links
    for output in source_spec.outputs:
        for spec in target_spec.inputs:
            if spec.name in linked:
                continue
            if can_connect(workflow, spec_of, source, output.name, target, spec.name):
                return output.name, spec.name
    return None


def reconnections(workflow: Workflow, spec_of: SpecLookup, removed: set[str]) -> list[tuple[str, str, str, str]]:
    """Wires that keep the graph flowing when ``removed`` nodes are deleted ("delete with
    reconnect"): each kept input fed by a removed node is wired to what fed that node's first
    input of the same type, looking further upstream through removed nodes."""
    def upstream(node_id: str, wanted: str, seen: set[str]) -> tuple[str, str] | None:
        node = workflow.node(node_id)
        spec = spec_of(node.type)
        for name, source in node.links.items():
            input_spec = spec.input(name) if spec else None
            if input_spec is None:
                continue
            source_spec = spec_of(workflow.node(source.node).type) if source.node in workflow.nodes else None
            output_spec = source_spec.output(source.output) if source_spec else None
            if output_spec is None or not types_compatible(output_spec.type, wanted):
                continue
            if source.node not in removed:
                return source.node, source.output
            if source.node not in seen:
                found = upstream(source.node, wanted, seen | {source.node})
                if found:
                    return found
        return None

    wires = []
    for link in list(workflow.links()):
        if link.source not in removed or link.target in removed:
            continue
        target_spec = spec_of(workflow.node(link.target).type)
        input_spec = target_spec.input(link.input) if target_spec else None
        if input_spec is None:
            continue
        found = upstream(link.source, input_spec.type, {link.source})
        if found:
            wires.append((found[0], found[1], link.target, link.input))
    return wires
