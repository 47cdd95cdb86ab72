"""Canvas speed on a 500-node / 600-wire workflow (with groups and reroutes), offscreen:
building the scene, a full repaint at 1:1 and zoomed to fit, one step of dragging a node
(with its wires), pasting 100 nodes into it and undoing that paste.
Goals: load < 1 s; repaint at 1:1 and at fit < 16 ms; paste 100 and its undo < 100 ms each.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/canvas_bench.py
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtGui import QImage, QPainter, QUndoStack  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from studio.app.canvas import CanvasScene  # noqa: E402
from studio.app.main import _application  # noqa: E402
from studio.app.view import CanvasView  # noqa: E402
from studio.graph import Workflow  # noqa: E402
from studio.registry import build_registry  # noqa: E402


def big_workflow(nodes: int = 500, wires: int = 600) -> Workflow:
    random.seed(1)
    workflow = Workflow()
    for index in range(nodes):
        workflow.add_node("IntMath", {"a": index, "b": 1, "operation": "add"},
                          position=(300.0 * (index % 25), 160.0 * (index // 25)))
    made = 0
    while made < wires:
        source, target = sorted(random.sample(range(1, nodes + 1), 2))
        name = random.choice(("a", "b"))
        if name not in workflow.nodes[str(target)].links:
            workflow.connect(str(source), "INT", str(target), name)
            made += 1
    # Groups around blocks of nodes and reroute points on some wires, as imported files have.
    for row in range(0, 20, 4):
        workflow.add_group(f"Row {row}", (-20.0, 160.0 * row - 40, 7520.0, 160.0 * 4))
    for index, link in enumerate(list(workflow.links())[:40]):
        source = workflow.nodes[link.source].position
        reroute = workflow.add_reroute((source[0] + 260.0, source[1] + 60.0 + index))
        workflow.set_link_reroute(link.target, link.input, reroute.id)
    return workflow


def repaint(view: CanvasView) -> float:
    image = QImage(view.viewport().size(), QImage.Format_ARGB32_Premultiplied)
    painter = QPainter(image)
    began = time.perf_counter()
    view.render(painter)
    seconds = time.perf_counter() - began
    painter.end()
    return seconds


def main() -> None:
    app = _application()
    registry = build_registry()
    workflow = big_workflow()
    began = time.perf_counter()
    scene = CanvasScene(workflow, registry, QUndoStack())
    view = CanvasView(scene)
    view.resize(1600, 1000)
    view.show()
    app.processEvents()
    load = time.perf_counter() - began
    one_to_one = statistics.median(repaint(view) for _ in range(5))
    view.fit()
    fitted = statistics.median(repaint(view) for _ in range(5))
    item = scene.nodes["250"]
    steps = []
    for _ in range(20):
        began = time.perf_counter()
        item.setPos(item.pos() + QPointF(3, 2))
        app.processEvents()
        steps.append(time.perf_counter() - began)
    # Paste 100 copied nodes (with the wires among them) and undo it: one step each.
    scene.clearSelection()
    for node_id in [str(n) for n in range(1, 101)]:
        scene.nodes[node_id].setSelected(True)
    clipboard = scene.copy_selected()
    pastes, undos = [], []
    for _ in range(3):
        began = time.perf_counter()
        scene.paste(clipboard, at=(0.0, 4000.0))
        app.processEvents()
        pastes.append(time.perf_counter() - began)
        began = time.perf_counter()
        scene.undo_stack.undo()
        app.processEvents()
        undos.append(time.perf_counter() - began)
    print(f"500 nodes, 600 wires, 5 groups, 40 reroutes: load {load * 1000:.0f} ms; "
          f"repaint 1:1 {one_to_one * 1000:.1f} ms; repaint fitted {fitted * 1000:.1f} ms "
          f"(zoom {view.transform().m11():.2f}); drag step {statistics.median(steps) * 1000:.2f} ms; "
          f"paste 100 nodes {statistics.median(pastes) * 1000:.0f} ms; "
          f"its undo {statistics.median(undos) * 1000:.0f} ms")
    QApplication.instance().quit()


if __name__ == "__main__":
    main()
