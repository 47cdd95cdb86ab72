from __future__ import annotations

import pytest

from nodes.utility import FloatMath, FloatToInt, IntMath, IntToFloat, PrimitiveInt, Seed


@pytest.mark.parametrize(("operation", "a", "b", "expected"), [
    ("add", 7, 3, 10), ("subtract", 7, 3, 4), ("multiply", 7, 3, 21), ("divide", 7, 3, 2),
    ("divide", -7, 2, -4), ("modulo", 7, 3, 1), ("power", 2, 10, 1024), ("min", 7, 3, 3), ("max", 7, 3, 7),
])
def test_int_math(ctx, operation, a, b, expected):
    assert IntMath().run(ctx, a=a, b=b, operation=operation) == (expected,)


def test_float_math(ctx):
    assert FloatMath().run(ctx, a=1.5, b=0.5, operation="divide") == (3.0,)
    assert FloatMath().run(ctx, a=2.0, b=0.5, operation="power") == pytest.approx((2 ** 0.5,))


@pytest.mark.parametrize(("node", "kwargs", "message"), [
    (IntMath, {"a": 1, "b": 0, "operation": "divide"}, "divide by zero"),
    (IntMath, {"a": 1, "b": 0, "operation": "modulo"}, "division by zero"),
    (IntMath, {"a": 10, "b": 10**9, "operation": "power"}, "too large"),
    (IntMath, {"a": 2, "b": -1, "operation": "power"}, "negative power"),
    (FloatMath, {"a": -8.0, "b": 0.5, "operation": "power"}, "fractional power"),
    (FloatMath, {"a": 1e300, "b": 1e300, "operation": "multiply"}, "not a finite number"),
    (FloatToInt, {"value": 1e300, "rounding": "round"}, "outside the range"),
])
def test_math_errors_are_sentences_not_hangs(ctx, node, kwargs, message):
    with pytest.raises((ValueError, ArithmeticError), match=message):
        node().run(ctx, **kwargs)


def test_conversions_and_primitives(ctx):
    assert IntToFloat().run(ctx, value=3) == (3.0,)
    assert FloatToInt().run(ctx, value=2.5, rounding="floor") == (2,)
    assert FloatToInt().run(ctx, value=2.5, rounding="ceil") == (3,)
    assert PrimitiveInt().run(ctx, value=-4) == (-4,)
    assert Seed().run(ctx, seed=2**64 - 1) == (2**64 - 1,)


def test_string_concatenate_puts_the_delimiter_between(ctx):
    # ComfyUI's comfy_extras/nodes_string.py: delimiter.join((string_a, string_b)).
    from nodes.utility import StringConcatenate

    assert StringConcatenate().run(ctx, string_a="a cat", string_b="a hat", delimiter=", ") == ("a cat, a hat",)
    assert StringConcatenate().run(ctx, string_a="x", string_b="", delimiter="") == ("x",)


@pytest.mark.parametrize(("value", "text"), [
    ("hello", "hello"), (3, "3"), (2.5, "2.5"), (True, "True"), (None, "None"),
    ([1, "a"], '[\n    1,\n    "a"\n]'), ({"k": 1}, '{\n    "k": 1\n}'),
])
def test_preview_text_shows_values_as_comfyuis_preview_any(value, text):
    # ComfyUI's comfy_extras/nodes_preview_any.py: strings as they are, numbers via str(),
    # the rest as JSON indented by 4, else str().
    from nodes.utility import preview_text

    assert preview_text(value) == text


def test_preview_any_reports_its_text_on_every_run(registry, settings):
    from studio.engine import Engine
    from studio.graph import Workflow

    workflow = Workflow()
    workflow.add_node("PrimitiveString", {"value": "a red circle"}, node_id="1")
    workflow.add_node("PreviewAny", {}, node_id="2")
    workflow.connect("1", "STRING", "2", "source")
    engine = Engine(registry, settings)
    for _ in range(2):
        report = engine.run(workflow)
        assert report.ok, report.errors
        assert report.notes == [("2", "a red circle")]
