"""Generated ComfyUI-like documents: the importer either opens them or raises one clear
WorkflowFormatError; it never crashes or hangs, and whatever it opens can be validated,
saved and exported again. About 4,500 documents per run."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.engine import validate
from studio.graph import WorkflowFormatError, dumps, loads
from studio.graph.comfy import to_comfy_api, to_comfy_ui
from studio.graph.files import workflow_from_bytes
from studio.settings import Settings

SUBGRAPH_ID = "0000aaaa-1111-4222-8333-444455556666"
TYPES = ["KSampler", "LoadImage", "SaveImage", "ImageInvert", "ImageBlend", "Reroute", "PrimitiveNode",
         "PrimitiveInt", "UnknownThing", SUBGRAPH_ID, "Note"]
FUZZ = settings(max_examples=500, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=20)
# Mostly well-formed pieces with some junk mixed in, so that most documents open and the
# code past the first checks (wiring, subgraphs, export) is exercised too.
good_ids = st.integers(1, 6)
ids = st.one_of(good_ids, good_ids, good_ids, good_ids, st.integers(-25, 12),
                st.sampled_from(["1", "2", "x", "", "-10", "-20"]), st.booleans(), st.none(), st.floats())
good_slots = st.integers(0, 2)
slots = st.one_of(good_slots, good_slots, good_slots, st.integers(-2, 4), st.none(), st.text(max_size=2))
slot_entry = st.fixed_dictionaries({"name": st.sampled_from(["image", "images", "seed", "model", "", "x"]),
                                    "type": st.sampled_from(["IMAGE", "INT", "*", "MODEL"])},
                                   optional={"link": st.one_of(st.integers(0, 12), st.none()),
                                             "links": st.one_of(st.lists(st.integers(0, 12), max_size=3), st.none()),
                                             "widget": st.one_of(st.fixed_dictionaries({"name": st.text(max_size=5)}),
                                                                 json_values)})
ui_node_body = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(TYPES), st.sampled_from(TYPES), st.sampled_from(TYPES), json_values)},
    optional={"pos": st.one_of(st.lists(st.floats(allow_nan=False), max_size=3), json_values),
              "size": json_values, "mode": st.one_of(st.integers(-1, 5), json_values),
              "title": json_values, "color": json_values, "flags": json_values,
              "inputs": st.one_of(st.lists(slot_entry, max_size=4), st.lists(slot_entry, max_size=4),
                                  st.lists(st.one_of(slot_entry, json_values), max_size=4), json_values),
              "outputs": st.one_of(st.lists(slot_entry, max_size=3), st.lists(slot_entry, max_size=3),
                                   st.lists(st.one_of(slot_entry, json_values), max_size=3), json_values),
              "widgets_values": st.one_of(st.lists(scalars, max_size=8), json_values)})


def _numbered(bodies_and_ids):
    # Ids count up (as in real files) unless the generator chose another, possibly a clash.
    return [{**body, "id": index + 1 if chosen is None else chosen}
            for index, (body, chosen) in enumerate(bodies_and_ids)]


ui_nodes = st.lists(st.tuples(ui_node_body, st.one_of(st.none(), st.none(), st.none(), st.none(), ids)),
                    max_size=8).map(_numbered)
good_link = st.tuples(st.integers(1, 20), good_ids, good_slots, good_ids, good_slots,
                      st.sampled_from(["IMAGE", "INT", "*"])).map(list)
inner_link = st.fixed_dictionaries({"id": st.integers(1, 20), "origin_id": st.sampled_from([-10, 1, 2, 3]),
                                    "origin_slot": good_slots, "target_id": st.sampled_from([-20, 1, 2, 3]),
                                    "target_slot": good_slots, "type": st.just("IMAGE")})
link_row = st.one_of(good_link, good_link, good_link, inner_link,
                     st.lists(st.one_of(ids, slots), min_size=5, max_size=6),
                     st.fixed_dictionaries({"id": ids, "origin_id": ids, "origin_slot": slots, "target_id": ids,
                                            "target_slot": slots, "type": scalars}),
                     json_values)
subgraph = st.fixed_dictionaries(
    {"id": st.sampled_from([SUBGRAPH_ID, "other"]), "nodes": ui_nodes,
     "links": st.lists(link_row, max_size=5)},
    optional={"inputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["image", "x"])}), max_size=2),
              "name": json_values})
clean_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                          st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
clean_slot = st.fixed_dictionaries({"name": st.sampled_from(["image", "images", "seed", "image1", "image2", "x"]),
                                    "type": st.sampled_from(["IMAGE", "INT", "*"]),
                                    "link": st.one_of(st.integers(1, 20), st.none())},
                                   optional={"widget": st.fixed_dictionaries({"name": st.sampled_from(["seed", "x"])})})
clean_outputs = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["IMAGE", "INT", "", "OUT"]),
                                                "type": st.sampled_from(["IMAGE", "INT", "*"]),
                                                "links": st.lists(st.integers(1, 20), max_size=3)}), max_size=3)
clean_node = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES), "pos": st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=2),
     "mode": st.sampled_from([0, 2, 4]), "inputs": st.lists(clean_slot, max_size=4), "outputs": clean_outputs,
     "widgets_values": st.lists(clean_scalars, max_size=8)})
clean_nodes = st.lists(clean_node, min_size=1, max_size=8).map(lambda nodes: [{**n, "id": i + 1}
                                                                             for i, n in enumerate(nodes)])
clean_subgraph = st.fixed_dictionaries(
    {"id": st.just(SUBGRAPH_ID), "nodes": clean_nodes, "links": st.lists(inner_link, max_size=6),
     "inputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["image", "images", "x"])}), max_size=2),
     "outputs": st.lists(st.fixed_dictionaries({"name": st.just("out")}), max_size=2)})
clean_documents = st.fixed_dictionaries(
    {"nodes": clean_nodes, "links": st.lists(good_link, max_size=12)},
    optional={"definitions": st.fixed_dictionaries({"subgraphs": st.lists(clean_subgraph, max_size=1)}),
              "groups": st.lists(st.fixed_dictionaries({"title": st.text(max_size=5),
                                                        "bounding": st.lists(st.floats(0, 500), min_size=4,
                                                                             max_size=4)}), max_size=2)})
messy_documents = st.fixed_dictionaries(
    {"nodes": st.one_of(ui_nodes, ui_nodes, ui_nodes, json_values)},
    optional={"links": st.one_of(st.lists(link_row, max_size=10), json_values),
              "groups": st.one_of(st.lists(st.fixed_dictionaries({}, optional={"title": json_values,
                                                                               "bounding": json_values}),
                                           max_size=2), json_values),
              "definitions": st.one_of(st.fixed_dictionaries({"subgraphs": st.lists(subgraph, max_size=2)}),
                                       json_values),
              "extra": json_values})
ui_documents = st.one_of(clean_documents, clean_documents, clean_documents, messy_documents)
api_link = st.tuples(st.sampled_from(["1", "2", "3", "9"]), st.integers(-1, 3)).map(list)
api_input = st.one_of(scalars, api_link, api_link, json_values)
api_documents = st.dictionaries(
    st.sampled_from(["1", "2", "3", "10"]),
    st.one_of(st.fixed_dictionaries({"class_type": st.one_of(st.sampled_from(TYPES), st.sampled_from(TYPES),
                                                             json_values)},
                                    optional={"inputs": st.one_of(st.dictionaries(
                                        st.sampled_from(["image", "images", "seed", "value", "image1"]),
                                        api_input, max_size=4), json_values),
                                        "_meta": json_values}),
              st.fixed_dictionaries({"class_type": st.sampled_from(TYPES),
                                     "inputs": st.dictionaries(st.sampled_from(["image", "images", "image1"]),
                                                               api_link, max_size=3)}),
              json_values),
    min_size=1, max_size=5)


def opens_cleanly_or_says_why(registry, document) -> None:
    raw = json.dumps(document).encode()
    try:
        workflow, _report = workflow_from_bytes(raw, registry.spec, "fuzz.json")
    except WorkflowFormatError as error:
        assert error.path and error.message
        return
    validate(workflow, registry, Settings())
    assert dumps(loads(dumps(workflow))) == dumps(workflow)
    json.dumps(to_comfy_ui(workflow, registry.spec))
    json.dumps(to_comfy_api(workflow, registry.spec))


@FUZZ
@given(document=ui_documents)
def test_fuzzed_ui_documents(registry, document):
    opens_cleanly_or_says_why(registry, document)


@FUZZ
@given(document=api_documents)
def test_fuzzed_api_documents(registry, document):
    opens_cleanly_or_says_why(registry, document)


@FUZZ
@given(document=json_values)
def test_fuzzed_arbitrary_json(registry, document):
    opens_cleanly_or_says_why(registry, document)
