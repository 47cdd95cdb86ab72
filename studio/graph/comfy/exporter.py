"""Writing workflows for ComfyUI: the UI format (to open and edit there) and the API format
(to queue there, and the ``prompt`` text chunk of rendered PNGs).

What the importer kept of a ComfyUI file (``extra["comfy"]``: properties, colours, slot
labels, link ids, control-after-generate values) is written back, so a file that goes
ComfyUI → Seed Studio → ComfyUI keeps every node, wire, value and position.
"""

from __future__ import annotations

from typing import Any

from studio.graph.bypass import bypass_source
from studio.graph.comfy.definitions import CONTROL, UPLOAD
from studio.graph.comfy.layout import input_list, output_list, slot_of_unnamed, widget_layout
from studio.graph.connect import SpecLookup
from studio.graph.model import Node, NodeMode, Workflow

_MODE_NUMBERS = {NodeMode.NORMAL: 0, NodeMode.MUTE: 2, NodeMode.BYPASS: 4}
# Key orders of litegraph's serialisation (LGraph.serialize, LGraphNode.serialize); kept
# fields the file had beyond these follow by name.
_TOP_KEYS = ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version")
_NODE_KEYS = ("id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "title", "properties",
              "widgets_values", "color", "bgcolor")
_DEFAULT_SIZE = (320.0, 120.0)
# Canvas-only notes: nothing for ComfyUI's server to run.
UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote"})


def _ordered(data: dict[str, Any], first: tuple[str, ...]) -> dict[str, Any]:
    """``data`` with ``first`` in that order, then the rest by name, so the same graph gives
    the same bytes whatever order the file it was read from had (``studio convert`` of its
    own output changes nothing)."""
    return {**{key: data[key] for key in first if key in data},
            **{key: data[key] for key in sorted(data) if key not in first}}


def _comfy(node: Node) -> dict[str, Any]:
    kept = node.extra.get("comfy")
    return kept if isinstance(kept, dict) else {}


def _outputs_of(node: Node, spec_of: SpecLookup) -> list[tuple[str, str]]:
    known = output_list(node.type, spec_of)
    if known is not None:
        return known
    stored = _comfy(node).get("outputs")
    if isinstance(stored, list):
        return [(str(o.get("name", f"#{i}")), str(o.get("type", "*"))) if isinstance(o, dict) else (f"#{i}", "*")
                for i, o in enumerate(stored)]
    return []


def output_slot(node: Node, output: str, spec_of: SpecLookup) -> int:
    """Which slot an output name is on (placeholders keep ComfyUI's names or ``#n``)."""
    names = [name for name, _ in _outputs_of(node, spec_of)]
    if output in names:
        return names.index(output)
    unnamed = slot_of_unnamed(output)
    return unnamed if unnamed is not None else 0


def _widgets_values(node: Node, spec_of: SpecLookup) -> Any:
    extras = _comfy(node).get("widget_extras") or {}
    layout = widget_layout(node.type, spec_of)
    if layout is None:
        if "widgets_values" in extras:
            return extras["widgets_values"]
        return dict(node.values) if node.values else []
    spec = spec_of(node.type)
    values: list[Any] = []
    for name in layout:
        if name == CONTROL:
            values.append(extras.get(CONTROL, "fixed"))
        elif name == UPLOAD:
            values.append(extras.get(UPLOAD, "image"))
        else:
            default = None
            if spec is not None and spec.input(name) is not None:
                default = spec.input(name).default  # type: ignore[union-attr]
            values.append(node.values.get(name, default))
    return values + list(extras.get("widgets_overflow", []))


def _numeric_ids(workflow: Workflow) -> dict[str, int]:
    """ComfyUI's ids are whole numbers; ids that are not (expanded subgraphs) get new ones."""
    ids: dict[str, int] = {}
    used = {int(node_id) for node_id in workflow.nodes if node_id.isdigit()}
    next_free = max(used, default=0) + 1
    for node_id in workflow.nodes:
        if node_id.isdigit():
            ids[node_id] = int(node_id)
        else:
            ids[node_id] = next_free
            next_free += 1
    return ids


