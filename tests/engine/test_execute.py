from __future__ import annotations

import threading

from studio.engine import CancelToken, Engine
from studio.engine.events import NodeFailed, NodeFinished, NodeProgress, NodeStarted, RunFinished, RunStarted
from studio.graph import NodeMode
from tests.engine.conftest import build


def diamond():
    """1 ─┬─ 3 (Add) ── 4 (Collect)
       2 ─┘                5 (Number, unused by any output)"""
    return build(
        {"1": ("Number", {"value": 2}), "2": ("Number", {"value": 3}), "3": ("Add", {}),
         "4": ("Collect", {}), "5": ("Number", {"value": 7})},
        [("1", "INT", "3", "a"), ("2", "INT", "3", "b"), ("3", "INT", "4", "value")],
    )


def test_runs_only_what_feeds_the_outputs_in_a_deterministic_order(engine, collected):
    report = engine.run(diamond())
    assert report.status == "ok"
    assert report.executed == ["1", "2", "3", "4"]
    assert collected == [("4", 5)]


def test_second_run_is_served_from_the_cache(engine, collected):
    engine.run(diamond())
    report = engine.run(diamond())
    assert report.executed == []
    assert report.cached == ["1", "2", "3", "4"]


def test_changing_one_value_reruns_that_node_and_what_depends_on_it_only(engine, collected):
    workflow = diamond()
    engine.run(workflow)
    workflow.set_value("2", "value", 10)
    report = engine.run(workflow)
    assert report.executed == ["2", "3", "4"]
    assert report.cached == ["1"]
    assert collected[-1] == ("4", 12)


def test_changing_a_value_back_hits_the_older_cache_entry(engine):
    workflow = diamond()
    engine.run(workflow)
    workflow.set_value("2", "value", 10)
    engine.run(workflow)
    workflow.set_value("2", "value", 3)
    assert engine.run(workflow).executed == []


def test_a_node_without_an_explicit_value_uses_its_default_and_int_feeds_float(engine, collected):
    workflow = build({"1": ("Add", {"a": 4}), "2": ("Collect", {})}, [("1", "INT", "2", "value")])
    assert engine.run(workflow).ok
    assert collected == [("2", 4)]


def test_explicit_targets_run_without_an_output_node(engine):
    report = engine.run(diamond(), targets=["5"])
    assert report.executed == ["5"]
    assert report.results["5"] == (7,)


