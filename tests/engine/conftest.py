"""A small registry of cheap integer nodes, so engine tests need no torch and no files."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from studio.engine import Engine
from studio.graph import Workflow
from studio.graph.sockets import INT, STRING
from studio.node_api import Input, NodeBase, Output, Services
from studio.registry import Registry


@dataclass
class Collecting(Services):
    """Services with one more: where Collect nodes put what they receive."""

    collected: list = field(default_factory=list)


class Number(NodeBase):
    """A constant."""

    type_name, category, title = "Number", "test", "Number"
    inputs = (Input("value", INT, default=0, min=-100, max=100),)
    outputs = (Output("INT", INT),)

    def run(self, ctx, value):
        return (value,)


class Add(NodeBase):
    """a + b."""

    type_name, category, title = "Add", "test", "Add"
    inputs = (Input("a", INT, default=0), Input("b", INT, default=0))
    outputs = (Output("INT", INT),)

    def run(self, ctx, a, b):
        return (a + b,)


class Length(NodeBase):
    """Length of a text (its output type matches none of its inputs)."""

    type_name, category, title = "Length", "test", "Length"
    inputs = (Input("text", STRING, default="", choices=("", "ab", "abc")),)
    outputs = (Output("INT", INT),)

    def run(self, ctx, text):
        return (len(text),)


class OrMinusOne(NodeBase):
    """Its input, or -1 when nothing is wired in."""

    type_name, category, title = "OrMinusOne", "test", "Or -1"
    inputs = (Input("a", INT, optional=True),)
    outputs = (Output("INT", INT),)

    def run(self, ctx, a=None):
        return (-1 if a is None else a,)


class Slow(NodeBase):
    """Counts to `steps`, reporting progress each step."""

    type_name, category, title = "Slow", "test", "Slow"
    inputs = (Input("a", INT), Input("steps", INT, default=5, min=1, max=1000))
    outputs = (Output("INT", INT),)

    def run(self, ctx, a, steps):
        for step in range(1, steps + 1):
            ctx.progress(step, steps)
        return (a + steps,)


class Boom(NodeBase):
    """Always fails."""

    type_name, category, title = "Boom", "test", "Boom"
    inputs = (Input("a", INT),)
    outputs = (Output("INT", INT),)

    def run(self, ctx, a):
        raise ValueError("the flux capacitor is empty")


class Collect(NodeBase):
    """An output node: hands what it receives to the test through the services."""

    type_name, category, title = "Collect", "test", "Collect"
    is_output = True
    inputs = (Input("value", INT),)
    outputs = ()

    def run(self, ctx, value):
        ctx.services.collected.append((ctx.node_id, value))
        return ()


@pytest.fixture
def int_registry() -> Registry:
    registry = Registry()
    for cls in (Number, Add, Length, OrMinusOne, Slow, Boom, Collect):
        registry.register(cls)
    return registry


@pytest.fixture
def collected() -> list:
    return []


@pytest.fixture
def engine(int_registry, settings, collected) -> Engine:
    return Engine(int_registry, settings, services=Collecting(collected=collected))


def build(nodes: dict[str, tuple[str, dict]], links: list[tuple[str, str, str, str]]) -> Workflow:
    """A workflow from {id: (type, values)} and [(source, output, target, input)]."""
    workflow = Workflow()
    for node_id, (type_name, values) in nodes.items():
        workflow.add_node(type_name, values, node_id=node_id)
    for source, output, target, input_name in links:
        workflow.connect(source, output, target, input_name)
    return workflow
