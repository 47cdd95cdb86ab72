from __future__ import annotations

import pytest

from studio.graph import GraphEditError, NodeMode, NodeSpec, Workflow, can_connect
from studio.graph.sockets import IMAGE, INT, MASK, InputSpec, OutputSpec

SPECS = {
    "Load": NodeSpec("Load", (), (OutputSpec("IMAGE", IMAGE), OutputSpec("MASK", MASK))),
    "Filter": NodeSpec("Filter", (InputSpec("image", IMAGE), InputSpec("amount", INT, default=1)),
                       (OutputSpec("IMAGE", IMAGE),)),
}


def chain() -> Workflow:
    workflow = Workflow()
    workflow.add_node("Load")
    workflow.add_node("Filter")
    workflow.add_node("Filter")
    workflow.connect("1", "IMAGE", "2", "image")
    workflow.connect("2", "IMAGE", "3", "image")
    return workflow


def test_new_ids_count_up_and_are_not_reused_while_the_node_exists():
    workflow = chain()
    assert list(workflow.nodes) == ["1", "2", "3"]
    workflow.remove_node("2")
    assert workflow.add_node("Filter").id == "4"


def test_removing_a_node_removes_its_wires_and_returns_them_for_undo():
    workflow = chain()
    node, removed = workflow.remove_node("2")
    assert node.type == "Filter"
    assert [(link.source, link.target) for link in removed] == [("2", "3")]
    assert workflow.nodes["3"].links == {}
    assert [(link.source, link.target) for link in workflow.links()] == []


def test_connect_replaces_the_previous_wire_and_reports_it():
    workflow = chain()
    workflow.add_node("Load")
    replaced = workflow.connect("4", "IMAGE", "3", "image")
    assert replaced is not None and replaced.node == "2"
    assert workflow.nodes["3"].links["image"].node == "4"


def test_listeners_hear_every_edit_in_order():
    workflow = chain()
    heard = []
    unsubscribe = workflow.subscribe(lambda event: heard.append(type(event).__name__))
    workflow.set_value("2", "amount", 3)
    workflow.set_mode("2", NodeMode.BYPASS)
    workflow.move_node("2", (10, 20))
    workflow.disconnect("3", "image")
    workflow.remove_node("1")
    unsubscribe()
    workflow.set_value("2", "amount", 4)
    assert heard == ["ValueChanged", "ModeChanged", "NodeMoved", "LinkRemoved", "NodeRemoved"]


def test_find_node_by_id_or_unique_title():
    workflow = chain()
    workflow.set_title("2", "Sharpen")
    assert workflow.find_node("Sharpen").id == "2"
    assert workflow.find_node("3").id == "3"
    workflow.set_title("3", "Sharpen")
    with pytest.raises(GraphEditError, match="shared by nodes #2, #3"):
        workflow.find_node("Sharpen")
    with pytest.raises(GraphEditError, match="no node"):
        workflow.find_node("Blur")


def test_copy_is_deep_and_has_no_listeners():
    workflow = chain()
    heard = []
    workflow.subscribe(heard.append)
    clone = workflow.copy()
    clone.set_value("2", "amount", 9)
    assert "amount" not in workflow.nodes["2"].values
    assert heard == []


@pytest.mark.parametrize(("source", "output", "target", "input_name", "kind"), [
    ("1", "MASK", "2", "image", "type_mismatch"),
    ("2", "IMAGE", "2", "image", "self_link"),
    ("3", "IMAGE", "2", "image", "cycle"),
    ("1", "DEPTH", "2", "image", "unknown_output"),
    ("1", "IMAGE", "2", "strength", "unknown_input"),
])
def test_can_connect_refuses_with_a_sentence(source, output, target, input_name, kind):
    workflow = chain()
    verdict = can_connect(workflow, SPECS.get, source, output, target, input_name)
    assert not verdict
    assert verdict.kind == kind
    assert verdict.reason


def test_can_connect_allows_a_matching_wire():
    workflow = chain()
    workflow.add_node("Filter")
    assert can_connect(workflow, SPECS.get, "1", "IMAGE", "4", "image")
    assert can_connect(workflow, SPECS.get, "3", "IMAGE", "4", "image")


def test_first_free_connection_takes_the_first_compatible_pair_and_skips_wired_inputs():
    from studio.graph.connect import first_free_connection

    specs = dict(SPECS, Blend=NodeSpec("Blend", (InputSpec("mask", MASK), InputSpec("a", IMAGE),
                                                 InputSpec("b", IMAGE)), (OutputSpec("IMAGE", IMAGE),)))
    workflow = chain()
    workflow.add_node("Blend", node_id="9")
    assert first_free_connection(workflow, specs.get, "1", "9") == ("IMAGE", "a")
    workflow.connect("1", "IMAGE", "9", "a")
    assert first_free_connection(workflow, specs.get, "1", "9") == ("IMAGE", "b")
    workflow.connect("1", "IMAGE", "9", "b")
    assert first_free_connection(workflow, specs.get, "1", "9") == ("MASK", "mask")
    workflow.connect("1", "MASK", "9", "mask")
    assert first_free_connection(workflow, specs.get, "1", "9") is None
    # Never a wire that would make a loop.
    assert first_free_connection(workflow, specs.get, "3", "2") is None


def test_reconnections_wire_around_deleted_nodes_by_type():
    from studio.graph.connect import reconnections

    workflow = chain()
    assert reconnections(workflow, SPECS.get, {"2"}) == [("1", "IMAGE", "3", "image")]
    # Through several deleted nodes in a row.
    workflow.add_node("Filter", node_id="4")
    workflow.connect("3", "IMAGE", "4", "image")
    assert reconnections(workflow, SPECS.get, {"2", "3"}) == [("1", "IMAGE", "4", "image")]
    # Nothing upstream of the right type: no wire.
    assert reconnections(workflow, SPECS.get, {"1", "2"}) == []
