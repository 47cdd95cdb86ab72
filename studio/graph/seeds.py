"""What happens to a seed field after each queued run, as ComfyUI's "control after generate"
does: keep it (fixed), add or take one, or draw a new one. Stored on the node and written to
ComfyUI's slot on export."""

from __future__ import annotations

import random
from typing import Any

from studio.graph.model import Node

CONTROLS = ("fixed", "increment", "decrement", "randomize")
CONTROL_KEY = "seed_control"
COMFY_CONTROL = "control_after_generate"


def seed_control(node: Node) -> str:
    """The node's seed control: its own, else the one its ComfyUI file had, else fixed."""
    own = node.extra.get(CONTROL_KEY)
    if own in CONTROLS:
        return str(own)
    comfy = node.extra.get("comfy")
    extras = comfy.get("widget_extras") if isinstance(comfy, dict) else None
    kept = extras.get(COMFY_CONTROL) if isinstance(extras, dict) else None
    return str(kept) if kept in CONTROLS else "fixed"


def next_seed(control: str, value: int, low: int, high: int, rng: random.Random | None = None) -> int:
    """The seed after a run under ``control`` (wrapping within low..high as ComfyUI does)."""
    if control == "increment":
        return low if value >= high else value + 1
    if control == "decrement":
        return high if value <= low else value - 1
    if control == "randomize":
        return (rng or random.SystemRandom()).randint(low, high)
    return value


def seeds_after_run(nodes: Any, spec_of: Any, rng: random.Random | None = None) -> dict[tuple[str, str], int]:
    """{(node id, input): new value} for every unwired seed field whose control changes it."""
    changes: dict[tuple[str, str], int] = {}
    for node in nodes:
        control = seed_control(node)
        spec = spec_of(node.type)
        if control == "fixed" or spec is None:
            continue
        for field in spec.inputs:
            if not field.seed or field.name in node.links:
                continue
            value = node.values.get(field.name, field.default)
            low = int(field.min) if field.min is not None else 0
            high = int(field.max) if field.max is not None else 2**64 - 1
            changes[(node.id, field.name)] = next_seed(control, int(value or 0), low, high, rng)
    return changes