def test_events_arrive_in_order_with_timings(engine):
    events = []
    engine.run(diamond(), on_event=events.append)
    kinds = [type(event).__name__ for event in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert isinstance(events[0], RunStarted) and events[0].planned == ("1", "2", "3", "4")
    started = [e.node_id for e in events if isinstance(e, NodeStarted)]
    finished = [e for e in events if isinstance(e, NodeFinished)]
    assert started == ["1", "2", "3", "4"]
    assert [e.node_id for e in finished] == started
    assert all(e.seconds >= 0 and not e.cached for e in finished)
    assert isinstance(events[-1], RunFinished) and events[-1].report.ok

    events.clear()
    engine.run(diamond(), on_event=events.append)
    assert all(e.cached for e in events if isinstance(e, NodeFinished))
    assert not any(isinstance(e, NodeStarted) for e in events)


def test_progress_events_come_from_inside_a_node(engine):
    workflow = build({"1": ("Number", {"value": 1}), "2": ("Slow", {"steps": 4}), "3": ("Collect", {})},
                     [("1", "INT", "2", "a"), ("2", "INT", "3", "value")])
    events = []
    engine.run(workflow, on_event=events.append)
    steps = [(e.node_id, e.step, e.total) for e in events if isinstance(e, NodeProgress)]
    assert steps == [("2", 1, 4), ("2", 2, 4), ("2", 3, 4), ("2", 4, 4)]


def test_bypass_passes_the_matching_input_through(engine, collected):
    workflow = build({"1": ("Number", {"value": 5}), "2": ("Slow", {"steps": 3}), "3": ("Collect", {})},
                     [("1", "INT", "2", "a"), ("2", "INT", "3", "value")])
    workflow.set_mode("2", NodeMode.BYPASS)
    report = engine.run(workflow)
    assert report.ok
    assert "2" not in report.executed
    assert collected == [("3", 5)]
    workflow.set_mode("2", NodeMode.NORMAL)
    engine.run(workflow)
    assert collected[-1] == ("3", 8)


def test_bypass_without_a_matching_input_is_a_validation_problem(engine):
    workflow = build({"1": ("Length", {"text": "ab"}), "2": ("Collect", {})}, [("1", "INT", "2", "value")])
    workflow.set_mode("1", NodeMode.BYPASS)
    report = engine.run(workflow)
    assert report.status == "invalid"
    assert [(p.kind, p.node_id, p.input) for p in report.problems] == [("bypass_unmatched", "2", "value")]


def test_mute_skips_the_node_and_everything_that_needs_it(engine, collected):
    workflow = build(
        {"1": ("Number", {"value": 1}), "2": ("Add", {"b": 1}), "3": ("Collect", {}),
         "4": ("Number", {"value": 9}), "5": ("Collect", {}), "6": ("OrMinusOne", {}), "7": ("Collect", {})},
        [("1", "INT", "2", "a"), ("2", "INT", "3", "value"), ("4", "INT", "5", "value"),
         ("1", "INT", "6", "a"), ("6", "INT", "7", "value")],
    )
    workflow.set_mode("1", NodeMode.MUTE)
    report = engine.run(workflow)
    assert report.ok
    assert report.skipped == ["1", "2", "3"]
    # An optional input fed by a muted node is simply left out.
    assert sorted(collected) == [("5", 9), ("7", -1)]


def test_a_failing_node_becomes_a_structured_error_and_other_branches_still_run(engine, collected):
    workflow = build(
        {"1": ("Number", {"value": 1}), "2": ("Boom", {}), "3": ("Collect", {}), "4": ("Collect", {})},
        [("1", "INT", "2", "a"), ("2", "INT", "3", "value"), ("1", "INT", "4", "value")],
    )
    events = []
    report = engine.run(workflow, on_event=events.append)
    assert report.status == "failed"
    [error] = report.errors
    assert (error.node_id, error.node_type, error.message) == ("2", "Boom", "the flux capacitor is empty")
    assert "ValueError" in error.traceback
    assert "3" in report.skipped
    assert collected == [("4", 1)]
    failed = [e for e in events if isinstance(e, NodeFailed)]
    assert failed and failed[0].node_id == "2" and "flux capacitor" in failed[0].message

    # The engine stays usable: fix the graph and run again, reusing what was cached.
    workflow.remove_node("2")
    workflow.connect("1", "INT", "3", "value")
    again = engine.run(workflow)
    assert again.ok and again.cached == ["1", "4"] and again.executed == ["3"]


def test_out_of_memory_gets_advice_not_a_raw_message(int_registry, settings):
    class OutOfMemoryError(RuntimeError):
        pass

    from studio.graph.sockets import INT
    from studio.node_api import Input, NodeBase, Output

    class Greedy(NodeBase):
        """Asks for too much."""

        type_name, category, title = "Greedy", "test", "Greedy"
        inputs = (Input("a", INT, default=0),)
        outputs = (Output("INT", INT),)

        def run(self, ctx, a):
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    int_registry.register(Greedy)
    engine = Engine(int_registry, settings)
    engine.run(build({"1": ("Number", {"value": 1})}, []), targets=["1"])
    assert len(engine.cache) == 1
    report = engine.run(build({"1": ("Greedy", {})}, []), targets=["1"])
    assert "lower the resolution or batch size" in report.errors[0].message
    assert len(engine.cache) == 0


def test_cancel_stops_inside_a_long_node_and_leaves_the_cache_consistent(engine, collected):
    workflow = build({"1": ("Number", {"value": 1}), "2": ("Slow", {"steps": 50}), "3": ("Collect", {})},
                     [("1", "INT", "2", "a"), ("2", "INT", "3", "value")])
    token = CancelToken()

    def cancel_at_step_three(event):
        if isinstance(event, NodeProgress) and event.step == 3:
            token.cancel()

    report = engine.run(workflow, cancel=token, on_event=cancel_at_step_three)
    assert report.status == "cancelled"
    assert report.executed == ["1"]
    assert collected == []
    again = engine.run(workflow)
    assert again.ok and again.cached == ["1"] and again.executed == ["2", "3"]
    assert collected == [("3", 51)]


def test_cancel_from_another_thread_between_nodes(engine):
    workflow = build({"1": ("Number", {"value": 1}), "2": ("Collect", {})}, [("1", "INT", "2", "value")])
    token = CancelToken()
    worker = threading.Thread(target=token.cancel)
    worker.start()
    worker.join()
    assert engine.run(workflow, cancel=token).status == "cancelled"


def test_a_node_returning_the_wrong_number_of_outputs_fails_clearly(int_registry, settings):
    from studio.graph.sockets import INT
    from studio.node_api import NodeBase, Output

    class Sloppy(NodeBase):
        """Forgets the tuple."""

        type_name, category, title = "Sloppy", "test", "Sloppy"
        outputs = (Output("INT", INT),)

        def run(self, ctx):
            return 5

    int_registry.register(Sloppy)
    report = Engine(int_registry, settings).run(build({"1": ("Sloppy", {})}, []), targets=["1"])
    assert report.status == "failed"
    assert "returned int, expected a tuple" in report.errors[0].message


def test_uncacheable_nodes_run_every_time(int_registry, settings):
    import itertools

    from studio.graph.sockets import INT
    from studio.node_api import NodeBase, Output

    counter = itertools.count()

    class Clock(NodeBase):
        """A different number each time."""

        type_name, category, title = "Clock", "test", "Clock"
        cacheable = False
        outputs = (Output("INT", INT),)

        def run(self, ctx):
            return (next(counter),)

    int_registry.register(Clock)
    engine = Engine(int_registry, settings)
    workflow = build({"1": ("Clock", {}), "2": ("Add", {})}, [("1", "INT", "2", "a")])
    assert engine.run(workflow, targets=["2"]).results["2"] == (0,)
    second = engine.run(workflow, targets=["2"])
    assert second.results["2"] == (1,) and second.executed == ["1", "2"]
