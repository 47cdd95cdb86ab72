"""What a bypassed node passes on: for each output, the first input of the same type.

Shared by the engine (which plans bypassed nodes away) and the ComfyUI API export (which
writes consumers wired straight past them), so both agree.
"""

from __future__ import annotations

from typing import Any

from studio.graph.connect import SpecLookup
from studio.graph.model import LinkSource, Node


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
