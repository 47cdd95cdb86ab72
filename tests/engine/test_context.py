"""What a node sees of its run: the engine's context and the tests' stand-in both give what
studio.node_api.NodeContext promises; the image metadata is the caller's, and its failure is
the failure of the node that asked for it."""

from __future__ import annotations

import json

import pytest

from studio.engine import CancelToken, Engine, ImageMetadataError, RunCancelled, RunContext, RunStatus
from studio.graph.sockets import INT
from studio.node_api import Input, NodeBase, NodeContext, Services
from tests.engine.conftest import Collecting, build
from tests.node_context import FakeContext


def test_the_engines_context_and_the_test_double_are_node_contexts(settings):
    engines = RunContext("1", "", settings, Services(), CancelToken(), lambda step, total, preview: None, dict)
    assert isinstance(engines, NodeContext)
    assert isinstance(FakeContext(settings), NodeContext)
    assert not isinstance(object(), NodeContext)


def test_the_test_double_records_progress_and_cancels_like_a_run(settings):
    ctx = FakeContext(settings)
    ctx.progress(1, 4)
    ctx.progress(2, 4, preview="small")
    ctx.note("half way")
    assert ctx.progress_calls == [(1, 4, None), (2, 4, "small")] and ctx.notes == ["half way"]
    ctx.cancelled = True
    with pytest.raises(RunCancelled):
        ctx.progress(3, 4)
    assert len(ctx.progress_calls) == 2


class Embed(NodeBase):
    """An output node that hands the test what it would embed in an image."""

    type_name, category, title = "Embed", "test", "Embed"
    is_output = True
    inputs = (Input("value", INT, default=0),)
    outputs = ()

    def run(self, ctx, value):
        ctx.services.collected.append((ctx.node_id, dict(ctx.embedded_texts)))
        return ()


def test_nodes_embed_what_the_caller_provides_made_once_per_run(int_registry, settings):
    int_registry.register(Embed)
    calls = []

    def metadata(workflow, spec_of):
        calls.append(sorted(workflow.nodes))
        assert spec_of("Embed") is not None
        return {"made-by": "test"}

    services = Collecting()
    engine = Engine(int_registry, settings, services=services, image_metadata=metadata)
    report = engine.run(build({"1": ("Embed", {"value": 1}), "2": ("Embed", {"value": 2})}, []))
    assert report.ok
    assert services.collected == [("1", {"made-by": "test"}), ("2", {"made-by": "test"})]
    assert calls == [["1", "2"]]
    # Without a provider the engine embeds nothing: it knows no file format.
    services.collected.clear()
    assert Engine(int_registry, settings, services=services).run(build({"1": ("Embed", {})}, [])).ok
    assert services.collected == [("1", {})]


def test_a_failing_image_metadata_provider_fails_the_node_that_asked_not_silently(int_registry, settings,
                                                                                 collected):
    int_registry.register(Embed)

    def broken(workflow, spec_of):
        raise KeyError("no exporter for this")

    engine = Engine(int_registry, settings, services=Collecting(collected=collected), image_metadata=broken)
    report = engine.run(build({"1": ("Embed", {}), "2": ("Number", {"value": 4}), "3": ("Collect", {})},
                              [("2", "INT", "3", "value")]))
    assert report.status is RunStatus.FAILED and report.status == "failed"
    [error] = report.errors
    assert error.node_id == "1" and "KeyError" in error.message and "no exporter for this" in error.message
    assert ImageMetadataError.__name__ in error.traceback
    assert collected == [("3", 4)]  # the nodes that embed nothing still ran


def test_statuses_and_problem_kinds_are_enums_that_read_as_their_strings(engine):
    from studio.engine import Problem, ProblemKind, Severity

    report = engine.run(build({"1": ("Number", {"value": 1}), "2": ("Collect", {})}, [("1", "INT", "2", "value")]))
    assert report.status is RunStatus.OK and report.status == "ok"
    assert json.loads(json.dumps(report.to_dict()))["status"] == "ok"
    problem = Problem("cycle", "a loop", "1", severity="warning")
    assert problem.kind is ProblemKind.CYCLE and problem.severity is Severity.WARNING and not problem.is_error
    assert problem.to_dict()["kind"] == "cycle" and type(problem.to_dict()["kind"]) is str
    with pytest.raises(ValueError):
        Problem("no_such_kind", "?")


def test_the_engine_imports_no_file_format_its_callers_choose_the_image_metadata():
    import subprocess
    import sys

    code = ("import sys, studio.engine; "
            "print(sorted(m for m in sys.modules if m.startswith(('studio.graph.comfy', 'studio.graph.png'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
