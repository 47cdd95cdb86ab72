"""Building and editing with the keyboard alone: select by Alt+arrows, add by Tab search,
connect with Ctrl+L, nudge with arrows, delete with reconnect, align and distribute."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from studio.graph import dumps


def answer_search(qtbot, text: str) -> None:
    """Type into the node search once it opens (it is modal), then press Enter."""
    def type_it() -> None:
        from studio.app.search import NodeSearch

        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, NodeSearch):
            QTimer.singleShot(20, type_it)
            return
        qtbot.keyClicks(dialog.query, text)
        qtbot.keyClick(dialog.query, Qt.Key_Return)

    QTimer.singleShot(0, type_it)


def test_a_node_is_added_and_wired_without_the_mouse(window, qtbot):
    view, scene = window.view, window.scene
    view.setFocus()
    scene.clearSelection()
    # Alt+arrows walk from node to node: the first press selects the top-left one.
    qtbot.keyClick(view, Qt.Key_Right, Qt.AltModifier)
    assert scene.selected_ids() == ["1"]
    qtbot.keyClick(view, Qt.Key_Right, Qt.AltModifier)
    assert scene.selected_ids() == ["2"]
    qtbot.keyClick(view, Qt.Key_Left, Qt.AltModifier)
    assert scene.selected_ids() == ["1"]
    before = set(window.workflow.nodes)
    answer_search(qtbot, "invert image")
    qtbot.keyClick(view, Qt.Key_Tab)
    (added,) = set(window.workflow.nodes) - before
    assert window.workflow.nodes[added].type == "ImageInvert"
    assert scene.selected_ids() == [added]
    # Placed right of the node that was selected.
    assert window.workflow.nodes[added].position[0] > window.workflow.nodes["1"].position[0]
    qtbot.keyClick(view, Qt.Key_L, Qt.ControlModifier)
    link = window.workflow.nodes[added].links["image"]
    assert (link.node, link.output) == ("1", "IMAGE")
    # Two selected nodes: the left one feeds the right one.
    scene.clearSelection()
    scene.nodes[added].setSelected(True)
    scene.nodes["4"].setSelected(True)
    window.workflow.disconnect("4", "images")
    qtbot.keyClick(view, Qt.Key_L, Qt.ControlModifier)
    link = window.workflow.nodes["4"].links["images"]
    assert (link.node, link.output) == (added, "IMAGE")
    # Nothing left to wire: refused with a sentence, nothing changes.
    edits = window.undo_stack.count()
    qtbot.keyClick(view, Qt.Key_L, Qt.ControlModifier)
    assert window.undo_stack.count() == edits and "has no output" in scene.last_refusal


def test_arrow_keys_move_the_selection_undoably(window, qtbot):
    start = dumps(window.workflow)
    window.select_node("2")
    window.view.setFocus()
    x, y = window.workflow.nodes["2"].position
    qtbot.keyClick(window.view, Qt.Key_Right)
    qtbot.keyClick(window.view, Qt.Key_Down, Qt.ShiftModifier)
    assert window.workflow.nodes["2"].position == (x + 10, y + 50)
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert dumps(window.workflow) == start


def test_delete_with_reconnect_wires_around_the_deleted_node(window, qtbot):
    start = dumps(window.workflow)
    window.select_node("2")  # Enlarge, between the picture and the film grain
    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key_Delete, Qt.ControlModifier)
    assert "2" not in window.workflow.nodes
    link = window.workflow.nodes["3"].links["image"]
    assert (link.node, link.output) == ("1", "IMAGE")
    assert window.undo_stack.count() == 1
    window.undo_stack.undo()
    assert dumps(window.workflow) == start
    # Plain delete leaves the gap.
    window.select_node("2")
    qtbot.keyClick(window.view, Qt.Key_Delete)
    assert "image" not in window.workflow.nodes["3"].links


def test_align_and_distribute(window):
    scene = window.scene
    for node_id, position in (("1", (0, 0)), ("2", (100, 40)), ("3", (700, 90)), ("4", (800, 10))):
        window.workflow.move_node(node_id, position)
    for item in scene.nodes.values():
        item.setSelected(True)
    scene.arrange_selected("align-top")
    assert {node.position[1] for node in window.workflow.nodes.values()} == {0}
    scene.arrange_selected("distribute-horizontally")
    assert [window.workflow.nodes[n].position[0] for n in "1234"] == [0, 800 / 3, 1600 / 3, 800]
    window.undo_stack.undo()
    assert window.workflow.nodes["2"].position == (100, 0)
    scene.arrange_selected("align-left")
    assert {node.position[0] for node in window.workflow.nodes.values()} == {0}
