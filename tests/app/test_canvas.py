"""The canvas and main window, offscreen, driven through the scene and real mouse events."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt

from studio.graph import dumps
from studio.settings import WORKFLOWS_DIR


def test_the_canvas_draws_every_node_and_wire(window):
    scene = window.scene
    assert set(scene.nodes) == set(window.workflow.nodes) == {"1", "2", "3", "4"}
    assert len(scene.wires) == 3
    image = window.grab().toImage()
    assert image.width() > 0 and len({image.pixel(x, y) for x in range(0, image.width(), 37)
                                      for y in range(0, image.height(), 37)}) > 5


def test_moves_and_connections_undo_back_to_the_same_file(window, qtbot):
    scene, start = window.scene, dumps(window.workflow)
    view = window.view
    item = scene.nodes["2"]
    centre = view.mapFromScene(item.mapToScene(QPointF(100, 10)))
    qtbot.mousePress(view.viewport(), Qt.LeftButton, pos=centre)
    qtbot.mouseMove(view.viewport(), centre + type(centre)(80, 40))
    qtbot.mouseRelease(view.viewport(), Qt.LeftButton, pos=centre + type(centre)(80, 40))
    assert window.workflow.nodes["2"].position != (320, 0)
    assert window.undo_stack.count() == 1
    # A wrong wire is refused with a sentence; a right one is one undoable step.
    assert not scene.try_connect("1", "MASK", "3", "image")
    assert "MASK, but image needs IMAGE" in scene.last_refusal
    assert scene.try_connect("1", "IMAGE", "3", "image")
    assert window.workflow.nodes["3"].links["image"].node == "1"
    while window.undo_stack.canUndo():
        window.undo_stack.undo()
    assert dumps(window.workflow) == start
    assert scene.nodes["2"].pos() == QPointF(320, 0)


def test_dragging_from_an_output_to_an_input_connects_them(window, qtbot):
    scene, view = window.scene, window.view
    start = view.mapFromScene(scene.nodes["1"].output_position("IMAGE"))
    end = view.mapFromScene(scene.nodes["3"].input_position("image"))
    qtbot.mousePress(view.viewport(), Qt.LeftButton, pos=start)
    qtbot.mouseMove(view.viewport(), end)
    qtbot.mouseRelease(view.viewport(), Qt.LeftButton, pos=end)
    assert window.workflow.nodes["3"].links["image"].node == "1"


def test_running_shows_node_states_and_keeps_the_window_usable(window, qtbot, settings):
    window.run()
    qtbot.waitUntil(lambda: window.last_report is not None, timeout=30000)
    assert window.last_report.ok
    assert {window.scene.nodes[n].status for n in window.workflow.nodes} == {"done"}
    window.last_report = None
    window.run()
    qtbot.waitUntil(lambda: window.last_report is not None, timeout=30000)
    assert {window.scene.nodes[n].status for n in window.workflow.nodes} == {"cached"}


def _a_sane_run_succeeds_after(window, qtbot):
    """The window is still usable: with a small enlargement again, the next run succeeds."""
    window.workflow.set_value("2", "scale_by", 0.25)
    window.last_report = None
    window.run()
    qtbot.waitUntil(lambda: window.last_report is not None, timeout=30000)
    assert window.last_report.ok


def test_a_failing_run_marks_the_node_and_the_window_stays_usable(window, qtbot):
    window.workflow.set_value("2", "scale_by", 100.0)
    window.run()
    qtbot.waitUntil(lambda: window.last_report is not None, timeout=30000)
    assert window.last_report.status == "invalid"
    assert window.scene.nodes["2"].status == "error" and "above the maximum" in window.scene.nodes["2"].message
    _a_sane_run_succeeds_after(window, qtbot)


def test_cancel_stops_a_run(window, qtbot, registry):
    window.workflow.set_value("2", "scale_by", 8.0)  # a slow Lanczos enlargement
    window.run()
    window.runner.cancel()  # checked before every node, so the run cannot get far
    qtbot.waitUntil(lambda: window.last_report is not None, timeout=60000)
    assert window.last_report.status == "cancelled"
    assert window.run_action.isEnabled() and not window.cancel_action.isEnabled()
    _a_sane_run_succeeds_after(window, qtbot)


def test_double_clicking_a_field_edits_it_with_the_right_editor_and_undo_restores_it(window, qtbot, monkeypatch):
    from PySide6.QtWidgets import QComboBox, QDoubleSpinBox

    from studio.app.field_dialog import FieldDialog

    asked = []

    def answer(dialog):
        """The user's part: look at the editor the dialog offers, pick a value, press OK."""
        widget = dialog.editor.widget
        if isinstance(widget, QComboBox):
            asked.append(("item", widget.currentText(), tuple(widget.itemText(i) for i in range(widget.count()))))
            widget.setCurrentText("bicubic")
        else:
            assert isinstance(widget, QDoubleSpinBox)
            asked.append(("double", widget.value(), widget.minimum(), widget.maximum()))
            widget.lineEdit().selectAll()
            qtbot.keyClicks(widget.lineEdit(), "0.75")  # typed, not yet confirmed: OK takes it
        return FieldDialog.Accepted

    monkeypatch.setattr(FieldDialog, "exec", answer)
    scene, view, start = window.scene, window.view, dumps(window.workflow)
    item = scene.nodes["2"]  # Enlarge: fields upscale_method, scale_by
    for row, name in enumerate(("upscale_method", "scale_by")):
        point = item.mapToScene(QPointF(100, 26 + 20 * (item.socket_rows + row) + 10))
        assert item.field_at(point) == name
        qtbot.mouseDClick(view.viewport(), Qt.LeftButton, pos=view.mapFromScene(point))
    assert asked[0] == ("item", "lanczos", ("nearest-exact", "bilinear", "area", "bicubic", "lanczos"))
    assert asked[1] == ("double", 1.5, 0.01, 8.0)
    assert window.workflow.nodes["2"].values == {"upscale_method": "bicubic", "scale_by": 0.75}
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert dumps(window.workflow) == start


