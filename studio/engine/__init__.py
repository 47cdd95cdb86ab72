"""The engine: validate, plan, execute with a result cache, report events. No Qt, no torch."""

from studio.engine.cache import ResultCache
from studio.engine.context import CancelToken, ImageMetadata, ImageMetadataError, RunCancelled, RunContext
from studio.engine.events import (
    Event,
    NodeFailed,
    NodeFinished,
    NodeProgress,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from studio.engine.execute import Engine, ReleasePolicy
from studio.engine.plan import Plan, PlanError, make_plan
from studio.engine.report import NodeError, RunReport, RunStatus
from studio.engine.validate import Problem, ProblemKind, Severity, WorkflowInvalid, validate

# The engine's context under its former name; nodes are typed against the protocol,
# studio.node_api.NodeContext, which this class satisfies.
NodeContext = RunContext

__all__ = [
    "CancelToken", "Engine", "Event", "ImageMetadata", "ImageMetadataError", "NodeContext", "NodeError",
    "NodeFailed", "NodeFinished", "NodeProgress", "NodeStarted", "Plan", "PlanError", "Problem", "ProblemKind",
    "ReleasePolicy", "ResultCache", "RunCancelled", "RunContext", "RunFinished", "RunReport", "RunStarted",
    "RunStatus", "Severity", "WorkflowInvalid", "make_plan", "validate",
]
