"""The node canvas: a QGraphicsScene that draws the workflow and edits it through commands.

Fields are painted, not real widgets (a widget per field costs about 1 ms a node and slows
repaints); titles and labels are skipped when zoomed far out. Wires are drawn while dragged
from an output and checked with the graph layer's ``can_connect`` when dropped: a refused
wire says why in a tooltip.
"""

from __future__ import annotations

from typing import Any

import shiboken6

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QUndoStack
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsScene,
    QGraphicsSceneMouseEvent,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QToolTip,
    QWidget,
)

from studio.app import theme
from studio.app.commands import Connect, MoveNodes
from studio.graph import Workflow, can_connect
from studio.graph.model import NodeMode, node_sort_key
from studio.graph.sockets import SOCKET_COLOURS
from studio.registry import Registry

NODE_WIDTH = 230.0
TITLE_HEIGHT = 26.0
ROW_HEIGHT = 20.0
# The tallest a picture shown inside a node gets.
PREVIEW_HEIGHT = 180.0
PORT_RADIUS = 5.0
# Below this zoom, text is not drawn (it would be unreadable and is the costliest part).
DETAIL_ZOOM = 0.45
_fonts: dict[bool, QFont] = {}


def _font(bold: bool) -> QFont:
    # Built once: constructing fonts in every paint is a measurable part of a repaint.
    if bold not in _fonts:
        font = QFont()
        font.setPointSizeF(9)
        font.setBold(bold)
        _fonts[bold] = font
    return _fonts[bold]


