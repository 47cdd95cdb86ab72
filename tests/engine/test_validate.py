from __future__ import annotations

from studio.engine import validate
from studio.graph import NodeMode
from tests.engine.conftest import build


def kinds(problems):
    return sorted((p.kind, p.node_id, p.input) for p in problems)


def test_every_problem_is_collected_with_its_node_and_input(int_registry, settings):
    workflow = build(
        {
            "1": ("Number", {"value": 500}),          # out of range
            "2": ("Warp", {}),                         # unknown type
            "3": ("Add", {"a": "three"}),              # wrong kind of value
            "4": ("Collect", {}),                      # missing required wire
            "5": ("Length", {"text": "abcd"}),         # not among the choices
            "6": ("Length", {}),
            "7": ("Collect", {}),
            "8": ("Add", {}), "9": ("Add", {}),        # a loop
        },
        [("6", "INT", "7", "value"), ("8", "INT", "9", "a"), ("9", "INT", "8", "a")],
    )
    workflow.nodes["7"].links["value"] = workflow.nodes["7"].links["value"].__class__("42", "INT")  # dangling
    workflow.connect("1", "INT", "6", "text")                 # INT into STRING
    problems = validate(workflow, int_registry, settings)
    assert kinds(problems) == sorted([
        ("bad_value", "1", "value"),
        ("unknown_type", "2", None),
        ("bad_value", "3", "a"),
        ("missing_input", "4", "value"),
        ("bad_value", "5", "text"),
        ("type_mismatch", "6", "text"),
        ("dangling_link", "7", "value"),
        ("cycle", "8", None),
    ])
    messages = {p.kind + p.node_id: p.message for p in problems}
    assert "500 is above the maximum 100" in messages["bad_value1"]
    assert "'Warp'" in messages["unknown_type2"]
    assert "whole number" in messages["bad_value3"]
    assert "INT wire" in messages["missing_input4"]
    assert "not one of the choices" in messages["bad_value5"]
    assert "INT, but text needs STRING" in messages["type_mismatch6"]
    assert "#42" in messages["dangling_link7"]
    assert "#8 → #9" in messages["cycle8"]
    cycle = next(p for p in problems if p.kind == "cycle")
    assert cycle.node_ids == ("8", "9")
    # Only what the output nodes (4 and 7) need has to be valid; the rest are warnings.
    assert kinds(p for p in problems if p.is_error) == [("dangling_link", "7", "value"),
                                                        ("missing_input", "4", "value")]
    assert {p.severity for p in problems if p.node_id not in ("4", "7")} == {"warning"}


def test_a_valid_workflow_has_no_problems(int_registry, settings):
    workflow = build({"1": ("Number", {"value": 1}), "2": ("Collect", {})}, [("1", "INT", "2", "value")])
    assert validate(workflow, int_registry, settings) == []


def test_muted_nodes_are_not_checked(int_registry, settings):
    workflow = build({"1": ("Number", {"value": 1000})}, [])
    workflow.set_mode("1", NodeMode.MUTE)
    assert validate(workflow, int_registry, settings) == []


def test_self_loop_is_a_cycle(int_registry, settings):
    workflow = build({"1": ("Add", {})}, [])
    workflow.connect("1", "INT", "1", "a")
    problems = validate(workflow, int_registry, settings)
    assert ("cycle", "1", None) in kinds(problems)


def test_a_run_with_problems_upstream_of_the_outputs_is_refused_whole(engine, collected):
    workflow = build({"1": ("Number", {"value": 101}), "2": ("Collect", {}),
                      "3": ("Number", {"value": 1}), "4": ("Collect", {})},
                     [("1", "INT", "2", "value"), ("3", "INT", "4", "value")])
    report = engine.run(workflow)
    assert report.status == "invalid"
    assert collected == []
    assert [p.node_id for p in report.problems] == ["1"]
    # Problems away from what is asked for do not block it; they are warnings.
    report = engine.run(workflow, targets=["4"])
    assert report.ok
    assert [(p.kind, p.node_id, p.severity) for p in report.warnings] == [("bad_value", "1", "warning")]


def test_a_run_names_loops_alongside_other_problems_and_alone(engine):
    workflow = build({"1": ("Add", {}), "2": ("Add", {}), "3": ("Collect", {}), "4": ("Number", {"value": 999}),
                      "5": ("Collect", {})},
                     [("1", "INT", "2", "a"), ("2", "INT", "1", "a"), ("2", "INT", "3", "value"),
                      ("4", "INT", "5", "value")])
    report = engine.run(workflow)
    assert report.status == "invalid"
    assert sorted(p.kind for p in report.problems) == ["bad_value", "cycle"]
    workflow.set_value("4", "value", 9)
    report = engine.run(workflow)
    assert [p.kind for p in report.problems] == ["cycle"] and report.problems[0].node_ids == ("1", "2")


