"""Validation: every problem in a workflow, each tied to a node and input, before anything runs.

Collects all problems rather than stopping at the first, so an artist fixes a file in one
pass: unknown node types, missing required inputs, links of the wrong type or to nowhere,
values of the wrong kind, out of range or not among the choices, and cycles (naming the
nodes in each). Muted nodes are not checked (they do not run); bypassed nodes only need
something of the right type to pass through.

As in ComfyUI, only what leads to an output has to be valid: a problem in a node upstream
of the outputs being run is an error, one elsewhere (a half-wired node left aside) is a
warning, listed but not stopping a run. Nodes may add warnings of their own (``advise``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import networkx as nx

from studio.engine.plan import default_targets, needed_nodes
from studio.graph.bypass import Unmatched, follow_bypass
from studio.graph.connect import can_connect
from studio.graph.model import Node, NodeMode, Workflow, node_sort_key
from studio.graph.sockets import BOOLEAN, FLOAT, INT, STRING, InputSpec

if TYPE_CHECKING:
    from studio.node_api import NodeBase
    from studio.registry import Registry
    from studio.settings import Settings


class ProblemKind(enum.StrEnum):
    """What is wrong. A ``str``, so ``kind == "cycle"`` and JSON output read as before."""

    UNKNOWN_TYPE = "unknown_type"  # a node type Seed Studio does not have
    UNKNOWN_INPUT = "unknown_input"  # a wire into an input the type does not declare
    DANGLING_LINK = "dangling_link"  # a wire from a node or output that is not there
    TYPE_MISMATCH = "type_mismatch"
    MISSING_INPUT = "missing_input"  # a required input with neither value nor wire
    BAD_VALUE = "bad_value"  # a value of the wrong kind, out of range, not a choice, …
    ADVICE = "advice"  # a node type's own warning (``NodeBase.advise``)
    BYPASS_UNMATCHED = "bypass_unmatched"  # a bypassed node with nothing to pass on
    CYCLE = "cycle"
    NO_OUTPUT = "no_output"  # nothing would run
    UNKNOWN_NODE = "unknown_node"  # a run asked for a node id that is not in the workflow
    PLAN = "plan"  # the planner refused what validation let through
    MISSING_MODEL = "missing_model"  # a model file not in the model folders (studio.runtime.models)


class Severity(enum.StrEnum):
    ERROR = "error"  # stops a run
    WARNING = "warning"  # listed, does not stop it


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow, located as precisely as it can be. ``kind`` and
    ``severity`` may be given as their strings; they are kept as the enums."""

    kind: ProblemKind
    message: str
    node_id: str | None = None
    node_type: str | None = None
    input: str | None = None
    # For a cycle: every node in it.
    node_ids: tuple[str, ...] = ()
    severity: Severity = Severity.ERROR

    def __post_init__(self) -> None:
        if type(self.kind) is not ProblemKind:
            object.__setattr__(self, "kind", ProblemKind(self.kind))
        if type(self.severity) is not Severity:
            object.__setattr__(self, "severity", Severity(self.severity))

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        where = f"node #{self.node_id}" if self.node_id else "workflow"
        if self.node_type:
            where += f" ({self.node_type})"
        if self.input:
            where += f", input {self.input!r}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": str(self.kind), "severity": str(self.severity), "message": self.message,
                                "node_id": self.node_id, "node_type": self.node_type, "input": self.input}
        if self.node_ids:
            data["node_ids"] = list(self.node_ids)
        return data