class NodeItem(QGraphicsItem):
    """One node: title bar, input rows on the left, outputs on the right, painted fields."""

    def __init__(self, scene: CanvasScene, node_id: str) -> None:
        super().__init__()
        self.canvas = scene
        self.node_id = node_id
        self.status = ""
        self.progress = 0.0
        self.message = ""
        # The last picture this node produced, or the sampler's live latent preview.
        self.preview: Any = None
        self.setFlags(QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemIsSelectable
                      | QGraphicsItem.ItemSendsGeometryChanges)
        self.setZValue(1)
        # Repaints blit a cached picture of the node; it is redrawn only when it changes.
        self.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        self.refresh()

    # -- layout ------------------------------------------------------------------------
    @property
    def node(self):
        return self.canvas.workflow.nodes[self.node_id]

    def rows(self) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str]]]:
        cls = self.canvas.registry.get(self.node.type)
        if cls is None:  # a placeholder: show what the file says it had
            inputs = [(name, "*", False) for name in self.node.links] + \
                     [(name, "*", True) for name in self.node.values if name not in self.node.links]
            return inputs, []
        inputs = [(spec.name, spec.type, spec.has_widget) for spec in cls.inputs]
        outputs = [(spec.name, spec.type) for spec in cls.outputs]
        return inputs, outputs

    def refresh(self) -> None:
        self.prepareGeometryChange()
        inputs, outputs = self.rows()
        # Socket rows first (wired inputs on the left, outputs on the right), then the
        # fields, one a row, as ComfyUI lays nodes out.
        self.sockets = [row for row in inputs if not row[2] or row[0] in self.node.links]
        self.fields = [row for row in inputs if row[2] and row[0] not in self.node.links]
        self.inputs, self.outputs = inputs, outputs
        self.socket_rows = max(len(self.sockets), len(outputs))
        self.height = TITLE_HEIGHT + ROW_HEIGHT * max(self.socket_rows + len(self.fields), 1) + 10
        self.preview_rect = QRectF()
        if self.preview is not None and not self.preview.isNull():
            side = NODE_WIDTH - 20
            scale = min(side / self.preview.width(), PREVIEW_HEIGHT / self.preview.height())
            width, height = self.preview.width() * scale, self.preview.height() * scale
            self.preview_rect = QRectF((NODE_WIDTH - width) / 2, self.height - 4, width, height)
            self.height += height + 6
        self.setPos(*self.node.position)
        self.setToolTip(self.message or (self.canvas.registry.get(self.node.type).help_text()
                                         if self.canvas.registry.get(self.node.type) else
                                         f"{self.node.type}: a node type Seed Studio does not have"))
        self.update()

    def boundingRect(self) -> QRectF:
        return QRectF(-PORT_RADIUS - 1, -1, NODE_WIDTH + 2 * PORT_RADIUS + 2, self.height + 2)

    def input_row(self, name: str) -> int:
        sockets = [row[0] for row in self.sockets]
        if name in sockets:
            return sockets.index(name)
        fields = [row[0] for row in self.fields]
        return self.socket_rows + (fields.index(name) if name in fields else 0)

    def input_position(self, name: str) -> QPointF:
        return self.mapToScene(QPointF(0, TITLE_HEIGHT + ROW_HEIGHT * (self.input_row(name) + 0.5)))

    def output_position(self, name: str) -> QPointF:
        names = [row[0] for row in self.outputs]
        index = names.index(name) if name in names else 0
        return self.mapToScene(QPointF(NODE_WIDTH, TITLE_HEIGHT + ROW_HEIGHT * (index + 0.5)))

    def port_at(self, scene_point: QPointF) -> tuple[str, str] | None:
        """("input"|"output", name) of the port under a scene point."""
        for kind, rows, position in (("output", self.outputs, self.output_position),
                                     ("input", self.sockets + self.fields, self.input_position)):
            for row in rows:
                if (position(row[0]) - scene_point).manhattanLength() <= PORT_RADIUS * 2.5:
                    return kind, row[0]
        return None

    # -- painting ----------------------------------------------------------------------
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        node = self.node
        detail = option.levelOfDetailFromTransform(painter.worldTransform()) >= DETAIL_ZOOM
        body = QRectF(0, 0, NODE_WIDTH, self.height)
        faded = node.mode is not NodeMode.NORMAL
        painter.setOpacity(0.45 if faded else 1.0)
        painter.setPen(QPen(theme.SELECTED if self.isSelected() else theme.NODE_BORDER, 2 if self.isSelected() else 1))
        painter.setBrush(theme.NODE_BODY)
        painter.drawRoundedRect(body, 6, 6)
        title = QRectF(0, 0, NODE_WIDTH, TITLE_HEIGHT)
        painter.setBrush(QColor(node.color) if node.color else theme.NODE_TITLE)
        painter.setPen(Qt.NoPen)
        painter.drawRoundedRect(title, 6, 6)
        if self.status:
            colour = theme.STATUS_COLOURS.get(self.status, theme.MUTED_TEXT)
            painter.setBrush(colour)
            width = NODE_WIDTH * (self.progress if self.status == "running" and self.progress else 1.0)
            painter.drawRect(QRectF(0, TITLE_HEIGHT - 3, width, 3))
        for kind, rows in (("input", self.sockets), ("output", self.outputs)):
            for index, row in enumerate(rows):
                name, socket_type = row[0], row[1]
                x = 0 if kind == "input" else NODE_WIDTH
                centre = QPointF(x, TITLE_HEIGHT + ROW_HEIGHT * (index + 0.5))
                painter.setBrush(QColor(SOCKET_COLOURS.get(socket_type, "#bdbdbd")))
                painter.setPen(QPen(theme.BACKGROUND, 1))
                painter.drawEllipse(centre, PORT_RADIUS, PORT_RADIUS)
        if not detail:
            return
        painter.setPen(theme.TEXT)
        painter.setFont(_font(True))
        label = node.title or (self.canvas.registry.get(node.type).title if self.canvas.registry.get(node.type)
                               else node.type)
        painter.drawText(title.adjusted(8, 0, -8, 0), Qt.AlignVCenter | Qt.AlignLeft, label)
        painter.setFont(_font(False))
        painter.setPen(theme.TEXT)
        for index, (name, _, _) in enumerate(self.sockets):
            rect = QRectF(10, TITLE_HEIGHT + ROW_HEIGHT * index, NODE_WIDTH - 20, ROW_HEIGHT)
            painter.drawText(rect, Qt.AlignVCenter | Qt.AlignLeft, name)
        for index, (name, _, _) in enumerate(self.fields):
            rect = QRectF(10, TITLE_HEIGHT + ROW_HEIGHT * (self.socket_rows + index), NODE_WIDTH - 20, ROW_HEIGHT)
            field = rect.adjusted(-4, 2, 4, -2)
            painter.setPen(Qt.NoPen)
            painter.setBrush(theme.BACKGROUND)
            painter.drawRoundedRect(field, 4, 4)
            painter.setPen(theme.MUTED_TEXT)
            painter.drawText(rect, Qt.AlignVCenter | Qt.AlignLeft, name)
            painter.setPen(theme.TEXT)
            metrics = painter.fontMetrics()
            room = int(rect.width() - metrics.horizontalAdvance(name) - 12)
            value = metrics.elidedText(str(node.values.get(name, self._default(name))), Qt.ElideMiddle, room)
            painter.drawText(rect, Qt.AlignVCenter | Qt.AlignRight, value)
        for index, (name, _) in enumerate(self.outputs):
            rect = QRectF(10, TITLE_HEIGHT + ROW_HEIGHT * index, NODE_WIDTH - 20, ROW_HEIGHT)
            painter.setPen(theme.TEXT)
            painter.drawText(rect, Qt.AlignVCenter | Qt.AlignRight, name)
        if not self.preview_rect.isEmpty():
            painter.setRenderHint(QPainter.SmoothPixmapTransform, self.preview.width() > self.preview_rect.width())
            painter.drawImage(self.preview_rect, self.preview)

    def field_at(self, scene_point: QPointF) -> str | None:
        """The field (unwired widget input) whose row is under a scene point."""
        local = self.mapFromScene(scene_point)
        row = int((local.y() - TITLE_HEIGHT) // ROW_HEIGHT) - self.socket_rows
        if 0 <= row < len(self.fields) and 0 <= local.x() <= NODE_WIDTH:
            return self.fields[row][0]
        return None

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        name = self.field_at(event.scenePos())
        if name is not None:
            self.canvas.edit_field(self.node_id, name)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def _default(self, name: str) -> Any:
        cls = self.canvas.registry.get(self.node.type)
        spec = cls.spec().input(name) if cls else None
        return spec.default if spec else ""

    def itemChange(self, change: QGraphicsItem.GraphicsItemChange, value: Any) -> Any:
        if change == QGraphicsItem.ItemPositionHasChanged:
            self.canvas.update_wires(self.node_id)
        return super().itemChange(change, value)


class WireItem(QGraphicsPathItem):
    """A wire from an output to an input, as a horizontal S-curve in the socket's colour."""

    def __init__(self, colour: str) -> None:
        super().__init__()
        self.setPen(QPen(QColor(colour), 2.2))
        self.setZValue(0)

    def set_ends(self, start: QPointF, end: QPointF) -> None:
        path = QPainterPath(start)
        bend = max(40.0, abs(end.x() - start.x()) * 0.5)
        path.cubicTo(start + QPointF(bend, 0), end - QPointF(bend, 0), end)
        self.setPath(path)


class CanvasScene(QGraphicsScene):
    """The workflow as items, kept in step with the model through its events."""

    def __init__(self, workflow: Workflow, registry: Registry, undo_stack: QUndoStack) -> None:
        super().__init__()
        self.workflow = workflow
        self.registry = registry
        self.undo_stack = undo_stack
        self.nodes: dict[str, NodeItem] = {}
        self.wires: dict[tuple[str, str], WireItem] = {}
        # node id → the wires touching it, so moving a node re-routes only its own wires.
        self.wires_of: dict[str, set[tuple[str, str]]] = {}
        self.dragging: tuple[str, str, WireItem] | None = None  # (source node, output, temporary wire)
        self.last_refusal = ""
        # The node selected before the current one: keyboard connecting wires it in.
        self.link_anchor: str | None = None
        self.press_positions: dict[str, tuple[float, float]] = {}
        self.setBackgroundBrush(theme.BACKGROUND)
        # A canvas far bigger than any graph, so the view can be moved anywhere, not only
        # as far as the outermost node.
        self.setSceneRect(QRectF(-50000, -50000, 100000, 100000))
        self.rebuild()
        self._unsubscribe = workflow.subscribe(self._on_model_event)

    def detach(self) -> None:
        self._unsubscribe()

    def rebuild(self) -> None:
        self.clear()
        self.nodes.clear()
        self.wires.clear()
        self.wires_of.clear()
        for node_id in self.workflow.nodes:
            self._add_node_item(node_id)
        for link in self.workflow.links():
            self._add_wire(link.target, link.input)

    def _add_node_item(self, node_id: str) -> None:
        item = NodeItem(self, node_id)
        self.addItem(item)
        self.nodes[node_id] = item

    def _add_wire(self, target: str, input_name: str) -> None:
        source = self.workflow.nodes[target].links[input_name]
        if source.node not in self.nodes or target not in self.nodes:
            return
        output_type = next((kind for name, kind in self.nodes[source.node].outputs if name == source.output), "*")
        wire = WireItem(SOCKET_COLOURS.get(output_type, "#bdbdbd"))
        self.addItem(wire)
        self.wires[(target, input_name)] = wire
        for node_id in (source.node, target):
            self.wires_of.setdefault(node_id, set()).add((target, input_name))
        self._place_wire(target, input_name)

    def _place_wire(self, target: str, input_name: str) -> None:
        source = self.workflow.nodes[target].links[input_name]
        self.wires[(target, input_name)].set_ends(self.nodes[source.node].output_position(source.output),
                                                  self.nodes[target].input_position(input_name))

    def update_wires(self, node_id: str) -> None:
        for target, input_name in self.wires_of.get(node_id, ()):
            node = self.workflow.nodes.get(target)
            if (target, input_name) in self.wires and node is not None and input_name in node.links:
                self._place_wire(target, input_name)

    def _on_model_event(self, event: str, payload: dict[str, Any]) -> None:
        if event in ("node_added", "node_removed"):
            self.rebuild()
        elif event in ("link_added", "link_removed"):
            link = payload["link"]
            wire = self.wires.pop((link.target, link.input), None)
            if wire is not None:
                self.removeItem(wire)
                for node_id in (link.source, link.target):
                    self.wires_of.get(node_id, set()).discard((link.target, link.input))
            if event == "link_added":
                self._add_wire(link.target, link.input)
            self.nodes[link.target].refresh()
        elif event == "node_moved":
            item = self.nodes[payload["node"].id]
            if (item.pos().x(), item.pos().y()) != tuple(payload["position"]):
                item.setPos(*payload["position"])
        elif "node" in payload and payload["node"].id in self.nodes:
            self.nodes[payload["node"].id].refresh()

    # -- status from runs ----------------------------------------------------------------
    def set_status(self, node_id: str, status: str, progress: float = 0.0, message: str = "") -> None:
        item = self.nodes.get(node_id)
        if item is not None:
            item.status, item.progress, item.message = status, progress, message
            item.setToolTip(message) if message else None
            item.update()

    def set_preview(self, node_id: str, image: Any) -> None:
        """Show a picture inside a node (an output's result, a sampler's progress)."""
        item = self.nodes.get(node_id)
        if item is not None and image is not None and not image.isNull():
            item.preview = image
            item.refresh()

    def clear_status(self) -> None:
        for item in self.nodes.values():
            item.status, item.progress, item.message = "", 0.0, ""
            item.update()

    # -- mouse: drag wires from outputs, record moves for undo ----------------------------
    def node_at(self, point: QPointF) -> NodeItem | None:
        for item in self.items(point):
            if isinstance(item, NodeItem):
                return item
        return None

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        point = event.scenePos()
        for item in self.nodes.values():
            port = item.port_at(point)
            if port and port[0] == "output" and event.button() == Qt.LeftButton:
                output_type = next(kind for name, kind in item.outputs if name == port[1])
                wire = WireItem(SOCKET_COLOURS.get(output_type, "#bdbdbd"))
                wire.set_ends(item.output_position(port[1]), point)
                self.addItem(wire)
                self.dragging = (item.node_id, port[1], wire)
                event.accept()
                return
        self.press_positions = {node_id: tuple(item.node.position) for node_id, item in self.nodes.items()}
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self.dragging:
            source, output, wire = self.dragging
            wire.set_ends(self.nodes[source].output_position(output), event.scenePos())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self.dragging:
            source, output, wire = self.dragging
            self.dragging = None
            self.removeItem(wire)
            target = None
            for item in self.nodes.values():
                port = item.port_at(event.scenePos())
                if port and port[0] == "input":
                    target = (item.node_id, port[1])
            if target is not None:
                self.try_connect(source, output, *target, screen_position=event.screenPos())
            event.accept()
            return
        super().mouseReleaseEvent(event)
        moves = {}
        for node_id, item in self.nodes.items():
            before = self.press_positions.get(node_id)
            after = (item.pos().x(), item.pos().y())
            if before is not None and tuple(before) != after:
                moves[node_id] = (tuple(before), after)
        self.press_positions = {}
        if moves:
            self.undo_stack.push(MoveNodes(self.workflow, moves))

    def edit_field(self, node_id: str, name: str) -> bool:
        """Ask for a new value with the editor the input's type calls for; set it as one
        undoable step."""
        from PySide6.QtWidgets import QInputDialog

        from studio.app.commands import SetValue
        from studio.graph.sockets import BOOLEAN, FLOAT, INT

        node = self.workflow.nodes[node_id]
        cls = self.registry.get(node.type)
        spec = cls.spec().input(name) if cls else None
        current = node.values.get(name, spec.default if spec else "")
        parent = self.views()[0] if self.views() else None
        choices = spec.choice_list() if spec else None
        if choices:
            index = choices.index(current) if current in choices else 0
            value, ok = QInputDialog.getItem(parent, name, name, choices, index, False)
        elif spec is not None and spec.type == INT:
            low = int(spec.min) if spec.min is not None else -2**31
            high = int(spec.max) if spec.max is not None else 2**31 - 1
            value, ok = QInputDialog.getInt(parent, name, name, int(current or 0), max(low, -2**31),
                                            min(high, 2**31 - 1), int(spec.step or 1))
        elif spec is not None and spec.type == FLOAT:
            value, ok = QInputDialog.getDouble(parent, name, name, float(current or 0.0),
                                               spec.min if spec.min is not None else -1e9,
                                               spec.max if spec.max is not None else 1e9, 3)
        elif spec is not None and spec.type == BOOLEAN:
            value, ok = QInputDialog.getItem(parent, name, name, ["true", "false"], 0 if current else 1, False)
            value = value == "true"
        elif spec is not None and spec.multiline:
            value, ok = QInputDialog.getMultiLineText(parent, name, name, str(current or ""))
        else:
            value, ok = QInputDialog.getText(parent, name, name, text=str(current or ""))
        if not ok or value == current:
            return False
        self.undo_stack.push(SetValue(self.workflow, node_id, name, value))
        return True

    def set_value(self, node_id: str, name: str, value: Any) -> bool:
        """Set one value as an undoable step (nothing when it is unchanged)."""
        from studio.app.commands import SetValue

        node = self.workflow.nodes[node_id]
        if name in node.values and node.values[name] == value:
            return False
        self.undo_stack.push(SetValue(self.workflow, node_id, name, value))
        return True

    def add_node(self, type_name: str, position: tuple[float, float]) -> str:
        from studio.app.commands import AddNode

        command = AddNode(self.workflow, type_name, position)
        self.undo_stack.push(command)
        return command.node_id  # type: ignore[return-value]

    def selected_ids(self) -> list[str]:
        """Selected nodes in id order (the scene's own order varies)."""
        return sorted((item.node_id for item in self.selectedItems() if isinstance(item, NodeItem)),
                      key=node_sort_key)

    def copy_selected(self) -> dict[str, Any] | None:
        from studio.app.commands import copy_nodes

        chosen = self.selected_ids()
        return copy_nodes(self.workflow, chosen) if chosen else None

    def paste(self, clipboard: dict[str, Any], keep_incoming: bool = False) -> list[str]:
        """Paste as one undoable step, a little below-right of the originals; the pasted
        nodes become the selection."""
        from studio.app.commands import PasteNodes

        command = PasteNodes(self.workflow, clipboard, (40.0, 40.0), keep_incoming)
        self.undo_stack.push(command)
        self.clearSelection()
        for new in command.new_ids.values():
            if new in self.nodes:
                self.nodes[new].setSelected(True)
        return list(command.new_ids.values())

    def delete_selected(self, reconnect: bool = False) -> None:
        """Delete the selection as one undoable step; with ``reconnect``, what flowed through
        the deleted nodes is wired around them (Blender's "delete with reconnect")."""
        from studio.app.commands import RemoveNodes
        from studio.graph.connect import reconnections

        chosen = self.selected_ids()
        if not chosen:
            return
        wires = reconnections(self.workflow, self.registry.spec, set(chosen)) if reconnect else []
        self.undo_stack.beginMacro(f"Delete {len(chosen)} node{'s' if len(chosen) != 1 else ''}"
                                   + (" with reconnect" if reconnect else ""))
        self.undo_stack.push(RemoveNodes(self.workflow, chosen))
        for wire in wires:
            self.undo_stack.push(Connect(self.workflow, *wire))
        self.undo_stack.endMacro()

    # -- keyboard-only editing -------------------------------------------------------------
    def select_only(self, node_id: str) -> None:
        previous = self.selected_ids()
        if len(previous) == 1 and previous[0] != node_id:
            self.link_anchor = previous[0]
        self.clearSelection()
        self.nodes[node_id].setSelected(True)

    def connect_selected(self) -> bool:
        """Wire the first free compatible output of one node into the other's first matching
        free input: the two selected nodes (left one feeds right one), or the node selected
        before this one into this one."""
        from studio.graph.connect import first_free_connection

        chosen = self.selected_ids()
        if len(chosen) == 2:
            source, target = sorted(chosen, key=lambda n: self.workflow.nodes[n].position[0])
        elif len(chosen) == 1 and self.link_anchor in self.workflow.nodes and self.link_anchor != chosen[0]:
            source, target = self.link_anchor, chosen[0]
        else:
            self.last_refusal = "select two nodes (or one, after another) to connect them"
            return False
        pair = first_free_connection(self.workflow, self.registry.spec, source, target)
        if pair is None:
            self.last_refusal = (f"{self.workflow.nodes[source].label} has no output that a free input of "
                                 f"{self.workflow.nodes[target].label} accepts")
            return False
        return self.try_connect(source, pair[0], target, pair[1])

    def nudge_selected(self, dx: float, dy: float) -> None:
        chosen = self.selected_ids()
        if chosen:
            self.undo_stack.push(MoveNodes(self.workflow, {
                n: (self.workflow.nodes[n].position,
                    (self.workflow.nodes[n].position[0] + dx, self.workflow.nodes[n].position[1] + dy))
                for n in chosen}))

    def select_neighbour(self, dx: int, dy: int) -> str | None:
        """Select the nearest node in a direction from the selected one (Alt+arrows)."""
        chosen = self.selected_ids()
        if not chosen:
            if self.workflow.nodes:
                first = min(self.workflow.nodes, key=lambda n: self.workflow.nodes[n].position)
                self.select_only(first)
                return first
            return None
        x0, y0 = self.workflow.nodes[chosen[0]].position
        best, best_score = None, float("inf")
        for node_id, node in self.workflow.nodes.items():
            ddx, ddy = node.position[0] - x0, node.position[1] - y0
            along = ddx * dx + ddy * dy
            if node_id == chosen[0] or along <= 0:
                continue
            across = abs(ddx * dy) + abs(ddy * dx)
            score = along + 2 * across
            if score < best_score:
                best, best_score = node_id, score
        if best is not None:
            self.select_only(best)
        return best

    def arrange_selected(self, how: str) -> None:
        """Align the selection's left or top edges, or distribute it evenly across or down."""
        chosen = self.selected_ids()
        if len(chosen) < 2:
            return
        positions = {n: self.workflow.nodes[n].position for n in chosen}
        if how == "align-left":
            left = min(x for x, _ in positions.values())
            after = {n: (left, y) for n, (x, y) in positions.items()}
        elif how == "align-top":
            top = min(y for _, y in positions.values())
            after = {n: (x, top) for n, (x, y) in positions.items()}
        else:
            axis = 0 if how == "distribute-horizontally" else 1
            ordered = sorted(chosen, key=lambda n: positions[n][axis])
            first, last = positions[ordered[0]][axis], positions[ordered[-1]][axis]
            gap = (last - first) / (len(ordered) - 1)
            after = {}
            for index, n in enumerate(ordered):
                place = list(positions[n])
                place[axis] = first + index * gap
                after[n] = (place[0], place[1])
        moves = {n: (positions[n], after[n]) for n in chosen if positions[n] != after[n]}
        if moves:
            self.undo_stack.push(MoveNodes(self.workflow, moves))

    def try_connect(self, source: str, output: str, target: str, input_name: str, screen_position: Any = None) -> bool:
        """Connect if ``can_connect`` allows it (as one undoable step); otherwise say why."""
        verdict = can_connect(self.workflow, self.registry.spec, source, output, target, input_name)
        if not verdict:
            self.last_refusal = verdict.reason
            if screen_position is not None:
                QToolTip.showText(screen_position, verdict.reason)
            return False
        self.last_refusal = ""
        self.undo_stack.push(Connect(self.workflow, source, output, target, input_name))
        return True


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
        self.minimap.move(self.width() - self.minimap.width() - 12, self.height() - self.minimap.height() - 12)

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        self.minimap.viewport().update()

    def fit(self) -> None:
        bounds = self.scene().itemsBoundingRect().adjusted(-60, -60, 60, 60)
        if not bounds.isEmpty():
            self.fitInView(bounds, Qt.KeepAspectRatio)

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, theme.BACKGROUND)
        step = 40
        if self.transform().m11() * step < 8:
            return  # too dense to help
        painter.setPen(QPen(theme.GRID, 1))
        left, top = int(rect.left()) - int(rect.left()) % step, int(rect.top()) - int(rect.top()) % step
        for x in range(left, int(rect.right()), step):
            painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
        for y in range(top, int(rect.bottom()), step):
            painter.drawLine(QPointF(rect.left(), y), QPointF(rect.right(), y))

    def wheelEvent(self, event) -> None:
        factor = 1.15 if event.angleDelta().y() > 0 else 1 / 1.15
        zoom = self.transform().m11() * factor
        if 0.1 <= zoom <= 4.0:
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
        if self.scene().node_at(point) is None:
            self.search_and_add(point)
            return
        super().mouseDoubleClickEvent(event)

    def search_and_add(self, point: QPointF) -> str | None:
        """Open the node search; add the chosen type at ``point`` as one undoable step."""
        from studio.app.search import NodeSearch

        scene = self.scene()
        before = scene.selected_ids()
        dialog = NodeSearch(scene.registry, self)
        if dialog.exec() != NodeSearch.Accepted or dialog.chosen() is None:
            return None
        node_id = scene.add_node(dialog.chosen(), (point.x(), point.y()))
        # The new node becomes the selection, and the one selected before it the anchor
        # that Ctrl+L wires into it.
        scene.clearSelection()
        scene.nodes[node_id].setSelected(True)
        if len(before) == 1:
            scene.link_anchor = before[0]
        return node_id


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
        self.canvas.centerOn(self.mapToScene(event.position().toPoint()))
        self.viewport().update()

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & Qt.LeftButton:
            self.mousePressEvent(event)
