"""Editing features artists use every minute (bypass, mute, collapse, rename, colours,
groups, reroutes, context menus, redo with Ctrl+Y, the shortcut list), driven with real key
and mouse events, each undoable."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QInputDialog

from studio.graph import NodeMode, dumps


def select(window, *node_ids):
    window.scene.clearSelection()
    for node_id in node_ids:
        window.scene.nodes[node_id].setSelected(True)


def test_ctrl_b_and_ctrl_m_bypass_and_mute_and_toggle_back(window, qtbot):
    start = dumps(window.workflow)
    select(window, "2", "3")
    qtbot.keyClick(window, Qt.Key_B, Qt.ControlModifier)
    assert {window.workflow.nodes[n].mode for n in ("2", "3")} == {NodeMode.BYPASS}
    qtbot.keyClick(window, Qt.Key_B, Qt.ControlModifier)
    assert {window.workflow.nodes[n].mode for n in ("2", "3")} == {NodeMode.NORMAL}
    qtbot.keyClick(window, Qt.Key_M, Qt.ControlModifier)
    assert window.workflow.nodes["2"].mode is NodeMode.MUTE
    for _ in range(3):
        qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert dumps(window.workflow) == start
    qtbot.keyClick(window, Qt.Key_Y, Qt.ControlModifier)  # Ctrl+Y redoes too
    assert window.workflow.nodes["2"].mode is NodeMode.BYPASS


def test_collapse_rename_and_colour(window, qtbot, monkeypatch):
    select(window, "2")
    tall = window.scene.nodes["2"].height
    qtbot.keyClick(window, Qt.Key_C, Qt.AltModifier)
    assert window.workflow.nodes["2"].collapsed and window.scene.nodes["2"].height < tall
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("Make it bigger", True)))
    qtbot.keyClick(window, Qt.Key_F2)
    assert window.workflow.nodes["2"].title == "Make it bigger"
    window.colour_menu.actions()[3].trigger()  # Green
    assert window.workflow.nodes["2"].color == "#335533"
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    node = window.workflow.nodes["2"]
    assert not node.collapsed and node.title == "Enlarge" and node.color is None


def test_ctrl_g_groups_the_selection_and_dragging_the_group_moves_its_nodes(window, qtbot):
    select(window, "2", "3")
    qtbot.keyClick(window, Qt.Key_G, Qt.ControlModifier)
    group_id = list(window.workflow.groups)[-1]
    group = window.workflow.groups[group_id]
    assert group.title == "Group"
    start_bounds = group.bounds
    inside, _ = window.scene.inside_group(group_id)
    assert set(inside) >= {"2", "3"}
    before = {n: window.workflow.nodes[n].position for n in ("1", "2", "3")}
    view = window.view
    item = window.scene.groups[group_id]
    window.view.centerOn(item)
    title = view.mapFromScene(QPointF(group.bounds[0] + 40, group.bounds[1] + 12))
    qtbot.mousePress(view.viewport(), Qt.LeftButton, pos=title)
    for step in range(1, 6):
        qtbot.mouseMove(view.viewport(), pos=title + QPointF(0, 20 * step).toPoint())
    qtbot.mouseRelease(view.viewport(), Qt.LeftButton, pos=title + QPointF(0, 100).toPoint())
    moved = {n: window.workflow.nodes[n].position for n in ("1", "2", "3")}
    dy = (moved["2"][1] - before["2"][1])
    assert dy > 50 and moved["3"][1] - before["3"][1] == dy  # both inside moved alike
    if "1" not in inside:
        assert moved["1"] == before["1"]  # what is outside stays
    assert window.workflow.groups[group_id].bounds[1] - start_bounds[1] == dy  # the frame moved as much
    window.undo_stack.undo()  # the move, as one step
    assert {n: window.workflow.nodes[n].position for n in ("2", "3")} == {n: before[n] for n in ("2", "3")}


def test_double_clicking_a_wire_adds_a_reroute_point_the_wire_bends_through(window, qtbot):
    scene, view = window.scene, window.view
    wire = scene.wires[("3", "image")]
    middle = wire.path().pointAtPercent(0.5)
    view.centerOn(middle)
    qtbot.mouseDClick(view.viewport(), Qt.LeftButton, pos=view.mapFromScene(middle))
    link = window.workflow.nodes["3"].links["image"]
    assert link.reroute is not None and link.reroute in scene.reroutes
    dot = scene.reroutes[link.reroute]
    assert wire.path().intersects(dot.sceneBoundingRect()) or scene.wires[("3", "image")].path().intersects(
        dot.sceneBoundingRect())
    # Drag the dot: the wire follows, and the move is one undoable step.
    at = view.mapFromScene(dot.pos())
    qtbot.mousePress(view.viewport(), Qt.LeftButton, pos=at)
    qtbot.mouseMove(view.viewport(), pos=at + QPointF(30, 60).toPoint())
    qtbot.mouseRelease(view.viewport(), Qt.LeftButton, pos=at + QPointF(30, 60).toPoint())
    position = window.workflow.reroutes[link.reroute].position
    assert position[1] > middle.y() + 20
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert window.workflow.nodes["3"].links["image"].reroute is None and not window.workflow.reroutes


def test_context_menus_for_nodes_sockets_wires_and_the_canvas(window, qtbot):
    scene, view = window.scene, window.view
    node_point = scene.nodes["2"].sceneBoundingRect().center()
    texts = [a.text() for a in view.context_menu_for(node_point).actions()]
    assert {"Bypass", "Mute", "Rename…", "Duplicate", "Delete"} <= set(texts)
    assert scene.selected_ids() == ["2"]
    socket = scene.nodes["3"].input_position("image")
    (disconnect,) = view.context_menu_for(socket).actions()
    assert disconnect.text() == "Disconnect image"
    disconnect.trigger()
    assert "image" not in window.workflow.nodes["3"].links
    window.undo_stack.undo()
    middle = scene.wires[("3", "image")].path().pointAtPercent(0.5)
    wire_menu = view.context_menu_for(middle)
    assert [a.text() for a in wire_menu.actions()] == ["Add a reroute point here", "Delete this wire"]
    wire_menu.actions()[1].trigger()
    assert "image" not in window.workflow.nodes["3"].links
    empty = [a.text() for a in view.context_menu_for(QPointF(5000, 5000)).actions()]
    assert "Add node…" in empty and "Paste" in empty


def test_f1_lists_every_shortcut_and_the_minimap_can_be_hidden(window, qtbot):
    qtbot.keyClick(window, Qt.Key_F1)
    dialog = window.shortcuts_dialog
    table = dialog.findChild(type(dialog.layout().itemAt(0).widget()))
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Bypass"] == "Ctrl+B" and "Ctrl+Y" in rows["Redo"] and rows["Run"] == "Ctrl+Return"
    dialog.close()
    window.minimap_action.trigger()
    assert not window.view.minimap.isVisible()


def test_search_ranks_by_match_quality():
    from studio.app.search import match_score

    assert match_score("invert", "Invert Image", "Invert Image ImageInvert image") == 1
    assert match_score("invert", "Int", "Int PrimitiveInt utils") is None
    assert match_score("invert", "VAE Encode for Inpainting", "x") in (None, 4, 5)


def test_a_wire_dropped_on_empty_canvas_offers_nodes_that_take_it_and_connects_the_chosen(window, qtbot,
                                                                                            monkeypatch):
    from studio.app.search import NodeSearch

    scene, view = window.scene, window.view
    shown = {}

    def choose(dialog):
        qtbot.keyClicks(dialog.query, "invert")
        shown["results"] = [dialog.results.item(i).data(Qt.UserRole) for i in range(dialog.results.count())]
        shown["title"] = dialog.windowTitle()
        return NodeSearch.Accepted

    monkeypatch.setattr(NodeSearch, "exec", choose)
    start = scene.nodes["1"].output_position("IMAGE")
    view.centerOn(start)
    empty = start + QPointF(120, 260)
    assert scene.node_at(empty) is None and scene.wire_at(empty) is None
    qtbot.mousePress(view.viewport(), Qt.LeftButton, pos=view.mapFromScene(start))
    qtbot.mouseMove(view.viewport(), pos=view.mapFromScene(start + QPointF(60, 130)))
    # While dragging an IMAGE wire, IMAGE inputs light up and others do not.
    assert scene.drag_type == "IMAGE" and scene.accepts_drag("IMAGE") and not scene.accepts_drag("LATENT")
    qtbot.mouseRelease(view.viewport(), Qt.LeftButton, pos=view.mapFromScene(empty))
    assert scene.drag_type is None
    assert shown["results"][0] == "ImageInvert" and "IMAGE" in shown["title"]
    every = [window.registry.get(t) for t in shown["results"]]
    assert all(any(spec.type == "IMAGE" for spec in cls.spec().inputs) for cls in every)
    added = [n for n, node in window.workflow.nodes.items() if node.type == "ImageInvert"]
    assert len(added) == 1 and window.workflow.nodes[added[0]].links["image"].node == "1"
    window.undo_stack.undo()  # the node and its wire, as one step
    assert not [n for n, node in window.workflow.nodes.items() if node.type == "ImageInvert"]


def test_model_fields_are_drop_downs_of_installed_files_refreshed_when_a_folder_changes(window, qtbot, tmp_path):
    from PySide6.QtWidgets import QComboBox

    from studio.graph.files import open_workflow
    from studio.settings import WORKFLOWS_DIR

    workflow, _ = open_workflow(WORKFLOWS_DIR / "default.json", window.registry.spec)
    workflow.set_value("1", "ckpt_name", "someone-elses-model.safetensors")
    window.set_workflow(workflow, None)
    window.select_node("1")
    box = window.inspector.editors["ckpt_name"]
    assert isinstance(box, QComboBox)
    items = [box.itemText(i) for i in range(box.count())]
    assert items[0] == "⚠ someone-elses-model.safetensors (missing)" and "seed-shapes" in items
    box.setCurrentIndex(items.index("seed-shapes"))
    assert window.workflow.nodes["1"].values["ckpt_name"] == "seed-shapes"
    # A model copied into a watched folder shows up without restarting.
    folder = tmp_path / "models" / "checkpoints"
    folder.mkdir(parents=True)
    window.file_choices.use(window.settings.replace(model_roots=(tmp_path / "models",)))
    (folder / "zz-new-model.safetensors").write_bytes(b"")
    qtbot.waitUntil(lambda: "zz-new-model.safetensors" in window.file_choices.choices(
        "CheckpointLoaderSimple", "ckpt_name"), timeout=5000)
    qtbot.waitUntil(lambda: window.inspector.editors["ckpt_name"].findData("zz-new-model.safetensors") >= 0,
                    timeout=5000)


def test_a_picture_field_shows_the_picture_and_a_dropped_picture_becomes_a_load_image(window, qtbot, tmp_path):
    from PIL import Image
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    window.select_node("1")
    editor = window.inspector.field_editors["image"]
    assert editor.thumbnail is not None and editor.thumbnail.pixmap() is not None \
        and not editor.thumbnail.pixmap().isNull()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    picture = elsewhere / "holiday.png"
    Image.new("RGB", (32, 24), (200, 30, 30)).save(picture)
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(picture))])
    drop = window.view.viewport().mapTo(window, window.view.viewport().rect().center())
    window.dropEvent(QDropEvent(QPointF(drop), Qt.CopyAction, data, Qt.LeftButton, Qt.NoModifier))
    (added,) = [n for n, node in window.workflow.nodes.items() if node.type == "LoadImage" and n != "1"]
    assert window.workflow.nodes[added].values == {"image": "holiday.png"}
    assert (window.settings.input_dirs[0] / "holiday.png").is_file()  # copied where LoadImage reads
    assert window.scene.selected_ids() == [added]


def test_gallery_viewer_zooms_and_the_compare_lists_what_differs_between_the_two_graphs(window, qtbot):
    from tests.app.test_runs import two_renders

    gallery = two_renders(window, qtbot, "3", "seed", 4321)
    viewer = gallery.open_viewer(gallery.paths()[0])
    qtbot.waitExposed(viewer)
    assert viewer.width() > 400  # sized to the window, not to the picture
    before = viewer.view.zoom
    viewer.view.scale(2, 2)
    assert viewer.view.zoom == 2 * before
    viewer.close()
    gallery.list.selectAll()
    dialog = gallery.compare_selected()
    table = dialog.differences
    rows = [tuple(table.item(r, column).text() for column in (1, 2, 3)) for r in range(table.rowCount())]
    assert sorted(rows[0][1:]) == ["42", "4321"] and rows[0][0] == "seed" and len(rows) == 1
    dialog.close()


def test_the_gallery_lists_earlier_renders_and_opens_the_graph_that_made_one(window, qtbot, registry, settings,
                                                                             monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from studio.app.window import MainWindow
    from studio.engine import Engine
    from tests.app.test_runs import wait_idle

    window.run()
    wait_idle(window, qtbot)
    (picture,) = window.gallery.paths()
    restarted = MainWindow(registry, window.settings, Engine(registry, window.settings))  # same output folder
    qtbot.addWidget(restarted)
    assert restarted.gallery.paths() == [picture]
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.Discard))
    restarted.gallery.open_graph_requested.emit(picture)
    assert set(restarted.workflow.nodes) == set(window.workflow.nodes)
    assert restarted.windowTitle().startswith(picture.name)


def test_seed_control_after_each_run_is_kept_and_exported_to_comfyui(window, qtbot):
    import json

    from studio.graph.comfy.exporter import to_comfy_ui
    from tests.app.test_runs import wait_idle

    window.select_node("3")
    window.inspector.seed_control.setCurrentText("increment")
    entry = window.run()
    assert window.workflow.nodes["3"].values["seed"] == 43  # moved on after queueing…
    wait_idle(window, qtbot)
    assert window.last_report.ok and entry.status == "ok"
    window.undo_stack.undo()  # the seed step is undoable
    assert window.workflow.nodes["3"].values["seed"] == 42
    exported = json.dumps(to_comfy_ui(window.workflow, window.registry.spec))
    assert '"increment"' in exported


def test_the_inspector_edits_the_common_fields_of_several_nodes_at_once(window, qtbot):
    a = window.scene.add_node("EmptyLatentImage", (0.0, 600.0))
    b = window.scene.add_node("EmptyLatentImage", (400.0, 600.0), values={"width": 768})
    select(window, a, b)
    inspector = window.inspector
    assert "2 nodes selected" in inspector.heading.text()
    height = inspector.editors["height"]
    height.lineEdit().selectAll()
    qtbot.keyClicks(height.lineEdit(), "640")
    qtbot.keyClick(height.lineEdit(), Qt.Key_Return)
    assert window.workflow.nodes[a].values["height"] == window.workflow.nodes[b].values["height"] == 640
    from PySide6.QtWidgets import QFormLayout

    labels = [inspector.form.itemAt(row, QFormLayout.LabelRole).widget().text()
              for row in range(inspector.form.rowCount())]
    assert "width (differs)" in labels
    window.undo_stack.undo()  # both, as one step
    assert "height" not in window.workflow.nodes[a].values and "height" not in window.workflow.nodes[b].values


def test_nested_categories_and_legible_toolbar_icons_in_the_light_theme(window):
    tree = window.library.tree
    top = {tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())}
    assert "advanced" in top and "advanced/conditioning" not in top
    assert window.library.item_for("KSampler") is not None
    window.set_theme("light")
    icon = window.run_action.icon().pixmap(24, 24).toImage()
    dark_pixels = sum(1 for x in range(24) for y in range(24) if icon.pixelColor(x, y).alpha() > 128
                      and icon.pixelColor(x, y).lightness() < 100)
    assert dark_pixels > 20  # drawn in the light theme's dark text colour
    window.set_theme("dark")


def test_tabs_keep_their_own_graph_undo_history_and_autosave(window, qtbot):
    from studio.settings import WORKFLOWS_DIR

    first = window.current
    window.workflow.set_value("3", "seed", 1)  # not through undo: stays
    select(window, "2")
    qtbot.keyClick(window, Qt.Key_B, Qt.ControlModifier)  # an undoable edit in tab 1
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert window.tab_bar.count() == 2 and window.current is not first
    window.open_file(WORKFLOWS_DIR / "default.json")  # the empty new tab takes it
    assert window.tab_bar.count() == 2 and "CheckpointLoaderSimple" in {n.type for n in window.workflow.nodes.values()}
    select(window, "4")
    qtbot.keyClick(window, Qt.Key_M, Qt.ControlModifier)  # an edit in tab 2
    assert window.autosave() and first.autosaver.path.is_file() and window.current.autosaver.path.is_file()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # undoes tab 2's edit only
    assert window.workflow.nodes["4"].mode is NodeMode.NORMAL
    assert first.scene.workflow.nodes["2"].mode is NodeMode.BYPASS
    window.tab_bar.setCurrentIndex(0)
    assert window.current is first and window.windowTitle().startswith("film_grain.json")
    assert window.tab_bar.tabText(0).endswith("•")  # unsaved
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert first.scene.workflow.nodes["2"].mode is NodeMode.NORMAL
    qtbot.keyClick(window, Qt.Key_W, Qt.ControlModifier)  # close this tab
    assert window.tab_bar.count() == 1 and window.current is not first


def test_groups_are_titled_coloured_and_resized_undoably(window, qtbot, monkeypatch):
    select(window, "2")
    group_id = window.group_selected()
    group = window.workflow.groups[group_id]
    view = window.view
    band = QPointF(group.bounds[0] + 30, group.bounds[1] + 10)
    menu = view.context_menu_for(band)
    texts = [a.text() for a in menu.actions()]
    assert texts[0] == "Rename group…" and "Delete group (keep its nodes)" in texts
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("Upscale", True)))
    menu.actions()[0].trigger()
    colours = menu.actions()[1].menu()
    colours.actions()[3].trigger()  # Green
    assert group.title == "Upscale" and group.color == "#4f8a4f"
    x, y, width, height = group.bounds
    view.centerOn(x + width, y + height)
    grip = view.mapFromScene(QPointF(x + width - 6, y + height - 6))
    qtbot.mousePress(view.viewport(), Qt.LeftButton, pos=grip)
    qtbot.mouseMove(view.viewport(), pos=grip + QPointF(80, 40).toPoint())
    qtbot.mouseRelease(view.viewport(), Qt.LeftButton, pos=grip + QPointF(80, 40).toPoint())
    grown = window.workflow.groups[group_id].bounds
    assert grown[2] > width + 40 and grown[3] > height + 20 and grown[:2] == (x, y)
    for _ in range(3):
        window.undo_stack.undo()
    restored = window.workflow.groups[group_id]
    assert restored.bounds == (x, y, width, height) and restored.title == "Group" and restored.color is None


def test_a_field_becomes_an_input_driven_by_a_primitive_that_can_feed_several_fields(window, qtbot):
    from studio.graph.files import open_workflow
    from studio.settings import WORKFLOWS_DIR

    workflow, _ = open_workflow(WORKFLOWS_DIR / "tour" / "6_hires_fix.json", window.registry.spec)
    window.set_workflow(workflow, None)
    samplers = [n for n, node in window.workflow.nodes.items() if node.type == "KSampler"]
    first, second = samplers[:2]
    item = window.scene.nodes[first]
    row = [name for name, _, _ in item.fields].index("seed")
    point = item.mapToScene(QPointF(100, 26 + 20 * (item.socket_rows + row) + 10))
    menu = window.view.context_menu_for(point)
    menu.actions()[0].trigger()  # "Drive seed from a primitive node"
    link = window.workflow.nodes[first].links["seed"]
    primitive = window.workflow.nodes[link.node]
    assert primitive.type == "Seed" and primitive.values["seed"] == window.workflow.nodes[first].values["seed"]
    assert window.scene.try_connect(primitive.id, "seed", second, "seed")  # the same primitive feeds another field
    window.workflow.set_value(primitive.id, "seed", 777)
    problems = [p for p in window.engine.validate(window.workflow) if p.is_error]
    assert problems == []
    plan_values = window.engine.cache_keys(window.workflow)
    assert first in plan_values and second in plan_values
    socket = window.scene.nodes[first].input_position("seed")
    back = window.view.context_menu_for(socket).actions()[0]
    assert back.text() == "Disconnect seed (back to a field)"
    back.trigger()
    assert "seed" not in window.workflow.nodes[first].links and "seed" in window.workflow.nodes[first].values


def test_the_minimap_moves_aside_for_a_node_added_under_it(window, qtbot):
    view = window.view
    corner = view.minimap.geometry()
    under = view.mapToScene(corner.center())
    node_id = window.scene.add_node("ImageInvert", (under.x() - 60, under.y() - 30))
    shown = view.mapFromScene(window.scene.nodes[node_id].sceneBoundingRect()).boundingRect()
    assert corner.intersects(shown)  # the node went where the minimap was…
    assert not view.minimap.geometry().intersects(shown)  # …and the minimap moved away
    assert view.minimap_corner == "left"
