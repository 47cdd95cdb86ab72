"""Reading ComfyUI workflows: the UI format (``nodes``/``links``/``widgets_values``, newer files
with ``definitions.subgraphs``) and the API format (``{id: {class_type, inputs}}``).

Facts about the formats, and where they come from:
- UI format: litegraph's serialisation as ComfyUI's front end writes it. A node has ``id``,
  ``type``, ``pos``, ``size``, ``flags.collapsed``, ``mode`` (0 normal, 2 muted, 4 bypassed),
  ``inputs`` (``{name, type, link, widget?}``), ``outputs`` (``{name, type, links}``),
  ``widgets_values`` (see definitions.py), ``title``, ``color``, ``bgcolor``. Links are
  ``[id, origin_id, origin_slot, target_id, target_slot, type]`` (version 0.4) or objects with
  those keys (schema version 1 and inside subgraphs). Groups have ``title``, ``bounding``
  ``[x, y, w, h]`` and ``color``. Very old files store ``pos``/``size`` as ``{"0": x, "1": y}``.
- Subgraphs (front end 1.24+): ``definitions.subgraphs`` lists definitions with ``id`` (a
  UUID, used as the ``type`` of instance nodes), ``inputs``/``outputs`` (by slot, with
  ``name``), ``nodes`` and ``links``; inside, origin id -10 is the subgraph's input side and
  target id -20 its output side. An instance's inputs match the definition's by name, its
  outputs by index; its ``widgets_values`` hold one value per input that carries a widget, and
  that value is what the inner fields fed from that input get. Instances are expanded into
  plain nodes (``"12:3"``: node 3 of instance 12); each remembers where it came from
  (``extra["comfy_subgraph"]``), and the definitions and instance nodes are kept
  (``extra["comfy"]["definitions"]``, ``extra["comfy_subgraphs"]``) so that an export can
  write the subgraphs back (subgraphs.py).
- ``Reroute`` nodes pass their one input on; ``PrimitiveNode`` holds a value in
  ``widgets_values[0]`` (and, for numbers and drop-downs, a control word in ``[1]``) for the
  widget inputs its output is wired to; ComfyUI's server never sees it: the front end copies
  the value into those fields when it queues a prompt.
- API format: what ComfyUI's ``/prompt`` takes and writes into PNGs as ``prompt``: inputs by
  name, a link is ``[source_id, output_slot]``, ``_meta.title`` optional.

Node types Seed Studio lacks become placeholder nodes that keep their type, values and the
original ComfyUI fields (``extra["comfy"]``), so saving and exporting lose nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from studio.graph.comfy.definitions import (
    COMBO,
    CONTROL,
    CONTROL_VALUES,
    FILE_CHOICE_INPUTS,
    MULTILINE_STRING_PRIMITIVE,
    PRIMITIVE_WIDGET_TYPE,
    REROUTE_TYPES,
    TYPED_PRIMITIVE_TYPES,
    TYPED_PRIMITIVES,
    UPLOAD,
)
from studio.graph.comfy.layout import output_list, unnamed_output, widget_layout
from studio.graph.connect import SpecLookup
from studio.graph.format import WorkflowFormatError
from studio.graph.model import Group, LinkSource, Node, NodeMode, Reroute, Workflow
from studio.graph.numbers import is_finite_number, is_finite_pair
from studio.graph.sockets import ANY, BOOLEAN, FLOAT, INT, STRING, InputSpec

SUBGRAPH_INPUT_ID = -10
SUBGRAPH_OUTPUT_ID = -20
MAX_SUBGRAPH_DEPTH = 16
# What a file may expand to. A subgraph used n times inside one used m times … grows as the
# product: an 11 KB file can describe a million nodes. Counted before anything is expanded.
MAX_EXPANDED_NODES = 20_000
MAX_EXPANDED_LINKS = 40_000
MAX_COORDINATE = 1e9
_MODES = {0: NodeMode.NORMAL, 1: NodeMode.NORMAL, 3: NodeMode.NORMAL, 2: NodeMode.MUTE, 4: NodeMode.BYPASS}
# Fields of a UI node that the importer turns into the native model; the rest is kept.
_MAPPED_NODE_FIELDS = {"id", "type", "pos", "size", "mode", "title", "color", "widgets_values"}
# Early front ends had a "random seed after every gen" toggle where the control word is now;
# ComfyUI's loadGraphData (web/scripts/app.js) reads true as "randomize", false as "fixed".
_OLD_CONTROL_TOGGLE = {True: "randomize", False: "fixed"}
# Fields of a PrimitiveNode that mean nothing on the typed primitive it becomes: its slots
# (rebuilt from the typed node), its properties ("Run widget replace on values") and its
# mode: the front end applies a primitive's value whatever its mode (graphToPrompt calls
# applyToGraph on every virtual node), so the typed node must run.
_PRIMITIVE_WIDGET_ONLY_FIELDS = {"type", "mode", "inputs", "outputs", "properties", "widgets_values"}


def _value_misfit(kind: str, value: Any, spec: InputSpec | None) -> str | None:
    """Why a typed primitive of socket type ``kind`` would refuse ``value``, or None."""
    if kind == INT and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{value!r:.40} is not a whole number"
    if kind == FLOAT and not is_finite_number(value):
        return f"{value!r:.40} is not a finite number"
    if kind == STRING and not isinstance(value, str):
        return f"{value!r:.40} is not text"
    if kind == BOOLEAN and not isinstance(value, bool):
        return f"{value!r:.40} is not true or false"
    if kind in (INT, FLOAT) and spec is not None:
        if spec.min is not None and value < spec.min:
            return f"{value!r} is below its minimum {spec.min:g}"
        if spec.max is not None and value > spec.max:
            return f"{value!r} is above its maximum {spec.max:g}"
    return None


def _control_word(value: Any) -> str | None:
    """The seed control a ``control_after_generate`` slot holds, or None if it holds none."""
    if isinstance(value, bool):
        return _OLD_CONTROL_TOGGLE[value]
    return value if isinstance(value, str) and value in CONTROL_VALUES else None


class ComfyFormatError(WorkflowFormatError):
    """A ComfyUI document that cannot be read, with the JSON path of the problem."""


@dataclass
class ImportReport:
    """What opening a file found besides the graph: its format, repairs, missing node types."""

    source_format: str
    warnings: list[str] = field(default_factory=list)
    unknown_types: list[str] = field(default_factory=list)


@dataclass
class _Link:
    origin: str
    origin_slot: int
    target: str
    target_slot: int
    type: Any = None
    link_id: Any = None
    # The Reroute node the wire last passed through in the file (kept as a reroute point).
    via: str | None = None


@dataclass(frozen=True)
class SubgraphDefinition:
    """One entry of the file's ``definitions.subgraphs``, as the file has it, and its place in
    that list (the JSON path errors about it name)."""

    raw: dict[str, Any]
    index: int

    @property
    def path(self) -> str:
        return f"$.definitions.subgraphs[{self.index}]"


# Where an expanded node came from (see _UiReader.member_record), by node id.
# A node object as read from the file's JSON (untrusted: every field is checked where read).
RawNode = dict[str, Any]
MemberRecords = dict[str, dict[str, Any]]


def _fail(path: str, message: str, source: str) -> ComfyFormatError:
    return ComfyFormatError(path, message, source)


def _node_id(value: Any, path: str, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise _fail(path, f"a node id must be a number or text, found {value!r:.40}", source)
    return str(value)


def _slot(value: Any, path: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10_000:
        raise _fail(path, f"a slot must be a small whole number, found {value!r:.40}", source)
    return value


def _pair(value: Any, default: tuple[float, float] | None) -> tuple[float, float] | None:
    if isinstance(value, dict):  # old litegraph: {"0": x, "1": y}
        value = [value.get("0"), value.get("1")]
    if isinstance(value, (list, tuple)) and is_finite_pair(value[:2], MAX_COORDINATE):
        return (float(value[0]), float(value[1]))
    return default


class _UiReader:
    def __init__(self, spec_of: SpecLookup, source: str) -> None:
        self.spec_of = spec_of
        self.source = source
        self.report = ImportReport("comfy-ui")
        # Instance nodes of the top graph that were expanded, by id, as the file had them.
        self.subgraph_instances: dict[str, RawNode] = {}
        # Reroute nodes of the file: id → (position, the reroute feeding it).
        self.reroute_points: dict[str, tuple[Any, str | None]] = {}
        # What the reader learns about a node beyond the file's own fields is kept here, by
        # node id, never written into the file's node objects (whose fields are all kept):
        # where each expanded node of the top graph came from,
        self.member_records: MemberRecords = {}
        # the values an instance shows for the inner fields it exposes (input name → value),
        self.exposed_values: dict[str, dict[str, Any]] = {}
        # and the value (and control word) a PrimitiveNode copied into a field, by input name.
        self.copied_primitives: dict[str, dict[str, tuple[Any, str | None]]] = {}

    # -- structure -----------------------------------------------------------------------
    def read_links(self, raw: Any, path: str) -> list[_Link]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise _fail(path, "expected a list of links", self.source)
        links = []
        for index, item in enumerate(raw):
            where = f"{path}[{index}]"
            if item is None:
                continue
            if isinstance(item, dict):
                values = [item.get(key) for key in ("id", "origin_id", "origin_slot", "target_id", "target_slot",
                                                     "type")]
            elif isinstance(item, list) and len(item) >= 5:
                values = list(item[:6]) + [None] * (6 - len(item[:6]))
            else:
                raise _fail(where, "expected a link [id, origin, slot, target, slot, type]", self.source)
            link_id, origin, origin_slot, target, target_slot, kind = values
            links.append(_Link(_node_id(origin, f"{where}.origin_id", self.source),
                               _slot(origin_slot, f"{where}.origin_slot", self.source),
                               _node_id(target, f"{where}.target_id", self.source),
                               _slot(target_slot, f"{where}.target_slot", self.source), kind, link_id))
        return links

    def read_nodes(self, raw: Any, path: str) -> dict[str, dict[str, Any]]:
        if not isinstance(raw, list):
            raise _fail(path, "expected a list of nodes", self.source)
        nodes: dict[str, dict[str, Any]] = {}
        first_seen: dict[str, int] = {}
        for index, item in enumerate(raw):
            where = f"{path}[{index}]"
            if not isinstance(item, dict):
                raise _fail(where, "expected a node object", self.source)
            node_id = _node_id(item.get("id"), f"{where}.id", self.source)
            if not isinstance(item.get("type"), str) or not item["type"]:
                raise _fail(f"{where}.type", "expected the node's type name", self.source)
            if node_id in nodes:
                raise _fail(f"{where}.id", f"node id {node_id} is used twice (also by {path}[{first_seen[node_id]}])",
                            self.source)
            for key in ("inputs", "outputs"):
                if item.get(key) is not None and not isinstance(item[key], list):
                    raise _fail(f"{where}.{key}", "expected a list", self.source)
            nodes[node_id] = item
            first_seen[node_id] = index
        return nodes

    # -- subgraphs -----------------------------------------------------------------------
    def expand_subgraphs(self, nodes: dict[str, RawNode], links: list[_Link],
                         definitions: dict[str, SubgraphDefinition], records: MemberRecords, depth: int = 0,
                         active: tuple[str, ...] = ()) -> tuple[dict[str, RawNode], list[_Link]]:
        """Expand the instances among ``nodes`` (one graph level), recording in ``records``
        where each node they became came from, by its id at this level."""
        instances = [node_id for node_id, node in nodes.items() if node["type"] in definitions]
        if not instances:
            return nodes, links
        if depth >= MAX_SUBGRAPH_DEPTH:
            raise _fail("$.definitions.subgraphs", "subgraphs are nested too deeply", self.source)
        for instance_id in instances:
            instance = nodes.pop(instance_id)
            subgraph_id = instance["type"]
            if subgraph_id in active:
                raise _fail("$.definitions.subgraphs", f"subgraph {subgraph_id} contains itself", self.source)
            definition = definitions[subgraph_id].raw
            path = definitions[subgraph_id].path
            inner_nodes = self.read_nodes(definition.get("nodes", []), f"{path}.nodes")
            inner_links = self.read_links(definition.get("links", []), f"{path}.links")
            inner_records: MemberRecords = {}
            inner_nodes, inner_links = self.expand_subgraphs(inner_nodes, inner_links, definitions, inner_records,
                                                             depth + 1, (*active, subgraph_id))
            prefix = f"{instance_id}:"
            stored_name = definition.get("name")
            name = stored_name if isinstance(stored_name, str) else subgraph_id
            for inner_id, inner in inner_nodes.items():
                # A copy: another instance of the same definition expands the same node objects.
                copy = dict(inner)
                copy["id"] = prefix + inner_id
                records[prefix + inner_id] = self.member_record(instance_id, name, inner, inner_records.get(inner_id))
                nodes[prefix + inner_id] = copy
            if depth == 0:
                self.subgraph_instances[instance_id] = instance

            # What feeds each of the instance's inputs, by the subgraph input's slot.
            stored_inputs = definition.get("inputs")
            declared_inputs = stored_inputs if isinstance(stored_inputs, list) else []
            instance_inputs = instance.get("inputs") or []
            feeding: dict[int, _Link] = {}
            for link in links:
                if link.target == instance_id and link.target_slot < len(instance_inputs):
                    name_in = (instance_inputs[link.target_slot] or {}).get("name") \
                        if isinstance(instance_inputs[link.target_slot], dict) else None
                    for slot, declared in enumerate(declared_inputs):
                        if isinstance(declared, dict) and declared.get("name") == name_in:
                            feeding[slot] = link
            promoted = self.promoted_values(instance, declared_inputs, feeding) if depth == 0 else {}
            outer = [link for link in links if instance_id not in (link.origin, link.target)]
            consumers = [link for link in links if link.origin == instance_id]
            # Each wire keeps the id of the outermost ComfyUI link it stands for, so an export
            # that writes the subgraph back gives the boundary wires their ids again.
            for link in inner_links:
                origin = link.origin
                link_id = link.link_id
                if origin == str(SUBGRAPH_INPUT_ID):
                    source = feeding.get(link.origin_slot)
                    if source is None:
                        # The inner field keeps its own value, or the one the instance shows.
                        self.promote(prefix + link.target, nodes, records, link.target_slot, promoted,
                                     link.origin_slot)
                        continue
                    origin_id, origin_slot, link_id = source.origin, source.origin_slot, source.link_id
                else:
                    origin_id, origin_slot = prefix + origin, link.origin_slot
                if link.target == str(SUBGRAPH_OUTPUT_ID):
                    for consumer in consumers:
                        if consumer.origin_slot == link.target_slot:
                            outer.append(_Link(origin_id, origin_slot, consumer.target, consumer.target_slot,
                                               link.type, consumer.link_id))
                else:
                    outer.append(_Link(origin_id, origin_slot, prefix + link.target, link.target_slot, link.type,
                                       link_id))
            links = outer
            self.report.warnings.append(f"subgraph {name!r} (node {instance_id}) was expanded into its nodes")
        return nodes, links

    @staticmethod
    def member_record(instance_id: str, name: str, inner: RawNode, nested: dict[str, Any] | None) -> dict[str, Any]:
        """Where an expanded node came from: the instance in the top graph, the subgraph's
        name, the node's id inside its definition and, for a node of a nested subgraph (whose
        record inside that subgraph is ``nested``), the ids of the instance nodes between
        (outermost first)."""
        if nested is not None:
            return {"instance": instance_id, "name": name, "node": nested["node"],
                    "path": [nested["instance"], *nested.get("path", [])]}
        return {"instance": instance_id, "name": name, "node": inner.get("id")}

    @staticmethod
    def promoted_values(instance: RawNode, declared_inputs: list[Any], feeding: dict[int, _Link]) -> dict[int, Any]:
        """The values an instance shows for its unwired widget inputs, by subgraph input slot.
        The front end writes one value per input that carries a widget, in input order."""
        values = instance.get("widgets_values")
        entries = [entry for entry in instance.get("inputs") or []
                   if isinstance(entry, dict) and isinstance(entry.get("widget"), dict)]
        if not isinstance(values, list) or not entries or len(values) != len(entries):
            return {}
        promoted: dict[int, Any] = {}
        for entry, value in zip(entries, values, strict=True):
            for slot, declared in enumerate(declared_inputs):
                if isinstance(declared, dict) and declared.get("name") == entry.get("name"):
                    if slot not in feeding and value is not None:
                        promoted.setdefault(slot, value)
                    break
        return promoted

    def promote(self, member_id: str, nodes: dict[str, RawNode], records: MemberRecords, target_slot: int,
                promoted: dict[int, Any], slot: int) -> None:
        """Give a field fed by the instance's widget that value; its record keeps the value
        the definition holds, which an export writes back there."""
        member, record = nodes.get(member_id), records.get(member_id)
        if member is None or record is None or slot not in promoted or record.get("path"):
            return
        input_name = self.input_name(member, target_slot)
        if input_name is not None:
            self.exposed_values.setdefault(member_id, {})[input_name] = promoted[slot]

    # -- front-end helpers ---------------------------------------------------------------
    def resolve_reroutes(self, nodes: dict[str, RawNode], links: list[_Link]) -> list[_Link]:
        reroutes = {node_id for node_id, node in nodes.items() if node["type"] in REROUTE_TYPES}
        if not reroutes:
            return links
        into = {link.target: link for link in links if link.target in reroutes}

        def origin_of(link: _Link, seen: frozenset[str] = frozenset()) -> _Link | None:
            while link.origin in reroutes:
                if link.origin in seen:
                    return None
                seen = seen | {link.origin}
                upstream = into.get(link.origin)
                if upstream is None:
                    return None
                link = upstream
            return link

        resolved = []
        for link in links:
            if link.target in reroutes:
                continue
            source = origin_of(link)
            if source is None:
                self.report.warnings.append(f"node {link.target}: a reroute feeding it leads nowhere; "
                                            "the wire was left out")
                continue
            via = link.origin if link.origin in reroutes else None
            resolved.append(_Link(source.origin, source.origin_slot, link.target, link.target_slot,
                                  source.type or link.type, link.link_id, via))
        # Reroute nodes become reroute points: where the wires bend, each naming the one before it.
        for node_id in reroutes:
            upstream = into.get(node_id)
            parent = upstream.origin if upstream is not None and upstream.origin in reroutes else None
            self.reroute_points[node_id] = (_pair(nodes[node_id].get("pos"), (0.0, 0.0)), parent)
            del nodes[node_id]
        self.report.warnings.append(f"{len(reroutes)} reroute node(s) became reroute points on the wires")
        return resolved

    def resolve_primitives(self, nodes: dict[str, RawNode], links: list[_Link]) -> list[_Link]:
        """Each front-end PrimitiveNode becomes ComfyUI's typed primitive node (PrimitiveInt, …)
        of the type of the inputs it feeds, wired to each of them, so one value still drives
        them all and its control word stays its own. One that feeds a drop-down (no typed
        primitive holds a choice), or whose value its typed node would refuse, is copied into
        the fields instead, as the front end does when it queues a prompt."""
        primitives = {node_id for node_id, node in nodes.items() if node["type"] == PRIMITIVE_WIDGET_TYPE}
        if not primitives:
            return links
        feeds: dict[str, list[_Link]] = {node_id: [] for node_id in primitives}
        for link in links:
            if link.origin in feeds and link.target in nodes and link.target not in feeds:
                feeds[link.origin].append(link)
        typed: dict[str, str] = {}
        for node_id in [node_id for node_id in nodes if node_id in primitives]:  # in the file's order
            primitive = nodes[node_id]
            values = primitive.get("widgets_values")
            if not isinstance(values, list) or not values or not feeds[node_id]:
                del nodes[node_id]
                self.report.warnings.append(f"primitive node {node_id} holds no value or feeds nothing; "
                                            "it was left out")
                continue
            type_name, reason = self.typed_primitive_type(nodes, primitive, feeds[node_id], values[0])
            if type_name is None:
                self.copy_into_fields(nodes, feeds[node_id], values)
                del nodes[node_id]
                self.report.warnings.append(f"primitive node {node_id} became field values: {reason}")
                continue
            nodes[node_id] = self.typed_primitive(node_id, primitive, type_name, values)
            typed[node_id] = type_name
        if typed:
            self.report.warnings.append(f"{len(typed)} primitive node(s) became "
                                        f"{', '.join(sorted(set(typed.values())))} node(s) wired to the fields "
                                        "they fed")
        dropped = set(primitives) - set(typed)
        return [link for link in links if link.origin not in dropped and link.target not in primitives]

    def typed_primitive_type(self, nodes: dict[str, RawNode], primitive: RawNode, feeds: list[_Link],
                             value: Any) -> tuple[str | None, str]:
        """The typed primitive node that can stand for ``primitive``, or None and why not."""
        kinds: set[str] = set()
        multiline = False
        for link in feeds:
            target = nodes[link.target]
            input_name = self.input_name(target, link.target_slot)
            where = f"node {link.target} ({target['type']}) " + (
                f"input {input_name!r}" if input_name is not None else f"slot {link.target_slot}")
            kind, why = self.field_kind(primitive, target, link, input_name)
            if kind is None:
                return None, f"{where} {why}"
            if kind == COMBO:
                return None, f"it feeds a drop-down ({where}), which no typed primitive can"
            kinds.add(kind)
            spec = self.spec_of(target["type"])
            input_spec = spec.input(input_name) if spec is not None and input_name is not None else None
            multiline = multiline or bool(input_spec is not None and input_spec.multiline)
        if len(kinds) > 1:
            return None, f"the fields it feeds are of different types ({', '.join(sorted(kinds))})"
        [kind] = kinds
        type_name = MULTILINE_STRING_PRIMITIVE if kind == STRING and multiline else TYPED_PRIMITIVES[kind]
        spec = self.spec_of(type_name)
        misfit = _value_misfit(kind, value, spec.input("value") if spec is not None else None)
        if misfit is not None:
            return None, f"a {type_name} cannot hold its value ({misfit})"
        return type_name, ""

    def field_kind(self, primitive: RawNode, target: RawNode, link: _Link,
                   input_name: str | None) -> tuple[str | None, str]:
        """The socket type of the field ``link`` feeds (COMBO for a drop-down), as the file and
        Seed Studio's declaration of the target say it; None and why when they cannot tell."""
        if input_name is None:
            return None, "is not an input of that node"
        inputs = target.get("inputs") or []
        entry = inputs[link.target_slot] if link.target_slot < len(inputs) else None
        outputs = primitive.get("outputs") or []
        declared_types = [link.type, entry.get("type") if isinstance(entry, dict) else None,
                          outputs[0].get("type") if outputs and isinstance(outputs[0], dict) else None]
        # Early front ends wrote a drop-down's choices as its type.
        if any(isinstance(kind, list) for kind in declared_types):
            return COMBO, ""
        in_file = {kind for kind in declared_types if isinstance(kind, str) and kind not in ("", ANY)}
        if COMBO in in_file or (target["type"], input_name) in FILE_CHOICE_INPUTS:
            return COMBO, ""
        spec = self.spec_of(target["type"])
        input_spec = spec.input(input_name) if spec is not None else None
        if input_spec is not None:
            if input_spec.choices is not None:
                return COMBO, ""
            if input_spec.type not in TYPED_PRIMITIVES:
                return None, f"takes {input_spec.type}, which no typed primitive gives"
            if in_file - {input_spec.type}:
                return None, (f"is {', '.join(sorted(in_file))} in the file but {input_spec.type} in Seed Studio's "
                              "declaration")
            return input_spec.type, ""
        if len(in_file) == 1 and in_file <= set(TYPED_PRIMITIVES):
            return next(iter(in_file)), ""
        return None, "is of a type the file does not tell" if not in_file else \
            f"is of type {', '.join(sorted(in_file))}, which no typed primitive gives"

    def typed_primitive(self, node_id: str, primitive: RawNode, type_name: str, values: list[Any]) -> RawNode:
        """The UI-format node of ``type_name`` that stands for ``primitive``: its title, place,
        size and colours, its value, and its control word where the typed node has one."""
        control = _control_word(values[1]) if len(values) > 1 else None
        widgets = [values[0]]
        if CONTROL in (widget_layout(type_name, self.spec_of) or ()):
            widgets += [control] if control is not None else []
        elif control not in (None, "fixed"):
            self.report.warnings.append(f"primitive node {node_id}: a {type_name} has no control after generate; "
                                        f"its {control!r} was left out")
        kept = {key: value for key, value in primitive.items() if key not in _PRIMITIVE_WIDGET_ONLY_FIELDS}
        return {**kept, "type": type_name, "widgets_values": widgets}

    def copy_into_fields(self, nodes: dict[str, RawNode], feeds: list[_Link], values: list[Any]) -> None:
        control = _control_word(values[1]) if len(values) > 1 else None
        for link in feeds:
            input_name = self.input_name(nodes[link.target], link.target_slot)
            if input_name is not None:
                self.copied_primitives.setdefault(link.target, {})[input_name] = (values[0], control)

    # -- nodes ---------------------------------------------------------------------------
    def input_name(self, node: RawNode, slot: int) -> str | None:
        inputs = node.get("inputs") or []
        if slot < len(inputs) and isinstance(inputs[slot], dict):
            entry = inputs[slot]
            widget = entry.get("widget")
            widget_name = widget.get("name") if isinstance(widget, dict) else None
            if isinstance(widget_name, str):
                return widget_name
            name = entry.get("name")
            if isinstance(name, str):
                return name
        return None

    def output_name(self, node: RawNode, slot: int) -> str:
        known = output_list(node["type"], self.spec_of)
        if known is not None and slot < len(known):
            return known[slot][0]
        outputs = node.get("outputs") or []
        name = outputs[slot].get("name") if slot < len(outputs) and isinstance(outputs[slot], dict) else None
        if isinstance(name, str) and name:
            return name
        return unnamed_output(slot)

    def map_widgets(self, node_id: str, node: RawNode, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Field values by name, and what the file holds beyond them (control values, …)."""
        raw = node.get("widgets_values")
        layout = widget_layout(node["type"], self.spec_of)
        values: dict[str, Any] = {}
        extras: dict[str, Any] = {}
        if raw is None:
            pass
        elif isinstance(raw, dict):
            # Newer nodes store their fields by name; for a type we do not know, the names
            # are all we have, so they are taken as they are.
            names = {name for name in layout or () if name not in (CONTROL, UPLOAD)}
            for key, value in raw.items():
                if layout is None or key in names:
                    values[key] = value
                else:
                    extras.setdefault("widgets_other", {})[key] = value
        elif not isinstance(raw, list):
            raise _fail(f"{path}.widgets_values", "expected a list or an object", self.source)
        elif layout is None:
            extras["widgets_values"] = raw
        else:
            index = 0
            for name in layout:
                if index >= len(raw):
                    break
                if name == CONTROL:
                    control = _control_word(raw[index])
                    if control is not None:
                        extras[CONTROL] = control
                        index += 1
                    continue
                if name == UPLOAD:
                    if isinstance(raw[index], str) and raw[index] in ("image", "mask", "upload"):
                        extras[UPLOAD] = raw[index]
                        index += 1
                    continue
                values[name] = raw[index]
                index += 1
            if index < len(raw):
                extras["widgets_overflow"] = raw[index:]
        copied = self.copied_primitives.get(node_id, {})
        values.update((name, value) for name, (value, _) in copied.items())
        # A primitive copied into the seed field that the node's control slot follows drove
        # that seed, so its control (randomize, …) is the seed's; other fields have none.
        seeded = [name for name, after in zip(layout or (), (layout or ())[1:], strict=False) if after == CONTROL]
        for name, (_, control) in copied.items():
            if name in seeded and control is not None:
                extras[CONTROL] = control
        return values, extras

    def build(self, nodes: dict[str, RawNode], links: list[_Link], groups: Any, top: dict[str, Any]) -> Workflow:
        workflow = Workflow()
        for reroute_id, (position, parent) in self.reroute_points.items():
            workflow.reroutes[reroute_id] = Reroute(reroute_id, position, parent)
        for reroute in workflow.reroutes.values():  # a parent outside this graph level: none
            if reroute.parent is not None and reroute.parent not in workflow.reroutes:
                reroute.parent = None
        for node_id, raw in nodes.items():
            path = f"$.nodes[id={node_id}]"
            values, extras = self.map_widgets(node_id, raw, path)
            node = Node(node_id, raw["type"], values)
            if isinstance(raw.get("title"), str):
                node.title = raw["title"]
            node.position = _pair(raw.get("pos"), (0.0, 0.0))  # type: ignore[assignment]
            node.size = _pair(raw.get("size"), None)
            mode = raw.get("mode", 0)
            node.mode = _MODES.get(mode, NodeMode.NORMAL) if isinstance(mode, int) else NodeMode.NORMAL
            if isinstance(raw.get("color"), str):
                node.color = raw["color"]
            flags = raw.get("flags")
            node.collapsed = bool(isinstance(flags, dict) and flags.get("collapsed") is True)
            kept = {key: value for key, value in raw.items() if key not in _MAPPED_NODE_FIELDS}
            if extras:
                kept["widget_extras"] = extras
            node.extra["comfy"] = kept
            if node_id in self.member_records:
                record = dict(self.member_records[node_id])
                promoted = self.exposed_values.get(node_id, {})
                if promoted:
                    # What the definition holds for each field the instance shows a value for.
                    record["exposed"] = {name: node.values.get(name) for name in promoted}
                    node.values.update(promoted)
                node.extra["comfy_subgraph"] = record
            workflow.nodes[node_id] = node

        seen_targets: dict[tuple[str, str], _Link] = {}
        for link in links:
            if link.origin not in nodes or link.target not in nodes:
                missing = link.origin if link.origin not in nodes else link.target
                self.report.warnings.append(f"a wire ({link.origin} → {link.target}) refers to node {missing}, "
                                            "which is not in the file; it was left out")
                continue
            input_name = self.input_name(nodes[link.target], link.target_slot)
            if input_name is None:
                self.report.warnings.append(f"node {link.target} has no input slot {link.target_slot}; "
                                            "a wire into it was left out")
                continue
            if (link.target, input_name) in seen_targets:
                self.report.warnings.append(f"node {link.target} input {input_name!r} has two wires; kept the last")
            seen_targets[(link.target, input_name)] = link
            extra = (("comfy_link_id", link.link_id),) if isinstance(link.link_id, int) else ()
            workflow.nodes[link.target].links[input_name] = LinkSource(
                link.origin, self.output_name(nodes[link.origin], link.origin_slot),
                reroute=link.via if link.via in self.reroute_points else None, extra=extra)

        if isinstance(groups, list):
            for index, raw in enumerate(groups):
                if not isinstance(raw, dict):
                    continue
                bounding = raw.get("bounding")
                bounds = (0.0, 0.0, 400.0, 300.0)
                if isinstance(bounding, list) and len(bounding) == 4 and all(
                        is_finite_number(v, MAX_COORDINATE) for v in bounding):
                    bounds = tuple(float(v) for v in bounding)  # type: ignore[assignment]
                group_id = f"g{raw['id']}" if isinstance(raw.get("id"), int) else f"g{index + 1}"
                title, color = raw.get("title"), raw.get("color")
                group = Group(group_id, title if isinstance(title, str) else "Group", bounds,
                              color if isinstance(color, str) else None)
                group.extra["comfy"] = {k: v for k, v in raw.items() if k not in ("title", "bounding", "color")}
                workflow.groups[group_id] = group
        # The file's subgraph definitions stay in "definitions", and each expanded instance
        # node with the nodes it became, so that an export can write the subgraphs back.
        workflow.extra["comfy"] = {key: value for key, value in top.items() if key not in ("nodes", "links", "groups")}
        instances: dict[str, Any] = {}
        for instance_id, instance in self.subgraph_instances.items():
            members = [node.id for node in workflow.nodes.values()
                       if node.extra.get("comfy_subgraph", {}).get("instance") == instance_id]
            instances[instance_id] = {"node": instance, "members": members}
        if instances:
            workflow.extra["comfy_subgraphs"] = {"instances": instances}
        return workflow


def check_expanded_size(nodes: dict[str, RawNode], links: list[Any], definitions: dict[str, SubgraphDefinition],
                        source: str) -> None:
    """Refuse a document whose subgraphs would expand beyond the limits, from the definitions
    alone (each definition's expanded size is counted once), naming the subgraph that grows
    it most; a subgraph that contains itself is left for the expansion to report."""
    sizes: dict[str, tuple[int, int]] = {}

    def size(subgraph_id: str, active: tuple[str, ...]) -> tuple[int, int]:
        if subgraph_id in sizes:
            return sizes[subgraph_id]
        definition = definitions[subgraph_id].raw
        stored_nodes, stored_links = definition.get("nodes"), definition.get("links")
        inner = stored_nodes if isinstance(stored_nodes, list) else []
        inner_links = stored_links if isinstance(stored_links, list) else []
        total_nodes, total_links = 0, len(inner_links)
        for node in inner:
            kind = node.get("type") if isinstance(node, dict) else None
            if isinstance(kind, str) and kind in definitions:
                if kind in active or len(active) >= MAX_SUBGRAPH_DEPTH:
                    continue
                node_count, link_count = size(kind, (*active, kind))
                total_nodes, total_links = total_nodes + node_count, total_links + link_count
            else:
                total_nodes += 1
            if total_nodes > MAX_EXPANDED_NODES or total_links > MAX_EXPANDED_LINKS:
                break  # already too big; no need to count further
        sizes[subgraph_id] = (total_nodes, total_links)
        return sizes[subgraph_id]

    total_nodes, total_links = 0, len(links)
    growth: dict[str, int] = {}
    for node in nodes.values():
        kind = node["type"]
        if kind in definitions:
            node_count, link_count = size(kind, (kind,))
            total_nodes, total_links = total_nodes + node_count, total_links + link_count
            growth[kind] = growth.get(kind, 0) + node_count
        else:
            total_nodes += 1
        if total_nodes > MAX_EXPANDED_NODES or total_links > MAX_EXPANDED_LINKS:
            largest = max(growth, key=lambda kind: growth[kind])
            raise _fail(definitions[largest].path,
                        f"its subgraphs would expand to more than {MAX_EXPANDED_NODES:,} nodes or "
                        f"{MAX_EXPANDED_LINKS:,} links (subgraph {largest!r} alone gives {growth[largest]:,} "
                        f"nodes); no real workflow is that large", source)


def import_ui(data: Any, spec_of: SpecLookup, source: str = "") -> tuple[Workflow, ImportReport]:
    """A ComfyUI UI-format document (parsed JSON) as a native workflow."""
    if not isinstance(data, dict):
        raise _fail("$", "expected a ComfyUI workflow object", source)
    reader = _UiReader(spec_of, source)
    nodes = reader.read_nodes(data.get("nodes"), "$.nodes")
    links = reader.read_links(data.get("links"), "$.links")
    definitions: dict[str, SubgraphDefinition] = {}
    raw_definitions = data.get("definitions")
    if isinstance(raw_definitions, dict) and raw_definitions.get("subgraphs") is not None:
        subgraphs = raw_definitions["subgraphs"]
        if not isinstance(subgraphs, list):
            raise _fail("$.definitions.subgraphs", "expected a list", source)
        for index, definition in enumerate(subgraphs):
            if not isinstance(definition, dict) or not isinstance(definition.get("id"), str):
                raise _fail(f"$.definitions.subgraphs[{index}]", "expected a subgraph with an id", source)
            definitions[definition["id"]] = SubgraphDefinition(definition, index)
    check_expanded_size(nodes, links, definitions, source)
    nodes, links = reader.expand_subgraphs(nodes, links, definitions, reader.member_records)
    links = reader.resolve_reroutes(nodes, links)
    links = reader.resolve_primitives(nodes, links)
    workflow = reader.build(nodes, links, data.get("groups"), data)
    reader.report.unknown_types = sorted({node.type for node in workflow.nodes.values() if spec_of(node.type) is None})
    return workflow, reader.report


def _layered_positions(workflow: Workflow) -> None:
    """Columns by distance from the sources, so an API-format graph reads left to right.
    Iterative (Kahn's order), so long chains need no deep recursion; nodes in a loop stay
    in the first column."""
    consumers: dict[str, list[str]] = defaultdict(list)
    waiting: dict[str, int] = {}
    for node in workflow.nodes.values():
        parents = {link.node for link in node.links.values() if link.node in workflow.nodes}
        waiting[node.id] = len(parents)
        for parent in parents:
            consumers[parent].append(node.id)
    column = {node_id: 0 for node_id in workflow.nodes}
    ready = [node_id for node_id, count in waiting.items() if count == 0]
    while ready:
        node_id = ready.pop()
        for consumer in consumers[node_id]:
            column[consumer] = max(column[consumer], column[node_id] + 1)
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                ready.append(consumer)
    rows: dict[int, int] = defaultdict(int)
    for node_id, node in workflow.nodes.items():
        node.position = (column[node_id] * 360.0, rows[column[node_id]] * 220.0)
        rows[column[node_id]] += 1


def _is_link(value: Any) -> bool:
    """Whether an API-format input value is a wire, ``[source_id, output_slot]``."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def check_against_prompt(workflow: Workflow, prompt: Any, spec_of: SpecLookup, report: ImportReport) -> None:
    """Compare a workflow read from a PNG's ``workflow`` chunk with the PNG's ``prompt``
    chunk, node by node (ids present in both): field values that differ are reported and
    the prompt's are taken, since the prompt is what ComfyUI actually ran."""
    if not looks_like_api(prompt):
        report.warnings.append("the PNG's prompt chunk is not a ComfyUI API prompt; the workflow chunk "
                               "was not checked against it")
        return
    for node_id, entry in prompt.items():
        node = workflow.nodes.get(str(node_id))
        inputs = entry.get("inputs")
        if node is None or not isinstance(inputs, dict):
            continue
        if node.type != entry["class_type"]:
            report.warnings.append(f"node {node_id} is a {node.type} in the workflow chunk but a "
                                   f"{_shown(entry['class_type'])} in the prompt chunk; its values were not compared")
            continue
        spec = spec_of(node.type)
        for name, ran in inputs.items():
            if name in node.links and not _is_link(ran):
                _check_primitive_feed(workflow, prompt, node, name, ran, report)
            if _is_link(ran) or name in node.links:
                continue  # wires are the workflow's; a value fed through a bypassed node is not the node's own
            if name in node.values:
                kept = node.values[name]
                if kept == ran and isinstance(kept, bool) == isinstance(ran, bool):
                    continue
                shown_kept = _shown(kept)
            elif spec is not None and spec.input(name) is not None:
                shown_kept = "no value"
            else:
                continue  # a front-end extra (the upload button, …) or a field of an unknown type
            node.values[name] = ran
            report.warnings.append(f"node {node_id} ({node.type}) input {name!r}: the workflow chunk has "
                                   f"{shown_kept}, the prompt chunk (what ComfyUI ran) has {_shown(ran)}; "
                                   "used the prompt's value")


def import_api(data: Any, spec_of: SpecLookup, source: str = "") -> tuple[Workflow, ImportReport]:
    """A ComfyUI API-format prompt (parsed JSON) as a native workflow."""
    if not isinstance(data, dict) or not data:
        raise _fail("$", "expected a ComfyUI API prompt object", source)
    report = ImportReport("comfy-api")
    workflow = Workflow()
    for node_id, raw in data.items():
        path = f"$[{node_id!r}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("class_type"), str) or not raw["class_type"]:
            raise _fail(path, "expected an object with a class_type", source)
        if raw.get("inputs") is not None and not isinstance(raw["inputs"], dict):
            raise _fail(f"{path}.inputs", "expected an object", source)
        node = Node(str(node_id), raw["class_type"])
        meta = raw.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get("title"), str) and meta["title"] != node.type:
            node.title = meta["title"]
        workflow.nodes[node.id] = node
    for node_id, raw in data.items():
        node = workflow.nodes[str(node_id)]
        for name, value in (raw.get("inputs") or {}).items():
            if _is_link(value):
                source_id = str(value[0])
                if source_id not in workflow.nodes:
                    report.warnings.append(f"node {node_id} input {name!r} is wired from node {source_id}, "
                                           "which is not in the file; it was left out")
                    continue
                slot = value[1]
                outputs = output_list(workflow.nodes[source_id].type, spec_of)
                output = outputs[slot][0] if outputs is not None and 0 <= slot < len(outputs) else unnamed_output(slot)
                node.links[name] = LinkSource(source_id, output)
            else:
                node.values[name] = value
    _layered_positions(workflow)
    report.unknown_types = sorted({node.type for node in workflow.nodes.values() if spec_of(node.type) is None})
    return workflow, report


def looks_like_api(data: Any) -> bool:
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(value, dict) and "class_type" in value for value in data.values()))


def looks_like_ui(data: Any) -> bool:
    return isinstance(data, dict) and "nodes" in data and "format" not in data and not looks_like_api(data)


def _check_primitive_feed(workflow: Workflow, prompt: RawNode, node: Node, name: str, ran: Any,
                          report: ImportReport) -> None:
    """Where a field is wired from a typed primitive that the prompt lacks (a front-end
    PrimitiveNode, whose value ComfyUI ran as the field's), the prompt's value is the
    primitive's."""
    primitive = workflow.nodes.get(node.links[name].node)
    if primitive is None or primitive.type not in TYPED_PRIMITIVE_TYPES or primitive.id in prompt \
            or "value" not in primitive.values:
        return
    kept = primitive.values["value"]
    if kept == ran and isinstance(kept, bool) == isinstance(ran, bool):
        return
    primitive.values["value"] = ran
    report.warnings.append(f"node {primitive.id} ({primitive.type}) value, which feeds node {node.id} input "
                           f"{name!r}: the workflow chunk has {_shown(kept)}, the prompt chunk (what ComfyUI ran) "
                           f"has {_shown(ran)}; used the prompt's value")
