"""Run queue, history, gallery (full view and A/B compare) and pictures inside nodes."""

from __future__ import annotations

from PySide6.QtCore import Qt


def wait_idle(window, qtbot):
    qtbot.waitUntil(lambda: not window.runner.busy and all(e.status not in ("queued", "running")
                                                           for e in window.runs), timeout=60000)


def test_run_queues_while_busy_and_the_history_keeps_each_run(window, qtbot):
    first = window.run()
    window.workflow.set_value("3", "seed", 5)  # the queued run renders the graph as it was then
    second = window.run()
    third = window.run()
    assert first.status == "running" and second.status == third.status == "queued"
    texts = [window.queue_panel.list.item(i).text() for i in range(window.queue_panel.list.count())]
    assert texts[0].startswith("#1") and "queued" in texts[1]
    # Take the third off the queue.
    for row in range(window.queue_panel.list.count()):
        if window.queue_panel.list.item(row).data(Qt.UserRole) == third.number:
            window.queue_panel.list.setCurrentRow(row)
    qtbot.mouseClick(window.queue_panel.cancel_button, Qt.LeftButton)
    assert third not in window.runs
    wait_idle(window, qtbot)
    assert [e.status for e in window.runs] == ["ok", "ok"]
    assert len(window.gallery.paths()) == 2 and all(p.is_file() for p in window.gallery.paths())
    assert window.runs[0].files != window.runs[1].files
    # The saving node shows its picture.
    save_item = window.scene.nodes["4"]
    assert save_item.preview is not None and not save_item.preview_rect.isEmpty()


def two_renders(window, qtbot, node_id, name, value):
    """Render the graph, set one value, render again: the gallery, holding both pictures."""
    window.run()
    wait_idle(window, qtbot)
    window.workflow.set_value(node_id, name, value)
    window.run()
    wait_idle(window, qtbot)
    return window.gallery


def test_gallery_opens_a_picture_and_compares_two(window, qtbot):
    gallery = two_renders(window, qtbot, "3", "strength", 0.5)
    assert gallery.list.count() == 2
    viewer = gallery.open_viewer(gallery.paths()[0])
    assert viewer.image.width() > 0
    viewer.close()
    gallery.list.selectAll()
    assert gallery.compare_button.isEnabled()
    dialog = gallery.compare_selected()
    wipe = dialog.wipe
    dialog.slider.setValue(0)
    assert wipe.split == 0.0
    qtbot.waitExposed(dialog)
    # At split 0 the view shows B, at 1 A; the two pictures differ (grain strength), so do the views.
    shown_b = wipe.grab().toImage()
    dialog.slider.setValue(1000)
    assert wipe.split == 1.0
    shown_a = wipe.grab().toImage()
    assert wipe.a != wipe.b and shown_a != shown_b
    dialog.slider.setValue(500)
    halfway = wipe.grab().toImage()
    assert halfway not in (shown_a, shown_b)
    dialog.close()


def test_cancel_in_the_queue_panel_stops_the_running_graph(window, qtbot):
    entry = window.run()
    qtbot.mouseClick(window.queue_panel.cancel_button, Qt.LeftButton)
    wait_idle(window, qtbot)
    assert entry.status == "cancelled"
    assert window.run_action.isEnabled()
