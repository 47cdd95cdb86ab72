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
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from studio.engine import events
from studio.engine.cache import ResultCache
from studio.engine.context import CancelToken, ImageMetadata, ImageMetadataError, RunCancelled, RunContext
from studio.engine.plan import Plan, PlanError, PlannedNode, Upstream, default_targets, make_plan, needed_nodes
from studio.engine.report import NodeError, RunReport, RunStatus
from studio.engine.validate import Problem, ProblemKind, cycle_problems, no_output_problem, validate
from studio.node_api import Services

if TYPE_CHECKING:
    from studio.graph.model import Workflow
    from studio.registry import Registry
    from studio.settings import Settings

__all__ = ["Engine", "NodeError", "ReleasePolicy", "RunReport", "RunStatus", "describe_exception",
           "is_out_of_memory"]


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


class ReleasePolicy:
    """When a run lets go of what it holds, so memory holds what the rest of the run needs
    and not what it has finished with.

    * A node's outputs are held for the steps planned to read them, and let go of once the
      last of those has run (:meth:`consumed`); the outputs of the run's targets are kept,
      for the report. The result cache may keep its own reference to them, within its byte
      budget; a step that failed keeps what it read until the run ends.
    * A node that ran out of memory (:meth:`after_failure`) empties the result cache and
      asks the model manager, when the run has one, to free what it can, so that the nodes
      still to run, or the next run, have room.
    """

    def __init__(self, plan: Plan, cache: ResultCache, services: Services) -> None:
        self._cache = cache
        self._services = services
        self._targets = set(plan.targets)
        # How many planned steps still have to read each node's outputs.
        self._readers: dict[str, int] = {}
        for step in plan.steps:
            for node_id in _upstream_ids(step):
                self._readers[node_id] = self._readers.get(node_id, 0) + 1

    def consumed(self, step: PlannedNode) -> list[str]:
        """``step`` has run (or was served from the cache): the nodes it read whose outputs
        no later step needs."""
        done = []
        for node_id in _upstream_ids(step):
            self._readers[node_id] -= 1
            if self._readers[node_id] == 0 and node_id not in self._targets:
                done.append(node_id)
        return done

    def after_failure(self, error: BaseException) -> None:
        """A node raised ``error``: out of memory, free what can be freed."""
        if not is_out_of_memory(error):
            return
        self._cache.clear()
        if self._services.models is not None:
            self._services.models.free_memory()


def _upstream_ids(step: PlannedNode) -> list[str]:
    """The nodes whose outputs ``step`` reads (once per input wired from them)."""
    return [source.node_id for source in step.sources.values() if isinstance(source, Upstream)]


