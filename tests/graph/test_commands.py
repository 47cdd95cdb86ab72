"""The graph's undo commands, without Qt: every edit kind, done then undone, gives back the
saved file byte for byte; done again (redo) gives the file of the first do; and each edit
method tells observers with one typed event."""

from __future__ import annotations

import dataclasses

import pytest

from studio.graph import NodeMode, dumps, loads
from studio.graph import commands as c
from studio.graph import events as ev
from studio.graph.clipboard import copy_nodes
from studio.graph.layout import arranged, free_position, neighbour, nudged, overlaps


def rich_workflow():
    """A graph with everything a file can hold: kept fields on nodes, links and groups,
    reroutes, modes, colours, titles, values in a given order."""
    return loads("""{
      "format": "seed-studio-workflow", "version": 1, "future_field": [1, 2],
      "nodes": {
        "1": {"type": "Load", "position": [0, 0], "values": {"path": "a.png", "scale": 2}, "plugin": {"x": 1}},
        "2": {"type": "Filter", "position": [300, 0], "title": "Sharpen", "color": "#335533",
              "values": {"amount": 3, "radius": 1.5, "label": "s"},
              "links": {"image": {"node": "1", "output": "IMAGE", "comfy_link_id": 7},
                        "mask": {"node": "1", "output": "MASK", "reroute": "20"}}},
        "3": {"type": "Filter", "position": [600, 0], "mode": "bypass",
              "links": {"extra_in": {"node": "1", "output": "MASK"}, "image": {"node": "2", "output": "IMAGE"}}},
        "4": {"type": "Save", "position": [900, 0], "collapsed": true,
              "links": {"images": {"node": "3", "output": "IMAGE"}}}
      },
      "groups": {"10": {"title": "Inputs", "bounds": [-20, -40, 300, 200], "color": "#223344", "locked": true},
                 "11": {"title": "Out", "bounds": [880, -40, 300, 200]}},
      "reroutes": {"19": {"position": [150, 100]}, "20": {"position": [200, 120], "parent": "19"},
                   "21": {"position": [500, 200]}},
      "meta": {"name": "rich"}
    }""")


CLIPBOARD_OF_2_3 = copy_nodes(rich_workflow(), ["2", "3"])

EDITS = {
    "add node": lambda w: c.AddNode(w, "Filter", (10, 20), {"amount": 4}, "New"),
    "remove one node": lambda w: c.RemoveNodes(w, ["2"]),
    "remove a chain": lambda w: c.RemoveNodes(w, ["1", "3", "2"]),
    "remove all": lambda w: c.RemoveNodes(w, ["4", "2", "1", "3"]),
    "move": lambda w: c.MoveNodes(w, {"1": ((0, 0), (5.5, 7)), "3": ((600, 0), (0, 0))}),
    "set existing value": lambda w: c.SetValue(w, "2", "amount", 9),
    "set new value": lambda w: c.SetValue(w, "3", "amount", 9),
    "connect a free input": lambda w: c.Connect(w, "1", "IMAGE", "4", "other"),
    "connect replacing": lambda w: c.Connect(w, "1", "IMAGE", "3", "image"),
    "replace a rerouted wire": lambda w: c.Connect(w, "3", "IMAGE", "2", "mask"),
    "disconnect the first input": lambda w: c.Disconnect(w, "3", "extra_in"),
    "disconnect a kept-field wire": lambda w: c.Disconnect(w, "2", "image"),
    "bypass": lambda w: c.SetMode(w, ["2", "3"], NodeMode.BYPASS),
    "mute": lambda w: c.SetMode(w, ["3"], NodeMode.MUTE),
    "rename": lambda w: c.SetTitle(w, "2", "Blur"),
    "colour": lambda w: c.SetColor(w, ["1", "2"], "#ff0000"),
    "uncolour": lambda w: c.SetColor(w, ["2"], None),
    "collapse": lambda w: c.SetCollapsed(w, ["1", "4"], True),
    "seed control": lambda w: c.SetSeedControl(w, "2", "increment"),
    "add group": lambda w: c.AddGroup(w, "New", (0, 0, 10, 10), "#111111"),
    "remove group": lambda w: c.RemoveGroup(w, "10"),
    "change group": lambda w: c.ChangeGroup(w, "10", title="In", bounds=(1, 2, 3, 4), color=None),
    "add reroute on wires": lambda w: c.AddReroute(w, (400, 50), [("3", "image"), ("2", "mask")]),
    "move reroute": lambda w: c.MoveReroute(w, "21", (500, 200), (510, 230)),
    "paste": lambda w: c.PasteNodes(w, CLIPBOARD_OF_2_3, (40, 40)),
    "paste with incoming wires": lambda w: c.PasteNodes(w, CLIPBOARD_OF_2_3, (40, 40), keep_incoming=True),
    "macro": lambda w: c.Macro(w, "Several", [c.RemoveNodes(w, ["2"]), c.Connect(w, "1", "IMAGE", "3", "image"),
                                               c.SetValue(w, "3", "amount", 1)]),
}


