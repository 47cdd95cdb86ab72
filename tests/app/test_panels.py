"""The node library, inspector and problems panels of the main window, offscreen."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QComboBox, QDoubleSpinBox

from studio.app.editors import BigIntSpinBox
from studio.graph import dumps


def drop_from_library(window, type_name: str, at: QPoint) -> None:
    """What a drag from the library delivers to the canvas: enter, move, drop, with the
    library's own drag data for that node type."""
    item = window.library.item_for(type_name)
    assert item is not None, type_name
    data = window.library.tree.mimeData([item])
    target = window.view.viewport()
    enter = QDragEnterEvent(at, Qt.CopyAction, data, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(target, QDragMoveEvent(at, Qt.CopyAction, data, Qt.LeftButton, Qt.NoModifier))
    drop = QDropEvent(QPointF(at), Qt.CopyAction, data, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(target, drop)
    assert drop.isAccepted()


def test_dragging_a_node_from_the_library_adds_it_where_it_is_dropped(window):
    before = set(window.workflow.nodes)
    at = QPoint(300, 200)
    drop_from_library(window, "ImageInvert", at)
    (added,) = set(window.workflow.nodes) - before
    node = window.workflow.nodes[added]
    assert node.type == "ImageInvert"
    expected = window.view.mapToScene(at)
    assert abs(node.position[0] - expected.x()) < 1 and abs(node.position[1] - expected.y()) < 1
    assert added in window.scene.nodes
    window.undo_stack.undo()
    assert set(window.workflow.nodes) == before


def test_the_library_filters_and_adds_on_enter(window, qtbot):
    library = window.library
    qtbot.keyClicks(library.filter, "invert")
    categories = [library.tree.topLevelItem(i) for i in range(library.tree.topLevelItemCount())]
    shown = [c.child(j).data(0, Qt.UserRole) for c in categories for j in range(c.childCount())]
    assert "ImageInvert" in shown and "KSampler" not in shown
    before = set(window.workflow.nodes)
    library.tree.setCurrentItem(library.item_for("ImageInvert"))
    library.tree.setFocus()
    qtbot.keyClick(library.tree, Qt.Key_Return)
    (added,) = set(window.workflow.nodes) - before
    assert window.workflow.nodes[added].type == "ImageInvert"


def test_the_inspector_edits_the_selected_node_undoably(window, qtbot):
    start = dumps(window.workflow)
    window.select_node("3")
    inspector = window.inspector
    assert inspector.node_id == "3"
    assert "ImageAddNoise" in inspector.heading.text()
    seed = inspector.editors["seed"]
    # Seeds go to 2⁶⁴−1 as ComfyUI's do: a 64-bit spin box, not QSpinBox's 32 bits.
    assert isinstance(seed, BigIntSpinBox) and seed.value() == 42 and seed.maximum() == 2**64 - 1
    seed.setValue(7)
    assert window.workflow.nodes["3"].values["seed"] == 7
    strength = inspector.editors["strength"]
    assert isinstance(strength, QDoubleSpinBox)
    strength.setValue(0.25)
    assert window.workflow.nodes["3"].values["strength"] == 0.25
    # An edit made elsewhere (undo) shows in the inspector.
    window.undo_stack.undo()
    assert inspector.editors["strength"].value() == 0.04
    window.undo_stack.undo()
    assert dumps(window.workflow) == start
    window.select_node("2")
    method = inspector.editors["upscale_method"]
    assert isinstance(method, QComboBox) and method.currentText() == "lanczos"
    method.setCurrentText("bilinear")
    assert window.workflow.nodes["2"].values["upscale_method"] == "bilinear"
    window.scene.clearSelection()
    assert inspector.node_id is None and not inspector.editors


def test_a_failed_run_lists_the_problem_and_clicking_it_selects_the_node(window, qtbot):
    window.workflow.set_value("1", "image", "no-such-picture.png")
    window.run()
    qtbot.waitUntil(lambda: window.last_report is not None, timeout=30000)
    assert not window.last_report.ok
    problems = window.problems
    assert problems.count() >= 1
    item = problems.item(0)
    assert "no-such-picture.png" in item.text()
    window.scene.clearSelection()
    rect = problems.visualItemRect(item)
    qtbot.mouseClick(problems.viewport(), Qt.LeftButton, pos=rect.center())
    assert window.scene.selected_ids() == ["1"]


def test_a_half_wired_node_aside_is_listed_as_a_warning_and_the_run_still_happens(window, qtbot):
    aside = window.workflow.add_node("ImageInvert")  # no image wired in, feeding nothing
    window.run()
    qtbot.waitUntil(lambda: window.last_report is not None, timeout=30000)
    assert window.last_report.ok and window.last_report.files
    texts = [window.problems.item(row).text() for row in range(window.problems.count())]
    assert texts == [f"{aside.label}: warning: image: needs a IMAGE wire"]
    assert "1 warning in Problems" in window.statusBar().currentMessage()


def test_the_minimap_shows_the_graph_and_a_click_moves_the_view_there(window, qtbot):
    minimap = window.view.minimap
    assert minimap.isVisible() and minimap.scene() is window.scene
    window.view.scale(3, 3)  # zoomed in, so there is somewhere to move
    target = window.scene.nodes["4"].sceneBoundingRect().center()
    qtbot.mouseClick(minimap.viewport(), Qt.LeftButton, pos=minimap.mapFromScene(target))
    centre = window.view.mapToScene(window.view.viewport().rect().center())
    assert abs(centre.x() - target.x()) < 40 and abs(centre.y() - target.y()) < 40
    assert minimap.visible_area().contains(target)
