"""Execution: run a plan node by node, serve unchanged work from the cache, report events.

Each node's cache key is a hash of its type, version, field values, fingerprint and the keys
of what feeds it (Merkle style), so changing one value re-runs that node and what depends on
it, and nothing else. A node that raises becomes a structured error on that node; nodes
that do not depend on it still run, and the engine stays usable for the next run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.engine.cache import ResultCache
from studio.engine.context import CancelToken, NodeContext, RunCancelled
from studio.engine.events import (
    EventSink,
    NodeFailed,
    NodeFinished,
    NodeProgress,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from studio.engine.plan import Plan, PlanError, PlannedNode, Upstream, make_plan, needed_nodes
from studio.engine.plan import default_targets
from studio.engine.validate import Problem, cycle_problems, no_output_problem, validate
from studio.graph.comfy import to_comfy_api, to_comfy_ui
from studio.graph.format import dumps
from studio.graph.png import WORKFLOW_TEXT_KEY

if TYPE_CHECKING:
    from studio.graph.model import Workflow
    from studio.registry import Registry
    from studio.settings import Settings


@dataclass(frozen=True)
class NodeError:
    """A node that failed, with a sentence for the artist and the traceback for a bug report."""

    node_id: str
    node_type: str
    message: str
    traceback: str = ""
    # The operating system's error number when the node failed on a file (a full disk is
    # errno.ENOSPC): a batch stops on it rather than fail every job that follows.
    errno: int | None = None

    def __str__(self) -> str:
        return f"node #{self.node_id} ({self.node_type}): {self.message}"


@dataclass
class RunReport:
    """What a run did. ``status`` is ok, failed, cancelled or invalid."""

    run_id: str
    status: str = "ok"
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: list[tuple[str, Path]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    errors: list[NodeError] = field(default_factory=list)
    # Validation errors (a run with any is "invalid") and warnings (listed, not stopping it).
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # The outputs of the nodes the run was asked for, by node id.
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "executed": self.executed,
            "cached": self.cached,
            "skipped": self.skipped,
            "seconds": {node: round(seconds, 6) for node, seconds in self.seconds.items()},
            "outputs": [{"node": node, "path": str(path)} for node, path in self.files],
            "notes": [{"node": node, "message": message} for node, message in self.notes],
            "errors": [{"node_id": e.node_id, "node_type": e.node_type, "message": e.message}
                       for e in self.errors],
            "problems": [problem.to_dict() for problem in self.problems],
            "warnings": [warning.to_dict() for warning in self.warnings],
            "total_seconds": round(self.total_seconds, 6),
        }


OUT_OF_MEMORY_ADVICE = "lower the resolution or batch size"


def is_out_of_memory(error: BaseException) -> bool:
    """Running out of memory on a GPU (torch's OutOfMemoryError, "CUDA out of memory") or on
    the CPU (MemoryError; torch's "DefaultCPUAllocator: not enough memory" / "can't allocate
    memory"). The one place that tells."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return any(sign in text for sign in ("out of memory", "not enough memory", "defaultcpuallocator",
                                         "can't allocate memory", "cannot allocate memory"))


def describe_exception(error: BaseException) -> str:
    """A sentence for the artist. Out-of-memory, on a GPU or on the CPU, gets advice rather
    than a raw message."""
    name = type(error).__name__
    if is_out_of_memory(error):
        text = str(error).lower()
        if name == "OutOfMemoryError" or any(sign in text for sign in ("cuda", "gpu", "mps")):
            return f"ran out of GPU memory; {OUT_OF_MEMORY_ADVICE}, or switch on low-VRAM mode in the settings"
        return f"ran out of memory; {OUT_OF_MEMORY_ADVICE}, or close other programs"
    message = str(error).strip()
    return message if message else name


_run_counter = itertools.count(1)


class Engine:
    """Validates, plans and executes workflows, keeping a result cache between runs."""

    def __init__(self, registry: Registry, settings: Settings, services: Mapping[str, Any] | None = None,
                 cache_bytes: int | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.services: Mapping[str, Any] = services or {}
        self.cache = ResultCache(settings.cache_bytes if cache_bytes is None else cache_bytes)

    def validate(self, workflow: Workflow, targets: Iterable[str] | None = None) -> list[Problem]:
        """Every problem: errors upstream of ``targets`` (the output nodes when None),
        warnings elsewhere; with nothing to run, that too."""
        problems = validate(workflow, self.registry, self.settings, targets=targets)
        if not (default_targets(workflow, self.registry) if targets is None else list(targets)):
            problems.insert(0, no_output_problem(workflow, self.registry))
        return problems

    def run(
        self,
        workflow: Workflow,
        targets: Iterable[str] | None = None,
        *,
        cancel: CancelToken | None = None,
        on_event: EventSink | None = None,
    ) -> RunReport:
        """Run the nodes that feed ``targets`` (the output nodes when None)."""
        started = time.perf_counter()
        cancel = cancel or CancelToken()
        emit = on_event or (lambda event: None)
        report = RunReport(run_id=f"run-{next(_run_counter)}")
        target_ids = list(default_targets(workflow, self.registry) if targets is None else targets)

        needed = needed_nodes(workflow, target_ids)

        def relevant(found: list[Problem]) -> list[Problem]:
            return [p for p in found if p.node_id is None or p.node_id in needed or needed.intersection(p.node_ids)]

        # Loops are left to the planner, which sorts the graph anyway; they are named
        # only when it finds one.
        found = validate(workflow, self.registry, self.settings, targets=target_ids, check_cycles=False)
        problems = [problem for problem in found if problem.is_error]
        report.warnings = [problem for problem in found if not problem.is_error]
        missing = [t for t in target_ids if t not in workflow.nodes]
        problems += [Problem("unknown_node", f"there is no node #{t} to run", t) for t in missing]
        if not target_ids:
            problems.insert(0, no_output_problem(workflow, self.registry))
        plan: Plan | None = None
        if problems:
            problems += relevant(cycle_problems(workflow))  # the whole list, on the failure path only
        else:
            try:
                plan = make_plan(workflow, self.registry, target_ids)
            except PlanError as error:
                problems = relevant(cycle_problems(workflow)) or [Problem("plan", str(error))]
        if plan is None:
            report.status = "invalid"
            report.problems = problems
            report.total_seconds = time.perf_counter() - started
            emit(RunStarted(report.run_id, (), ()))
            emit(RunFinished(report.run_id, report))
            return report

        report.skipped = list(plan.skipped)
        emit(RunStarted(report.run_id, tuple(step.node.id for step in plan.steps), plan.skipped))
        self._execute(plan, workflow, report, cancel, emit)
        report.total_seconds = time.perf_counter() - started
        emit(RunFinished(report.run_id, report))
        return report

    def cache_keys(self, workflow: Workflow, targets: Iterable[str] | None = None) -> dict[str, str]:
        """The cache key of each node a run would execute (its type, values, upstream keys
        and file fingerprints): a node whose key differs from the one its shown result was
        made with would be recomputed by a re-run. Empty when the graph cannot be planned."""
        target_ids = list(default_targets(workflow, self.registry) if targets is None else targets)
        try:
            plan = make_plan(workflow, self.registry, target_ids)
        except PlanError:
            return {}
        keys: dict[str, str] = {}
        for step in plan.steps:
            try:
                keys[step.node.id] = self._cache_key(step, keys, stable=True)
            except Exception:  # a file that cannot be read now: unknown, so not the same as before
                keys[step.node.id] = "unknown:" + secrets.token_hex(8)
        return keys

    # -- internals -------------------------------------------------------------------------
    def _cache_key(self, step: PlannedNode, keys: dict[str, str], stable: bool = False) -> str:
        cls = step.cls
        if not cls.cacheable and not stable:
            # Recomputed on every run. (A ``stable`` key, for comparing the graph before and
            # after an edit, is computed from the inputs like any other.)
            return "uncached:" + secrets.token_hex(8)
        constants = {}
        upstream = {}
        for name, source in step.sources.items():
            if isinstance(source, Upstream):
                upstream[name] = (keys[source.node_id], source.output_index)
            else:
                constants[name] = source.value
        fingerprint = cls.fingerprint(constants, self.settings)
        # Pure nodes are keyed by content alone, so two identical nodes share one result;
        # output nodes have effects (files) of their own, so each is keyed by its id too.
        identity = step.node.id if cls.is_output else None
        material = json.dumps([cls.type_name, cls.version, constants, upstream, fingerprint, identity],
                              sort_keys=True, default=repr, separators=(",", ":"))
        return hashlib.blake2b(material.encode(), digest_size=16).hexdigest()

    def _execute(self, plan: Plan, workflow: Workflow, report: RunReport, cancel: CancelToken,
                 emit: EventSink) -> None:
        run_id = report.run_id
        keys: dict[str, str] = {}
        results: dict[str, tuple[Any, ...]] = {}
        # How many planned consumers still need each node's outputs, so they can be let go
        # of (the cache may keep them) as soon as the last one has run.
        remaining: dict[str, int] = {}
        for step in plan.steps:
            for source in step.sources.values():
                if isinstance(source, Upstream):
                    remaining[source.node_id] = remaining.get(source.node_id, 0) + 1
        targets = set(plan.targets)
        blocked: set[str] = set()
        texts: dict[str, str] = {}

        def embedded_texts() -> dict[str, str]:
            if not texts:
                texts.update(self._embedded_texts(workflow))
            return texts

        try:
            for step in plan.steps:
                node = step.node
                upstream_ids = [s.node_id for s in step.sources.values() if isinstance(s, Upstream)]
                if any(node_id in blocked for node_id in upstream_ids):
                    blocked.add(node.id)
                    report.skipped.append(node.id)
                    continue
                cancel.raise_if_cancelled()
                try:
                    key = self._cache_key(step, keys)
                except Exception as error:
                    self._fail(report, emit, run_id, step, error)
                    blocked.add(node.id)
                    continue
                keys[node.id] = key
                entry = self.cache.get(key)
                if entry is not None:
                    outputs = entry.outputs
                    report.cached.append(node.id)
                    report.seconds[node.id] = 0.0
                    report.files.extend((node.id, path) for path in entry.files)
                    emit(NodeFinished(run_id, node.id, node.type, 0.0, True))
                else:
                    emit(NodeStarted(run_id, node.id, node.type))
                    began = time.perf_counter()
                    ctx = NodeContext(
                        node.id, node.title, self.settings, self.services, cancel,
                        lambda step_number, total, preview, _id=node.id: emit(
                            NodeProgress(run_id, _id, step_number, total, preview)),
                        embedded_texts,
                    )
                    inputs = {name: (results[source.node_id][source.output_index]
                                     if isinstance(source, Upstream) else source.value)
                              for name, source in step.sources.items()}
                    try:
                        outputs = step.cls().run(ctx, **inputs)
                        outputs = self._check_outputs(step, outputs)
                    except RunCancelled:
                        raise
                    except Exception as error:
                        self._free_memory_after(error)
                        self._fail(report, emit, run_id, step, error)
                        blocked.add(node.id)
                        continue
                    seconds = time.perf_counter() - began
                    files = tuple(ctx.files)
                    self.cache.put(key, outputs, files)
                    report.executed.append(node.id)
                    report.seconds[node.id] = seconds
                    report.files.extend((node.id, path) for path in files)
                    report.notes.extend((node.id, message) for message in ctx.notes)
                    emit(NodeFinished(run_id, node.id, node.type, seconds, False))
                results[node.id] = outputs
                if node.id in targets:
                    report.results[node.id] = outputs
                for upstream_id in upstream_ids:
                    remaining[upstream_id] -= 1
                    if remaining[upstream_id] == 0 and upstream_id not in targets:
                        results.pop(upstream_id, None)
        except RunCancelled:
            report.status = "cancelled"
            return
        if report.errors:
            report.status = "failed"

    def _embedded_texts(self, workflow: Workflow) -> dict[str, str]:
        texts = {WORKFLOW_TEXT_KEY: dumps(workflow)}
        try:
            texts["prompt"] = json.dumps(to_comfy_api(workflow, self.registry.spec))
            texts["workflow"] = json.dumps(to_comfy_ui(workflow, self.registry.spec))
        except Exception:  # noqa: BLE001 - a graph ComfyUI cannot express still saves its own copy
            pass
        return texts

    def _check_outputs(self, step: PlannedNode, outputs: Any) -> tuple[Any, ...]:
        expected = len(step.cls.outputs)
        if not isinstance(outputs, tuple):
            if outputs is None and expected == 0:
                return ()
            raise TypeError(f"{step.cls.type_name}.run() returned {type(outputs).__name__}, expected a tuple")
        if len(outputs) != expected:
            raise TypeError(f"{step.cls.type_name}.run() returned {len(outputs)} outputs, expected {expected}")
        return outputs

    def _free_memory_after(self, error: BaseException) -> None:
        # Out of memory: drop cached results so the next attempt has room; the services
        # (the model manager) may free more.
        if is_out_of_memory(error):
            self.cache.clear()
            free = getattr(self.services.get("models"), "free_memory", None)
            if callable(free):
                free()

    def _fail(self, report: RunReport, emit: EventSink, run_id: str, step: PlannedNode,
              error: BaseException) -> None:
        node = step.node
        text = "".join(traceback.format_exception(error))
        failure = NodeError(node.id, node.type, describe_exception(error), text,
                            error.errno if isinstance(error, OSError) else None)
        report.errors.append(failure)
        emit(NodeFailed(run_id, node.id, node.type, failure.message, text))
