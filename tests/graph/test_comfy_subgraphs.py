"""ComfyUI subgraphs: expanded into plain nodes for the engine, written back as subgraphs on
export while they still fit, and as plain nodes with a remark once they do not
(files: comfy_files/README.md)."""

from __future__ import annotations

import copy
import json

import pytest

from studio.engine import Engine, validate
from studio.graph import dumps, loads
from studio.graph.comfy import to_comfy_api, to_comfy_ui
from studio.graph.files import workflow_from_bytes
from tests.graph.test_comfy import open_file, opened, read

HALF_NEGATIVE = "9e1b2c3d-1111-4222-8333-444455556666"
MIX = "aaaa0000-1111-4222-8333-000000000001"
NEGATIVE = "bbbb0000-1111-4222-8333-000000000002"


def export(workflow, registry) -> tuple[dict, list[str]]:
    remarks: list[str] = []
    return to_comfy_ui(workflow, registry.spec, remarks), remarks


def exported_with_a_preview(registry, node_id: str, source: str):
    """subgraph_ui.json with a PreviewImage ``node_id`` showing ``source``'s picture, and its
    ComfyUI export (which must need no remarks)."""
    workflow, _ = open_file(registry, "subgraph_ui.json")
    workflow.add_node("PreviewImage", node_id=node_id)
    workflow.connect(source, "IMAGE", node_id, "images")
    exported, remarks = export(workflow, registry)
    assert remarks == []
    return workflow, exported


def reimport(document: dict, registry):
    workflow, _ = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "again.json")
    return workflow


def definitions(document: dict) -> dict[str, dict]:
    return {definition["id"]: definition for definition in document.get("definitions", {}).get("subgraphs", [])}


def inner_nodes(definition: dict) -> dict:
    return {node["id"]: (node["type"], node.get("widgets_values"), node["pos"], node["size"])
            for node in definition["nodes"]}


