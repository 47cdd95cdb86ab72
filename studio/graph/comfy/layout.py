"""Per node type: the widget order, outputs and wired inputs a ComfyUI file implies.

ComfyUI's own definitions (definitions.py) come first, since they describe what ComfyUI
writes; node types only Seed Studio has are described by their declarations.
"""

from __future__ import annotations

import re

from studio.graph.comfy.definitions import COMFY_NODES, CONTROL
from studio.graph.connect import SpecLookup

_UNNAMED_OUTPUT = re.compile(r"#(\d+)$")


def widget_layout(type_name: str, spec_of: SpecLookup) -> tuple[str, ...] | None:
    """The positional meaning of ``widgets_values`` for this type, or None if unknown."""
    definition = COMFY_NODES.get(type_name)
    if definition is not None:
        return definition.widgets
    spec = spec_of(type_name)
    if spec is None:
        return None
    names: list[str] = []
    for input_spec in spec.inputs:
        if input_spec.has_widget:
            names.append(input_spec.name)
            if input_spec.seed:
                names.append(CONTROL)
    return tuple(names)


def output_list(type_name: str, spec_of: SpecLookup) -> list[tuple[str, str]] | None:
    """(name, type) of each output slot, or None if the type is unknown."""
    spec = spec_of(type_name)
    if spec is not None:
        return [(output.name, output.type) for output in spec.outputs]
    definition = COMFY_NODES.get(type_name)
    if definition is not None:
        return list(definition.outputs)
    return None


def input_list(type_name: str, spec_of: SpecLookup) -> list[tuple[str, str, bool]] | None:
    """(name, type, has_widget) of every input, or None if the type is unknown."""
    spec = spec_of(type_name)
    if spec is not None:
        return [(i.name, i.type, i.has_widget) for i in spec.inputs]
    definition = COMFY_NODES.get(type_name)
    if definition is not None:
        wired = [(name, kind, False) for name, kind in definition.inputs]
        widgets = [(name, "*", True) for name in definition.widgets if name != CONTROL and name != "upload"]
        return wired + widgets
    return None


def unnamed_output(slot: int) -> str:
    """The output name used for slot ``slot`` of a node whose outputs are not known."""
    return f"#{slot}"


def slot_of_unnamed(name: str) -> int | None:
    match = _UNNAMED_OUTPUT.match(name)
    return int(match.group(1)) if match else None
