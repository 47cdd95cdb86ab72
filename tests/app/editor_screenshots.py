"""Screenshots of the editing features, taken from the screen (popups and dialogs included)
under a real X server: run by tests/app/test_screenshot.py, written to the folder given.

    python tests/app/editor_screenshots.py OUTPUT_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest

from studio.app.main import _application, _window
from studio.settings import PROJECT_ROOT

COMFY = PROJECT_ROOT / "tests" / "graph" / "comfy_files"


def pause(milliseconds: int) -> None:
    """Let the app run for a while. (An event loop, not QTest.qWait, which keeps the GIL and
    starves the render thread.)"""
    from PySide6.QtCore import QEventLoop

    loop = QEventLoop()
    QTimer.singleShot(milliseconds, loop.quit)
    loop.exec()


def screen(path: Path) -> None:
    QTest.qWait(150)
    if not QGuiApplication.primaryScreen().grabWindow(0).save(str(path)):
        raise OSError(f"could not write {path}")


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    app = _application()
    window = _window(COMFY / "features_ui.json")
    window.resize(1500, 950)
    window.move(0, 0)
    window.show()
    QTest.qWaitForWindowExposed(window, 5000)
    QTest.qWait(300)
    select = window.scene.nodes
    window.scene.clearSelection()
    # 1: an imported ComfyUI file with groups, bypassed and muted nodes and reroute points.
    if not window.workflow.groups:
        for node_id in list(select)[:2]:
            select[node_id].setSelected(True)
        window.group_selected()
        window.scene.clearSelection()
    window.view.fit()
    screen(folder / "editor-comfy-groups-bypass-mute-reroutes.png")

    # 2: a wire dropped on empty canvas, with the search filtered to nodes that take it.
    view, scene = window.view, window.scene
    source = next(n for n, item in scene.nodes.items() if item.node.type == "LoadImage")
    start = scene.nodes[source].output_position("IMAGE")
    empty = start + QPointF(40, 320)
    QTimer.singleShot(600, lambda: (screen(folder / "editor-wire-dropped-search.png"),
                                    app.activeModalWidget() and app.activeModalWidget().reject()))
    from studio.app.search import NodeSearch

    original_exec = NodeSearch.exec

    def typed_exec(dialog):
        dialog.query.setText("image")
        return original_exec(dialog)

    NodeSearch.exec = typed_exec
    QTest.mousePress(view.viewport(), Qt.LeftButton, pos=view.mapFromScene(start))
    QTest.mouseMove(view.viewport(), pos=view.mapFromScene(empty))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, pos=view.mapFromScene(empty))
    NodeSearch.exec = original_exec

    # 3: a model field's drop-down, open.
    loader = next((n for n, item in scene.nodes.items() if item.node.type == "CheckpointLoaderSimple"), None)
    if loader is not None:
        window.select_node(loader)
        box = window.inspector.editors["ckpt_name"]
        box.showPopup()
        screen(folder / "editor-model-drop-down.png")
        box.hidePopup()

    # 4 and 5: two renders of the default workflow; the gallery viewer; the value diff.
    from studio.settings import WORKFLOWS_DIR

    window.open_file(WORKFLOWS_DIR / "default.json", ask=False)
    window.workflow.set_value("4", "steps", 8)  # enough for a picture; keeps the test quick
    window.run()
    while window.queue.can_cancel:
        pause(100)
    window.workflow.set_value("2", "text", "a large red square at the top, yellow background")
    window.workflow.set_value("4", "seed", 99)
    window.run()
    while window.queue.can_cancel:
        pause(100)
    viewer = window.gallery.open_viewer(window.gallery.paths()[0])
    QTest.qWaitForWindowExposed(viewer, 5000)
    screen(folder / "editor-gallery-viewer.png")
    viewer.close()
    window.gallery.list.clearSelection()
    for row in (0, 1):  # the two just rendered (the gallery also lists earlier ones)
        window.gallery.list.item(row).setSelected(True)
    compare = window.gallery.compare_selected()
    QTest.qWaitForWindowExposed(compare, 5000)
    screen(folder / "editor-value-diff.png")
    compare.close()
    window.close()
    app.processEvents()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
