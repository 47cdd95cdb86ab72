"""Where nodes sit and how much room they take, without Qt: the canvas draws nodes with these
sizes, and placing, aligning, nudging and moving between nodes are computed here (so they are
tested without a window, and a test can check that shipped workflows do not overlap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from studio.graph.model import Node, Workflow
from studio.graph.sockets import NodeSpec

NODE_WIDTH = 230.0
TITLE_HEIGHT = 26.0
ROW_HEIGHT = 20.0
# The tallest a picture shown inside a node gets (output nodes show their result).
PREVIEW_HEIGHT = 180.0
# Room kept between a placed node and its neighbours.
GAP = 20.0

Rect = tuple[float, float, float, float]  # left, top, width, height
SpecOf = Callable[[str], "NodeSpec | None"]


def node_rows(node: Node, spec: NodeSpec | None, outgoing: Iterable[str] = ()) -> tuple[int, int]:
    """(socket rows, field rows) as the canvas lays the node out: wired inputs and outputs
    side by side, then one row per unwired field. A node of an unknown type shows the
    inputs and values its file gave it and the outputs other nodes take from it."""
    if spec is None:
        inputs = list(node.links)
        fields = [name for name in node.values if name not in node.links]
        outputs = list(dict.fromkeys(outgoing))
        return max(len(inputs), len(outputs)), len(fields)
    sockets = [s for s in spec.inputs if not s.has_widget or s.name in node.links]
    unwired = [s for s in spec.inputs if s.has_widget and s.name not in node.links]
    return max(len(sockets), len(spec.outputs)), len(unwired)


def node_height(node: Node, spec: NodeSpec | None, outgoing: Iterable[str] = ()) -> float:
    if node.collapsed:
        return TITLE_HEIGHT
    sockets, fields = node_rows(node, spec, outgoing)
    return TITLE_HEIGHT + ROW_HEIGHT * max(sockets + fields, 1) + 10


def node_rect(workflow: Workflow, node_id: str, spec_of: SpecOf, with_preview: bool = False) -> Rect:
    """The room a node takes on the canvas; ``with_preview`` adds the picture an output node
    shows after a run."""
    node = workflow.nodes[node_id]
    spec = spec_of(node.type)
    outgoing = [link.output for link in workflow.links_from(node_id)] if spec is None else ()
    height = node_height(node, spec, outgoing)
    if with_preview and shows_picture(spec) and not node.collapsed:
        height += PREVIEW_HEIGHT + 6
    width = node.size[0] if node.size else NODE_WIDTH
    return (node.position[0], node.position[1], width, height)


def shows_picture(spec: NodeSpec | None) -> bool:
    """Output nodes that take pictures show the last one inside them after a run."""
    return spec is not None and spec.is_output and any(i.type == "IMAGE" for i in spec.inputs)


def overlaps(a: Rect, b: Rect, gap: float = 0.0) -> bool:
    return (a[0] < b[0] + b[2] + gap and b[0] < a[0] + a[2] + gap
            and a[1] < b[1] + b[3] + gap and b[1] < a[1] + a[3] + gap)


def overlapping_pairs(workflow: Workflow, spec_of: SpecOf, with_preview: bool = True,
                      gap: float = GAP) -> list[tuple[str, str]]:
    """Pairs of nodes whose rectangles overlap or come closer than ``gap`` (touching nodes
    read as one)."""
    rects = {node_id: node_rect(workflow, node_id, spec_of, with_preview) for node_id in workflow.nodes}
    ids = list(rects)
    return [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:] if overlaps(rects[a], rects[b], gap)]


def free_position(occupied: list[Rect], size: tuple[float, float], desired: tuple[float, float],
                  gap: float = GAP) -> tuple[float, float]:
    """The free spot nearest to ``desired`` for a box of ``size``, searched ring by ring on a
    grid of ``gap``-sized steps (so a new node lands where it was asked for, or beside what
    is already there, never on top of it)."""
    width, height = size
    step = gap * 2

    def free(x: float, y: float) -> bool:
        box = (x, y, width, height)
        return not any(overlaps(box, other, gap) for other in occupied)

    x0, y0 = desired
    if free(x0, y0):
        return (x0, y0)
    for ring in range(1, 200):
        candidates = []
        for i in range(-ring, ring + 1):
            for j in (-ring, ring):
                candidates.append((x0 + i * step, y0 + j * step))
                candidates.append((x0 + j * step, y0 + i * step))
        candidates.sort(key=lambda p: math.hypot(p[0] - x0, p[1] - y0))
        for x, y in candidates:
            if free(x, y):
                return (x, y)
    return (x0, y0)


def occupied_rects(workflow: Workflow, spec_of: SpecOf, leave_out: Iterable[str] = ()) -> list[Rect]:
    skip = set(leave_out)
    return [node_rect(workflow, node_id, spec_of, with_preview=True) for node_id in workflow.nodes
            if node_id not in skip]


# -- moving between nodes and arranging them ----------------------------------------------
def neighbour(workflow: Workflow, from_id: str, dx: int, dy: int) -> str | None:
    """The nearest node in a direction (dx, dy in -1..1) from a node: distance along the
    direction counts once, distance across it twice."""
    x0, y0 = workflow.nodes[from_id].position
    best, best_score = None, float("inf")
    for node_id, node in workflow.nodes.items():
        ddx, ddy = node.position[0] - x0, node.position[1] - y0
        along = ddx * dx + ddy * dy
        if node_id == from_id or along <= 0:
            continue
        score = along + 2 * (abs(ddx * dy) + abs(ddy * dx))
        if score < best_score:
            best, best_score = node_id, score
    return best


def nudged(workflow: Workflow, node_ids: Iterable[str], dx: float, dy: float
           ) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """The moves (before, after) that shift nodes by (dx, dy)."""
    return {n: (workflow.nodes[n].position, (workflow.nodes[n].position[0] + dx, workflow.nodes[n].position[1] + dy))
            for n in node_ids}


def arranged(workflow: Workflow, node_ids: list[str], how: str
             ) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """The moves that align the nodes' left or top edges (``align-left``, ``align-top``) or
    spread them evenly (``distribute-horizontally``, ``distribute-vertically``)."""
    if len(node_ids) < 2:
        return {}
    positions = {n: workflow.nodes[n].position for n in node_ids}
    if how == "align-left":
        left = min(x for x, _ in positions.values())
        after = {n: (left, y) for n, (x, y) in positions.items()}
    elif how == "align-top":
        top = min(y for _, y in positions.values())
        after = {n: (x, top) for n, (x, y) in positions.items()}
    elif how in ("distribute-horizontally", "distribute-vertically"):
        axis = 0 if how == "distribute-horizontally" else 1
        ordered = sorted(node_ids, key=lambda n: positions[n][axis])
        first, last = positions[ordered[0]][axis], positions[ordered[-1]][axis]
        gap = (last - first) / (len(ordered) - 1)
        after = {}
        for index, n in enumerate(ordered):
            place = list(positions[n])
            place[axis] = first + index * gap
            after[n] = (place[0], place[1])
    else:
        raise ValueError(f"unknown arrangement {how!r}")
    return {n: (positions[n], after[n]) for n in node_ids if positions[n] != after[n]}


def spread_out(workflow: Workflow, spec_of: SpecOf, gap: float = GAP, rounds: int = 50
               ) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """The moves that separate overlapping nodes while keeping the layout's order: of two
    nodes too close, the one further right (or, in a column, further down) moves away, and
    everything beyond it moves with it, so wires keep their direction."""
    start = {node_id: node.position for node_id, node in workflow.nodes.items()}
    positions = dict(start)
    for _ in range(rounds):
        probe = Workflow()
        probe.nodes = {node_id: _moved(workflow.nodes[node_id], positions[node_id]) for node_id in workflow.nodes}
        probe.groups = workflow.groups
        rects = {n: node_rect(probe, n, spec_of, with_preview=True) for n in probe.nodes}
        pair = next(((a, b) for a, b in overlapping_pairs(probe, spec_of, True, gap)), None)
        if pair is None:
            break
        a, b = sorted(pair, key=lambda n: (rects[n][0], rects[n][1]))
        ra, rb = rects[a], rects[b]
        push_right = ra[0] + ra[2] + gap - rb[0]
        push_down = ra[1] + ra[3] + gap - rb[1]
        if rb[0] > ra[0] and (push_right <= push_down or rb[1] < ra[1]):
            for n, (x, y) in positions.items():
                if x >= rb[0]:
                    positions[n] = (x + push_right, y)
        else:
            for n, (x, y) in positions.items():
                if y >= rb[1] and abs(x - rb[0]) < ra[2]:
                    positions[n] = (x, y + push_down)
    return {n: (start[n], positions[n]) for n in positions if positions[n] != start[n]}


def _moved(node: Node, position: tuple[float, float]) -> Node:
    from dataclasses import replace

    return replace(node, position=position)
