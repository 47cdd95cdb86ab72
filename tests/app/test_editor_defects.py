"""Regression tests for the editor defects a first-time user hit (issue: the evented editor),
driven with real key and mouse events where the user acts, offscreen."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox

from studio.app.editors import BigIntSpinBox
from studio.app.node_item import MIN_FIT_ZOOM, title_point_size
from studio.app.run_queue import RunState
from studio.graph import dumps
from studio.settings import PROJECT_ROOT, WORKFLOWS_DIR

COMFY_FILES = PROJECT_ROOT / "tests" / "graph" / "comfy_files"


def answer_questions(monkeypatch, answer):
    asked = []

    def question(*args, **kwargs):
        asked.append(args[2] if len(args) > 2 else "")
        return answer

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


def type_into(qtbot, widget, text: str) -> None:
    widget.setFocus()
    if hasattr(widget, "lineEdit"):
        widget.lineEdit().selectAll()
        qtbot.keyClicks(widget.lineEdit(), text)
    else:
        widget.selectAll()
        qtbot.keyClicks(widget, text)


def wait_idle(window, qtbot):
    qtbot.waitUntil(lambda: not window.runner.busy and not window.queue.can_cancel, timeout=60000)


# 1 -------------------------------------------------------------------------------------------
def test_ctrl_enter_runs_the_value_still_being_typed(window, qtbot):
    window.select_node("3")
    seed = window.inspector.editors["seed"]
    type_into(qtbot, seed, "2024")  # typed, not confirmed: the spin box still has the focus
    assert window.workflow.nodes["3"].values["seed"] == 42
    qtbot.keyClick(seed.lineEdit(), Qt.Key_Return, Qt.ControlModifier)
    entry = window.runs[-1]
    assert entry.workflow is None or entry.workflow.nodes["3"].values["seed"] == 2024
    assert window.workflow.nodes["3"].values["seed"] == 2024
    wait_idle(window, qtbot)
    from studio.graph.files import open_workflow

    rendered, _ = open_workflow(Path(window.last_report.files[-1][1]), window.registry.spec)
    assert rendered.nodes["3"].values["seed"] == 2024  # the picture's own record


def test_a_prompt_being_typed_is_what_save_and_copy_see(window, qtbot, tmp_path, monkeypatch):
    node_id = window.scene.add_node("CLIPTextEncode", (0.0, 600.0))
    window.select_node(node_id)
    text = window.inspector.editors["text"]
    text.setFocus()
    qtbot.keyClicks(text, "a red circle")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(tmp_path / "g.json"), "")))
    qtbot.keyClick(text, Qt.Key_S, Qt.ControlModifier | Qt.ShiftModifier)  # Save As: not over the shipped file
    saved = json.loads((tmp_path / "g.json").read_text())
    assert saved["nodes"][node_id]["values"]["text"] == "a red circle"


# 2 -------------------------------------------------------------------------------------------
def test_open_new_recent_and_drop_ask_before_dropping_unsaved_changes(window, qtbot, monkeypatch):
    window.scene.nodes["3"].setSelected(True)
    window.view.setFocus()
    qtbot.keyClick(window.view.viewport(), Qt.Key_Right, Qt.ShiftModifier)  # an edit: nudge
    edited = dumps(window.workflow)
    asked = answer_questions(monkeypatch, QMessageBox.Cancel)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: pytest.fail("asked for a file")))
    qtbot.keyClick(window, Qt.Key_O, Qt.ControlModifier)
    assert not window.open_file(WORKFLOWS_DIR / "default.json")  # Open Recent / drop take this path
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(WORKFLOWS_DIR / "default.json"))])
    window.dropEvent(QDropEvent(QPointF(10, 10), Qt.CopyAction, data, Qt.LeftButton, Qt.NoModifier))
    assert len(asked) == 3 and dumps(window.workflow) == edited and window.isWindowModified()
    window.autosave()
    assert window.autosaver.path.is_file()  # cancelling keeps the autosave too
    # New opens an empty tab: the edited graph stays in its own, unsaved and asked about on close.
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert window.workflow.nodes == {} and len(window.documents) == 2 and len(asked) == 3
    window.tab_bar.setCurrentIndex(0)
    assert dumps(window.workflow) == edited
    answer_questions(monkeypatch, QMessageBox.Discard)
    first_autosave = window.autosaver.path
    assert window.close_tab(0)
    assert len(window.documents) == 1 and not first_autosave.exists()


# 3 -------------------------------------------------------------------------------------------
def test_seeds_up_to_two_to_the_64_are_typed_and_shown_in_full(window, qtbot):
    window.workflow.set_value("3", "seed", 123456789012345)
    window.select_node("3")
    seed = window.inspector.editors["seed"]
    assert isinstance(seed, BigIntSpinBox) and seed.lineEdit().text() == "123456789012345"
    type_into(qtbot, seed, str(2**64 - 1))
    qtbot.keyClick(seed.lineEdit(), Qt.Key_Return)
    assert window.workflow.nodes["3"].values["seed"] == 2**64 - 1
    assert seed.lineEdit().text() == "18446744073709551615"
    seed.setFocus()
    qtbot.keyClick(seed, Qt.Key_Down)
    assert window.workflow.nodes["3"].values["seed"] == 2**64 - 2


# 4 -------------------------------------------------------------------------------------------
def test_undo_of_the_first_edit_of_a_field_gives_its_default_back(window, qtbot):
    node_id = window.scene.add_node("EmptyLatentImage", (0.0, 700.0))
    window.select_node(node_id)
    width = window.inspector.editors["width"]
    type_into(qtbot, width, "640")
    qtbot.keyClick(width.lineEdit(), Qt.Key_Return)
    assert window.workflow.nodes[node_id].values == {"width": 640}
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert window.workflow.nodes[node_id].values == {}
    assert window.inspector.editors["width"].value() == 512


# 5 -------------------------------------------------------------------------------------------
def test_fit_keeps_titles_and_pictures_legible_even_for_wide_graphs(window, qtbot):
    window.resize(1100, 700)
    assert window.open_file(COMFY_FILES / "features_ui.json")
    def title_pixels() -> float:  # the title's height on screen, in pixels (96 dpi)
        zoom = window.view.transform().m11()
        return title_point_size(zoom) * 96 / 72 * zoom

    window.view.fit()
    assert window.view.transform().m11() >= MIN_FIT_ZOOM and title_pixels() >= 7.5
    for index in range(30):  # a graph far wider than the window
        window.workflow.add_node("ImageInvert", position=(400.0 * index, 0.0))
    window.view.fit()
    assert window.view.transform().m11() >= MIN_FIT_ZOOM and title_pixels() >= 7.5
    # As much as fits is shown, ending at the right edge, where the outputs are.
    visible = window.view.mapToScene(window.view.viewport().rect()).boundingRect()
    rightmost = max(window.scene.nodes.values(), key=lambda item: item.sceneBoundingRect().right())
    assert visible.contains(rightmost.sceneBoundingRect())


def test_the_first_fit_waits_for_the_window_to_have_its_size(registry, settings, qtbot, monkeypatch):
    from studio.app.window import MainWindow
    from studio.engine import Engine

    answer_questions(monkeypatch, QMessageBox.Discard)
    main = MainWindow(registry, settings, Engine(registry, settings))
    qtbot.addWidget(main)
    main.open_file(WORKFLOWS_DIR / "default.json", ask=False)
    main.resize(1600, 1000)
    main.show()
    qtbot.waitExposed(main)
    qtbot.wait(50)
    view = main.view
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert all(visible.contains(item.sceneBoundingRect()) for item in main.scene.nodes.values())
    assert 0.35 <= view.transform().m11() <= 1.0


# 6 -------------------------------------------------------------------------------------------
def test_the_inspector_has_room_and_dedented_help(window):
    window.select_node("3")
    inspector = window.inspector
    assert not any(line.startswith(" ") for line in inspector.docs.text().splitlines())
    seed = inspector.editors["seed"]
    assert seed.width() >= seed.minimumSizeHint().width()
    assert inspector.width() >= 260


# 7 -------------------------------------------------------------------------------------------
def test_save_as_without_an_extension_writes_a_json_file_others_can_read(window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(tmp_path / "mine"), "")))
    qtbot.keyClick(window, Qt.Key_S, Qt.ControlModifier | Qt.ShiftModifier)
    saved = tmp_path / "mine.json"
    assert saved.is_file() and not (tmp_path / "mine").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o666 & ~umask
    assert window.path == saved and window.windowTitle().startswith("mine.json")


def test_saving_through_a_symlink_keeps_the_link(window, tmp_path):
    from studio.graph import save

    real = tmp_path / "real.json"
    save(window.workflow, real)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    save(window.workflow, link)
    assert link.is_symlink() and link.resolve() == real


# 8 and 9 -------------------------------------------------------------------------------------
def test_a_recovered_workflow_keeps_its_file_name_and_shows_it_is_unsaved(window, qtbot, tmp_path, monkeypatch):
    from studio.app.autosave import Autosaver
    from studio.app.main import offer_recovery
    from studio.graph import save

    original = tmp_path / "mine.json"
    save(window.workflow, original)
    window.open_file(original, ask=False)
    crashed = window.workflow.copy()  # what a session that was killed had on screen
    crashed.set_value("3", "seed", 4242)
    Autosaver(window.settings.autosave_dir).save(crashed, original)
    answer_questions(monkeypatch, QMessageBox.Yes)
    assert offer_recovery(window)
    assert window.workflow.nodes["3"].values["seed"] == 4242
    assert window.windowTitle().startswith("mine.json") and window.isWindowModified()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: pytest.fail("asked for a name")))
    qtbot.keyClick(window, Qt.Key_S, Qt.ControlModifier)
    assert '"seed": 4242' in original.read_text() and not window.isWindowModified()


def test_the_title_marks_unsaved_changes_and_names_imported_files(window, qtbot):
    assert not window.isWindowModified() and "[*]" in window.windowTitle()
    window.scene.nodes["3"].setSelected(True)
    window.view.setFocus()
    qtbot.keyClick(window.view.viewport(), Qt.Key_Left)
    assert window.isWindowModified()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not window.isWindowModified()
    window.open_file(COMFY_FILES / "txt2img_ui.json", ask=False)
    assert window.windowTitle().startswith("txt2img_ui.json") and window.path is None


# 10 ------------------------------------------------------------------------------------------
def test_problems_of_an_opened_file_show_before_any_run_and_follow_edits(window, qtbot):
    window.statusBar().showMessage("a message about the previous file")
    window.open_file(COMFY_FILES / "txt2img_ui.json", ask=False)
    assert "previous file" not in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: window.problems.count() > 0, timeout=10000)
    texts = [window.problems.item(row).text() for row in range(window.problems.count())]
    assert any("ckpt_name" in text for text in texts), texts  # the checkpoint is not installed
    loader = next(n for n, node in window.workflow.nodes.items() if node.type == "CheckpointLoaderSimple")
    assert window.scene.nodes[loader].problem
    assert window.last_report is None  # nothing ran


# 11 ------------------------------------------------------------------------------------------
def test_placeholders_are_drawn_distinctly_with_their_sockets_and_values(window, qtbot, tmp_path):
    data = json.loads((WORKFLOWS_DIR / "film_grain.json").read_text())
    data["nodes"]["2"]["type"] = "SomeCustomUpscale"
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(data))
    window.open_file(path, ask=False)
    item = window.scene.nodes["2"]
    assert item.placeholder
    assert [row[0] for row in item.sockets] == ["image"]  # its wire in
    assert [name for name, _ in item.outputs] == ["IMAGE"]  # the wire others take from it
    assert {row[0] for row in item.fields} == {"upscale_method", "scale_by"}  # values kept and shown
    assert ("2", "image") in window.scene.wires and ("3", "image") in window.scene.wires
    assert "does not have" in item.toolTip()


# 12 ------------------------------------------------------------------------------------------
def test_an_edit_marks_what_a_rerun_would_recompute_and_keeps_every_picture(window, qtbot):
    window.run()
    wait_idle(window, qtbot)
    save_item = window.scene.nodes["4"]
    assert save_item.preview is not None and not save_item.stale
    window.select_node("3")
    strength = window.inspector.editors["strength"]
    type_into(qtbot, strength, "0.5")
    qtbot.keyClick(strength.lineEdit(), Qt.Key_Return)
    qtbot.waitUntil(lambda: window.scene.nodes["4"].stale, timeout=10000)
    assert {n for n, item in window.scene.nodes.items() if item.stale} == {"3", "4"}
    window.scene.add_node("ImageInvert", (2000.0, 2000.0))  # unrelated: no picture goes
    assert window.scene.nodes["4"].preview is not None
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # the add
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # the strength: fresh again
    qtbot.waitUntil(lambda: not window.scene.nodes["4"].stale, timeout=10000)


# 13 ------------------------------------------------------------------------------------------
def test_one_progress_figure_and_esc_cancels_running_then_queued(window, qtbot):
    assert not window.cancel_action.isEnabled()  # nothing to cancel
    first = window.run()
    second = window.run()
    assert window.cancel_action.isEnabled()
    qtbot.keyClick(window, Qt.Key_Escape)
    assert first.status in (RunState.CANCELLING, RunState.CANCELLED, RunState.OK)
    if first.status is RunState.CANCELLING:
        qtbot.keyClick(window, Qt.Key_Escape)  # again, while it stops: the queue goes too
        assert second not in window.runs
    wait_idle(window, qtbot)
    assert not window.cancel_action.isEnabled()
    assert all(entry.status is not RunState.RUNNING for entry in window.runs)


def test_the_queue_and_the_status_bar_show_the_same_progress(window, qtbot):
    seen = []
    window.queue.subscribe(lambda: seen.append((window.current_run.progress if window.current_run else None,
                                                window.progress.value())))
    window.run()
    wait_idle(window, qtbot)
    during = [(fraction, bar) for fraction, bar in seen if fraction is not None and window.progress.isVisible()]
    assert all(abs(fraction * 1000 - bar) <= 1 for fraction, bar in during)
    fractions = [fraction for fraction, _ in seen if fraction is not None]
    assert fractions == sorted(fractions)  # never goes back


# 14 and 15 -----------------------------------------------------------------------------------
def test_new_pasted_and_duplicated_nodes_land_clear_of_others_and_selected(window, qtbot):
    from tests.app.test_panels import drop_from_library

    on_top = window.view.mapFromScene(window.scene.nodes["2"].sceneBoundingRect().center())
    before = set(window.workflow.nodes)
    drop_from_library(window, "ImageInvert", on_top)
    (added,) = set(window.workflow.nodes) - before
    assert window.scene.selected_ids() == [added]
    rects = {n: item.sceneBoundingRect() for n, item in window.scene.nodes.items()}
    assert not any(rects[added].intersects(rect) for n, rect in rects.items() if n != added)
    window.scene.nodes["2"].setSelected(True)
    window.scene.nodes[added].setSelected(False)
    duplicated = window.duplicate()
    rects = {n: item.sceneBoundingRect() for n, item in window.scene.nodes.items()}
    assert window.scene.selected_ids() == duplicated
    assert not any(rects[duplicated[0]].intersects(rect) for n, rect in rects.items() if n != duplicated[0])


def test_paste_goes_where_the_mouse_is(window, qtbot):
    from PySide6.QtGui import QCursor

    window.scene.nodes["2"].setSelected(True)
    assert window.copy()
    empty = window.view.mapFromScene(QPointF(1500.0, 1500.0))
    window.view.centerOn(1500.0, 1500.0)
    empty = window.view.mapFromScene(QPointF(1500.0, 1500.0))
    QCursor.setPos(window.view.viewport().mapToGlobal(empty))
    if window.view.viewport().mapFromGlobal(QCursor.pos()) != empty:
        pytest.skip("this platform cannot place the mouse pointer")
    (pasted,) = window.paste(keep_incoming=False)
    x, y = window.workflow.nodes[pasted].position
    assert abs(x - 1500) < 60 and abs(y - 1500) < 60


def test_several_selected_nodes_are_named_in_the_inspector(window):
    for node_id in ("2", "3"):
        window.scene.nodes[node_id].setSelected(True)
    heading = window.inspector.heading.text()
    assert "2 nodes selected" in heading and "Nothing selected" not in heading


def test_the_canvas_follows_edits_item_by_item_and_never_rebuilds(window, qtbot):
    scene = window.scene
    before = {node_id: item for node_id, item in scene.nodes.items()}
    wires = dict(scene.wires)
    for node_id in ("2", "3"):
        scene.nodes[node_id].setSelected(True)
    assert window.copy()
    pasted = window.paste(keep_incoming=True)
    window.scene.nodes[pasted[0]].setSelected(True)
    scene.delete_selected()
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert all(scene.nodes[node_id] is item for node_id, item in before.items())  # the same items
    assert all(scene.wires[key] is wire for key, wire in wires.items())
    assert set(scene.nodes) == set(before)


def test_a_fitted_view_stays_fitted_when_resized_until_the_artist_zooms(window, qtbot):
    """Docks settling after the first show, or the window resized: a view showing the whole
    graph fits it again; once the artist zooms, a resize keeps their view."""
    view = window.view
    window.resize(1400, 900)
    view.fit()
    qtbot.waitUntil(lambda: view.keeps_fit)

    large, fits = view.transform().m11(), view.fits_done
    window.resize(900, 600)
    qtbot.waitUntil(lambda: view.fits_done > fits)
    small = view.transform().m11()
    view.fit()  # what Fit gives at the new size: the view already shows it
    assert view.transform().m11() == small < large
    zoomed = QWheelEvent(QPointF(50, 50), view.mapToGlobal(QPoint(50, 50)), QPoint(), QPoint(0, 120),
                         Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    view.wheelEvent(zoomed)
    zoom, fits = view.transform().m11(), view.fits_done
    window.resize(1400, 900)
    qtbot.wait(50)
    assert view.fits_done == fits and view.transform().m11() == zoom
