"""Socket types and the typed input/output declarations that nodes are built from.

Pure data: no Qt, no torch. The canvas, the importer and the validator all decide whether a
wire may exist through :func:`types_compatible` and :func:`studio.graph.connect.can_connect`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MODEL = "MODEL"
CLIP = "CLIP"
VAE = "VAE"
CONDITIONING = "CONDITIONING"
LATENT = "LATENT"
IMAGE = "IMAGE"
MASK = "MASK"
CONTROL_NET = "CONTROL_NET"
UPSCALE_MODEL = "UPSCALE_MODEL"
# The parts of a sampler, for custom sampling (ComfyUI's names).
SIGMAS = "SIGMAS"
SAMPLER = "SAMPLER"
GUIDER = "GUIDER"
NOISE = "NOISE"
# Image prompts: a CLIP vision encoder, what it makes of a picture, and a style adapter that
# turns that into prompt tokens (ComfyUI's names).
CLIP_VISION = "CLIP_VISION"
CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
STYLE_MODEL = "STYLE_MODEL"
# GLIGEN: a model that places phrases in boxes of the picture (ComfyUI's name).
GLIGEN = "GLIGEN"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
# Accepts or offers any type (reroutes, pass-through utilities).
ANY = "*"

SOCKET_TYPES: tuple[str, ...] = (
    MODEL, CLIP, VAE, CONDITIONING, LATENT, IMAGE, MASK, CONTROL_NET, UPSCALE_MODEL,
    SIGMAS, SAMPLER, GUIDER, NOISE, CLIP_VISION, CLIP_VISION_OUTPUT, STYLE_MODEL, GLIGEN, INT, FLOAT, STRING, BOOLEAN,
)
# Types that can be typed into a field on the node instead of arriving over a wire.
WIDGET_TYPES: frozenset[str] = frozenset({INT, FLOAT, STRING, BOOLEAN})

# Colours the canvas uses for ports and wires, kept with the types so every view agrees.
SOCKET_COLOURS: dict[str, str] = {
    MODEL: "#b39ddb", CLIP: "#ffd54f", VAE: "#ef5350", CONDITIONING: "#ffa726",
    LATENT: "#f48fb1", IMAGE: "#64b5f6", MASK: "#81c784", CONTROL_NET: "#4db6ac",
    UPSCALE_MODEL: "#9575cd", SIGMAS: "#cddc39", SAMPLER: "#ecb4b4", GUIDER: "#66ffff", NOISE: "#b0b0b0",
    CLIP_VISION: "#a1887f", CLIP_VISION_OUTPUT: "#d7ccc8", STYLE_MODEL: "#c5e1a5",
    INT: "#aed581", FLOAT: "#80cbc4", STRING: "#e0e0e0",
    BOOLEAN: "#90a4ae", GLIGEN: "#9ccc65", ANY: "#bdbdbd",
}

ChoiceProvider = Callable[[], Sequence[str]]


def types_compatible(output_type: str, input_type: str) -> bool:
    """Whether a value of ``output_type`` may flow into an input of ``input_type``."""
    return output_type == input_type or ANY in (output_type, input_type)


@dataclass(frozen=True)
class InputSpec:
    """One named input of a node type.

    Widget types (INT, FLOAT, STRING, BOOLEAN) carry a value on the node and may also be
    wired; every other type must arrive over a wire. ``choices`` turns a STRING into a
    drop-down; it may be a callable so that lists of files are read when needed.
    """

    name: str
    type: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: Sequence[str] | ChoiceProvider | None = None
    multiline: bool = False
    # "seed" widgets offer randomise / increment after each run, as ComfyUI's seeds do.
    seed: bool = False
    optional: bool = False
    tooltip: str = ""

    @property
    def has_widget(self) -> bool:
        return self.type in WIDGET_TYPES

    def choice_list(self) -> list[str] | None:
        if self.choices is None:
            return None
        values = self.choices() if callable(self.choices) else self.choices
        return list(values)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for ``studio nodes --json`` and the inspector)."""
        info: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.has_widget:
            info["default"] = self.default
        for key in ("min", "max", "step"):
            value = getattr(self, key)
            if value is not None:
                info[key] = value
        if self.choices is not None:
            info["choices"] = self.choice_list()
        if self.multiline:
            info["multiline"] = True
        if self.seed:
            info["seed"] = True
        if self.optional:
            info["optional"] = True
        if self.tooltip:
            info["tooltip"] = self.tooltip
        return info


@dataclass(frozen=True)
class OutputSpec:
    """One named output of a node type."""

    name: str
    type: str
    tooltip: str = ""

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.tooltip:
            info["tooltip"] = self.tooltip
        return info


@dataclass(frozen=True)
class NodeSpec:
    """What the graph layer needs to know about a node type: its sockets, nothing else."""

    type_name: str
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    is_output: bool = False
    _inputs_by_name: dict[str, InputSpec] = field(default_factory=dict, compare=False, repr=False)
    _outputs_by_name: dict[str, OutputSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._inputs_by_name.update({spec.name: spec for spec in self.inputs})
        self._outputs_by_name.update({spec.name: spec for spec in self.outputs})

    def input(self, name: str) -> InputSpec | None:
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> OutputSpec | None:
        return self._outputs_by_name.get(name)

    def output_index(self, name: str) -> int | None:
        """The slot number of an output, as ComfyUI and the engine address outputs."""
        spec = self._outputs_by_name.get(name)
        return None if spec is None else self.outputs.index(spec)
