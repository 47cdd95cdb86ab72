"""ComfyUI files open, convert back and survive a round trip (files: comfy_files/README.md)."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.engine import Engine, validate
from studio.graph import NodeMode, WorkflowFormatError, dumps, loads
from studio.graph.comfy import to_comfy_api, to_comfy_ui
from studio.graph.files import open_workflow, workflow_from_bytes

FILES = Path(__file__).parent / "comfy_files"


def read(name: str) -> dict:
    return json.loads((FILES / name).read_text())


def open_file(registry, name: str):
    return open_workflow(FILES / name, registry.spec)


def opened(registry, name: str, through_native_file: bool):
    """A ComfyUI file as Seed Studio opens it; with ``through_native_file`` also saved in Seed
    Studio's own format and read back, as a user's round trip would."""
    workflow, _ = open_file(registry, name)
    return loads(dumps(workflow)) if through_native_file else workflow


def effective_graph(workflow, registry):
    """What a graph computes: per node its type, the values of unwired fields, its wires."""
    graph = {}
    for node in workflow.nodes.values():
        values = {name: value for name, value in node.values.items() if name not in node.links}
        graph[node.id] = (node.type, node.mode.value, values,
                          {name: (link.node, link.output) for name, link in node.links.items()})
    return graph


def png_carrying(texts: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buffer = BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_ui_api_and_png_formats_import_to_the_same_graph(registry):
    from_ui, ui_report = open_file(registry, "txt2img_ui.json")
    from_api, api_report = open_file(registry, "txt2img_api.json")
    png = png_carrying({"workflow": (FILES / "txt2img_ui.json").read_text(),
                        "prompt": (FILES / "txt2img_api.json").read_text()})
    from_png, png_report = workflow_from_bytes(png, registry.spec, "render.png")
    prompt_only, _ = workflow_from_bytes(png_carrying({"prompt": (FILES / "txt2img_api.json").read_text()}),
                                         registry.spec, "api.png")
    assert (ui_report.source_format, api_report.source_format, png_report.source_format) == (
        "comfy-ui", "comfy-api", "png:comfy-ui")
    expected = effective_graph(from_ui, registry)
    assert len(expected) == 7
    assert effective_graph(from_api, registry) == expected
    assert effective_graph(from_png, registry) == expected
    assert effective_graph(prompt_only, registry) == expected
    assert from_api.nodes["6"].title == from_ui.nodes["6"].title == "Positive"


def test_widgets_values_map_to_named_inputs_in_comfyui_order(registry):
    workflow, _ = open_file(registry, "txt2img_ui.json")
    sampler = workflow.nodes["3"]
    assert sampler.values == {"seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler",
                              "scheduler": "normal", "denoise": 1}
    assert sampler.extra["comfy"]["widget_extras"] == {"control_after_generate": "randomize"}
    assert workflow.nodes["5"].values == {"width": 512, "height": 512, "batch_size": 1}


def test_titles_positions_sizes_colours_flags_and_groups_are_kept(registry):
    workflow, _ = open_file(registry, "txt2img_ui.json")
    negative = workflow.nodes["7"]
    assert (negative.title, negative.position, negative.size, negative.color) == (
        "Negative", (413.0, 389.0), (425.28, 180.61), "#322")
    assert negative.extra["comfy"]["bgcolor"] == "#533"
    assert workflow.nodes["5"].collapsed is True
    [group] = workflow.groups.values()
    assert (group.title, group.bounds, group.color) == ("Prompts", (400.0, 110.0, 460.0, 480.0), "#3f789e")


def test_the_sdxl_base_and_refiner_example_keeps_its_groups_and_step_ranges(registry):
    workflow, report = open_file(registry, "sdxl_refiner_ui.json")
    assert report.unknown_types == [] and len(workflow.nodes) == 11
    assert all(registry.get(node.type) is not None for node in workflow.nodes.values())  # no placeholders
    assert [group.title for group in workflow.groups.values()] == [
        "Models", "Latent", "Prompts", "Base", "Refiner", "Steps", "Output"]
    steps = ("add_noise", "steps", "start_at_step", "end_at_step", "return_with_leftover_noise")
    base, refiner = workflow.nodes["10"], workflow.nodes["11"]
    assert [base.values[name] for name in steps] == ["enable", 25, 0, 20, "enable"]
    assert [refiner.values[name] for name in steps] == ["disable", 25, 20, 10000, "disable"]
    assert refiner.links["latent_image"].node == "10"

def test_reroutes_become_reroute_points_and_a_primitive_a_typed_primitive_node(registry):
    workflow, report = open_file(registry, "features_ui.json")
    assert not {"2", "3"} & set(workflow.nodes)  # two Reroute nodes: now reroute points on the wires
    assert {"2", "3"} <= set(workflow.reroutes)
    rerouted = [link.reroute for node in workflow.nodes.values() for link in node.links.values() if link.reroute]
    assert set(rerouted) & {"2", "3"}
    noise = workflow.nodes["4"]
    assert (noise.links["image"].node, noise.links["image"].output) == ("1", "IMAGE")
    assert workflow.nodes["8"].links["image"].node == "1"
    primitive = workflow.nodes["5"]
    assert (primitive.type, primitive.title, primitive.position, primitive.size) == (
        "PrimitiveInt", "seed", (300.0, 200.0), (210.0, 82.0))
    assert primitive.values == {"value": 777}
    assert primitive.extra["comfy"]["widget_extras"] == {"control_after_generate": "increment"}
    assert (noise.links["seed"].node, noise.links["seed"].output) == ("5", "INT")
    # The noise node keeps its own seed value and control word; the wire overrides the value.
    assert noise.values["seed"] == 1 and noise.values["strength"] == 0.25
    assert noise.extra["comfy"]["widget_extras"]["control_after_generate"] == "fixed"
    assert "1 primitive node(s) became PrimitiveInt node(s) wired to the fields they fed" in report.warnings


def test_primitive_nodes_become_typed_primitives_wired_to_every_field_they_fed(registry, settings):
    workflow, report = open_file(registry, "primitives_ui.json")
    prompt, seed = workflow.nodes["20"], workflow.nodes["21"]
    # CLIPTextEncode's text is multiline, so the prompt is a multiline string.
    assert (prompt.type, prompt.title, prompt.position, prompt.size, prompt.color) == (
        "PrimitiveStringMultiline", "Prompt", (20.0, 150.0), (360.0, 120.0), "#232")
    assert prompt.values == {"value": "a lighthouse on a cliff at dusk"}
    assert (seed.type, seed.title, seed.values) == ("PrimitiveInt", "seed", {"value": 123456789})
    wires = {(node_id, name): (link.node, link.output) for node_id, node in workflow.nodes.items()
             for name, link in node.links.items() if link.node in ("20", "21")}
    assert wires == {("6", "text"): ("20", "STRING"), ("8", "text"): ("20", "STRING"),
                     ("3", "seed"): ("21", "INT"), ("10", "seed"): ("21", "INT")}
    # The control word is the primitive's; the samplers keep their own.
    assert seed.extra["comfy"]["widget_extras"] == {"control_after_generate": "randomize"}
    assert workflow.nodes["3"].extra["comfy"]["widget_extras"] == {"control_after_generate": "fixed"}
    assert workflow.nodes["10"].extra["comfy"]["widget_extras"] == {"control_after_generate": "increment"}
    assert "2 primitive node(s) became PrimitiveInt, PrimitiveStringMultiline node(s) wired to the fields they " \
           "fed" in report.warnings
    problems = validate(workflow, registry, settings)
    # Only the checkpoint file, which this machine lacks, is a problem.
    assert [(p.node_id, p.input) for p in problems] == [("4", "ckpt_name")]


def test_typed_primitives_export_as_comfyuis_own_nodes_and_come_back(registry):
    workflow, _ = open_file(registry, "primitives_ui.json")
    ui = to_comfy_ui(workflow, registry.spec)
    exported = {node["id"]: node for node in ui["nodes"]}
    assert (exported[21]["type"], exported[21]["widgets_values"], exported[21]["title"]) == (
        "PrimitiveInt", [123456789, "randomize"], "seed")
    assert (exported[20]["type"], exported[20]["widgets_values"]) == (
        "PrimitiveStringMultiline", ["a lighthouse on a cliff at dusk"])
    # Nothing of the front end's PrimitiveNode is left on ComfyUI's typed node.
    assert exported[21]["outputs"] == [{"name": "INT", "type": "INT", "links": [22, 23], "slot_index": 0}]
    assert exported[21]["properties"] == {"Node name for S&R": "PrimitiveInt"}
    assert {tuple(row[1:]) for row in ui["links"] if row[1] in (20, 21)} == {
        (20, 0, 6, 1, "STRING"), (20, 0, 8, 1, "STRING"), (21, 0, 3, 4, "INT"), (21, 0, 10, 4, "INT")}
    prompt = to_comfy_api(workflow, registry.spec)
    assert prompt["21"] == {"class_type": "PrimitiveInt", "inputs": {"value": 123456789}, "_meta": {"title": "seed"}}
    assert prompt["20"]["inputs"] == {"value": "a lighthouse on a cliff at dusk"}
    assert prompt["3"]["inputs"]["seed"] == prompt["10"]["inputs"]["seed"] == ["21", 0]
    assert prompt["6"]["inputs"]["text"] == prompt["8"]["inputs"]["text"] == ["20", 0]
    for document in (ui, prompt):
        again, _ = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "again.json")
        assert effective_graph(again, registry) == effective_graph(workflow, registry)
    again, report = workflow_from_bytes(json.dumps(ui).encode(), registry.spec, "again.json")
    assert again.nodes["21"].extra["comfy"]["widget_extras"] == {"control_after_generate": "randomize"}
    assert not [warning for warning in report.warnings if "primitive" in warning]


def test_a_primitive_feeding_a_drop_down_is_copied_into_the_fields(registry):
    workflow, report = open_file(registry, "primitives_ui.json")
    assert "22" not in workflow.nodes
    for sampler_id, control in (("3", "fixed"), ("10", "increment")):
        sampler = workflow.nodes[sampler_id]
        assert sampler.values["sampler_name"] == "dpmpp_2m" and "sampler_name" not in sampler.links
        # The primitive's control belonged to the sampler name, not to the sampler's seed.
        assert sampler.extra["comfy"]["widget_extras"]["control_after_generate"] == control
    assert ("primitive node 22 became field values: it feeds a drop-down (node 3 (KSampler) input "
            "'sampler_name'), which no typed primitive can") in report.warnings


def test_a_primitive_whose_value_its_typed_node_would_refuse_is_copied_into_the_fields(registry):
    # ComfyUI's PrimitiveInt stops at sys.maxsize; a seed may go up to 2**64 - 1.
    document = {"nodes": [{"id": 5, "type": "PrimitiveNode", "outputs": [{"name": "INT", "type": "INT", "links": [1]}],
                           "widgets_values": [2**63, "randomize"]},
                          {"id": 6, "type": "ImageAddNoise", "widgets_values": [0, "fixed", 0.5],
                           "inputs": [{"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 1}]}],
                "links": [[1, 5, 0, 6, 0, "INT"]]}
    workflow, report = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "big.json")
    noise = workflow.nodes["6"]
    assert set(workflow.nodes) == {"6"} and noise.values["seed"] == 2**63 and noise.links == {}
    # The primitive drove the seed, so its control word is the seed's.
    assert noise.extra["comfy"]["widget_extras"]["control_after_generate"] == "randomize"
    [warning] = report.warnings
    assert warning.startswith("primitive node 5 became field values: a PrimitiveInt cannot hold its value "
                              "(9223372036854775808 is above its maximum")


def test_typed_primitives_drive_the_fields_they_feed_when_run(registry, settings):
    document = {"nodes": [
        {"id": 1, "type": "PrimitiveNode", "outputs": [{"name": "INT", "type": "INT", "links": [1, 2]}],
         "widgets_values": [24, "fixed"]},
        {"id": 2, "type": "EmptyImage", "widgets_values": [512, 512, 1, 0],
         "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 1},
                    {"name": "height", "type": "INT", "widget": {"name": "height"}, "link": 2}]},
        {"id": 3, "type": "PrimitiveNode", "outputs": [{"name": "STRING", "type": "STRING", "links": [4]}],
         "widgets_values": ["squares/shared"]},
        {"id": 4, "type": "SaveImage", "widgets_values": ["ComfyUI"],
         "inputs": [{"name": "images", "type": "IMAGE", "link": 3},
                    {"name": "filename_prefix", "type": "STRING", "widget": {"name": "filename_prefix"}, "link": 4}]}],
        "links": [[1, 1, 0, 2, 0, "INT"], [2, 1, 0, 2, 1, "INT"], [3, 2, 0, 4, 0, "IMAGE"], [4, 3, 0, 4, 1, "STRING"]]}
    workflow, _ = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "shared.json")
    assert (workflow.nodes["1"].type, workflow.nodes["3"].type) == ("PrimitiveInt", "PrimitiveString")
    run = Engine(registry, settings).run(workflow)
    assert run.ok, run.problems or run.errors
    assert {"1", "3"} <= set(run.executed)
    [(_, path)] = run.files
    assert Image.open(path).size == (24, 24)
    assert path.parent.name == "squares" and path.name.startswith("shared")


def test_bypassed_and_muted_nodes_keep_their_modes_and_run_as_such(registry, settings):
    workflow, _ = open_file(registry, "features_ui.json")
    assert workflow.nodes["6"].mode is NodeMode.BYPASS
    assert workflow.nodes["9"].mode is NodeMode.MUTE
    report = Engine(registry, settings).run(workflow, targets=["7"])
    assert report.ok, report.problems or report.errors
    assert "6" not in report.executed  # bypassed: the noise goes straight to the save node
    assert "5" in report.executed  # the seed's primitive


def test_unknown_node_types_are_kept_as_placeholders_and_named_by_validation(registry, settings):
    workflow, report = open_file(registry, "features_ui.json")
    assert report.unknown_types == ["UltimateSDUpscale"]
    placeholder = workflow.nodes["8"]
    assert placeholder.type == "UltimateSDUpscale"
    assert placeholder.extra["comfy"]["widget_extras"]["widgets_values"][:3] == [2, 123, "randomize"]
    problems = validate(workflow, registry, settings)
    unknown = sorted((p.node_id, p.node_type) for p in problems if p.kind == "unknown_type")
    assert unknown == [("8", "UltimateSDUpscale")]
    # Saving natively and exporting again keeps the placeholder whole.
    again = to_comfy_ui(loads(dumps(workflow)), registry.spec)
    node = next(n for n in again["nodes"] if n["id"] == 8)
    original = next(n for n in read("features_ui.json")["nodes"] if n["id"] == 8)
    assert node["widgets_values"] == original["widgets_values"]
    assert [i["name"] for i in node["inputs"]] == ["image", "model", "upscale_model"]
    assert node["outputs"][0]["name"] == "IMAGE"


def test_subgraphs_are_expanded_into_runnable_nodes(registry, settings):
    workflow, report = open_file(registry, "subgraph_ui.json")
    assert report.unknown_types == []
    assert set(workflow.nodes) == {"1", "3", "12:1", "12:2"}
    blend = workflow.nodes["12:2"]
    assert {name: link.node for name, link in blend.links.items()} == {"image1": "1", "image2": "12:1"}
    assert workflow.nodes["3"].links["images"].node == "12:2"
    assert workflow.nodes["12:1"].extra["comfy_subgraph"] == {"instance": "12", "name": "Half negative", "node": 1}
    run = Engine(registry, settings).run(workflow)
    assert run.ok, run.problems or run.errors
    [(_, path)] = run.files
    import numpy as np

    pixels = np.asarray(Image.open(path), dtype=np.float32) / 255
    # Half the picture plus half its negative is mid-grey everywhere.
    assert np.abs(pixels - 0.5).max() <= 1 / 255 + 1e-6


def comparable_nodes(document: dict) -> dict:
    keys = ("type", "pos", "size", "mode", "title", "color", "bgcolor", "widgets_values", "properties")
    return {node["id"]: {key: node.get(key) for key in keys}
            | {"collapsed": bool(node.get("flags", {}).get("collapsed"))}
            for node in document["nodes"]}


def link_set(document: dict) -> set:
    return {tuple(row[1:5]) + (row[5],) for row in document["links"]}


@pytest.mark.parametrize("through_native_file", [False, True])
def test_round_trip_comfyui_to_seed_studio_to_comfyui_keeps_everything(registry, through_native_file):
    original = read("txt2img_ui.json")
    workflow = opened(registry, "txt2img_ui.json", through_native_file)
    exported = to_comfy_ui(workflow, registry.spec)
    assert comparable_nodes(exported) == comparable_nodes(original)
    assert sorted(map(tuple, exported["links"])) == sorted(map(tuple, original["links"]))
    assert exported["groups"] == original["groups"]
    assert exported["extra"] == original["extra"] and exported["last_link_id"] == 9
    # And ComfyUI → Seed Studio of the export is the same graph again.
    again, _ = workflow_from_bytes(json.dumps(exported).encode(), registry.spec, "again.json")
    assert effective_graph(again, registry) == effective_graph(workflow, registry)


def test_api_export_matches_comfyuis_own_prompt(registry):
    workflow, _ = open_file(registry, "txt2img_ui.json")
    prompt = to_comfy_api(workflow, registry.spec)
    expected = read("txt2img_api.json")
    assert {k: (v["class_type"], v["inputs"]) for k, v in prompt.items()} == {
        k: (v["class_type"], v["inputs"]) for k, v in expected.items()}


def test_api_export_leaves_out_muted_nodes_and_wires_past_bypassed_ones(registry):
    workflow, _ = open_file(registry, "features_ui.json")
    prompt = to_comfy_api(workflow, registry.spec)
    assert "9" not in prompt and "6" not in prompt and "10" not in prompt  # muted, bypassed, a note
    assert prompt["7"]["inputs"]["images"] == ["4", 0]
    assert prompt["4"]["inputs"]["seed"] == ["5", 0] and prompt["4"]["inputs"]["image"] == ["1", 0]
    assert prompt["5"] == {"class_type": "PrimitiveInt", "inputs": {"value": 777}, "_meta": {"title": "seed"}}


def test_native_graphs_export_to_comfyui_and_back(registry):
    from studio.settings import WORKFLOWS_DIR

    workflow, _ = open_workflow(WORKFLOWS_DIR / "film_grain.json", registry.spec)
    ui = to_comfy_ui(workflow, registry.spec)
    grain = next(node for node in ui["nodes"] if node["type"] == "ImageAddNoise")
    assert grain["widgets_values"] == [42, "fixed", 0.04]
    for document in (ui, to_comfy_api(workflow, registry.spec)):
        back, _ = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "x.json")
        assert effective_graph(back, registry) == effective_graph(workflow, registry)


HOSTILE = [
    ({"nodes": "lots"}, "$.nodes", "expected a list of nodes"),
    ({"nodes": [{"id": 1}]}, "$.nodes[0].type", "type name"),
    ({"nodes": [{"id": True, "type": "X"}]}, "$.nodes[0].id", "number or text"),
    ({"nodes": [{"id": 1, "type": "X"}, {"id": 1, "type": "Y"}]}, "$.nodes[1].id", "used twice"),
    ({"nodes": [{"id": 1, "type": "X"}], "links": [[1, 1, 10**30, 1, 0, "IMAGE"]]}, "$.links[0].origin_slot",
     "small whole number"),
    ({"nodes": [{"id": 1, "type": "X", "widgets_values": 5}]}, "$.nodes[id=1].widgets_values", "list or an object"),
    ({"nodes": [], "definitions": {"subgraphs": [{"name": "no id"}]}}, "$.definitions.subgraphs[0]", "with an id"),
    ({"1": {"class_type": "KSampler", "inputs": [1, 2]}}, "$['1'].inputs", "expected an object"),
    ([1, 2, 3], "$", "not a workflow"),
]


@pytest.mark.parametrize(("document", "path", "message"), HOSTILE)
def test_malformed_comfyui_documents_give_a_clear_error(registry, document, path, message):
    with pytest.raises(WorkflowFormatError) as caught:
        workflow_from_bytes(json.dumps(document).encode(), registry.spec, "bad.json")
    assert caught.value.path == path
    assert message in caught.value.message


def test_links_to_nowhere_are_dropped_with_a_warning(registry):
    document = {"nodes": [{"id": 1, "type": "ImageInvert", "inputs": [{"name": "image", "type": "IMAGE", "link": 5}]}],
                "links": [[5, 99, 0, 1, 0, "IMAGE"], [6, 1, 0, 1, 7, "IMAGE"]]}
    workflow, report = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "x.json")
    assert workflow.nodes["1"].links == {}
    assert len(report.warnings) == 2


def test_a_subgraph_that_contains_itself_is_refused(registry):
    document = read("subgraph_ui.json")
    definition = document["definitions"]["subgraphs"][0]
    definition["nodes"].append({"id": 3, "type": definition["id"]})
    with pytest.raises(WorkflowFormatError, match="contains itself"):
        workflow_from_bytes(json.dumps(document).encode(), registry.spec, "loop.json")


def test_fields_named_like_the_importers_bookkeeping_are_the_files_own_fields(registry):
    """What the importer learns about a node (where a subgraph node came from, values a
    primitive or an instance gives it) is kept beside the file's node objects, so a file whose
    nodes carry fields of those names neither crashes the import nor steers it."""
    plain, _ = open_file(registry, "subgraph_ui.json")
    document = read("subgraph_ui.json")
    look_alikes = {"comfy_subgraph": {"instance": "1"}, "__primitive_values__": {"filename_prefix": "smuggled"},
                   "__primitive_controls__": {"seed": "randomize"}, "__promoted_values__": {"blend_factor": 1.0},
                   "__index__": 7}
    document["nodes"][2].update(look_alikes)  # SaveImage
    document["definitions"]["subgraphs"][0]["nodes"][1].update(look_alikes)  # ImageBlend, inside the subgraph
    workflow, _ = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "look-alikes.json")
    assert effective_graph(workflow, registry) == effective_graph(plain, registry)
    assert workflow.nodes["12:2"].extra["comfy_subgraph"] == plain.nodes["12:2"].extra["comfy_subgraph"]
    assert "comfy_subgraph" not in workflow.nodes["3"].extra
    for node_id in ("3", "12:2"):
        kept = workflow.nodes[node_id].extra["comfy"]
        assert {key: kept[key] for key in look_alikes} == look_alikes  # kept, as any unknown field


def test_huge_strings_and_numbers_and_deep_nesting_do_not_break_the_importer(registry):
    big = {"nodes": [{"id": 1, "type": "PrimitiveString", "widgets_values": ["x" * (100 * 1024 * 1024)],
                      "pos": [1e308, -1e308], "size": [1e300, 5]}], "links": []}
    workflow, _ = workflow_from_bytes(json.dumps(big).encode(), registry.spec, "big.json")
    assert len(workflow.nodes["1"].values["value"]) == 100 * 1024 * 1024
    assert workflow.nodes["1"].position == (0.0, 0.0)  # absurd coordinates are not kept
    deep = ('{"nodes": [{"id": 1, "type": "X", "properties": ' + "[" * 50_000 + "]" * 50_000 + "}]}").encode()
    with pytest.raises(WorkflowFormatError, match="nested too deeply"):
        workflow_from_bytes(deep, registry.spec, "deep.json")
    huge_number = b'{"nodes": [{"id": ' + b"9" * 100_000 + b', "type": "X"}]}'
    with pytest.raises(WorkflowFormatError):
        workflow_from_bytes(huge_number, registry.spec, "number.json")


def test_comfyui_widget_orders_agree_with_the_node_declarations(registry):
    """Where a node type is both in ComfyUI's table and in the library, the positional
    widgets_values of ComfyUI files map onto the same inputs in the same order."""
    from studio.graph.comfy.definitions import COMFY_NODES, CONTROL, UPLOAD

    checked = 0
    for type_name, definition in COMFY_NODES.items():
        cls = registry.get(type_name)
        if cls is None:
            continue
        widgets = [name for name in definition.widgets if name not in (CONTROL, UPLOAD)]
        assert widgets == [spec.name for spec in cls.inputs if spec.has_widget], type_name
        wired = [name for name, _ in definition.inputs]
        assert set(wired) == {spec.name for spec in cls.inputs if not spec.has_widget}, type_name
        seeded = [spec.name for spec in cls.inputs if spec.seed]
        assert (CONTROL in definition.widgets) == bool(seeded), type_name
        checked += 1
    assert checked >= 35


@pytest.mark.parametrize(("toggle", "control"), [(True, "randomize"), (False, "fixed")])
def test_old_files_with_a_seed_toggle_keep_the_values_after_it_in_place(registry, settings, toggle, control):
    # Early front ends stored a "random seed after every gen" toggle where the control word is now.
    document = {"nodes": [{"id": 3, "type": "KSampler", "widgets_values": [42, toggle, 20, 8, "euler", "normal", 1]},
                          {"id": 5, "type": "PrimitiveNode", "outputs": [{"name": "INT", "links": [1]}],
                           "widgets_values": [7, toggle]},
                          {"id": 6, "type": "ImageAddNoise", "widgets_values": [0, "fixed", 0.5],
                           "inputs": [{"name": "seed", "widget": {"name": "seed"}, "link": 1}]}],
                "links": [[1, 5, 0, 6, 0, "INT"]]}
    workflow, _ = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "old.json")
    sampler = workflow.nodes["3"]
    assert sampler.values == {"seed": 42, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
                              "denoise": 1}
    assert sampler.extra["comfy"]["widget_extras"] == {"control_after_generate": control}
    # The primitive's toggle is read the same way, and kept on the primitive it becomes.
    primitive = workflow.nodes["5"]
    assert (primitive.type, primitive.values) == ("PrimitiveInt", {"value": 7})
    assert primitive.extra["comfy"]["widget_extras"] == {"control_after_generate": control}
    assert workflow.nodes["6"].links["seed"].node == "5"
    assert workflow.nodes["6"].extra["comfy"]["widget_extras"]["control_after_generate"] == "fixed"
    assert not [p for p in validate(workflow, registry, settings) if p.node_id == "3" and p.kind == "bad_value"]
    exported = next(node for node in to_comfy_ui(workflow, registry.spec)["nodes"] if node["id"] == 3)
    assert exported["widgets_values"] == [42, control, 20, 8, "euler", "normal", 1]


def test_a_png_whose_two_chunks_agree_opens_without_remarks(registry):
    png = png_carrying({"workflow": (FILES / "txt2img_ui.json").read_text(),
                        "prompt": (FILES / "txt2img_api.json").read_text()})
    workflow, report = workflow_from_bytes(png, registry.spec, "render.png")
    assert report.warnings == []
    assert workflow.nodes["3"].values["seed"] == 156680208700286


def test_a_pngs_prompt_chunk_sets_the_value_of_a_primitive_it_ran_as_field_values(registry):
    # ComfyUI ran the front end's PrimitiveNodes as values of the fields they fed.
    workflow, _ = open_file(registry, "primitives_ui.json")
    ran = to_comfy_api(workflow, registry.spec)
    del ran["20"], ran["21"]
    for node_id in ("6", "8"):
        ran[node_id]["inputs"]["text"] = "a lighthouse on a cliff at dusk"
    for node_id in ("3", "10"):
        ran[node_id]["inputs"]["seed"] = 42
    png = png_carrying({"workflow": (FILES / "primitives_ui.json").read_text(), "prompt": json.dumps(ran)})
    workflow, report = workflow_from_bytes(png, registry.spec, "render.png")
    assert workflow.nodes["21"].values == {"value": 42} and workflow.nodes["3"].links["seed"].node == "21"
    assert workflow.nodes["20"].values == {"value": "a lighthouse on a cliff at dusk"}
    assert [warning for warning in report.warnings if "chunk" in warning] == [
        "node 21 (PrimitiveInt) value, which feeds node 3 input 'seed': the workflow chunk has 123456789, the "
        "prompt chunk (what ComfyUI ran) has 42; used the prompt's value"]


def test_where_a_pngs_chunks_disagree_the_prompt_wins_and_each_difference_is_named(registry):
    prompt = read("txt2img_api.json")
    prompt["3"]["inputs"]["seed"] = 7
    prompt["6"]["inputs"]["text"] = "a lighthouse"
    png = png_carrying({"workflow": (FILES / "txt2img_ui.json").read_text(), "prompt": json.dumps(prompt)})
    workflow, report = workflow_from_bytes(png, registry.spec, "render.png")
    assert workflow.nodes["3"].values["seed"] == 7
    assert workflow.nodes["6"].values["text"] == "a lighthouse"
    assert workflow.nodes["3"].values["steps"] == 20 and workflow.nodes["7"].values["text"] == "text, watermark"
    assert report.warnings == [
        "node 3 (KSampler) input 'seed': the workflow chunk has 156680208700286, the prompt chunk (what ComfyUI "
        "ran) has 7; used the prompt's value",
        "node 6 (CLIPTextEncode) input 'text': the workflow chunk has 'beautiful scenery nature glass bottle "
        "landscape, purple …, the prompt chunk (what ComfyUI ran) has 'a lighthouse'; used the prompt's value"]
    # Wires stay the workflow's, and a damaged prompt chunk leaves the workflow as it is, with a remark.
    assert workflow.nodes["3"].links["model"].node == "4"
    png = png_carrying({"workflow": (FILES / "txt2img_ui.json").read_text(), "prompt": "{not json"})
    workflow, report = workflow_from_bytes(png, registry.spec, "render.png")
    assert workflow.nodes["3"].values["seed"] == 156680208700286
    [remark] = report.warnings
    assert "prompt chunk cannot be read" in remark
