"""Field overrides: ``NODE.INPUT=VALUE`` as ``studio render --set/--sweep`` and ``studio batch``
take them, resolved to a node id and a value of the input's type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.graph import GraphEditError, Workflow
from studio.graph.sockets import BOOLEAN, FLOAT, INT
from studio.registry import Registry


class OverrideError(ValueError):
    """An override that names no field, or a value that does not fit it; the sentence says
    which."""


@dataclass(frozen=True)
class Override:
    """``NODE.INPUT=VALUE`` resolved to a node id and a typed value."""

    node_id: str
    input: str
    value: Any
    label: str  # as the user wrote NODE.INPUT

    def apply(self, workflow: Workflow) -> None:
        workflow.set_value(self.node_id, self.input, self.value)


def parse_scalar(text: str, input_type: str, where: str) -> Any:
    try:
        if input_type == INT:
            return int(text, 0)
        if input_type == FLOAT:
            return float(text)
    except ValueError:
        kind = "a whole number" if input_type == INT else "a number"
        raise OverrideError(f"{where}: expected {kind}, got {text!r}") from None
    if input_type == BOOLEAN:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise OverrideError(f"{where}: expected true or false, got {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes of another encoding on the command line
        raise OverrideError(f"{where}: the text is not valid UTF-8, so no saved file could hold it") from None
    return text


def split_assignment(text: str, option: str) -> tuple[str, str, str]:
    target, separator, value = text.partition("=")
    node_reference, dot, input_name = target.rpartition(".")
    if not separator or not dot or not node_reference or not input_name:
        raise OverrideError(f"{option} {text!r}: expected NODE.INPUT=VALUE (NODE is an id or a unique title)")
    return node_reference, input_name, value


def resolve_target(workflow: Workflow, registry: Registry, node_reference: str, input_name: str,
                    where: str) -> tuple[str, str]:
    try:
        node = workflow.find_node(node_reference)
    except GraphEditError as error:
        raise OverrideError(f"{where}: {error}") from None
    cls = registry.get(node.type)
    if cls is None:
        raise OverrideError(f"{where}: node #{node.id} is of the unknown type {node.type!r}")
    spec = cls.spec().input(input_name)
    if spec is None or not spec.has_widget:
        fields = ", ".join(s.name for s in cls.inputs if s.has_widget) or "none"
        raise OverrideError(f"{where}: {node.type} has no field {input_name!r} (its fields: {fields})")
    if input_name in node.links:
        source = node.links[input_name]
        raise OverrideError(f"{where}: {input_name} of node #{node.id} is wired from node #{source.node}; "
                           f"set the value on that node instead")
    return node.id, spec.type


def parse_set(workflow: Workflow, registry: Registry, text: str) -> Override:
    node_reference, input_name, raw = split_assignment(text, "--set")
    node_id, input_type = resolve_target(workflow, registry, node_reference, input_name, f"--set {text}")
    label = f"{node_reference}.{input_name}"
    return Override(node_id, input_name, parse_scalar(raw, input_type, f"--set {text}"), label)


def _split_values(raw: str) -> list[str]:
    # Commas separate values; "\," keeps a comma inside a text value.
    values, current, escaped = [], [], False
    for character in raw:
        if escaped:
            current.append(character)
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(character)
    values.append("".join(current))
    return values


def parse_sweep(workflow: Workflow, registry: Registry, text: str) -> list[Override]:
    """``NODE.INPUT=V1,V2,…`` (or ``A..B`` for a range of whole numbers) as one override each."""
    node_reference, input_name, raw = split_assignment(text, "--sweep")
    where = f"--sweep {text}"
    node_id, input_type = resolve_target(workflow, registry, node_reference, input_name, where)
    label = f"{node_reference}.{input_name}"
    if input_type == INT and ".." in raw and "," not in raw:
        low, _, high = raw.partition("..")
        start, stop = parse_scalar(low, INT, where), parse_scalar(high, INT, where)
        if stop < start or stop - start >= 1_000_000:
            raise OverrideError(f"{where}: expected a range LOW..HIGH of at most a million values")
        values = list(range(start, stop + 1))
    else:
        values = [parse_scalar(item, input_type, where) for item in _split_values(raw)]
    return [Override(node_id, input_name, value, label) for value in values]
