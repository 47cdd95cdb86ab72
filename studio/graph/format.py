"""The native workflow file: versioned JSON with named inputs and stable node ids.

A file looks like this (keys are written sorted, two-space indented, one trailing newline,
so the same graph always gives the same bytes and diffs stay small)::

    {
      "format": "seed-studio-workflow",
      "nodes": {
        "1": {"type": "LoadImage", "values": {"image": "photo.png"}, "position": [0, 0]},
        "2": {"type": "ImageInvert", "links": {"image": {"node": "1", "output": "IMAGE"}}}
      },
      "version": 1
    }

Fields this version does not know are kept and written back unchanged. Older versions are
brought forward by the functions in :data:`MIGRATIONS`. A malformed document raises one
:class:`WorkflowFormatError` that names the JSON path and what was wrong there.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from studio.fileio import atomic_write_text
from studio.graph.model import Group, LinkSource, Node, NodeMode, Reroute, Workflow
from studio.graph.numbers import is_finite_number

FORMAT_NAME = "seed-studio-workflow"
CURRENT_VERSION = 1

# MIGRATIONS[n] turns a version-n document (already parsed JSON) into a version n+1 one.
# Version 1 is the first, so there is nothing to migrate yet; the hook is here so that a
# future change of layout is one function and old files keep opening.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

_NODE_FIELDS = {"type", "title", "position", "size", "mode", "values", "links", "color", "collapsed"}
_GROUP_FIELDS = {"title", "bounds", "color"}
_LINK_FIELDS = {"node", "output", "reroute"}
_REROUTE_FIELDS = {"position", "parent"}
_TOP_FIELDS = {"format", "version", "nodes", "groups", "reroutes", "meta"}


class WorkflowFormatError(ValueError):
    """A workflow document that cannot be read, with where (JSON path) and what."""

    def __init__(self, path: str, message: str, source: str = "") -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {message}")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


class _Reader:
    """Checks each field's type as it is read and says where the document went wrong."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> WorkflowFormatError:
        return WorkflowFormatError(path, message, self.source)

    def object(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected an object, found {_type_name(value)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, found {_type_name(value)}")
        return value

    def number_pair(self, value: Any, path: str, count: int = 2) -> tuple[float, ...]:
        if not isinstance(value, list) or len(value) != count:
            raise self.fail(path, f"expected a list of {count} numbers")
        for index, item in enumerate(value):
            if not is_finite_number(item):
                raise self.fail(f"{path}[{index}]", f"expected a finite number, found {_type_name(item)}")
        return tuple(float(item) if isinstance(item, float) else item for item in value)


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def _entries(reader: _Reader, document: dict[str, Any], table: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Each entry of one of the document's id-keyed tables (groups, reroutes): its id, its
    object and the JSON path errors name it by."""
    for entry_id, raw in reader.object(document.get(table, {}), f"$.{table}").items():
        path = _key_path(f"$.{table}", entry_id)
        yield entry_id, reader.object(raw, path), path


def _unknown_fields(data: dict[str, Any], known: set[str]) -> dict[str, Any]:
    # Fields this version does not know are kept and written back, for a newer one's sake.
    return {key: value for key, value in data.items() if key not in known}


def workflow_from_data(data: Any, source: str = "") -> Workflow:
    """Build a workflow from parsed JSON, migrating older versions first."""
    reader = _Reader(source)
    document = reader.object(data, "$")
    if document.get("format") != FORMAT_NAME:
        found = document.get("format")
        hint = " (a ComfyUI file? those are opened by the importer)" if "nodes" in document or found is None else ""
        raise reader.fail("$.format", f"expected {FORMAT_NAME!r}, found {found!r}{hint}")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise reader.fail("$.version", f"expected a whole number, found {_type_name(version)}")
    if version > CURRENT_VERSION:
        raise reader.fail("$.version", f"version {version} was written by a newer Seed Studio; "
                          f"this one reads up to version {CURRENT_VERSION}")
    if version < 1 and version not in MIGRATIONS:
        raise reader.fail("$.version", f"unknown version {version}")
    while version < CURRENT_VERSION:
        if version not in MIGRATIONS:
            raise reader.fail("$.version", f"no migration from version {version}")
        document = reader.object(MIGRATIONS[version](dict(document)), "$")
        version += 1
        document["version"] = version

    workflow = Workflow()
    workflow.extra = _unknown_fields(document, _TOP_FIELDS)
    workflow.meta = dict(reader.object(document.get("meta", {}), "$.meta"))

    nodes = reader.object(document.get("nodes", {}), "$.nodes")
    for node_id, raw in nodes.items():
        workflow.nodes[node_id] = _read_node(reader, node_id, raw, _key_path("$.nodes", node_id))

    for node in workflow.nodes.values():
        for input_name, link in node.links.items():
            if link.node not in workflow.nodes:
                path = _key_path(_key_path(_key_path("$.nodes", node.id), "links"), input_name)
                raise reader.fail(f"{path}.node", f"links to node {link.node!r}, which is not in the file")

    for group_id, group_data, path in _entries(reader, document, "groups"):
        group = Group(group_id)
        if "title" in group_data:
            group.title = reader.string(group_data["title"], f"{path}.title")
        if "bounds" in group_data:
            group.bounds = reader.number_pair(group_data["bounds"], f"{path}.bounds", 4)  # type: ignore[assignment]
        if group_data.get("color") is not None:
            group.color = reader.string(group_data["color"], f"{path}.color")
        group.extra = _unknown_fields(group_data, _GROUP_FIELDS)
        workflow.groups[group_id] = group

    for reroute_id, reroute_data, path in _entries(reader, document, "reroutes"):
        reroute = Reroute(reroute_id)
        if "position" in reroute_data:
            reroute.position = reader.number_pair(reroute_data["position"], f"{path}.position")  # type: ignore[assignment]
        if reroute_data.get("parent") is not None:
            reroute.parent = reader.string(reroute_data["parent"], f"{path}.parent")
        reroute.extra = _unknown_fields(reroute_data, _REROUTE_FIELDS)
        workflow.reroutes[reroute_id] = reroute
    for reroute in workflow.reroutes.values():
        if reroute.parent is not None and reroute.parent not in workflow.reroutes:
            raise reader.fail(f"{_key_path('$.reroutes', reroute.id)}.parent",
                              f"names reroute {reroute.parent!r}, which is not in the file")
    for node in workflow.nodes.values():
        for input_name, link in node.links.items():
            if link.reroute is not None and link.reroute not in workflow.reroutes:
                path = _key_path(_key_path(_key_path("$.nodes", node.id), "links"), input_name)
                raise reader.fail(f"{path}.reroute", f"names reroute {link.reroute!r}, which is not in the file")
    return workflow


def _read_node(reader: _Reader, node_id: str, raw: Any, path: str) -> Node:
    if not node_id:
        raise reader.fail(path, "a node id cannot be empty")
    data = reader.object(raw, path)
    if "type" not in data:
        raise reader.fail(path, "the node has no 'type'")
    node = Node(node_id, reader.string(data["type"], f"{path}.type"))
    if "title" in data:
        node.title = reader.string(data["title"], f"{path}.title")
    if "position" in data:
        node.position = reader.number_pair(data["position"], f"{path}.position")  # type: ignore[assignment]
    if data.get("size") is not None:
        node.size = reader.number_pair(data["size"], f"{path}.size")  # type: ignore[assignment]
    if "mode" in data:
        mode = data["mode"]
        if not isinstance(mode, str) or mode not in {member.value for member in NodeMode}:
            raise reader.fail(f"{path}.mode", f"expected one of normal, bypass, mute; found {mode!r}")
        node.mode = NodeMode(mode)
    if data.get("color") is not None:
        node.color = reader.string(data["color"], f"{path}.color")
    if "collapsed" in data:
        if not isinstance(data["collapsed"], bool):
            raise reader.fail(f"{path}.collapsed", f"expected true/false, found {_type_name(data['collapsed'])}")
        node.collapsed = data["collapsed"]
    node.values = dict(reader.object(data.get("values", {}), f"{path}.values"))
    links = reader.object(data.get("links", {}), f"{path}.links")
    for input_name, raw_link in links.items():
        link_path = _key_path(f"{path}.links", input_name)
        link = reader.object(raw_link, link_path)
        for required in ("node", "output"):
            if required not in link:
                raise reader.fail(link_path, f"the link has no {required!r}")
        node.links[input_name] = LinkSource(
            reader.string(link["node"], f"{link_path}.node"),
            reader.string(link["output"], f"{link_path}.output"),
            reader.string(link["reroute"], f"{link_path}.reroute") if link.get("reroute") is not None else None,
            tuple(sorted((key, value) for key, value in link.items() if key not in _LINK_FIELDS)),
        )
    node.extra = _unknown_fields(data, _NODE_FIELDS)
    return node


def _plain_number(value: float) -> float | int:
    """Write 120.0 as 120 so hand-edited and saved files agree."""
    return int(value) if float(value).is_integer() else value


def workflow_to_data(workflow: Workflow) -> dict[str, Any]:
    """The JSON-ready document; fields at their defaults are left out to keep files short."""
    nodes: dict[str, Any] = {}
    for node in workflow.nodes.values():
        data: dict[str, Any] = dict(node.extra)
        data["type"] = node.type
        data["position"] = [_plain_number(v) for v in node.position]
        if node.title:
            data["title"] = node.title
        if node.size is not None:
            data["size"] = [_plain_number(v) for v in node.size]
        if node.mode is not NodeMode.NORMAL:
            data["mode"] = node.mode.value
        if node.color is not None:
            data["color"] = node.color
        if node.collapsed:
            data["collapsed"] = True
        if node.values:
            data["values"] = dict(node.values)
        if node.links:
            data["links"] = {
                name: {**dict(link.extra), "node": link.node, "output": link.output,
                       **({"reroute": link.reroute} if link.reroute is not None else {})}
                for name, link in node.links.items()
            }
        nodes[node.id] = data
    document: dict[str, Any] = dict(workflow.extra)
    document.update(format=FORMAT_NAME, version=CURRENT_VERSION, nodes=nodes)
    if workflow.groups:
        document["groups"] = {
            group.id: {**group.extra, "title": group.title,
                       "bounds": [_plain_number(v) for v in group.bounds],
                       **({"color": group.color} if group.color else {})}
            for group in workflow.groups.values()
        }
    if workflow.reroutes:
        document["reroutes"] = {
            reroute.id: {**reroute.extra, "position": [_plain_number(v) for v in reroute.position],
                         **({"parent": reroute.parent} if reroute.parent is not None else {})}
            for reroute in workflow.reroutes.values()
        }
    if workflow.meta:
        document["meta"] = workflow.meta
    return document


def _encode(value: Any, indent: str) -> str:
    # Like json.dumps(indent=2, sort_keys=True), except that lists of plain values stay on
    # one line, so a moved node is a one-line diff.
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "  "
        items = [f"{inner}{json.dumps(str(key), ensure_ascii=False)}: {_encode(value[key], inner)}"
                 for key in sorted(value, key=str)]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, (list, tuple)):
        if all(not isinstance(item, (dict, list, tuple)) for item in value):
            return "[" + ", ".join(_encode(item, indent) for item in value) + "]"
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _encode(item, inner) for item in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def dumps(workflow: Workflow) -> str:
    """The file's text: sorted keys and fixed indentation, so equal graphs give equal bytes."""
    return _encode(workflow_to_data(workflow), "") + "\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a workflow can hold")


# Deeper than any workflow nests (a ComfyUI file with subgraphs reaches about a dozen), and
# shallow enough that everything that walks a document recursively (saving it, exporting it,
# embedding it in a PNG) stays far from Python's recursion limit.
MAX_NESTING = 100
# Half of a UTF-16 surrogate pair on its own: JSON's \ud800 escapes allow it, UTF-8 cannot
# write it, so a file holding one could be opened and rendered but never saved.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _trail_path(trail: tuple[Any, ...] | None) -> str:
    keys = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    path = "$"
    for key in reversed(keys):
        path = f"{path}[{key}]" if isinstance(key, int) else _key_path(path, key)
    return path


def check_json_values(data: Any, source: str = "") -> None:
    """Refuse parsed JSON that could be opened but never written back: numbers that are not
    finite (``1e999`` reads as infinity), text with a lone surrogate, nesting deeper than
    :data:`MAX_NESTING`. The error names the JSON path of the value."""
    # A stack rather than recursion: the point is to stop documents too deep to recurse into.
    stack: list[tuple[Any, int, tuple[Any, ...] | None]] = [(data, 0, None)]
    while stack:
        value, depth, trail = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_NESTING:
                raise WorkflowFormatError(_trail_path(trail), f"nested more than {MAX_NESTING} levels deep, "
                                          "deeper than any workflow", source)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and _LONE_SURROGATE.search(key):
                    raise WorkflowFormatError(_trail_path((trail, key)), "the key holds half of a UTF-16 "
                                              "surrogate pair, which no file can store", source)
                stack.append((item, depth + 1, (trail, key)))
        elif isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                raise WorkflowFormatError(_trail_path(trail), "the text holds half of a UTF-16 surrogate pair "
                                          "(a \\ud800-style escape on its own), which no file can store", source)
        elif isinstance(value, float) and not is_finite_number(value):
            raise WorkflowFormatError(_trail_path(trail), f"{value} is not a number a workflow can hold "
                                      "(1e999 and the like read as infinity)", source)


def parse_json(text: str | bytes, source: str = "") -> Any:
    """Parse JSON text; every failure is a :class:`WorkflowFormatError` saying where, and so
    is a value that could never be saved again (see :func:`check_json_values`)."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise WorkflowFormatError(f"line {error.lineno}, column {error.colno}",
                                  f"not valid JSON ({error.msg})", source) from None
    except UnicodeDecodeError as error:
        raise WorkflowFormatError("$", f"not UTF-8 text ({error.reason})", source) from None
    except RecursionError:
        raise WorkflowFormatError("$", "nested too deeply to be a workflow", source) from None
    except ValueError as error:  # e.g. integers with more digits than Python will parse
        raise WorkflowFormatError("$", f"not a readable JSON document ({error})", source) from None
    check_json_values(data, source)
    return data


def loads(text: str | bytes, source: str = "") -> Workflow:
    """Parse a native workflow document; every failure is a :class:`WorkflowFormatError`."""
    return workflow_from_data(parse_json(text, source), source)


def load(path: str | os.PathLike[str]) -> Workflow:
    """Read a native workflow file (``studio.graph.files.open_workflow`` opens every kind)."""
    file_path = Path(path)
    try:
        raw = file_path.read_bytes()
    except OSError as error:
        raise WorkflowFormatError("$", f"cannot read the file ({error.strerror or error})", str(file_path)) from None
    return loads(raw, str(file_path))


def save(workflow: Workflow, path: str | os.PathLike[str]) -> None:
    """Write a workflow file atomically (temporary file, then rename)."""
    atomic_write_text(path, dumps(workflow))
