"""Primitive values, arithmetic and text on them, to drive several inputs from one field;
notes, and a text preview of any value."""

from __future__ import annotations

import json
import math
import operator
import sys
from typing import TYPE_CHECKING, Any

from studio.graph.sockets import ANY, BOOLEAN, FLOAT, INT, STRING
from studio.node_api import SEED_MAX, Input, NodeBase, Output

if TYPE_CHECKING:
    from studio.node_api import NodeContext

_INT_LIMIT = sys.maxsize
_FLOAT_LIMIT = sys.float_info.max


class PrimitiveInt(NodeBase):
    """A whole number, to wire into any INT input (widths, steps, seeds…)."""

    type_name = "PrimitiveInt"
    category = "utils/primitive"
    title = "Int"
    inputs = (Input("value", INT, default=0, min=-_INT_LIMIT, max=_INT_LIMIT, seed=True),)
    outputs = (Output("INT", INT),)

    def run(self, ctx: NodeContext, value: int) -> tuple[int]:
        return (value,)


class PrimitiveFloat(NodeBase):
    """A number with decimals, to wire into any FLOAT input (cfg, denoise, scale…)."""

    type_name = "PrimitiveFloat"
    category = "utils/primitive"
    title = "Float"
    # ComfyUI's range (±sys.maxsize), so a shared file's value validates the same here
    inputs = (Input("value", FLOAT, default=0.0, min=-_INT_LIMIT, max=_INT_LIMIT),)
    outputs = (Output("FLOAT", FLOAT),)

    def run(self, ctx: NodeContext, value: float) -> tuple[float]:
        return (value,)


class PrimitiveString(NodeBase):
    """A line of text, to wire into any STRING input (file prefixes, prompts…)."""

    type_name = "PrimitiveString"
    category = "utils/primitive"
    title = "String"
    inputs = (Input("value", STRING, default=""),)
    outputs = (Output("STRING", STRING),)

    def run(self, ctx: NodeContext, value: str) -> tuple[str]:
        return (value,)


class PrimitiveStringMultiline(NodeBase):
    """Several lines of text (a prompt shared by several encoders, say)."""

    type_name = "PrimitiveStringMultiline"
    category = "utils/primitive"
    title = "String (Multiline)"
    inputs = (Input("value", STRING, default="", multiline=True),)
    outputs = (Output("STRING", STRING),)

    def run(self, ctx: NodeContext, value: str) -> tuple[str]:
        return (value,)


class PrimitiveBoolean(NodeBase):
    """True or false, to wire into any BOOLEAN input."""

    type_name = "PrimitiveBoolean"
    category = "utils/primitive"
    title = "Boolean"
    inputs = (Input("value", BOOLEAN, default=False),)
    outputs = (Output("BOOLEAN", BOOLEAN),)

    def run(self, ctx: NodeContext, value: bool) -> tuple[bool]:
        return (value,)


class Seed(NodeBase):
    """A seed shared by several nodes; the field can randomise or count up after each run,
    and a sweep over it re-runs only the nodes the seed feeds."""

    type_name = "Seed"
    category = "utils/primitive"
    title = "Seed"
    inputs = (Input("seed", INT, default=0, min=0, max=SEED_MAX, seed=True),)
    outputs = (Output("seed", INT),)

    def run(self, ctx: NodeContext, seed: int) -> tuple[int]:
        return (seed,)


def _divide_int(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("b is 0: cannot divide by zero")
    return a // b


def _modulo(a, b):
    if b == 0:
        raise ZeroDivisionError("b is 0: cannot take the remainder of a division by zero")
    return a % b


def _power_int(a: int, b: int) -> int:
    if b < 0:
        raise ValueError("a negative power of a whole number is not a whole number; use FloatMath")
    # Guard against results with millions of digits, which would hang the run.
    if abs(a) > 1 and b * math.log2(abs(a)) > 256:
        raise OverflowError(f"{a} to the power {b} is too large")
    return a ** b


INT_OPERATIONS = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul,
    "divide": _divide_int, "modulo": _modulo, "power": _power_int, "min": min, "max": max,
}


def _divide_float(a: float, b: float) -> float:
    if b == 0:
        raise ZeroDivisionError("b is 0: cannot divide by zero")
    return a / b


def _power_float(a: float, b: float) -> float:
    if a < 0 and not float(b).is_integer():
        raise ValueError(f"cannot raise the negative number {a} to the fractional power {b}")
    return math.pow(a, b)


FLOAT_OPERATIONS = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul,
    "divide": _divide_float, "modulo": _modulo, "power": _power_float, "min": min, "max": max,
}