def inner_links(definition: dict) -> set:
    return {(link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"], link["type"])
            for link in definition["links"]}


def slot_links(node: dict) -> tuple:
    return ([entry.get("link") for entry in node.get("inputs", [])],
            [sorted(entry.get("links") or []) for entry in node.get("outputs", [])])


def by_id(document: dict) -> dict:
    return {node["id"]: node for node in document["nodes"]}


def link_rows(document: dict) -> set:
    return {tuple(row) for row in document["links"]}


@pytest.mark.parametrize("through_native_file", [False, True])
def test_a_subgraph_is_written_back_as_its_instance_and_definition(registry, through_native_file):
    original = read("subgraph_ui.json")
    workflow = opened(registry, "subgraph_ui.json", through_native_file)
    exported, remarks = export(workflow, registry)
    assert remarks == []
    assert set(by_id(exported)) == {1, 3, 12}
    instance, before = by_id(exported)[12], by_id(original)[12]
    for key in ("type", "pos", "size", "mode", "properties", "widgets_values"):
        assert instance[key] == before[key]
    assert slot_links(instance) == slot_links(before)
    # The wires that crossed the subgraph's edge are the file's links to its slots again.
    assert link_rows(exported) == link_rows(original)
    assert exported["last_node_id"] == 12 and exported["last_link_id"] == 2
    [written] = definitions(exported).values()
    [stored] = definitions(original).values()
    assert written["id"] == HALF_NEGATIVE
    assert inner_nodes(written) == inner_nodes(stored)
    assert inner_links(written) == inner_links(stored)
    assert {node["id"]: slot_links(node) for node in written["nodes"]} == {
        node["id"]: slot_links(node) for node in stored["nodes"]}
    assert {key: value for key, value in written.items() if key not in ("nodes", "links")} == {
        key: value for key, value in stored.items() if key not in ("nodes", "links")}


@pytest.mark.parametrize("name", ["subgraph_ui.json", "nested_subgraph_ui.json"])
def test_exporting_an_exported_subgraph_file_again_gives_the_same_bytes(registry, name):
    workflow, _ = open_file(registry, name)
    first = json.dumps(to_comfy_ui(workflow, registry.spec), indent=2)
    second = json.dumps(to_comfy_ui(reimport(json.loads(first), registry), registry.spec), indent=2)
    assert second == first
    # Through Seed Studio's own file too (which writes 0.0 as 0, hence compared as data).
    through_native = to_comfy_ui(loads(dumps(reimport(json.loads(first), registry))), registry.spec)
    assert through_native == json.loads(first)


def test_the_engine_runs_the_expanded_nodes_and_the_api_prompt_stays_flat(registry, settings):
    workflow, _ = open_file(registry, "nested_subgraph_ui.json")
    assert set(workflow.nodes) == {"1", "3", "20:2", "20:1:1"}
    assert validate(workflow, registry, settings) == []
    run = Engine(registry, settings).run(workflow)
    assert run.ok, run.problems or run.errors
    assert {"20:2", "20:1:1"} <= set(run.executed)
    prompt = to_comfy_api(workflow, registry.spec)
    assert {node_id: entry["class_type"] for node_id, entry in prompt.items()} == {
        "1": "LoadImage", "3": "SaveImage", "20:2": "ImageBlend", "20:1:1": "ImageInvert"}
    assert prompt["20:2"]["inputs"]["image2"] == ["20:1:1", 0]


def test_an_edited_value_and_place_show_in_the_exported_definition(registry):
    workflow, _ = open_file(registry, "subgraph_ui.json")
    workflow.set_value("12:2", "blend_factor", 0.25)
    workflow.move_node("12:1", (40.0, 60.0))
    exported, remarks = export(workflow, registry)
    assert remarks == []
    nodes = inner_nodes(definitions(exported)[HALF_NEGATIVE])
    assert nodes[2][1] == [0.25, "normal"]
    assert nodes[1][2] == [40.0, 60.0]
    again = reimport(exported, registry)
    assert again.nodes["12:2"].values["blend_factor"] == 0.25


def test_a_value_the_instance_shows_stays_the_instances_and_the_definition_keeps_its_own(registry):
    workflow, _ = open_file(registry, "nested_subgraph_ui.json")
    blend = workflow.nodes["20:2"]
    # The instance shows blend_factor as its "amount" widget with 0.25; the definition holds 0.5.
    assert blend.values["blend_factor"] == 0.25
    workflow.set_value("20:2", "blend_factor", 0.75)
    exported, _ = export(workflow, registry)
    assert by_id(exported)[20]["widgets_values"] == [0.75]
    written = inner_nodes(definitions(exported)[MIX])
    assert written[2][1] == [0.5, "normal"]
    assert reimport(exported, registry).nodes["20:2"].values["blend_factor"] == 0.75


def test_a_nested_subgraph_is_written_back_inside_its_parent(registry):
    original = read("nested_subgraph_ui.json")
    workflow, _ = open_file(registry, "nested_subgraph_ui.json")
    workflow.move_node("20:1:1", (10.0, 20.0))
    exported, remarks = export(workflow, registry)
    assert remarks == []
    assert set(by_id(exported)) == {1, 3, 20}
    assert link_rows(exported) == link_rows(original)
    written, stored = definitions(exported), definitions(original)
    assert list(written) == [MIX, NEGATIVE]
    assert inner_nodes(written[MIX]) == inner_nodes(stored[MIX])
    assert inner_links(written[MIX]) == inner_links(stored[MIX])
    assert by_id(written[MIX])[1]["type"] == NEGATIVE
    assert inner_links(written[NEGATIVE]) == inner_links(stored[NEGATIVE])
    assert inner_nodes(written[NEGATIVE])[1][2] == [10.0, 20.0]
    for definition_id in (MIX, NEGATIVE):
        assert {node["id"]: slot_links(node) for node in written[definition_id]["nodes"]} == {
            node["id"]: slot_links(node) for node in stored[definition_id]["nodes"]}


def test_deleting_a_node_of_a_subgraph_writes_it_as_plain_nodes_with_a_remark(registry):
    workflow, _ = open_file(registry, "subgraph_ui.json")
    workflow.remove_node("12:1")
    exported, remarks = export(workflow, registry)
    assert remarks == ["subgraph 'Half negative' (node 12) was written as plain nodes: its node 1 (ImageInvert) "
                       "was deleted"]
    assert "definitions" not in exported
    assert sorted(node["type"] for node in exported["nodes"]) == ["ImageBlend", "LoadImage", "SaveImage"]
    # Written flat, the file opens as the same graph.
    again = reimport(exported, registry)
    assert sorted(node.type for node in again.nodes.values()) == ["ImageBlend", "LoadImage", "SaveImage"]
    first = json.dumps(exported)
    assert json.dumps(to_comfy_ui(again, registry.spec)) == first


def test_a_wire_from_outside_into_a_node_of_a_subgraph_flattens_it(registry):
    workflow, _ = open_file(registry, "subgraph_ui.json")
    # image2 is fed inside the subgraph; from outside it no longer fits its definition.
    workflow.connect("1", "IMAGE", "12:2", "image2")
    exported, remarks = export(workflow, registry)
    assert remarks == ["subgraph 'Half negative' (node 12) was written as plain nodes: node #12:2 ImageBlend "
                       "input 'image2' is wired from node #1 LoadImage, not through an input of the subgraph"]
    assert "definitions" not in exported and len(exported["nodes"]) == 4


def test_rewiring_one_of_the_fields_an_input_feeds_flattens_it(registry):
    workflow, _ = open_file(registry, "subgraph_ui.json")
    workflow.add_node("LoadImage", {"image": "seed_sample.png"}, node_id="7")
    workflow.connect("7", "IMAGE", "12:1", "image")
    _, remarks = export(workflow, registry)
    assert remarks == ["subgraph 'Half negative' (node 12) was written as plain nodes: the fields its input "
                       "'picture' feeds are no longer wired alike"]
    # Rewiring both is rewiring the instance's input.
    workflow.connect("7", "IMAGE", "12:2", "image1")
    exported, remarks = export(workflow, registry)
    assert remarks == []
    assert by_id(exported)[12]["inputs"][0]["link"] is not None
    assert [row[1:] for row in exported["links"] if row[3] == 12] == [[7, 0, 12, 0, "IMAGE"]]


def test_a_new_wire_from_a_subgraph_output_leaves_from_the_instance(registry):
    workflow, exported = exported_with_a_preview(registry, "8", "12:2")
    assert sorted(row[3] for row in exported["links"] if row[1] == 12) == [3, 8]
    assert len(by_id(exported)[12]["outputs"][0]["links"]) == 2
    # An inner output that the subgraph does not pass out cannot be wired from outside.
    workflow.connect("12:1", "IMAGE", "8", "images")
    _, remarks = export(workflow, registry)
    assert remarks == ["subgraph 'Half negative' (node 12) was written as plain nodes: node #12:1 ImageInvert "
                       "output 'IMAGE' is wired to node #8 PreviewImage, but no output of the subgraph passes it on"]


def test_two_instances_share_one_definition_until_they_differ(registry):
    document = read("subgraph_ui.json")
    second = copy.deepcopy(by_id(document)[12])
    second.update(id=13, pos=[400, 300])
    second["inputs"][0]["link"] = None
    second["outputs"][0]["links"] = []
    document["nodes"].append(second)
    workflow = reimport(document, registry)
    assert {"12:1", "12:2", "13:1", "13:2"} <= set(workflow.nodes)
    exported, remarks = export(workflow, registry)
    assert remarks == [] and len(definitions(exported)) == 1
    assert {12, 13} <= set(by_id(exported))
    workflow.set_value("13:2", "blend_factor", 0.9)
    exported, remarks = export(workflow, registry)
    assert remarks == ["subgraph 'Half negative' (node 13) was written as plain nodes: its subgraph 'Half negative' "
                       "now differs from another use of it"]
    assert inner_nodes(definitions(exported)[HALF_NEGATIVE])[2][1] == [0.5, "normal"]


def test_subgraphs_nested_deeper_than_one_level_are_written_as_plain_nodes(registry):
    document = read("nested_subgraph_ui.json")
    mix, negative = document["definitions"]["subgraphs"]
    # Negative's own node becomes a third subgraph, inside it.
    innermost = copy.deepcopy(negative)
    innermost.update(id="cccc0000-1111-4222-8333-000000000003", name="Innermost")
    negative["nodes"][0]["type"] = innermost["id"]
    negative["nodes"][0]["inputs"][0]["name"] = "image"
    negative["nodes"][0]["outputs"][0]["name"] = "inverted"
    document["definitions"]["subgraphs"].append(innermost)
    workflow = reimport(document, registry)
    assert "20:1:1:1" in workflow.nodes
    exported, remarks = export(workflow, registry)
    assert remarks == ["subgraph 'Mix with negative' (node 20) was written as plain nodes: it holds subgraphs nested "
                       "more than 1 deep"]
    assert "definitions" not in exported
    assert sorted(node["type"] for node in exported["nodes"]) == [
        "ImageBlend", "ImageInvert", "LoadImage", "SaveImage"]


def test_an_instance_whose_id_a_new_node_took_gets_a_free_one(registry):
    _, exported = exported_with_a_preview(registry, "12", "1")
    nodes = by_id(exported)
    assert (nodes[12]["type"], nodes[13]["type"]) == ("PreviewImage", HALF_NEGATIVE)
    assert [row[1:] for row in exported["links"] if 13 in (row[1], row[3])] == [[1, 0, 13, 0, "IMAGE"],
                                                                              [13, 0, 3, 0, "IMAGE"]]
    again = reimport(exported, registry)
    assert {"13:1", "13:2", "12"} <= set(again.nodes)
    assert json.dumps(to_comfy_ui(again, registry.spec)) == json.dumps(exported)


def bomb(levels: int, fan_out: int) -> dict:
    """A UI document whose subgraph k holds `fan_out` instances of subgraph k-1: it describes
    fan_out ** levels nodes in a few kilobytes."""
    definitions = [{"id": "level-0", "name": "leaf", "nodes": [{"id": 1, "type": "ImageInvert", "inputs": [],
                                                               "outputs": [], "widgets_values": []}],
                    "links": [], "inputs": [], "outputs": []}]
    for level in range(1, levels + 1):
        definitions.append({"id": f"level-{level}", "name": f"level {level}",
                            "nodes": [{"id": i + 1, "type": f"level-{level - 1}", "inputs": [], "outputs": []}
                                      for i in range(fan_out)], "links": [], "inputs": [], "outputs": []})
    return {"nodes": [{"id": 1, "type": f"level-{levels}", "inputs": [], "outputs": []}], "links": [],
            "definitions": {"subgraphs": definitions}, "version": 0.4}


def test_a_subgraph_bomb_is_refused_before_expanding_within_bounded_memory():
    """10 ** 6 nodes described in a few KB: refused by counting, in a process limited to 1 GB
    (expanding it took 2.5 GB and 125 s)."""
    import json
    import subprocess
    import sys

    document = json.dumps(bomb(6, 10))
    assert len(document) < 20_000
    script = f"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from studio.graph.comfy import import_ui
from studio.graph.comfy.importer import ComfyFormatError
start = time.perf_counter()
try:
    import_ui(json.loads({document!r}), lambda name: None, "bomb.json")
except ComfyFormatError as error:
    print("refused", round(time.perf_counter() - start, 3), error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused"), result.stdout
    seconds = float(result.stdout.split()[1])
    assert seconds < 5
    assert "$.definitions.subgraphs[" in result.stdout and "more than 20,000 nodes" in result.stdout


def test_a_large_but_honest_subgraph_use_still_expands():
    from studio.graph.comfy import import_ui

    workflow, _ = import_ui(bomb(2, 20), lambda name: None, "fine.json")
    assert len(workflow.nodes) == 400
