"""What the canvas draws: nodes, wires, group frames and reroute points.

Fields are painted, not real widgets (a widget per field costs about 1 ms a node and slows
repaints). Sizes come from ``studio.graph.layout``, so what is placed and checked without Qt
is what is drawn. Titles and pictures are drawn at every zoom Fit can choose; field text is
left out only when zoomed out further than that.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsSceneMouseEvent,
    QStyleOptionGraphicsItem,
    QWidget,
)

from studio.app import theme
from studio.app.editors import help_text
from studio.app.node_status import NodeStatus
from studio.graph.layout import NODE_WIDTH, PREVIEW_HEIGHT, ROW_HEIGHT, TITLE_HEIGHT
from studio.graph.model import NodeMode
from studio.graph.sockets import SOCKET_COLOURS

if TYPE_CHECKING:
    from studio.app.canvas import CanvasScene

PORT_RADIUS = 5.0
# Below this zoom the field rows' text is not drawn (unreadable, and the costliest part);
# titles and pictures always are. Fit never zooms out further than MIN_FIT_ZOOM.
DETAIL_ZOOM = 0.45
MIN_FIT_ZOOM = 0.35
# Below this zoom the title's font grows so it stays about 8 pixels high on screen (it fills
# the title bar at MIN_FIT_ZOOM), as map labels do.
TITLE_FONT = 9.5
TITLE_GROWS_BELOW = 0.75
TITLE_FONT_MAX = 17.0
PLACEHOLDER_COLOUR = QColor("#e0a030")
PROBLEM_COLOUR = QColor("#ef5350")
_fonts: dict[tuple[bool, float], QFont] = {}


def title_point_size(zoom: float) -> float:
    """The title's font size at a zoom: the usual size from TITLE_GROWS_BELOW up, larger below
    (rounded, so a few sizes are cached), at most what the title bar holds."""
    if zoom >= TITLE_GROWS_BELOW:
        return TITLE_FONT
    return min(TITLE_FONT_MAX, float(round(TITLE_FONT * TITLE_GROWS_BELOW / max(zoom, 0.05))))


def font(bold: bool, size: float = 9.0) -> QFont:
    # Built once: constructing fonts in every paint is a measurable part of a repaint.
    key = (bold, size)
    if key not in _fonts:
        made = QFont()
        made.setPointSizeF(size)
        made.setBold(bold)
        _fonts[key] = made
    return _fonts[key]


class NodeItem(QGraphicsItem):
    """One node: title bar, socket rows (inputs left, outputs right), painted fields."""

    def __init__(self, scene: CanvasScene, node_id: str) -> None:
        super().__init__()
        self.canvas = scene
        self.node_id = node_id
        self.status = NodeStatus.NONE
        self.progress = 0.0
        self.message = ""
        # A problem live validation found (shown as a red outline and in the tooltip).
        self.problem = ""
        # The result shown no longer matches the graph (an edit upstream would recompute it).
        self.stale = False
        # The last picture this node produced, or the sampler's live latent preview.
        self.preview: Any = None
        self.setFlags(QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemIsSelectable
                      | QGraphicsItem.ItemSendsGeometryChanges)
        self.setZValue(1)
        # Repaints blit a cached picture of the node; it is redrawn only when it changes.
        self.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        self.refresh()

    # -- layout ------------------------------------------------------------------------------
    @property
    def node(self):
        return self.canvas.workflow.nodes[self.node_id]

    @property
    def placeholder(self) -> bool:
        return self.canvas.registry.get(self.node.type) is None

    def rows(self) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str]]]:
        cls = self.canvas.registry.get(self.node.type)
        if cls is None:  # a placeholder: what the file says it had, and what others take from it
            inputs = [(name, "*", False) for name in self.node.links] + \
                     [(name, "*", True) for name in self.node.values if name not in self.node.links]
            taken = dict.fromkeys(link.output for link in self.canvas.workflow.links_from(self.node_id))
            return inputs, [(name, "*") for name in taken]
        inputs = [(spec.name, spec.type, spec.has_widget) for spec in cls.inputs]
        outputs = [(spec.name, spec.type) for spec in cls.outputs]
        return inputs, outputs

    def refresh(self) -> None:
        self.prepareGeometryChange()
        inputs, outputs = self.rows()
        node = self.node
        # Socket rows first (wired inputs on the left, outputs on the right), then the
        # fields, one a row, as ComfyUI lays nodes out.
        self.sockets = [row for row in inputs if not row[2] or row[0] in node.links]
        self.fields = [row for row in inputs if row[2] and row[0] not in node.links]
        self.inputs, self.outputs = inputs, outputs
        self.socket_rows = max(len(self.sockets), len(outputs))
        if node.collapsed:
            self.height = TITLE_HEIGHT
        else:
            self.height = TITLE_HEIGHT + ROW_HEIGHT * max(self.socket_rows + len(self.fields), 1) + 10
        self.preview_rect = QRectF()
        if self.preview is not None and not self.preview.isNull() and not node.collapsed:
            side = NODE_WIDTH - 20
            scale = min(side / self.preview.width(), PREVIEW_HEIGHT / self.preview.height())
            width, height = self.preview.width() * scale, self.preview.height() * scale
            self.preview_rect = QRectF((NODE_WIDTH - width) / 2, self.height - 4, width, height)
            self.height += height + 6
        grown = PORT_RADIUS * 1.6 + 2  # room for a highlighted socket
        self._bounds = QRectF(-grown, -1, NODE_WIDTH + 2 * grown, self.height + 2)
        if (self.pos().x(), self.pos().y()) != tuple(node.position):
            self.setPos(*node.position)
        self._tooltip()
        self.update()

    def _tooltip(self) -> None:
        cls = self.canvas.registry.get(self.node.type)
        text = self.message or self.problem or (help_text(cls.help_text()) if cls else
                                                f"{self.node.type}: a node type Seed Studio does not have; "
                                                "its wires and values are kept")
        self.setToolTip(text)

    def boundingRect(self) -> QRectF:
        # Asked for thousands of times a repaint: made once per layout (in refresh).
        return self._bounds

    def input_row(self, name: str) -> int:
        sockets = [row[0] for row in self.sockets]
        if name in sockets:
            return sockets.index(name)
        fields = [row[0] for row in self.fields]
        return self.socket_rows + (fields.index(name) if name in fields else 0)

    def input_position(self, name: str) -> QPointF:
        if self.node.collapsed:
            return self.mapToScene(QPointF(0, TITLE_HEIGHT / 2))
        return self.mapToScene(QPointF(0, TITLE_HEIGHT + ROW_HEIGHT * (self.input_row(name) + 0.5)))

    def output_position(self, name: str) -> QPointF:
        if self.node.collapsed:
            return self.mapToScene(QPointF(NODE_WIDTH, TITLE_HEIGHT / 2))
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

    def field_at(self, scene_point: QPointF) -> str | None:
        """The field (unwired widget input) whose row is under a scene point."""
        local = self.mapFromScene(scene_point)
        row = int((local.y() - TITLE_HEIGHT) // ROW_HEIGHT) - self.socket_rows
        if 0 <= row < len(self.fields) and 0 <= local.x() <= NODE_WIDTH and not self.node.collapsed:
            return self.fields[row][0]
        return None

    # -- painting ----------------------------------------------------------------------------
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        node = self.node
        detail = option.levelOfDetailFromTransform(painter.worldTransform()) >= DETAIL_ZOOM
        body = QRectF(0, 0, NODE_WIDTH, self.height)
        placeholder = self.placeholder
        painter.setOpacity(0.45 if node.mode is NodeMode.MUTE else 1.0)
        if self.isSelected():
            outline = QPen(theme.SELECTED, 2)
        elif placeholder:
            outline = QPen(PLACEHOLDER_COLOUR, 2, Qt.DashLine)
        elif self.problem:
            outline = QPen(PROBLEM_COLOUR, 2)
        else:
            outline = QPen(theme.NODE_BORDER, 1)
        painter.setPen(outline)
        painter.setBrush(QColor("#3a2f4f") if node.mode is NodeMode.BYPASS else theme.NODE_BODY)
        painter.drawRoundedRect(body, 6, 6)
        title = QRectF(0, 0, NODE_WIDTH, TITLE_HEIGHT)
        painter.setBrush(QColor("#6d3f8f") if node.mode is NodeMode.BYPASS else
                         QColor("#4a3a1a") if placeholder else
                         QColor(node.color) if node.color else theme.NODE_TITLE)
        painter.setPen(Qt.NoPen)
        painter.drawRoundedRect(title, 6, 6)
        if self.status:
            colour = theme.STATUS_COLOURS.get(self.status, theme.MUTED_TEXT)
            painter.setBrush(theme.MUTED_TEXT if self.stale else colour)
            width = NODE_WIDTH * (self.progress if self.status is NodeStatus.RUNNING and self.progress else 1.0)
            painter.drawRect(QRectF(0, TITLE_HEIGHT - 3, width, 3))
        if not node.collapsed:
            for kind, rows in (("input", self.sockets), ("output", self.outputs)):
                for index, row in enumerate(rows):
                    socket_type = row[1]
                    x = 0 if kind == "input" else NODE_WIDTH
                    centre = QPointF(x, TITLE_HEIGHT + ROW_HEIGHT * (index + 0.5))
                    colour = QColor(SOCKET_COLOURS.get(socket_type, "#bdbdbd"))
                    radius = PORT_RADIUS
                    if self.canvas.drag_type is not None and kind == "input":
                        # While a wire is dragged: what would take it grows and glows, the rest fades.
                        if self.canvas.accepts_drag(socket_type):
                            radius = PORT_RADIUS * 1.6
                            painter.setPen(QPen(theme.SELECTED, 2))
                            painter.setBrush(colour)
                            painter.drawEllipse(centre, radius, radius)
                            continue
                        colour.setAlpha(60)
                    painter.setBrush(colour)
                    painter.setPen(QPen(theme.BACKGROUND, 1))
                    painter.drawEllipse(centre, radius, radius)
        if not node.collapsed:
            # Fields take wires too (a primitive or any output can drive them): a faint dot says so.
            for index, (_, socket_type, _) in enumerate(self.fields):
                centre = QPointF(0, TITLE_HEIGHT + ROW_HEIGHT * (self.socket_rows + index + 0.5))
                colour = QColor(SOCKET_COLOURS.get(socket_type, "#bdbdbd"))
                highlighted = self.canvas.drag_type is not None and self.canvas.accepts_drag(socket_type)
                colour.setAlpha(255 if highlighted else 70)
                painter.setBrush(colour)
                painter.setPen(QPen(theme.SELECTED, 2) if highlighted else Qt.NoPen)
                radius = PORT_RADIUS * (1.4 if highlighted else 0.6)
                painter.drawEllipse(centre, radius, radius)
        # The title, at every zoom Fit can choose.
        painter.setPen(theme.TEXT)
        painter.setFont(font(True, title_point_size(option.levelOfDetailFromTransform(painter.worldTransform()))))
        cls = self.canvas.registry.get(node.type)
        label = node.title or (cls.title if cls else node.type)
        if placeholder:
            label = f"⚠ {label} (missing)"
        elif node.mode is NodeMode.BYPASS:
            label = f"{label} (bypassed)"
        metrics = painter.fontMetrics()
        painter.drawText(title.adjusted(8, 0, -8, 0), Qt.AlignVCenter | Qt.AlignLeft,
                         metrics.elidedText(label, Qt.ElideRight, int(NODE_WIDTH - 16)))
        if not self.preview_rect.isEmpty():
            painter.setRenderHint(QPainter.SmoothPixmapTransform, self.preview.width() > self.preview_rect.width())
            if self.stale:
                painter.setOpacity(0.4)
            painter.drawImage(self.preview_rect, self.preview)
            painter.setOpacity(1.0)
            if self.stale:
                painter.setPen(theme.TEXT)
                painter.setFont(font(True))
                painter.drawText(self.preview_rect.adjusted(6, 4, -6, -4), Qt.AlignTop | Qt.AlignRight,
                                 "out of date")
        if not detail or node.collapsed:
            return
        painter.setFont(font(False))
        painter.setPen(theme.TEXT)
        for index, (name, _, _) in enumerate(self.sockets):
            rect = QRectF(10, TITLE_HEIGHT + ROW_HEIGHT * index, NODE_WIDTH - 20, ROW_HEIGHT)
            painter.drawText(rect, Qt.AlignVCenter | Qt.AlignLeft, name)
        metrics = painter.fontMetrics()
        for index, (name, _, _) in enumerate(self.fields):
            rect = QRectF(10, TITLE_HEIGHT + ROW_HEIGHT * (self.socket_rows + index), NODE_WIDTH - 20, ROW_HEIGHT)
            field = rect.adjusted(-4, 2, 4, -2)
            painter.setPen(Qt.NoPen)
            painter.setBrush(theme.BACKGROUND)
            painter.drawRoundedRect(field, 4, 4)
            painter.setPen(theme.MUTED_TEXT)
            painter.drawText(rect, Qt.AlignVCenter | Qt.AlignLeft, name)
            painter.setPen(theme.TEXT)
            room = int(rect.width() - metrics.horizontalAdvance(name) - 12)
            value = metrics.elidedText(str(node.values.get(name, self._default(name))), Qt.ElideMiddle, room)
            painter.drawText(rect, Qt.AlignVCenter | Qt.AlignRight, value)
        for index, (name, _) in enumerate(self.outputs):
            rect = QRectF(10, TITLE_HEIGHT + ROW_HEIGHT * index, NODE_WIDTH - 20, ROW_HEIGHT)
            painter.setPen(theme.TEXT)
            painter.drawText(rect, Qt.AlignVCenter | Qt.AlignRight, name)

    def _default(self, name: str) -> Any:
        cls = self.canvas.registry.get(self.node.type)
        spec = cls.spec().input(name) if cls else None
        return spec.default if spec else ""

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        name = self.field_at(event.scenePos())
        if name is not None:
            self.canvas.edit_field(self.node_id, name)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def itemChange(self, change: QGraphicsItem.GraphicsItemChange, value: Any) -> Any:
        if change == QGraphicsItem.ItemPositionHasChanged:
            self.canvas.update_wires(self.node_id)
        return super().itemChange(change, value)


class WireItem(QGraphicsPathItem):
    """A wire from an output to an input, as horizontal S-curves in the socket's colour,
    bending through its reroute points."""

    def __init__(self, colour: str) -> None:
        super().__init__()
        self.setPen(QPen(QColor(colour), 2.2))
        self.setZValue(0)

    def set_ends(self, start: QPointF, end: QPointF, via: list[QPointF] | None = None) -> None:
        points = [start, *(via or []), end]
        path = QPainterPath(points[0])
        for a, b in pairwise(points):
            bend = max(40.0, abs(b.x() - a.x()) * 0.5)
            path.cubicTo(a + QPointF(bend, 0), b - QPointF(bend, 0), b)
        self.setPath(path)


class GroupItem(QGraphicsItem):
    """A group's frame and title, behind the nodes. Dragging its title band moves it with the
    nodes and groups inside it (one undoable step); a click elsewhere in it goes to the canvas."""

    BAND = 30.0

    def __init__(self, scene: CanvasScene, group_id: str) -> None:
        super().__init__()
        self.canvas, self.group_id = scene, group_id
        # Nested groups draw above the groups around them.
        x, y, width, height = self.group.bounds
        self.setZValue(-1 - min(1.0, width * height / 1e8))
        self._drag: tuple[QPointF, list[str], list[str], dict[Any, QPointF]] | None = None
        self.refresh()

    GRIP = 16.0

    def grip(self) -> QRectF:
        """The bottom-right corner that resizes the group when dragged."""
        _, _, width, height = self.group.bounds
        return QRectF(width - self.GRIP, height - self.GRIP, self.GRIP, self.GRIP)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addRect(QRectF(0, 0, self.group.bounds[2], self.BAND))
        path.addRect(self.grip())
        return path

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if event.button() != Qt.LeftButton:
            event.ignore()
            return
        if self.grip().contains(event.pos()):
            self._resizing = (event.scenePos(), self.group.bounds)
            event.accept()
            return
        nodes, groups = self.canvas.inside_group(self.group_id)
        items: list[Any] = [self] + [self.canvas.nodes[n] for n in nodes] + [self.canvas.groups[g] for g in groups]
        self._drag = (event.scenePos(), nodes, groups, {item: item.pos() for item in items})
        event.accept()

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if getattr(self, "_resizing", None) is not None:
            start, (x, y, width, height) = self._resizing
            delta = event.scenePos() - start
            self.prepareGeometryChange()
            self._preview_size = (max(120.0, width + delta.x()), max(60.0, height + delta.y()))
            self.update()
            return
        if self._drag is None:
            return
        start, _, _, origins = self._drag
        delta = event.scenePos() - start
        for item, origin in origins.items():
            item.setPos(origin + delta)

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if getattr(self, "_resizing", None) is not None:
            _, (x, y, width, height) = self._resizing
            size = getattr(self, "_preview_size", None)
            self._resizing, self._preview_size = None, None
            if size is not None and size != (width, height):
                self.canvas.change_group(self.group_id, bounds=(x, y, *size))
            return
        if self._drag is None:
            return
        start, nodes, groups, origins = self._drag
        self._drag = None
        delta = event.scenePos() - start
        for item, origin in origins.items():
            item.setPos(origin)
        if delta.manhattanLength() > 0:
            self.canvas.move_group(self.group_id, delta.x(), delta.y(), nodes, groups)

    @property
    def group(self):
        return self.canvas.workflow.groups[self.group_id]

    def refresh(self) -> None:
        self.prepareGeometryChange()
        x, y, _, _ = self.group.bounds
        self.setPos(x, y)
        self.update()

    def boundingRect(self) -> QRectF:
        _, _, width, height = self.group.bounds
        preview = getattr(self, "_preview_size", None)
        if preview is not None:
            width, height = max(width, preview[0]), max(height, preview[1])
        return QRectF(0, 0, width, height)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        group = self.group
        colour = QColor(group.color or "#8a8f99")
        preview = getattr(self, "_preview_size", None)
        rect = QRectF(0, 0, *preview) if preview is not None else QRectF(0, 0, group.bounds[2], group.bounds[3])
        fill = QColor(colour)
        fill.setAlpha(40)
        painter.setPen(QPen(colour, 1.5))
        painter.setBrush(fill)
        painter.drawRoundedRect(rect, 6, 6)
        band = QColor(colour)
        band.setAlpha(110)
        painter.setPen(Qt.NoPen)
        painter.setBrush(band)
        painter.drawRoundedRect(QRectF(0, 0, rect.width(), 30), 6, 6)
        painter.setPen(theme.TEXT)
        painter.setFont(font(True, 12))
        painter.drawText(QRectF(10, 0, rect.width() - 20, 30), Qt.AlignVCenter | Qt.AlignLeft, group.title)
        painter.setPen(QPen(colour, 1.5))  # the resize grip
        corner = rect.bottomRight()
        for offset in (5.0, 10.0):
            painter.drawLine(corner - QPointF(offset, 2), corner - QPointF(2, offset))


class RerouteItem(QGraphicsItem):
    """A reroute point: a dot a wire bends through."""

    RADIUS = 6.0

    def __init__(self, scene: CanvasScene, reroute_id: str) -> None:
        super().__init__()
        self.canvas, self.reroute_id = scene, reroute_id
        self.setZValue(2)
        self.setFlags(QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemIsSelectable
                      | QGraphicsItem.ItemSendsGeometryChanges)
        self.refresh()

    def itemChange(self, change: QGraphicsItem.GraphicsItemChange, value: Any) -> Any:
        if change == QGraphicsItem.ItemPositionHasChanged and self.reroute_id in self.canvas.reroutes:
            # Wires follow the dot while it is dragged; the model hears of it on release.
            self.canvas.place_wires_through(self.reroute_id)
        return super().itemChange(change, value)

    def refresh(self) -> None:
        self.setPos(*self.canvas.workflow.reroutes[self.reroute_id].position)

    def boundingRect(self) -> QRectF:
        r = self.RADIUS + 1
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setPen(QPen(theme.BACKGROUND, 1))
        painter.setBrush(theme.TEXT)
        painter.drawEllipse(QPointF(0, 0), self.RADIUS, self.RADIUS)