def test_search_adds_a_node_and_delete_removes_nodes_all_undoable(window, qtbot, monkeypatch):
    from studio.app.search import NodeSearch, ranked

    assert ranked(window.registry, "ksamp")[:2] == ["KSampler", "KSamplerAdvanced"]
    assert ranked(window.registry, "invimg")[0] == "ImageInvert"
    start = dumps(window.workflow)
    monkeypatch.setattr(NodeSearch, "exec", lambda self: (self.query.setText("invert image"), NodeSearch.Accepted)[1])
    node_id = window.view.search_and_add(QPointF(50, 400))
    assert window.workflow.nodes[node_id].type == "ImageInvert"
    assert node_id in window.scene.nodes
    window.scene.nodes["2"].setSelected(True)
    window.scene.nodes["3"].setSelected(True)
    qtbot.keyClick(window.view, Qt.Key_Delete)
    assert "2" not in window.workflow.nodes and "3" not in window.workflow.nodes
    assert window.workflow.nodes["4"].links == {}
    while window.undo_stack.canUndo():
        window.undo_stack.undo()
    assert dumps(window.workflow) == start
    assert len(window.scene.wires) == 3


def test_dropping_a_rendered_png_opens_its_workflow(window, tmp_path, registry, settings):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    from studio.cli import main

    main(["render", str(WORKFLOWS_DIR / "film_grain.json"), "--out", str(tmp_path)])
    png = next(tmp_path.rglob("*.png"))
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(png))])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, data, Qt.LeftButton, Qt.NoModifier)
    window.workflow.set_value("3", "seed", 999)
    window.dropEvent(event)
    assert window.workflow.nodes["3"].values["seed"] == 42
    assert len(window.scene.nodes) == 4


def test_copy_paste_and_duplicate_with_and_without_incoming_wires(window, qtbot):
    scene, start = window.scene, dumps(window.workflow)
    for node_id in ("2", "3"):  # Enlarge → Film grain, fed by the picture
        scene.nodes[node_id].setSelected(True)
    assert window.copy()
    plain = window.paste(keep_incoming=False)
    assert len(plain) == 2 and all(node_id not in ("2", "3") for node_id in plain)
    enlarge, grain = (window.workflow.nodes[node_id] for node_id in plain)
    assert grain.links["image"].node == enlarge.id  # the wire between them comes along
    assert "image" not in enlarge.links  # the one from outside does not
    assert enlarge.values == {"upscale_method": "lanczos", "scale_by": 1.5}
    originals = [window.workflow.nodes[n].position for n in ("2", "3")]
    assert (grain.position[0] - enlarge.position[0], grain.position[1] - enlarge.position[1]) == \
        (originals[1][0] - originals[0][0], originals[1][1] - originals[0][1])  # the block keeps its shape
    duplicated = window.duplicate()  # of the pasted pair, now selected
    assert len(duplicated) == 2
    with_incoming = window.paste(keep_incoming=True)
    assert window.workflow.nodes[with_incoming[0]].links["image"].node == "1"
    window.cut()
    assert with_incoming[0] not in window.workflow.nodes
    while window.undo_stack.canUndo():
        window.undo_stack.undo()
    assert dumps(window.workflow) == start
