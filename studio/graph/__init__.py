"""The graph model: pure data, no Qt, no torch, no I/O beyond reading and writing text."""

from studio.graph.connect import Verdict, can_connect
from studio.graph.format import (
    CURRENT_VERSION,
    FORMAT_NAME,
    WorkflowFormatError,
    dumps,
    load,
    loads,
    save,
)
from studio.graph.model import GraphEditError, Group, Link, LinkSource, Node, NodeMode, Reroute, Workflow
from studio.graph.sockets import InputSpec, NodeSpec, OutputSpec

__all__ = [
    "CURRENT_VERSION", "FORMAT_NAME", "GraphEditError", "Group", "InputSpec", "Link",
    "LinkSource", "Node", "NodeMode", "NodeSpec", "OutputSpec", "Reroute", "Verdict", "Workflow",
    "WorkflowFormatError", "can_connect", "dumps", "load", "loads", "save",
]