class IntMath(NodeBase):
    """a (operation) b for whole numbers; divide rounds down."""

    type_name = "IntMath"
    category = "utils/math"
    title = "Int Math"
    inputs = (
        Input("a", INT, default=0, min=-_INT_LIMIT, max=_INT_LIMIT),
        Input("b", INT, default=0, min=-_INT_LIMIT, max=_INT_LIMIT),
        Input("operation", STRING, default="add", choices=tuple(INT_OPERATIONS)),
    )
    outputs = (Output("INT", INT),)

    def run(self, ctx: NodeContext, a: int, b: int, operation: str) -> tuple[int]:
        result = INT_OPERATIONS[operation](a, b)
        if abs(result) > _INT_LIMIT:
            raise OverflowError(f"{operation} of {a} and {b} is outside the range of an INT")
        return (result,)


class FloatMath(NodeBase):
    """a (operation) b for numbers with decimals."""

    type_name = "FloatMath"
    category = "utils/math"
    title = "Float Math"
    inputs = (
        Input("a", FLOAT, default=0.0, min=-_FLOAT_LIMIT, max=_FLOAT_LIMIT),
        Input("b", FLOAT, default=0.0, min=-_FLOAT_LIMIT, max=_FLOAT_LIMIT),
        Input("operation", STRING, default="add", choices=tuple(FLOAT_OPERATIONS)),
    )
    outputs = (Output("FLOAT", FLOAT),)

    def run(self, ctx: NodeContext, a: float, b: float, operation: str) -> tuple[float]:
        try:
            result = FLOAT_OPERATIONS[operation](a, b)
        except OverflowError:
            raise OverflowError(f"{operation} of {a} and {b} is too large") from None
        if not math.isfinite(result):
            raise OverflowError(f"{operation} of {a} and {b} is not a finite number")
        return (float(result),)


class IntToFloat(NodeBase):
    """Turns a whole number into a FLOAT."""

    type_name = "IntToFloat"
    category = "utils/math"
    title = "Int to Float"
    inputs = (Input("value", INT, default=0, min=-_INT_LIMIT, max=_INT_LIMIT),)
    outputs = (Output("FLOAT", FLOAT),)

    def run(self, ctx: NodeContext, value: int) -> tuple[float]:
        return (float(value),)


ROUNDING = {"round": round, "floor": math.floor, "ceil": math.ceil, "truncate": math.trunc}


class FloatToInt(NodeBase):
    """Turns a number into a whole number: rounded, floored, ceiled or truncated."""

    type_name = "FloatToInt"
    category = "utils/math"
    title = "Float to Int"
    inputs = (
        Input("value", FLOAT, default=0.0, min=-_FLOAT_LIMIT, max=_FLOAT_LIMIT),
        Input("rounding", STRING, default="round", choices=tuple(ROUNDING)),
    )
    outputs = (Output("INT", INT),)

    def run(self, ctx: NodeContext, value: float, rounding: str) -> tuple[int]:
        result = int(ROUNDING[rounding](value))
        if abs(result) > _INT_LIMIT:
            raise OverflowError(f"{value} is outside the range of an INT")
        return (result,)


class Note(NodeBase):
    """A note on the canvas for whoever reads the graph next. It computes nothing."""

    type_name = "Note"
    category = "utils"
    title = "Note"
    inputs = (Input("text", STRING, default="", multiline=True),)
    outputs = ()

    def run(self, ctx: NodeContext, text: str) -> tuple[()]:
        return ()


class MarkdownNote(Note):
    """A note on the canvas written in Markdown. It computes nothing."""

    type_name = "MarkdownNote"
    title = "Markdown Note"


class StringConcatenate(NodeBase):
    """Joins two texts into one, with `delimiter` between them (nothing by default; ", "
    or a new line are common)."""

    type_name = "StringConcatenate"
    category = "utils/string"
    title = "Concatenate"
    inputs = (
        Input("string_a", STRING, default="", multiline=True),
        Input("string_b", STRING, default="", multiline=True),
        Input("delimiter", STRING, default=""),
    )
    outputs = (Output("STRING", STRING),)

    def run(self, ctx: NodeContext, string_a: str, string_b: str, delimiter: str) -> tuple[str]:
        return (f"{string_a}{delimiter}{string_b}",)


def preview_text(value: Any) -> str:
    """How PreviewAny shows a value, as ComfyUI's does: text as it is, numbers and booleans
    as Python writes them, anything else as indented JSON where it can be, else as Python
    prints it."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    try:
        return json.dumps(value, indent=4)
    except (TypeError, ValueError):
        try:
            return str(value)
        except Exception:  # noqa: BLE001 - a value that cannot print itself is still previewed
            return "source exists, but could not be serialized."


class PreviewAny(NodeBase):
    """Shows any value as text: a prompt, a number, a list. The text is reported with the
    run (in the run report, and printed by `studio render`); the node re-runs every time
    so each run reports it."""

    type_name = "PreviewAny"
    category = "utils"
    title = "Preview as Text"
    is_output = True
    cacheable = False
    inputs = (Input("source", ANY),)
    outputs = ()

    def run(self, ctx: NodeContext, source: Any) -> tuple[()]:
        ctx.note(preview_text(source))
        return ()
