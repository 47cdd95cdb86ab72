"""Writing workflows for ComfyUI: the UI format (to open and edit there) and the API format
(to queue there, and the ``prompt`` text chunk of rendered PNGs).

What the importer kept of a ComfyUI file (``extra["comfy"]``: properties, colours, slot
labels, link ids, control-after-generate values, subgraph definitions) is written back, so a
file that goes ComfyUI → Seed Studio → ComfyUI keeps every node, wire, value, position and
subgraph (subgraphs.py says when one must be written as plain nodes instead).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from studio.graph.bypass import PassedValue, Reached, follow_bypass
from studio.graph.comfy.subgraphs import SubgraphExport, plan_subgraphs
from studio.graph.comfy.writer import LevelItem, ordered, output_slot, write_level
from studio.graph.connect import SpecLookup
from studio.graph.model import NodeMode, Workflow

__all__ = ["UI_ONLY_TYPES", "output_slot", "to_comfy_api", "to_comfy_ui"]

# Key order of litegraph's graph serialisation (LGraph.serialize); kept fields the file had
# beyond these follow by name.
_TOP_KEYS = ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version")
# Canvas-only notes: nothing for ComfyUI's server to run.
UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote"})


def _numeric_ids(workflow: Workflow, subgraphs: SubgraphExport) -> dict[Hashable, int]:
    """ComfyUI's ids are whole numbers. Nodes of the top graph keep theirs, and subgraph
    instances theirs unless a node took it since; ids that are not numbers (nodes of
    subgraphs written as plain nodes) get new ones."""
    ids: dict[Hashable, int] = {}
    plain = [node_id for node_id in workflow.nodes if node_id not in subgraphs.members]
    used = {int(node_id) for node_id in plain if node_id.isdigit()}
    for node_id in plain:
        if node_id.isdigit():
            ids[node_id] = int(node_id)
    waiting: list[Hashable] = [node_id for node_id in plain if not node_id.isdigit()]
    for instance_id in subgraphs.instances:
        key = ("instance", (instance_id,))
        if instance_id.isdigit() and int(instance_id) not in used:
            ids[key] = int(instance_id)
            used.add(int(instance_id))
        else:
            waiting.append(key)
    next_free = max(used, default=0) + 1
    for waiting_key in waiting:
        ids[waiting_key] = next_free
        next_free += 1
    return ids


def to_comfy_ui(workflow: Workflow, spec_of: SpecLookup, remarks: list[str] | None = None) -> dict[str, Any]:
    """The workflow in ComfyUI's UI format. Subgraphs read from a ComfyUI file are written
    back as subgraphs where they still fit; each one written as plain nodes instead adds a
    sentence to ``remarks``."""
    subgraphs = plan_subgraphs(workflow, spec_of)
    if remarks is not None:
        remarks.extend(subgraphs.remarks)
    ids = _numeric_ids(workflow, subgraphs)
    items: dict[Hashable, LevelItem] = {}
    for node in workflow.nodes.values():
        if node.id not in subgraphs.members:
            items[node.id] = LevelItem(ids[node.id], node=node)
    for instance_id, data in subgraphs.instances.items():
        key = ("instance", (instance_id,))
        items[key] = LevelItem(ids[key], raw=data)
    nodes, links, used_link_ids = write_level(items, subgraphs.wires, spec_of)

    groups = []
    for group in workflow.groups.values():
        stored_group = group.extra.get("comfy")
        stored = stored_group if isinstance(stored_group, dict) else {}
        entry = {**stored, "title": group.title, "bounding": list(group.bounds)}
        if group.color:
            entry["color"] = group.color
        groups.append(entry)

    top = dict(workflow.extra.get("comfy") or {}) if isinstance(workflow.extra.get("comfy"), dict) else {}
    if isinstance(top.get("definitions"), dict):
        definitions = dict(top["definitions"])
        definitions.pop("subgraphs", None)
        if subgraphs.definitions:
            definitions["subgraphs"] = list(subgraphs.definitions.values())
        top["definitions"] = definitions
        if not definitions:
            del top["definitions"]
    top.update(last_node_id=max(ids.values(), default=0), last_link_id=max(used_link_ids, default=0),
               nodes=nodes, links=links, groups=groups)
    top.setdefault("config", {})
    top.setdefault("extra", {})
    top.setdefault("version", 0.4)
    return ordered(top, _TOP_KEYS)


def to_comfy_api(workflow: Workflow, spec_of: SpecLookup) -> dict[str, Any]:
    """The workflow as a ComfyUI API prompt: muted nodes left out, bypassed ones wired past."""
    prompt: dict[str, Any] = {}

    def resolve(node_id: str, output: str) -> tuple[str, Any] | None:
        end = follow_bypass(workflow, spec_of, node_id, output)
        if isinstance(end, PassedValue):
            return ("value", end.value)
        if isinstance(end, Reached):
            node = workflow.nodes.get(end.node_id)
            if node is not None and node.mode is not NodeMode.MUTE:
                return ("link", [end.node_id, output_slot(node, end.output, spec_of)])
        return None  # a muted or missing node, or a bypassed one with nothing to pass on

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
