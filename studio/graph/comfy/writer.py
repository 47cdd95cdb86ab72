"""One graph level in ComfyUI's UI format: the nodes and links of the top graph, or of a
subgraph definition (which has the same shape, with link objects instead of rows and the
subgraph's own input and output sides as link ends -10 and -20).

What the importer kept of a ComfyUI node (``extra["comfy"]``: properties, colours, slot
labels, control-after-generate values) is written back with its current values, wires and
place.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from studio.graph.comfy.definitions import CONTROL, UPLOAD
from studio.graph.comfy.layout import input_list, output_list, slot_of_unnamed, widget_layout
from studio.graph.connect import SpecLookup
from studio.graph.model import Node, NodeMode
from studio.graph.seeds import seed_control

MODE_NUMBERS = {NodeMode.NORMAL: 0, NodeMode.MUTE: 2, NodeMode.BYPASS: 4}
# Key order of litegraph's node serialisation (LGraphNode.serialize); kept fields the file
# had beyond these follow by name.
NODE_KEYS = ("id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "title", "properties",
             "widgets_values", "color", "bgcolor")
_DEFAULT_SIZE = (320.0, 120.0)
_LINK_KEYS = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")


def ordered(data: dict[str, Any], first: tuple[str, ...]) -> dict[str, Any]:
    """``data`` with ``first`` in that order, then the rest by name, so the same graph gives
    the same bytes whatever order the file it was read from had (``studio convert`` of its
    own output changes nothing)."""
    return {**{key: data[key] for key in first if key in data},
            **{key: data[key] for key in sorted(data) if key not in first}}


def comfy_fields(node: Node) -> dict[str, Any]:
    """The ComfyUI fields the importer kept for ``node`` (none for a node made here)."""
    kept = node.extra.get("comfy")
    return kept if isinstance(kept, dict) else {}


def outputs_of(node: Node, spec_of: SpecLookup) -> list[tuple[str, str]]:
    known = output_list(node.type, spec_of)
    if known is not None:
        return known
    stored = comfy_fields(node).get("outputs")
    if isinstance(stored, list):
        return [(str(o.get("name", f"#{i}")), str(o.get("type", "*"))) if isinstance(o, dict) else (f"#{i}", "*")
                for i, o in enumerate(stored)]
    return []


def output_slot(node: Node, output: str, spec_of: SpecLookup) -> int:
    """Which slot an output name is on (placeholders keep ComfyUI's names or ``#n``)."""
    names = [name for name, _ in outputs_of(node, spec_of)]
    if output in names:
        return names.index(output)
    unnamed = slot_of_unnamed(output)
    return unnamed if unnamed is not None else 0


def entry_name(entry: dict[str, Any]) -> Any:
    """The input an entry of a node's ``inputs`` stands for: its widget's name, or its own."""
    widget = entry.get("widget")
    return widget.get("name") if isinstance(widget, dict) else entry.get("name")


def widgets_values(node: Node, values: dict[str, Any], spec_of: SpecLookup) -> Any:
    extras = comfy_fields(node).get("widget_extras") or {}
    layout = widget_layout(node.type, spec_of)
    if layout is None:
        if "widgets_values" in extras:
            return extras["widgets_values"]
        return dict(values) if values else []
    spec = spec_of(node.type)
    written: list[Any] = []
    for name in layout:
        if name == CONTROL:
            written.append(seed_control(node))
        elif name == UPLOAD:
            written.append(extras.get(UPLOAD, "image"))
        else:
            default = None
            if spec is not None and spec.input(name) is not None:
                default = spec.input(name).default  # type: ignore[union-attr]
            written.append(values.get(name, default))
    return written + list(extras.get("widgets_overflow", []))


@dataclass
class LevelItem:
    """A node of one graph level: a Seed Studio node, or an instance node of a subgraph as
    the file had it (``raw``), written under ``file_id``."""

    file_id: Any
    node: Node | None = None
    raw: dict[str, Any] | None = None
    # Field values to write instead of the node's (a definition's own, where the instance
    # shows another).
    values: dict[str, Any] | None = None


@dataclass(frozen=True)
class Wire:
    """A link between two items of a level. Slots are numbers, or on a Seed Studio node an
    output or input name; ``link_id`` is the id the link had in the file, if any."""

    origin: Hashable
    origin_slot: int | str
    target: Hashable
    target_slot: int | str
    link_id: Any = None


def _link_fields(item: Any) -> tuple[Any, ...] | None:
    """(id, origin, origin slot, target, target slot, type) of a stored link, either form."""
    if isinstance(item, dict):
        return tuple(item.get(key) for key in _LINK_KEYS)
    if isinstance(item, list) and len(item) >= 5:
        return tuple(item[:6]) + (None,) * (6 - len(item[:6]))
    return None


def write_level(items: dict[Hashable, LevelItem], wires: list[Wire], spec_of: SpecLookup, *,
                fixed: tuple[Any, ...] = (), stored: tuple[Any, ...] = (),
                link_objects: bool = False, by_id: bool = True) -> tuple[list[dict[str, Any]], list[Any], set[int]]:
    """The nodes and links of one level, and the link ids used.

    ``fixed`` are links written as they are (a subgraph's links from its input side or to
    its output side); their ends on items are filled in. ``stored`` are the level's links as
    the file had them: a new link with the id and ends of a stored one is written as that
    one was. ``by_id`` orders the nodes by id (the top graph), otherwise as given.
    """
    outputs_by_item: dict[Hashable, list[dict[str, Any]]] = {}
    for key, item in items.items():
        if item.node is not None:
            stored_outputs = comfy_fields(item.node).get("outputs")
            stored_outputs = stored_outputs if isinstance(stored_outputs, list) else []
            outputs = []
            for slot, (name, kind) in enumerate(outputs_of(item.node, spec_of)):
                base = dict(stored_outputs[slot]) if slot < len(stored_outputs) and isinstance(
                    stored_outputs[slot], dict) else {"name": name, "type": kind}
                base.update(links=[], slot_index=slot)
                outputs.append(base)
        else:
            raw_outputs = (item.raw or {}).get("outputs")
            outputs = [{**(entry if isinstance(entry, dict) else {}), "links": []}
                       for entry in (raw_outputs if isinstance(raw_outputs, list) else [])]
        outputs_by_item[key] = outputs

    def origin_slot_of(wire: Wire) -> int:
        if isinstance(wire.origin_slot, int):
            return wire.origin_slot
        return output_slot(items[wire.origin].node, wire.origin_slot, spec_of)  # type: ignore[arg-type]

    def kind_of(key: Hashable, slot: int) -> Any:
        outputs = outputs_by_item.get(key, [])
        return outputs[slot].get("type", "*") if 0 <= slot < len(outputs) else "*"

    inputs_by_item: dict[Hashable, list[dict[str, Any]]] = {}
    names_by_item: dict[Hashable, list[Any]] = {}
    for key, item in items.items():
        if item.node is None:
            raw_inputs = (item.raw or {}).get("inputs")
            entries = [dict(entry) if isinstance(entry, dict) else {}
                       for entry in (raw_inputs if isinstance(raw_inputs, list) else [])]
            for entry in entries:
                entry["link"] = None
            inputs_by_item[key], names_by_item[key] = entries, [None] * len(entries)
            continue
        node = item.node
        stored_inputs = comfy_fields(node).get("inputs")
        if isinstance(stored_inputs, list):
            entries = [dict(entry) for entry in stored_inputs if isinstance(entry, dict)]
        else:
            entries = [{"name": name, "type": kind} for name, kind, has_widget in input_list(node.type, spec_of) or []
                       if not has_widget]
        names = [entry_name(entry) for entry in entries]
        for wire in wires:
            if wire.target == key and isinstance(wire.target_slot, str) and wire.target_slot not in names:
                # A field wired in Seed Studio: ComfyUI shows it as an input with a widget.
                kind = kind_of(wire.origin, origin_slot_of(wire))
                entries.append({"name": wire.target_slot, "type": kind, "widget": {"name": wire.target_slot}})
                names.append(wire.target_slot)
        for entry in entries:
            entry["link"] = None
        inputs_by_item[key], names_by_item[key] = entries, names

    resolved: list[tuple[Any, Hashable, int, Hashable, int]] = []
    taken: set[tuple[Hashable, int]] = set()
    for wire in wires:
        target_slot = wire.target_slot if isinstance(wire.target_slot, int) \
            else names_by_item[wire.target].index(wire.target_slot)
        if (wire.target, target_slot) in taken:
            continue  # one link per input; several wires may stand for the same link
        taken.add((wire.target, target_slot))
        resolved.append((wire.link_id, wire.origin, origin_slot_of(wire), wire.target, target_slot))

    # In id order, as they are written, so that a file written here reads back the same.
    fixed_rows = sorted(((item, fields) for item in fixed if (fields := _link_fields(item)) is not None),
                        key=lambda row: row[1][0] if isinstance(row[1][0], int) else 0)
    used = {fields[0] for _, fields in fixed_rows if fields is not None and isinstance(fields[0], int)}
    next_link = max([row[0] for row in resolved if isinstance(row[0], int)] + list(used), default=0) + 1
    stored_by_id = {fields[0]: item for item in stored
                    if (fields := _link_fields(item)) is not None and isinstance(fields[0], int)}
    file_ids = {key: item.file_id for key, item in items.items()}
    by_file_id = {str(item.file_id): key for key, item in items.items()}
    rows: list[tuple[int, Any]] = []
    for preferred, origin, origin_slot, target, target_slot in resolved:
        if isinstance(preferred, int) and preferred > 0 and preferred not in used:
            link_id = preferred
        else:
            while next_link in used:
                next_link += 1
            link_id = next_link
        used.add(link_id)
        kind = kind_of(origin, origin_slot)
        outputs = outputs_by_item[origin]
        if origin_slot < len(outputs):
            outputs[origin_slot]["links"].append(link_id)
        entries = inputs_by_item[target]
        if target_slot < len(entries):
            entries[target_slot]["link"] = link_id
        ends = (link_id, file_ids[origin], origin_slot, file_ids[target], target_slot, kind)
        if not link_objects:
            rows.append((link_id, list(ends)))
            continue
        previous = stored_by_id.get(link_id)
        # A stored link object that still joins the same ends keeps its other keys; anything else (a
        # link stored as a list included: it has no keys to keep) is written as a new object.
        if isinstance(previous, dict) and [str(previous.get(key)) for key in _LINK_KEYS[:5]] == [
                str(value) for value in ends[:5]]:
            rows.append((link_id, {**previous, "type": kind}))
        else:
            rows.append((link_id, dict(zip(_LINK_KEYS, ends, strict=True))))
    for item, fields in fixed_rows:
        link_id, origin, origin_slot, target, target_slot, _kind = fields
        if str(origin) in by_file_id and isinstance(origin_slot, int):
            outputs = outputs_by_item[by_file_id[str(origin)]]
            if 0 <= origin_slot < len(outputs):
                outputs[origin_slot]["links"].append(link_id)
        if str(target) in by_file_id and isinstance(target_slot, int):
            entries = inputs_by_item[by_file_id[str(target)]]
            if 0 <= target_slot < len(entries):
                entries[target_slot]["link"] = link_id
        rows.append((link_id if isinstance(link_id, int) else 0, item))
    rows.sort(key=lambda row: row[0])
    for outputs in outputs_by_item.values():
        for output in outputs:
            output["links"].sort(key=lambda value: value if isinstance(value, int) else 0)

    keys = list(items)
    if by_id:
        keys.sort(key=lambda key: (0, items[key].file_id, "") if isinstance(items[key].file_id, int)
                  else (1, 0, str(items[key].file_id)))
    nodes = []
    for order, key in enumerate(keys):
        item = items[key]
        if item.node is None:
            data = dict(item.raw or {})
            data.update(id=item.file_id, order=order, inputs=inputs_by_item[key], outputs=outputs_by_item[key])
            nodes.append(ordered(data, NODE_KEYS))
        else:
            nodes.append(_node_data(item, order, inputs_by_item[key], outputs_by_item[key], spec_of))
    return nodes, [row for _, row in rows], used


def _node_data(item: LevelItem, order: int, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
               spec_of: SpecLookup) -> dict[str, Any]:
    node = item.node
    assert node is not None
    stored = {key: value for key, value in comfy_fields(node).items() if key != "widget_extras"}
    data: dict[str, Any] = dict(stored)
    flags = dict(stored.get("flags") or {}) if isinstance(stored.get("flags"), dict) else {}
    if node.collapsed:
        flags["collapsed"] = True
    else:
        flags.pop("collapsed", None)
    data.update(
        id=item.file_id, type=node.type, pos=[node.position[0], node.position[1]],
        size=list(node.size or _DEFAULT_SIZE),
        flags=flags, order=order, mode=MODE_NUMBERS[node.mode], inputs=inputs, outputs=outputs,
    )
    values = node.values if item.values is None else item.values
    written = widgets_values(node, values, spec_of)
    if written or widget_layout(node.type, spec_of) is None:
        data["widgets_values"] = written
    data.setdefault("properties", {"Node name for S&R": node.type})
    if node.title:
        data["title"] = node.title
    if node.color:
        data["color"] = node.color
    return ordered(data, NODE_KEYS)
