"""The engine: validate, plan, execute with a result cache, report events. No Qt, no torch."""

from studio.engine.cache import ResultCache
from studio.engine.context import CancelToken, NodeContext, RunCancelled
from studio.engine.events import (
    Event,
    NodeFailed,
    NodeFinished,
    NodeProgress,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from studio.engine.execute import Engine, NodeError, RunReport
from studio.engine.plan import Plan, PlanError, make_plan
from studio.engine.validate import Problem, WorkflowInvalid, validate

__all__ = [
    "CancelToken", "Engine", "Event", "NodeContext", "NodeError", "NodeFailed", "NodeFinished",
    "NodeProgress", "NodeStarted", "Plan", "PlanError", "Problem", "ResultCache", "RunCancelled",
    "RunFinished", "RunReport", "RunStarted", "WorkflowInvalid", "make_plan", "validate",
]
