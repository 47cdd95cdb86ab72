"""Copy and paste of nodes as plain data (the app puts it on the system clipboard as JSON).

A copy holds the chosen nodes as the file format writes them, plus the wires that came into
them from nodes left behind, so "paste with incoming wires" can rewire them.
"""

from __future__ import annotations

from typing import Any

from studio.graph.model import LinkSource, Node, Workflow

CLIPBOARD_FORMAT = "seed-studio-nodes"


def copy_nodes(workflow: Workflow, node_ids: list[str]) -> dict[str, Any]:
    """The chosen nodes as plain data: their fields, positions, the wires among them, and
    the wires that came into them from elsewhere."""
    from studio.graph.format import workflow_to_data

    chosen = [node_id for node_id in node_ids if node_id in workflow.nodes]
    data = workflow_to_data(workflow)["nodes"]
    nodes = {node_id: data[node_id] for node_id in chosen}
    outside = {node_id: {name: [link.node, link.output] for name, link in workflow.nodes[node_id].links.items()
                         if link.node not in nodes} for node_id in nodes}
    return {"format": CLIPBOARD_FORMAT, "nodes": nodes, "outside": outside}


def clipboard_bounds(clipboard: dict[str, Any]) -> tuple[float, float, float, float]:
    """The copied nodes' positions as (left, top, right, bottom)."""
    positions = [entry.get("position", [0, 0]) for entry in clipboard.get("nodes", {}).values()]
    if not positions:
        return (0.0, 0.0, 0.0, 0.0)
    xs, ys = [float(p[0]) for p in positions], [float(p[1]) for p in positions]
    return (min(xs), min(ys), max(xs), max(ys))


def pasted_nodes(workflow: Workflow, clipboard: dict[str, Any], offset: tuple[float, float], keep_incoming: bool,
                 new_ids: dict[str, str] | None = None
                 ) -> tuple[list[Node], list[tuple[str, str, LinkSource]], dict[str, str]]:
    """The nodes a paste adds (new ids, shifted by ``offset``, without wires) and the wires
    to attach once they are in, in each node's input order. ``new_ids`` repeats an earlier
    paste exactly (redo)."""
    from studio.graph.format import workflow_from_data

    entries = clipboard["nodes"]
    if new_ids is None:
        first = int(workflow.new_id())
        new_ids = {old: str(first + index) for index, old in enumerate(entries)}
    outside = clipboard.get("outside", {}) if keep_incoming else {}
    remapped: dict[str, Any] = {}
    for old, data in entries.items():
        entry = {key: value for key, value in data.items() if key != "links"}
        x, y = data.get("position", [0, 0])
        entry["position"] = [x + offset[0], y + offset[1]]
        remapped[new_ids[old]] = entry
    nodes = list(workflow_from_data({"format": "seed-studio-workflow", "version": 1, "nodes": remapped}).nodes.values())
    wires: list[tuple[str, str, LinkSource]] = []
    for old, data in entries.items():
        links = data.get("links", {})
        incoming = outside.get(old, {})
        # The copied node's inputs in their order, whether the wire came from inside or out.
        for name in dict.fromkeys([*links, *incoming]):
            link = links.get(name)
            if link is not None and link.get("node") in new_ids:
                wires.append((new_ids[old], name, LinkSource(new_ids[link["node"]], str(link["output"]))))
            elif name in incoming:
                source, output = incoming[name]
                if source in workflow.nodes:
                    wires.append((new_ids[old], name, LinkSource(str(source), str(output))))
    return nodes, wires, new_ids
