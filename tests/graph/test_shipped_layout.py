"""Shipped workflows open with every node clear of the others (pictures included), as the
canvas draws them: sizes come from the same layout code the canvas uses."""

from __future__ import annotations

import pytest

from studio.graph.files import open_workflow
from studio.graph.layout import GAP, overlapping_pairs, spread_out
from studio.settings import WORKFLOWS_DIR

SHIPPED = sorted(WORKFLOWS_DIR.rglob("*.json"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(WORKFLOWS_DIR)) for p in SHIPPED])
def test_no_shipped_workflow_has_overlapping_or_touching_nodes(path, registry):
    workflow, _ = open_workflow(path, registry.spec)
    spec_of = lambda type_name: registry.get(type_name).spec() if registry.get(type_name) else None  # noqa: E731
    assert overlapping_pairs(workflow, spec_of) == [], f"nodes closer than {GAP} px"


def test_spread_out_separates_nodes_dropped_on_one_another(registry):
    from studio.graph import Workflow

    workflow = Workflow()
    for index in range(4):
        workflow.add_node("VAEDecode", position=(10.0 * index, 5.0 * index))
    spec_of = lambda type_name: registry.get(type_name).spec()  # noqa: E731
    assert overlapping_pairs(workflow, spec_of)
    for node_id, (_, after) in spread_out(workflow, spec_of).items():
        workflow.move_node(node_id, after)
    assert overlapping_pairs(workflow, spec_of) == []