class WorkflowInvalid(Exception):
    """Raised where a caller wants an exception rather than a list of problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def describe_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def check_value(spec: InputSpec, value: Any) -> str | None:
    """Why ``value`` does not fit ``spec`` (a sentence), or None if it does."""
    if spec.type == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected a whole number, found {describe_value(value)}"
    elif spec.type == FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, found {describe_value(value)}"
        if not math.isfinite(value):
            return f"expected a finite number, found {value}"
    elif spec.type == BOOLEAN:
        if not isinstance(value, bool):
            return f"expected true or false, found {describe_value(value)}"
    elif spec.type == STRING and not isinstance(value, str):
        return f"expected text, found {describe_value(value)}"
    if spec.type in (INT, FLOAT):
        if spec.min is not None and value < spec.min:
            return f"{describe_value(value)} is below the minimum {spec.min:g}"
        if spec.max is not None and value > spec.max:
            return f"{describe_value(value)} is above the maximum {spec.max:g}"
    if spec.choices is not None:
        choices = spec.choice_list() or []
        if value not in choices:
            shown = ", ".join(repr(choice) for choice in choices[:8])
            more = f" and {len(choices) - 8} more" if len(choices) > 8 else ""
            return f"{describe_value(value)} is not one of the choices ({shown}{more})" if choices \
                else f"{describe_value(value)} is not available (there is nothing to choose from)"
    return None


def find_cycles(workflow: Workflow) -> list[list[str]]:
    """Each loop of wires as the list of nodes in it (strongly connected components)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(workflow.nodes)
    graph.add_edges_from((link.source, link.target) for link in workflow.links()
                         if link.source in workflow.nodes)
    if nx.is_directed_acyclic_graph(graph):
        return []  # the common case, and much cheaper than finding components
    cycles = []
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1 or any(graph.has_edge(n, n) for n in component):
            cycles.append(sorted(component, key=node_sort_key))
    return sorted(cycles, key=lambda nodes: node_sort_key(nodes[0]))


def validate(workflow: Workflow, registry: Registry, settings: Settings | None = None, *,
             targets: Iterable[str] | None = None, check_cycles: bool = True) -> list[Problem]:
    """All problems in ``workflow``, in node order (loops last): errors where they are
    upstream of ``targets`` (the output nodes when None), warnings elsewhere. A caller that
    plans next may leave the loop search to the planner, which finds loops anyway."""
    return graded(_all_problems(workflow, registry, settings, check_cycles), workflow, registry, targets)


def graded(problems: list[Problem], workflow: Workflow, registry: Registry,
           targets: Iterable[str] | None = None) -> list[Problem]:
    """``problems`` with those away from what ``targets`` (the output nodes when None) need
    made warnings: ComfyUI, too, validates only what leads to an output."""
    needed = needed_nodes(workflow, default_targets(workflow, registry) if targets is None else targets)
    return [problem if problem.severity is Severity.WARNING or problem.node_id is None or problem.node_id in needed
            or needed.intersection(problem.node_ids) else replace(problem, severity=Severity.WARNING)
            for problem in problems]


def _all_problems(workflow: Workflow, registry: Registry, settings: Settings | None,
                  check_cycles: bool) -> list[Problem]:
    problems: list[Problem] = []
    nodes = workflow.nodes
    for node_id in sorted(nodes, key=node_sort_key):
        node = nodes[node_id]
        cls = registry.get(node.type)
        if cls is None:
            problems.append(Problem(ProblemKind.UNKNOWN_TYPE, f"there is no node type {node.type!r}", node_id,
                                    node.type))
            continue
        if node.mode is NodeMode.MUTE:
            continue
        spec = cls.spec()
        value_problems: list[Problem] = []
        for input_name, source in node.links.items():
            input_spec = spec.input(input_name)
            if input_spec is None:
                problems.append(Problem(ProblemKind.UNKNOWN_INPUT, f"{node.type} has no input {input_name!r} "
                                        f"(a wire from #{source.node} arrives there)", node_id, node.type, input_name))
                continue
            source_node = nodes.get(source.node)
            if source_node is None:
                problems.append(Problem(ProblemKind.DANGLING_LINK,
                                        f"linked to node #{source.node}, which does not exist",
                                        node_id, node.type, input_name))
                continue
            if source_node.type not in registry:
                continue  # already reported as an unknown type on that node
            verdict = can_connect(workflow, registry.spec, source.node, source.output, node_id, input_name,
                                  check_cycle=False)
            if not verdict:
                kind = (ProblemKind.TYPE_MISMATCH if verdict.kind == "type_mismatch"
                        else ProblemKind.DANGLING_LINK)
                problems.append(Problem(kind, f"from {source_node.label}: {verdict.reason}", node_id,
                                        node.type, input_name))
                continue
            if source_node.mode is NodeMode.BYPASS and node.mode is not NodeMode.BYPASS:
                # A loop of bypassed nodes is reported as a cycle, a wire to nowhere on the
                # bypassed node that has it.
                end = follow_bypass(workflow, registry.spec, source.node, source.output)
                if isinstance(end, Unmatched):
                    problems.append(Problem(ProblemKind.BYPASS_UNMATCHED,
                                            f"{end.node.label} is bypassed and has no input of the type of its "
                                            f"{end.output!r} output to pass through", node_id, node.type, input_name))
        if node.mode is NodeMode.BYPASS:
            continue
        for input_spec in spec.inputs:
            if input_spec.name in node.links:
                continue
            if input_spec.has_widget:
                value = node.values.get(input_spec.name, input_spec.default)
                if value is None:
                    if not input_spec.optional:
                        problems.append(Problem(ProblemKind.MISSING_INPUT,
                                                f"needs a value or an {input_spec.type} wire",
                                                node_id, node.type, input_spec.name))
                    continue
                reason = check_value(input_spec, value)
                if reason is not None:
                    value_problems.append(Problem(ProblemKind.BAD_VALUE, reason, node_id, node.type, input_spec.name))
            elif not input_spec.optional:
                problems.append(Problem(ProblemKind.MISSING_INPUT, f"needs a {input_spec.type} wire",
                                        node_id, node.type, input_spec.name))
        problems.extend(value_problems)
        if not value_problems and settings is not None:
            problems.extend(_own_checks(cls, node, settings))
    if check_cycles:
        problems.extend(cycle_problems(workflow))
    return problems