@pytest.mark.parametrize("kind", list(EDITS))
def test_undo_restores_the_exact_file_and_redo_repeats_the_edit(kind):
    workflow = rich_workflow()
    before = dumps(workflow)
    command = EDITS[kind](workflow)
    command.do()
    after = dumps(workflow)
    assert after != before, "the edit changed nothing"
    command.undo()
    assert dumps(workflow) == before
    command.do()
    assert dumps(workflow) == after
    command.undo()
    assert dumps(workflow) == before
    assert command.text


def test_undo_of_the_first_edit_of_a_field_leaves_no_value_behind():
    workflow = rich_workflow()
    command = c.SetValue(workflow, "3", "width", 640)
    command.do()
    command.undo()
    assert "width" not in workflow.nodes["3"].values


def test_paste_keeps_wires_among_the_copies_and_rewires_incoming_ones_on_request():
    workflow = rich_workflow()
    command = c.PasteNodes(workflow, CLIPBOARD_OF_2_3, (40, 40), keep_incoming=True)
    command.do()
    two, three = command.new_ids["2"], command.new_ids["3"]
    assert workflow.nodes[three].links["image"].node == two  # inside the copy: to the copy
    assert workflow.nodes[two].links["image"].node == "1"  # from outside: kept on request
    assert workflow.nodes[two].position == (340.0, 40.0)
    assert workflow.nodes[two].links["mask"].reroute is None  # reroutes are not copied


EVENT_OF_EDIT = [
    (lambda w: w.add_node("Filter"), ev.NodeAdded),
    (lambda w: w.remove_node("4"), ev.NodeRemoved),
    (lambda w: w.connect("1", "IMAGE", "4", "x"), ev.LinkAdded),
    (lambda w: w.disconnect("4", "images"), ev.LinkRemoved),
    (lambda w: w.set_link_reroute("4", "images", "21"), ev.LinkRerouted),
    (lambda w: w.set_value("1", "path", "b.png"), ev.ValueChanged),
    (lambda w: w.unset_value("1", "path"), ev.ValueUnset),
    (lambda w: w.set_mode("1", NodeMode.MUTE), ev.ModeChanged),
    (lambda w: w.set_title("1", "x"), ev.TitleChanged),
    (lambda w: w.move_node("1", (1, 1)), ev.NodeMoved),
    (lambda w: w.set_color("1", "#000000"), ev.NodeColorChanged),
    (lambda w: w.set_collapsed("1", True), ev.NodeCollapsed),
    (lambda w: w.add_group("g", (0, 0, 1, 1)), ev.GroupAdded),
    (lambda w: w.remove_group("11"), ev.GroupRemoved),
    (lambda w: w.change_group("11", title="t"), ev.GroupChanged),
    (lambda w: w.add_reroute((0, 0)), ev.RerouteAdded),
    (lambda w: w.remove_reroute("21"), ev.RerouteRemoved),
    (lambda w: w.move_reroute("21", (0, 0)), ev.RerouteMoved),
]


@pytest.mark.parametrize(("edit", "kind"), EVENT_OF_EDIT, ids=[kind.__name__ for _, kind in EVENT_OF_EDIT])
def test_each_edit_emits_one_frozen_event_of_its_kind(edit, kind):
    workflow = rich_workflow()
    heard = []
    workflow.subscribe(heard.append)
    edit(workflow)
    assert [type(event) for event in heard] == [kind]
    with pytest.raises(dataclasses.FrozenInstanceError):
        heard[0].__setattr__(dataclasses.fields(heard[0])[0].name, None)


def test_a_reroute_that_carries_a_wire_cannot_be_removed_directly():
    workflow = rich_workflow()
    with pytest.raises(ValueError, match="still used by #2.mask"):
        workflow.remove_reroute("20")


def test_free_position_never_lands_on_a_node():
    occupied = [(0.0, 0.0, 230.0, 120.0), (250.0, 0.0, 230.0, 120.0)]
    x, y = free_position(occupied, (230.0, 100.0), (10.0, 10.0))
    assert not any(overlaps((x, y, 230.0, 100.0), other) for other in occupied)
    assert abs(x - 10) + abs(y - 10) < 400  # near where it was asked for
    assert free_position(occupied, (10.0, 10.0), (1000.0, 1000.0)) == (1000.0, 1000.0)


def test_neighbour_arrange_and_nudge_are_plain_geometry():
    workflow = rich_workflow()
    assert neighbour(workflow, "1", 1, 0) == "2"
    assert neighbour(workflow, "1", -1, 0) is None
    moves = arranged(workflow, ["1", "2", "4"], "distribute-horizontally")
    assert moves["2"][1] == (450.0, 0.0)
    assert nudged(workflow, ["1"], 10, -5) == {"1": ((0.0, 0.0), (10.0, -5.0))}
