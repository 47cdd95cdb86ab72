"""The canvas view: pan with the middle button, zoom to the cursor with the wheel, Home or .
to fit, Tab or a double-click to search and add, arrows to move, Alt+arrows to walk; and
the minimap in its corner."""

from __future__ import annotations

from typing import Any

import shiboken6
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QPainter, QPen
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QMenu, QToolTip, QWidget

from studio.app import theme
from studio.app.canvas import CanvasScene
from studio.app.node_item import MIN_FIT_ZOOM, NodeItem
from studio.app.undo import push
from studio.graph import commands as cmd


class CanvasView(QGraphicsView):
    """Pan with the middle button, zoom to the cursor with the wheel, Home or . to fit."""

    def __init__(self, scene: CanvasScene) -> None:
        super().__init__(scene)
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing)
        self.setViewportUpdateMode(QGraphicsView.SmartViewportUpdate)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self._panning: QPointF | None = None
        self._fitted_once = False
        # While the graph is shown fitted and the artist has not zoomed or panned since, the
        # view fits itself again when it changes size (docks settling after the first show,
        # the window resized or maximised), as "fit to window" does in image viewers.
        self.keeps_fit = False
        self.minimap_corner = "right"
        self.fits_done = 0
        self.minimap = Minimap(self)
        self.minimap.follow()
        # The minimap catches up with edits at most ten times a second, not on every change.
        self.minimap_timer = QTimer(self)
        self.minimap_timer.setSingleShot(True)
        self.minimap_timer.setInterval(100)
        self.minimap_timer.timeout.connect(self.minimap.follow)

    def setScene(self, scene: QGraphicsScene) -> None:
        super().setScene(scene)
        # A bound slot, not a lambda: Qt drops the connection when either side is deleted.
        scene.changed.connect(self._scene_changed)
        self.minimap.follow()

    def _scene_changed(self, _regions: Any) -> None:
        if not self.minimap_timer.isActive():
            self.minimap_timer.start()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.keeps_fit:
            QTimer.singleShot(0, self._refit)
        # A fifth of the canvas's width, so it never takes much of a small window.
        width = max(110, min(Minimap.SIZE[0], self.width() // 5))
        self.minimap.setFixedSize(width, int(width * Minimap.SIZE[1] / Minimap.SIZE[0]))
        self.minimap.follow()
        self._place_minimap()

    def _refit(self) -> None:
        if self.keeps_fit:
            self.fit()

    def stop_keeping_fit(self) -> None:
        """The artist chose a view of their own (zoomed, panned): resizes leave it alone."""
        self.keeps_fit = False

    def _place_minimap(self) -> None:
        left = self.minimap_corner == "left"
        x = 12 if left else self.width() - self.minimap.width() - 12
        self.minimap.move(x, self.height() - self.minimap.height() - 12)

    def keep_minimap_clear(self, scene_rect: QRectF) -> None:
        """A node just added under the minimap: the minimap moves to the other bottom corner."""
        shown = self.mapFromScene(scene_rect).boundingRect()
        if self.minimap.isVisible() and self.minimap.geometry().intersects(shown):
            self.minimap_corner = "right" if self.minimap_corner == "left" else "left"
            self._place_minimap()

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        self.minimap.viewport().update()

    def fit(self) -> None:
        """Show the whole graph, as large as fits (never above 1:1); a graph too wide to
        fit at a legible zoom is shown at the smallest legible one, as much of it as fits."""
        nodes = [item for item in self.scene().items() if isinstance(item, NodeItem)]
        if not nodes:
            return
        bounds = QRectF()
        for item in nodes:
            bounds = bounds.united(item.sceneBoundingRect())
        bounds = bounds.adjusted(-60, -60, 60, 60)
        room = self.viewport().rect()
        if room.width() < 2 or room.height() < 2:
            return
        zoom = min(room.width() / bounds.width(), room.height() / bounds.height(), 1.0)
        centre = bounds.center()
        if zoom < MIN_FIT_ZOOM:
            # Too big to show whole at a legible zoom: show as much of it as fits, ending at
            # its right edge (where the outputs and their pictures are), top-aligned if tall.
            zoom = MIN_FIT_ZOOM
            half_width, half_height = room.width() / zoom / 2, room.height() / zoom / 2
            x = bounds.right() - half_width if bounds.width() > 2 * half_width else centre.x()
            y = bounds.top() + half_height if bounds.height() > 2 * half_height else centre.y()
            centre = QPointF(x, y)
        self.resetTransform()
        self.scale(zoom, zoom)
        self.centerOn(centre)
        self.minimap.follow()
        self.fits_done += 1
        self.keeps_fit = True

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        # The first fit happens once the view has its real size (not at construction, when
        # it is 100×30 and Fit would zoom far out).
        if not self._fitted_once:
            self._fitted_once = True
            QTimer.singleShot(0, self.fit)

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, theme.BACKGROUND)
        step = 40
        while self.transform().m11() * step < 20:
            step *= 2  # zoomed out: every other line, so the grid stays as sparse on screen
        if step > 320:
            return
        painter.setPen(QPen(theme.GRID, 1))
        left, top = int(rect.left()) - int(rect.left()) % step, int(rect.top()) - int(rect.top()) % step
        lines = [QLineF(x, rect.top(), x, rect.bottom()) for x in range(left, int(rect.right()), step)]
        lines += [QLineF(rect.left(), y, rect.right(), y) for y in range(top, int(rect.bottom()), step)]
        painter.drawLines(lines)

    def wheelEvent(self, event) -> None:
        factor = 1.15 if event.angleDelta().y() > 0 else 1 / 1.15
        zoom = self.transform().m11() * factor
        if 0.1 <= zoom <= 4.0:
            self.stop_keeping_fit()
            self.scale(factor, factor)
            self.minimap.viewport().update()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MiddleButton:
            self._panning = event.position()
            self.setCursor(Qt.ClosedHandCursor)
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._panning is not None:
            delta = event.position() - self._panning
            self._panning = event.position()
            self.stop_keeping_fit()
            self.translate(delta.x() / self.transform().m11(), delta.y() / self.transform().m22())
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MiddleButton and self._panning is not None:
            self._panning = None
            self.unsetCursor()
            return
        super().mouseReleaseEvent(event)

    ARROWS = {Qt.Key_Left: (-1, 0), Qt.Key_Right: (1, 0), Qt.Key_Up: (0, -1), Qt.Key_Down: (0, 1)}

    def keyPressEvent(self, event) -> None:
        key, modifiers = event.key(), event.modifiers()
        scene = self.scene()
        if key in (Qt.Key_Home, Qt.Key_Period):
            self.fit()
        elif key == Qt.Key_Tab:
            self.search_and_add(self._place_for_new_node())
        elif key in (Qt.Key_Delete, Qt.Key_Backspace):
            scene.delete_selected(reconnect=bool(modifiers & Qt.ControlModifier))
        elif key == Qt.Key_L and modifiers & Qt.ControlModifier:
            # Also the window's Edit menu shortcut; here for when the view has the key first.
            if not scene.connect_selected() and scene.last_refusal:
                QToolTip.showText(self.mapToGlobal(self.rect().center()), scene.last_refusal)
        elif key in self.ARROWS and modifiers & Qt.AltModifier:
            chosen = scene.select_neighbour(*self.ARROWS[key])
            if chosen:
                self.stop_keeping_fit()
                self.ensureVisible(scene.nodes[chosen])
        elif key in self.ARROWS and scene.selected_ids():
            step = 50 if modifiers & Qt.ShiftModifier else 10
            dx, dy = self.ARROWS[key]
            scene.nudge_selected(dx * step, dy * step)
        else:
            super().keyPressEvent(event)

    def _place_for_new_node(self) -> QPointF:
        """Right of the selected node when there is one (keyboard building), else under the cursor."""
        chosen = self.scene().selected_ids()
        if len(chosen) == 1:
            item = self.scene().nodes[chosen[0]]
            return item.pos() + QPointF(item.boundingRect().width() + 60, 0)
        return self.mapToScene(self.mapFromGlobal(self.cursor().pos()))

    def context_menu_for(self, point: QPointF) -> QMenu:
        """The right-click menu for what is under a scene point: a node (its states,
        structure and colour), an input socket (disconnect), a wire (reroute, delete), or the
        empty canvas (add, paste, fit)."""
        scene = self.scene()
        window = self.window()
        menu = QMenu(self)
        node = scene.node_at(point)
        if node is not None:
            port = node.port_at(point)
            if port is not None and port[0] == "input" and port[1] in node.node.links:
                is_field = any(n == port[1] and widget for n, _, widget in node.inputs)
                menu.addAction(f"Disconnect {port[1]}" + (" (back to a field)" if is_field else ""),
                               lambda: push(scene.undo_stack, cmd.Disconnect(scene.workflow, node.node_id, port[1])))
                return menu
            field = node.field_at(point)
            if field is not None and scene.PRIMITIVES.get(next((t for n, t, _ in node.fields if n == field), "")):
                menu.addAction(f"Drive {field} from a primitive node",
                               lambda: scene.drive_from_primitive(node.node_id, field))
                menu.addSeparator()
            if not node.isSelected():
                scene.select_only(node.node_id)
            for key in ("bypass", "mute", "collapse", "rename", "group"):
                menu.addAction(window.node_actions[key])
            menu.addMenu(window.colour_menu)
            menu.addSeparator()
            menu.addAction("Duplicate", window.duplicate)
            menu.addAction("Delete", scene.delete_selected)
            return menu
        group_id = scene.group_at(point)
        if group_id is not None:
            menu.addAction("Rename group…", lambda: window.rename_group(group_id))
            colours = menu.addMenu("Group colour")
            from studio.app.window import GROUP_COLOURS

            for name, colour in GROUP_COLOURS.items():
                colours.addAction(name, lambda colour=colour: scene.change_group(group_id, color=colour))
            menu.addAction("Delete group (keep its nodes)",
                           lambda: push(scene.undo_stack, cmd.RemoveGroup(scene.workflow, group_id)))
            return menu
        wire = scene.wire_at(point)
        if wire is not None:
            menu.addAction("Add a reroute point here", lambda: scene.add_reroute_on_wire(*wire, point))
            menu.addAction("Delete this wire",
                           lambda: push(scene.undo_stack, cmd.Disconnect(scene.workflow, *wire)))
            return menu
        menu.addAction("Add node…", lambda: self.search_and_add(point))
        menu.addAction("Paste", lambda: window.paste(False))
        menu.addAction("Group selected nodes", window.group_selected)
        menu.addAction("Fit the graph", self.fit)
        return menu

    def contextMenuEvent(self, event: Any) -> None:
        menu = self.context_menu_for(self.mapToScene(event.pos()))
        menu.exec(event.globalPos())

    def focusNextPrevChild(self, next: bool) -> bool:
        return False  # Tab opens the node search instead of moving the focus

    # A node type dragged from the library is added where it is dropped; files dropped on
    # the canvas are left to the window (it opens workflows).
    def dragEnterEvent(self, event) -> None:
        from studio.app.panels import NODE_MIME

        if event.mimeData().hasFormat(NODE_MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        from studio.app.panels import NODE_MIME

        if event.mimeData().hasFormat(NODE_MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        from studio.app.panels import NODE_MIME

        if not event.mimeData().hasFormat(NODE_MIME):
            event.ignore()
            return
        type_name = bytes(event.mimeData().data(NODE_MIME)).decode("utf-8")
        if self.scene().registry.get(type_name) is None:
            event.ignore()
            return
        point = self.mapToScene(event.position().toPoint())
        self.scene().add_node(type_name, (point.x(), point.y()))
        event.acceptProposedAction()

    def mouseDoubleClickEvent(self, event) -> None:
        point = self.mapToScene(event.position().toPoint())
        if self.scene().node_at(point) is None and self.scene().wire_at(point) is None:
            self.search_and_add(point)
            return
        super().mouseDoubleClickEvent(event)  # a node's field, or a wire (a reroute point)

    def search_and_connect(self, source: str, output: str, point: QPointF) -> str | None:
        """A wire dropped on empty canvas: search among the node types with an input that
        takes it; the chosen one is added there and wired, as one undoable step."""
        from studio.app.search import NodeSearch
        from studio.graph.sockets import types_compatible

        scene = self.scene()
        output_type = next((kind for name, kind in scene.nodes[source].outputs if name == output), "*")
        dialog = NodeSearch(scene.registry, self, title=f"Add a node that takes {output_type}",
                            accepts=lambda cls: any(types_compatible(output_type, spec.type)
                                                    for spec in cls.spec().inputs))
        self._place_at_cursor(dialog)
        if dialog.exec() != NodeSearch.Accepted or dialog.chosen() is None:
            return None
        scene.undo_stack.beginMacro(f"Add {dialog.chosen()} and connect it")
        node_id = scene.add_node(dialog.chosen(), (point.x() + 20, point.y() - 20))
        scene.connect_to_new(source, output, node_id)
        scene.undo_stack.endMacro()
        return node_id

    def _place_at_cursor(self, dialog: QWidget) -> None:
        """Open a popup where the mouse is (kept on the screen)."""
        from PySide6.QtGui import QCursor

        at = QCursor.pos()
        screen = self.screen().availableGeometry() if self.screen() else None
        x, y = at.x() - 40, at.y() - 20
        if screen is not None:
            x = max(screen.left(), min(x, screen.right() - dialog.width()))
            y = max(screen.top(), min(y, screen.bottom() - dialog.height()))
        dialog.move(x, y)

    def search_and_add(self, point: QPointF) -> str | None:
        """Open the node search; add the chosen type at ``point`` as one undoable step."""
        from studio.app.search import NodeSearch

        scene = self.scene()
        dialog = NodeSearch(scene.registry, self)
        self._place_at_cursor(dialog)
        if dialog.exec() != NodeSearch.Accepted or dialog.chosen() is None:
            return None
        # The new node becomes the selection, and the one selected before it the anchor
        # that Ctrl+L wires into it (CanvasScene.add_node does both).
        return scene.add_node(dialog.chosen(), (point.x(), point.y()))


class Minimap(QGraphicsView):
    """The whole graph in a corner of the canvas, with the visible part outlined; click or
    drag in it to move the view there."""

    SIZE = (200, 130)

    def __init__(self, canvas: CanvasView) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        self.setInteractive(False)
        self.setRenderHints(QPainter.Antialiasing)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setFixedSize(*self.SIZE)
        self.setFrameShape(QGraphicsView.Box)
        self.setStyleSheet("border: 1px solid #4a4d55;")

    def follow(self) -> None:
        """Show the canvas's scene, all of it."""
        if not shiboken6.isValid(self.canvas) or not shiboken6.isValid(self.canvas.scene()):
            return  # the window is closing
        if self.scene() is not self.canvas.scene():
            self.setScene(self.canvas.scene())
        bounds = self.canvas.scene().itemsBoundingRect().adjusted(-80, -80, 80, 80)
        if not bounds.isEmpty():
            self.fitInView(bounds, Qt.KeepAspectRatio)
        self.viewport().update()

    def visible_area(self) -> QRectF:
        return self.canvas.mapToScene(self.canvas.viewport().rect()).boundingRect()

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, theme.GRID)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        painter.setPen(QPen(theme.SELECTED, 0))
        painter.setBrush(Qt.NoBrush)
        painter.drawRect(self.visible_area())

    def mousePressEvent(self, event) -> None:
        self.canvas.stop_keeping_fit()
        self.canvas.centerOn(self.mapToScene(event.position().toPoint()))
        self.viewport().update()

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & Qt.LeftButton:
            self.mousePressEvent(event)