class Engine:
    """Validates, plans and executes workflows, keeping a result cache between runs.

    ``services`` are lent to every node (``ctx.services``); ``image_metadata`` makes what the
    nodes embed in the images they write (``ctx.embedded_texts``; nothing when None). The
    engine knows neither models nor file formats: its callers choose both.
    """

    def __init__(self, registry: Registry, settings: Settings, services: Services | None = None,
                 cache_bytes: int | None = None, *, image_metadata: ImageMetadata | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.services = services if services is not None else Services()
        self.image_metadata = image_metadata
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
        on_event: events.EventSink | None = None,
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
        problems += [Problem(ProblemKind.UNKNOWN_NODE, f"there is no node #{t} to run", t) for t in missing]
        if not target_ids:
            problems.insert(0, no_output_problem(workflow, self.registry))
        plan: Plan | None = None
        if problems:
            problems += relevant(cycle_problems(workflow))  # the whole list, on the failure path only
        else:
            try:
                plan = make_plan(workflow, self.registry, target_ids)
            except PlanError as error:
                problems = relevant(cycle_problems(workflow)) or [Problem(ProblemKind.PLAN, str(error))]
        if plan is None:
            report.status = RunStatus.INVALID
            report.problems = problems
            report.total_seconds = time.perf_counter() - started
            emit(events.RunStarted(report.run_id, (), ()))
            emit(events.RunFinished(report.run_id, report))
            return report

        report.skipped = list(plan.skipped)
        emit(events.RunStarted(report.run_id, tuple(step.node.id for step in plan.steps), plan.skipped))
        self._execute(plan, workflow, report, cancel, emit)
        report.total_seconds = time.perf_counter() - started
        emit(events.RunFinished(report.run_id, report))
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
            except Exception:  # noqa: BLE001 - a file that cannot be read now: unknown, so not the same as before
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
                 emit: events.EventSink) -> None:
        """Run the steps of ``plan`` in order into ``report``: a step whose input comes from a
        failed node is skipped; the others are served from the cache or run; then what no
        later step reads is let go of (:class:`ReleasePolicy`)."""
        keys: dict[str, str] = {}
        results: dict[str, tuple[Any, ...]] = {}
        failed: set[str] = set()
        targets = set(plan.targets)
        release = ReleasePolicy(plan, self.cache, self.services)
        embedded_texts = self._embedded_texts(workflow)
        try:
            for step in plan.steps:
                node_id = step.node.id
                if failed.intersection(_upstream_ids(step)):
                    failed.add(node_id)
                    report.skipped.append(node_id)
                    continue
                cancel.raise_if_cancelled()
                outputs = self._cached_or_run(step, keys, results, report, cancel, emit, release, embedded_texts)
                if outputs is None:
                    failed.add(node_id)
                    continue
                results[node_id] = outputs
                if node_id in targets:
                    report.results[node_id] = outputs
                for done in release.consumed(step):
                    results.pop(done, None)
        except RunCancelled:
            report.status = RunStatus.CANCELLED
            return
        if report.errors:
            report.status = RunStatus.FAILED

    def _cached_or_run(self, step: PlannedNode, keys: dict[str, str], results: dict[str, tuple[Any, ...]],
                       report: RunReport, cancel: CancelToken, emit: events.EventSink, release: ReleasePolicy,
                       embedded_texts: Callable[[], Mapping[str, str]]) -> tuple[Any, ...] | None:
        """The outputs of ``step``, from the cache when its key is there, else by running
        it (and caching them); None, with the error in the report, when it failed."""
        node, run_id = step.node, report.run_id
        try:
            key = self._cache_key(step, keys)
        except Exception as error:  # noqa: BLE001 - a fingerprint that failed (an unreadable file): that node's error
            self._fail(report, emit, run_id, step, error)
            return None
        keys[node.id] = key
        entry = self.cache.get(key)
        if entry is not None:
            report.cached.append(node.id)
            report.seconds[node.id] = 0.0
            report.files.extend((node.id, path) for path in entry.files)
            emit(events.NodeFinished(run_id, node.id, node.type, 0.0, True))
            return entry.outputs

        emit(events.NodeStarted(run_id, node.id, node.type))
        began = time.perf_counter()
        ctx = RunContext(
            node.id, node.title, self.settings, self.services, cancel,
            lambda step_number, total, preview: emit(events.NodeProgress(run_id, node.id, step_number, total, preview)),
            embedded_texts,
        )
        inputs = {name: (results[source.node_id][source.output_index] if isinstance(source, Upstream)
                         else source.value)
                  for name, source in step.sources.items()}
        try:
            outputs = self._check_outputs(step, step.cls().run(ctx, **inputs))
        except RunCancelled:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of a node is that node's error
            release.after_failure(error)
            self._fail(report, emit, run_id, step, error)
            return None
        seconds = time.perf_counter() - began
        files = tuple(ctx.files)
        self.cache.put(key, outputs, files)
        report.executed.append(node.id)
        report.seconds[node.id] = seconds
        report.files.extend((node.id, path) for path in files)
        report.notes.extend((node.id, message) for message in ctx.notes)
        emit(events.NodeFinished(run_id, node.id, node.type, seconds, False))
        return outputs

    def _embedded_texts(self, workflow: Workflow) -> Callable[[], Mapping[str, str]]:
        """What the nodes of a run of ``workflow`` embed in the images they write: the
        caller's :data:`ImageMetadata`, made when a node first asks for it and once per run.
        Its failure is not hidden: the node that asked fails with :class:`ImageMetadataError`
        (and the next node to ask tries again)."""
        provider = self.image_metadata
        made: list[Mapping[str, str]] = []

        def texts() -> Mapping[str, str]:
            if not made:
                if provider is None:
                    made.append({})
                else:
                    try:
                        made.append(dict(provider(workflow, self.registry.spec)))
                    except Exception as error:
                        raise ImageMetadataError(f"the workflow to embed in its files could not be written: "
                                                 f"{type(error).__name__}: {error}") from error
            return made[0]

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

    def _fail(self, report: RunReport, emit: events.EventSink, run_id: str, step: PlannedNode,
              error: BaseException) -> None:
        node = step.node
        text = "".join(traceback.format_exception(error))
        failure = NodeError(node.id, node.type, describe_exception(error), text,
                            error.errno if isinstance(error, OSError) else None)
        report.errors.append(failure)
        emit(events.NodeFailed(run_id, node.id, node.type, failure.message, text))
