from __future__ import annotations

import json
import os
from io import BytesIO

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.graph import CURRENT_VERSION, FORMAT_NAME, NodeMode, Workflow, WorkflowFormatError, dumps, load, loads, save
from studio.graph import format as workflow_format
from studio.graph.files import workflow_from_bytes
from studio.settings import WORKFLOWS_DIR


def sample() -> Workflow:
    workflow = Workflow()
    workflow.meta = {"name": "Test", "author": "Ada"}
    a = workflow.add_node("LoadImage", {"image": "x.png"}, title="Source", position=(10.5, -20))
    b = workflow.add_node("ImageBlend", {"blend_factor": 0.25, "blend_mode": "screen"}, position=(300, 0))
    workflow.connect(a.id, "IMAGE", b.id, "image1")
    workflow.connect(a.id, "IMAGE", b.id, "image2")
    workflow.set_mode(b.id, NodeMode.BYPASS)
    workflow.nodes[b.id].collapsed = True
    workflow.nodes[b.id].color = "#335533"
    workflow.nodes[b.id].size = (240, 120)
    workflow.add_group("Inputs", (0, 0, 500, 200))
    return workflow


def test_round_trip_is_byte_stable():
    text = dumps(sample())
    assert dumps(loads(text)) == text
    assert dumps(loads(dumps(loads(text)))) == text


def test_shipped_workflows_are_in_canonical_form():
    files = sorted(WORKFLOWS_DIR.rglob("*.json"))
    assert files
    for path in files:
        assert dumps(load(path)) == path.read_text(encoding="utf-8"), path


def test_round_trip_keeps_everything():
    original = sample()
    restored = loads(dumps(original))
    assert restored.meta == original.meta
    for node_id, node in original.nodes.items():
        again = restored.nodes[node_id]
        assert (again.type, again.title, again.values, again.links, again.mode, again.collapsed,
                again.color, again.size) == (node.type, node.title, node.values, node.links, node.mode,
                                             node.collapsed, node.color, node.size)
        assert tuple(again.position) == tuple(node.position)
    assert restored.groups["3"].title == "Inputs"


def test_unknown_fields_survive_a_round_trip_at_every_level():
    data = json.loads(dumps(sample()))
    data["plugin_state"] = {"theme": "night"}
    data["nodes"]["1"]["widget_ui"] = [1, 2, 3]
    data["nodes"]["2"]["links"]["image1"]["slot_colour"] = "red"
    data["groups"]["3"]["locked"] = True
    text = json.dumps(data)
    again = json.loads(dumps(loads(text)))
    assert again["plugin_state"] == {"theme": "night"}
    assert again["nodes"]["1"]["widget_ui"] == [1, 2, 3]
    assert again["nodes"]["2"]["links"]["image1"]["slot_colour"] == "red"
    assert again["groups"]["3"]["locked"] is True


def test_keys_are_written_in_a_stable_order_whatever_the_insertion_order():
    first, second = Workflow(), Workflow()
    first.add_node("A", {"x": 1, "y": 2}, node_id="1")
    second.add_node("A", {"y": 2, "x": 1}, node_id="1")
    assert dumps(first) == dumps(second)


def test_save_is_atomic_and_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "graph.json"
    save(sample(), path)
    before = path.read_bytes()

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    changed = sample()
    changed.set_value("1", "image", "other.png")
    with pytest.raises(OSError, match="disk full"):
        save(changed, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["graph.json"]


def test_migrations_bring_old_versions_forward(monkeypatch):
    def from_zero(document):
        # Version 0 kept values under "widgets".
        for node in document["nodes"].values():
            node["values"] = node.pop("widgets")
        return document

    monkeypatch.setitem(workflow_format.MIGRATIONS, 0, from_zero)
    old = {"format": FORMAT_NAME, "version": 0,
           "nodes": {"1": {"type": "PrimitiveInt", "widgets": {"value": 3}}}}
    workflow = loads(json.dumps(old))
    assert workflow.nodes["1"].values == {"value": 3}
    assert json.loads(dumps(workflow))["version"] == CURRENT_VERSION


MALFORMED = [
    ("{", "line 1, column 2", "not valid JSON"),
    ("[]", "$", "expected an object"),
    ('{"format": "other", "version": 1}', "$.format", "expected 'seed-studio-workflow'"),
    ('{"format": "seed-studio-workflow", "version": "1"}', "$.version", "whole number"),
    ('{"format": "seed-studio-workflow", "version": 99}', "$.version", "newer Seed Studio"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": []}', "$.nodes", "expected an object"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": 5}}', '$.nodes["1"]', "expected an object"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {}}}', '$.nodes["1"]', "no 'type'"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": 7}}}', '$.nodes["1"].type', "string"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": "A", "position": [1]}}}',
     '$.nodes["1"].position', "list of 2 numbers"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": "A", "position": [1, "x"]}}}',
     '$.nodes["1"].position[1]', "finite number"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": "A", "mode": "off"}}}',
     '$.nodes["1"].mode', "normal, bypass, mute"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": "A", "values": [1]}}}',
     '$.nodes["1"].values', "expected an object"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": "A", "links": {"x": {"node": "1"}}}}}',
     '$.nodes["1"].links.x', "no 'output'"),
    ('{"format": "seed-studio-workflow", "version": 1, '
     '"nodes": {"1": {"type": "A", "links": {"x": {"node": "9", "output": "O"}}}}}',
     '$.nodes["1"].links.x.node', "not in the file"),
    ('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": "A", "values": {"v": NaN}}}}',
     "$", "NaN"),
    ('{"format": "seed-studio-workflow", "version": 1, "groups": {"1": {"bounds": [0, 0, 1]}}}',
     '$.groups["1"].bounds', "list of 4 numbers"),
    ("[" * 100_000 + "]" * 100_000, "$", "nested too deeply"),
    ('{"format": "seed-studio-workflow", "version": ' + "9" * 5000 + "}", "$", "not a readable JSON"),
]