def test_a_half_wired_node_that_feeds_no_output_is_a_warning_and_the_run_goes_on(engine, collected):
    workflow = build({"1": ("Number", {"value": 5}), "2": ("Collect", {}), "3": ("Slow", {})},
                     [("1", "INT", "2", "value")])  # Slow's required input 'a' has no wire
    report = engine.run(workflow)
    assert report.ok, report.problems
    assert collected == [("2", 5)]
    [warning] = report.warnings
    assert (warning.kind, warning.node_id, warning.input, warning.severity) == ("missing_input", "3", "a", "warning")
    assert str(warning) == "node #3 (Slow), input 'a': needs a value or an INT wire"
    assert report.to_dict()["warnings"][0]["severity"] == "warning"


def test_the_same_half_wired_node_upstream_of_an_output_makes_the_run_invalid(engine, collected):
    workflow = build({"1": ("Number", {"value": 5}), "2": ("Collect", {}), "3": ("Slow", {}), "4": ("Collect", {})},
                     [("1", "INT", "2", "value"), ("3", "INT", "4", "value")])
    report = engine.run(workflow)
    assert report.status == "invalid" and collected == []
    assert [(p.kind, p.node_id, p.input, p.severity) for p in report.problems] == [
        ("missing_input", "3", "a", "error")]
    assert engine.validate(workflow) == report.problems
    # Asked for the other output alone, the same node is only a warning.
    assert [p.severity for p in engine.validate(workflow, targets=["2"])] == ["warning"]


def test_an_unused_ksampler_with_no_model_does_not_stop_a_comfyui_style_graph(registry, settings):
    from studio.engine import Engine
    from studio.graph import Workflow

    workflow = Workflow()
    source = workflow.add_node("LoadImage", {"image": "seed_sample.png"})
    save = workflow.add_node("SaveImage")
    workflow.connect(source.id, "IMAGE", save.id, "images")
    sampler = workflow.add_node("KSampler", {"seed": 1, "steps": 4, "cfg": 7.0, "sampler_name": "euler",
                                             "scheduler": "normal", "denoise": 1.0})
    engine = Engine(registry, settings)
    report = engine.run(workflow)
    assert report.ok, report.problems or report.errors
    assert len(report.files) == 1
    assert {(w.node_id, w.input) for w in report.warnings} == {
        (sampler.id, name) for name in ("model", "positive", "negative", "latent_image")}
    decode = workflow.add_node("VAEDecode")
    workflow.connect(sampler.id, "LATENT", decode.id, "samples")
    workflow.connect(decode.id, "IMAGE", save.id, "images")
    report = engine.run(workflow)
    assert report.status == "invalid"
    assert ("missing_input", sampler.id, "model") in {(p.kind, p.node_id, p.input) for p in report.problems}


def test_plan_and_validation_follow_bypassed_nodes_with_one_walk(int_registry):
    from studio.graph.bypass import BypassLoop, PassedValue, Reached, Unmatched, follow_bypass

    spec = int_registry.spec
    # 1 (Number) → 2 (Add, bypassed: passes a) → 3 (Add, bypassed) → 4 (Collect)
    workflow = build({"1": ("Number", {"value": 2}), "2": ("Add", {}), "3": ("Add", {"b": 5}), "4": ("Collect", {})},
                     [("1", "INT", "2", "a"), ("2", "INT", "3", "a"), ("3", "INT", "4", "value")])
    assert follow_bypass(workflow, spec, "3", "INT") == Reached("3", "INT")  # not bypassed yet
    workflow.set_mode("2", NodeMode.BYPASS)
    workflow.set_mode("3", NodeMode.BYPASS)
    assert follow_bypass(workflow, spec, "3", "INT") == Reached("1", "INT")
    workflow.disconnect("2", "a")
    workflow.set_value("2", "a", 7)
    assert follow_bypass(workflow, spec, "3", "INT") == PassedValue(7)
    length = build({"1": ("Length", {"text": "ab"})}, [])
    length.set_mode("1", NodeMode.BYPASS)
    end = follow_bypass(length, spec, "1", "INT")
    assert isinstance(end, Unmatched) and end.node.id == "1" and end.output == "INT"
    loop = build({"1": ("Add", {}), "2": ("Add", {})}, [("1", "INT", "2", "a"), ("2", "INT", "1", "a")])
    loop.set_mode("1", NodeMode.BYPASS)
    loop.set_mode("2", NodeMode.BYPASS)
    assert isinstance(follow_bypass(loop, spec, "1", "INT"), BypassLoop)