def to_comfy_ui(workflow: Workflow, spec_of: SpecLookup) -> dict[str, Any]:
    """The workflow in ComfyUI's UI format."""
    ids = _numeric_ids(workflow)
    link_rows: list[list[Any]] = []
    used_link_ids: set[int] = set()
    wanted: list[tuple[Any, str, str, Any]] = []
    for node in workflow.nodes.values():
        for input_name, source in node.links.items():
            if source.node in workflow.nodes:
                wanted.append((dict(source.extra).get("comfy_link_id"), node.id, input_name, source))
    next_link = max((w[0] for w in wanted if isinstance(w[0], int)), default=0) + 1
    link_ids: dict[tuple[str, str], int] = {}
    for preferred, target, input_name, _source in wanted:
        if isinstance(preferred, int) and preferred not in used_link_ids and preferred > 0:
            link_id = preferred
        else:
            while next_link in used_link_ids:
                next_link += 1
            link_id = next_link
        used_link_ids.add(link_id)
        link_ids[(target, input_name)] = link_id

    inputs_of: dict[str, list[dict[str, Any]]] = {}
    outputs_of: dict[str, list[dict[str, Any]]] = {}
    for node in workflow.nodes.values():
        stored = _comfy(node)
        outputs = []
        stored_outputs = stored.get("outputs") if isinstance(stored.get("outputs"), list) else []
        for slot, (name, kind) in enumerate(_outputs_of(node, spec_of)):
            base = dict(stored_outputs[slot]) if slot < len(stored_outputs) and isinstance(stored_outputs[slot], dict) \
                else {"name": name, "type": kind}
            base.update(links=[], slot_index=slot)
            outputs.append(base)
        outputs_of[node.id] = outputs
        entries: list[dict[str, Any]] = []
        stored_inputs = stored.get("inputs") if isinstance(stored.get("inputs"), list) else None
        if stored_inputs is not None:
            entries = [dict(entry) for entry in stored_inputs if isinstance(entry, dict)]
        else:
            for name, kind, has_widget in input_list(node.type, spec_of) or []:
                if not has_widget:
                    entries.append({"name": name, "type": kind})
        names = [entry.get("widget", {}).get("name") if isinstance(entry.get("widget"), dict) else entry.get("name")
                 for entry in entries]
        for input_name in node.links:
            if input_name not in names:
                source = workflow.nodes.get(node.links[input_name].node)
                kind = "*"
                if source is not None:
                    out_slot = output_slot(source, node.links[input_name].output, spec_of)
                    source_outputs = _outputs_of(source, spec_of)
                    kind = source_outputs[out_slot][1] if out_slot < len(source_outputs) else "*"
                entries.append({"name": input_name, "type": kind, "widget": {"name": input_name}})
                names.append(input_name)
        for entry, name in zip(entries, names):
            entry["link"] = link_ids.get((node.id, name)) if name in node.links else None
        inputs_of[node.id] = entries

    for node in workflow.nodes.values():
        for input_name, source in node.links.items():
            origin = workflow.nodes.get(source.node)
            if origin is None:
                continue
            slot = output_slot(origin, source.output, spec_of)
            link_id = link_ids[(node.id, input_name)]
            names = [e.get("widget", {}).get("name") if isinstance(e.get("widget"), dict) else e.get("name")
                     for e in inputs_of[node.id]]
            target_slot = names.index(input_name)
            outputs = outputs_of[origin.id]
            kind = outputs[slot]["type"] if slot < len(outputs) else "*"
            if slot < len(outputs):
                outputs[slot]["links"].append(link_id)
            link_rows.append([link_id, ids[origin.id], slot, ids[node.id], target_slot, kind])
    link_rows.sort(key=lambda row: row[0])
    for outputs in outputs_of.values():
        for output in outputs:
            output["links"].sort()

    order = {node_id: index for index, node_id in enumerate(sorted(workflow.nodes, key=lambda n: ids[n]))}
    nodes = []
    for node in sorted(workflow.nodes.values(), key=lambda n: ids[n.id]):
        stored = {key: value for key, value in _comfy(node).items() if key != "widget_extras"}
        data: dict[str, Any] = dict(stored)
        flags = dict(stored.get("flags") or {}) if isinstance(stored.get("flags"), dict) else {}
        if node.collapsed:
            flags["collapsed"] = True
        else:
            flags.pop("collapsed", None)
        data.update(
            id=ids[node.id], type=node.type, pos=[node.position[0], node.position[1]],
            size=list(node.size or _DEFAULT_SIZE),
            flags=flags, order=order[node.id], mode=_MODE_NUMBERS[node.mode],
            inputs=inputs_of[node.id], outputs=outputs_of[node.id],
        )
        widgets_values = _widgets_values(node, spec_of)
        if widgets_values or widget_layout(node.type, spec_of) is None:
            data["widgets_values"] = widgets_values
        data.setdefault("properties", {"Node name for S&R": node.type})
        if node.title:
            data["title"] = node.title
        if node.color:
            data["color"] = node.color
        nodes.append(_ordered(data, _NODE_KEYS))

    groups = []
    for group in workflow.groups.values():
        stored = group.extra.get("comfy") if isinstance(group.extra.get("comfy"), dict) else {}
        entry = {**stored, "title": group.title, "bounding": list(group.bounds)}
        if group.color:
            entry["color"] = group.color
        groups.append(entry)

    top = dict(workflow.extra.get("comfy") or {}) if isinstance(workflow.extra.get("comfy"), dict) else {}
    top.update(last_node_id=max(ids.values(), default=0), last_link_id=max(used_link_ids, default=0),
               nodes=nodes, links=link_rows, groups=groups)
    top.setdefault("config", {})
    top.setdefault("extra", {})
    top.setdefault("version", 0.4)
    return _ordered(top, _TOP_KEYS)


def to_comfy_api(workflow: Workflow, spec_of: SpecLookup) -> dict[str, Any]:
    """The workflow as a ComfyUI API prompt: muted nodes left out, bypassed ones wired past."""
    prompt: dict[str, Any] = {}

    def resolve(node_id: str, output: str) -> tuple[str, Any] | None:
        seen: set[str] = set()
        while True:
            node = workflow.nodes.get(node_id)
            if node is None or node.mode is NodeMode.MUTE or node_id in seen:
                return None
            if node.mode is not NodeMode.BYPASS:
                return ("link", [node_id, output_slot(node, output, spec_of)])
            seen.add(node_id)
            passed = bypass_source(spec_of, node, output)
            if passed is None:
                return None
            kind, payload = passed
            if kind == "value":
                return ("value", payload)
            node_id, output = payload.node, payload.output

    for node in workflow.nodes.values():
        if node.mode is not NodeMode.NORMAL or node.type in UI_ONLY_TYPES:
            continue
        spec = spec_of(node.type)
        inputs: dict[str, Any] = {}
        if spec is not None:
            for input_spec in spec.inputs:
                if input_spec.has_widget and input_spec.name not in node.links:
                    value = node.values.get(input_spec.name, input_spec.default)
                    if value is not None:
                        inputs[input_spec.name] = value
        else:
            inputs.update(node.values)
        for input_name, source in node.links.items():
            resolved = resolve(source.node, source.output)
            if resolved is None:
                inputs.pop(input_name, None)
            else:
                inputs[input_name] = resolved[1]
        prompt[node.id] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": node.title or node.type}}
    return prompt