@pytest.mark.parametrize(("text", "path", "message"), MALFORMED)
def test_malformed_documents_give_one_clear_error_with_a_json_path(text, path, message):
    with pytest.raises(WorkflowFormatError) as caught:
        loads(text, source="bad.json")
    assert caught.value.path == path
    assert message in caught.value.message
    assert str(caught.value).startswith("bad.json: ")


def test_unreadable_and_binary_files_give_a_format_error(tmp_path):
    with pytest.raises(WorkflowFormatError, match="cannot read"):
        load(tmp_path / "missing.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WorkflowFormatError):
        load(binary)


NATIVE = '{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": "A", "values": {"v": VALUE}}}}'
UNSAVEABLE = [
    ("1e999", '$.nodes["1"].values.v', "inf is not a number a workflow can hold"),
    ('["ok", "\\ud800"]', '$.nodes["1"].values.v[1]', "half of a UTF-16 surrogate pair"),
    ('{"\\udfff": 1}', '$.nodes["1"].values.v["\\udfff"]', "half of a UTF-16 surrogate pair"),
    ("[" * 600 + "]" * 600, '$.nodes["1"].values.v' + "[0]" * 96, "nested more than 100 levels deep"),
]


@pytest.mark.parametrize(("value", "path", "message"), UNSAVEABLE)
def test_values_that_could_never_be_saved_are_refused_when_the_file_is_read(value, path, message):
    with pytest.raises(WorkflowFormatError) as caught:
        loads(NATIVE.replace("VALUE", value), source="bad.json")
    assert (caught.value.path, caught.value.source) == (path, "bad.json")
    assert message in caught.value.message


@pytest.mark.parametrize(("value", "path", "message"), UNSAVEABLE)
def test_comfyui_files_and_png_chunks_with_unsaveable_values_are_refused_too(registry, value, path, message):
    api = '{"1": {"class_type": "LoadImage", "inputs": {"image": VALUE}}}'.replace("VALUE", value)
    with pytest.raises(WorkflowFormatError, match=r"api\.json: \$\[\"1\"\]\.inputs\.image"):
        workflow_from_bytes(api.encode(), registry.spec, "api.json")
    info = PngInfo()
    info.add_text("prompt", api)
    buffer = BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG", pnginfo=info)
    with pytest.raises(WorkflowFormatError, match=r"shot\.png \[prompt\]: \$\[\"1\"\]\.inputs\.image"):
        workflow_from_bytes(buffer.getvalue(), registry.spec, "shot.png")


def test_a_workflow_nested_to_the_limit_still_saves_and_exports(registry):
    deep = "[" * 95 + "]" * 95
    workflow = loads(NATIVE.replace("VALUE", deep))
    assert loads(dumps(workflow)).nodes["1"].values == workflow.nodes["1"].values


def test_a_device_that_never_ends_is_refused_not_read_forever():
    """/dev/zero dropped on the app or opened: refused after a bounded read, under a memory cap."""
    from tests.hostile import run_with_memory_limit

    result = run_with_memory_limit(
        "from studio.graph import WorkflowFormatError\n"
        "from studio.graph.files import open_workflow\n"
        "try:\n"
        "    open_workflow('/dev/zero', lambda t: None)\n"
        "except WorkflowFormatError as error:\n"
        "    print('refused:', error)\n", megabytes=1500, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "too large" in result.stdout