def _own_checks(cls: type[NodeBase], node: Node, settings: Settings) -> list[Problem]:
    """What the node type's ``check`` (errors) and ``advise`` (warnings) find in its values."""
    checks = [(check, severity) for check, severity, declared in
              ((cls.check, Severity.ERROR, cls.has_own_check()), (cls.advise, Severity.WARNING, cls.has_own_advice()))
              if declared]
    if not checks:
        return []
    spec = cls.spec()
    values = {spec_in.name: node.values.get(spec_in.name, spec_in.default)
              for spec_in in spec.inputs if spec_in.has_widget and spec_in.name not in node.links}
    problems: list[Problem] = []
    for check, severity in checks:
        try:
            found = check(values, settings)
        except Exception as error:  # noqa: BLE001 - a plugin's checker must not take validation down
            found = [("", f"could not be checked ({type(error).__name__}: {error})")]
        kind = ProblemKind.BAD_VALUE if severity is Severity.ERROR else ProblemKind.ADVICE
        problems.extend(Problem(kind, message, node.id, node.type, input_name or None, severity=severity)
                        for input_name, message in found)
    return problems


def no_output_problem(workflow: Workflow, registry: Registry) -> Problem:
    """Why nothing in ``workflow`` would run (a run with no output node is not a success
    that saved nothing): which of its nodes Seed Studio lacks, which outputs are switched off."""
    unknown = [f"{node.type!r} (#{node.id})" for node_id, node in sorted(workflow.nodes.items(),
                                                                          key=lambda item: node_sort_key(item[0]))
               if node.type not in registry]
    switched_off = []
    for node_id in sorted(workflow.nodes, key=node_sort_key):
        node = workflow.nodes[node_id]
        cls = registry.get(node.type)
        if cls is not None and cls.is_output and node.mode is not NodeMode.NORMAL:
            switched_off.append(f"#{node_id} {node.type} ({node.mode.value})")
    message = "nothing would run: the workflow has no output node (such as SaveImage or PreviewImage) switched on"
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        message += f"; node types Seed Studio does not have: {shown}"
    if switched_off:
        message += f"; switched off: {', '.join(switched_off)}"
    return Problem(ProblemKind.NO_OUTPUT, message)


def cycle_problems(workflow: Workflow) -> list[Problem]:
    """One problem per loop of wires, naming every node in it."""
    problems = []
    for cycle in find_cycles(workflow):
        path = " → ".join(f"#{node_id}" for node_id in cycle)
        problems.append(Problem(ProblemKind.CYCLE, f"nodes {path} feed each other in a loop", cycle[0],
                                workflow.nodes[cycle[0]].type, None, tuple(cycle)))
    return problems

