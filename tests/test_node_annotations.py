"""run() annotations agree with the declared sockets (studio.node_api.check_run_annotations)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from studio.graph.sockets import ANY, FLOAT, IMAGE, INT, LATENT, MASK, MODEL, STRING
from studio.node_api import Input, NodeBase, NodeDeclarationError, Output, check_run_annotations
from studio.registry import Registry


def test_every_shipped_node_annotates_its_inputs_and_result(registry):
    unannotated = []
    for cls in registry:
        signature = inspect.signature(cls.run)
        unannotated += [f"{cls.type_name}.{spec.name}" for spec in cls.inputs
                        if signature.parameters[spec.name].annotation is inspect.Parameter.empty]
        if signature.return_annotation is inspect.Signature.empty:
            unannotated.append(f"{cls.type_name} -> ?")
    assert unannotated == []


def _node(annotation: str, socket: str, **input_options: Any) -> type[NodeBase]:
    """A node class whose one input of type ``socket`` is annotated ``annotation``."""
    namespace: dict[str, Any] = {}
    exec(f"def run(self, ctx, value: {annotation}) -> tuple:\n    return (value,)", namespace)
    return type("Annotated", (NodeBase,), {
        "__doc__": "Passes its value on.", "type_name": "Annotated", "category": "test", "title": "Annotated",
        "inputs": (Input("value", socket, **input_options),), "outputs": (Output("out", socket),),
        "run": namespace["run"]})


def test_a_wrongly_annotated_node_is_refused_naming_node_input_annotation_and_socket():
    with pytest.raises(NodeDeclarationError) as refused:
        Registry().register(_node("int", IMAGE))
    message = str(refused.value)
    assert "Annotated" in message and "'value'" in message and "'int'" in message and "IMAGE" in message


@pytest.mark.parametrize(("annotation", "socket"), [
    ("str", INT), ("bool", INT), ("float", INT), ("str", FLOAT), ("int", STRING), ("list", LATENT),
    ("float", MODEL), ("torch.Tensor | str", MASK), ("Optional[int]", IMAGE),
])
def test_types_a_socket_never_carries_are_refused(annotation, socket):
    with pytest.raises(NodeDeclarationError, match=socket):
        check_run_annotations(_node(annotation, socket))


@pytest.mark.parametrize(("annotation", "socket", "options"), [
    ("int", INT, {}), ("float", FLOAT, {}), ("int", FLOAT, {}), ("str", STRING, {"choices": ("a", "b")}),
    ("torch.Tensor", IMAGE, {}), ("Tensor | None", MASK, {"optional": True}), ("dict[str, Any]", LATENT, {}),
    ("DiffusionModel", MODEL, {}), ("Any", MODEL, {}), ("int", ANY, {}),
])
def test_the_types_a_socket_carries_are_accepted(annotation, socket, options):
    check_run_annotations(_node(annotation, socket, **options))


def test_annotations_that_are_real_objects_are_read_by_name():
    # As in a plugin written without ``from __future__ import annotations``.
    wrong = _node("int", IMAGE)
    wrong.run.__annotations__["value"] = dict
    with pytest.raises(NodeDeclarationError, match="IMAGE"):
        check_run_annotations(wrong)
    right = _node("float", FLOAT)
    right.run.__annotations__["value"] = float | None
    check_run_annotations(right)
