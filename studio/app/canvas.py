"""The node canvas: a QGraphicsScene that observes the workflow and edits it through commands.

The scene follows the model event by event (one item added, removed or refreshed per event;
never a rebuild on an edit), so pasting a hundred nodes or undoing it costs a hundred item
updates, and pictures inside untouched nodes stay. Wires are drawn while dragged from an
output and checked with the graph layer's ``can_connect`` when dropped: a refused wire says
why in a tooltip.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QGraphicsScene, QGraphicsSceneMouseEvent, QToolTip

from studio.app import theme
from studio.app.node_item import GroupItem, NodeItem, RerouteItem, WireItem
from studio.app.node_status import NodeStatus
from studio.app.undo import push
from studio.graph import Workflow, can_connect
from studio.graph import commands as cmd
from studio.graph import events as ev
from studio.graph.clipboard import clipboard_bounds, copy_nodes
from studio.graph.layout import arranged, free_position, neighbour, node_rect, nudged, occupied_rects
from studio.graph.model import NodeMode, node_sort_key
from studio.graph.sockets import SOCKET_COLOURS, types_compatible
from studio.registry import Registry


class CanvasScene(QGraphicsScene):
    """The workflow as items, kept in step with the model through its events."""

    def __init__(self, workflow: Workflow, registry: Registry, undo_stack: QUndoStack) -> None:
        super().__init__()
        self.workflow = workflow
        self.registry = registry
        self.undo_stack = undo_stack
        self.nodes: dict[str, NodeItem] = {}
        self.wires: dict[tuple[str, str], WireItem] = {}
        self.groups: dict[str, GroupItem] = {}
        self.reroutes: dict[str, RerouteItem] = {}
        # node id → the wires touching it, so moving a node re-routes only its own wires.
        self.wires_of: dict[str, set[tuple[str, str]]] = {}
        self.dragging: tuple[str, str, WireItem] | None = None  # (source node, output, temporary wire)
        # The type of the wire being dragged: inputs that take it are highlighted, others dimmed.
        self.drag_type: str | None = None
        # The files a model or picture field can name (the window's FileChoices), if any.
        self.file_choices: Any = None
        self.last_refusal = ""
        # The node selected before the current one: keyboard connecting wires it in.
        self.link_anchor: str | None = None
        self.press_positions: dict[str, tuple[float, float]] = {}
        self.setBackgroundBrush(theme.BACKGROUND)
        # A canvas far bigger than any graph, so the view can be moved anywhere, not only
        # as far as the outermost node.
        self.setSceneRect(QRectF(-50000, -50000, 100000, 100000))
        for group_id in workflow.groups:
            self._add_group_item(group_id)
        for reroute_id in workflow.reroutes:
            self._add_reroute_item(reroute_id)
        for node_id in workflow.nodes:
            self._add_node_item(node_id)
        for link in workflow.links():
            self._add_wire(link.target, link.input)
        self._unsubscribe = workflow.subscribe(self._on_model_event)

    def detach(self) -> None:
        self._unsubscribe()

    # -- items -------------------------------------------------------------------------------
    def _add_node_item(self, node_id: str) -> None:
        item = NodeItem(self, node_id)
        self.addItem(item)
        self.nodes[node_id] = item

    def _add_group_item(self, group_id: str) -> None:
        item = GroupItem(self, group_id)
        self.addItem(item)
        self.groups[group_id] = item

    def _add_reroute_item(self, reroute_id: str) -> None:
        item = RerouteItem(self, reroute_id)
        self.addItem(item)
        self.reroutes[reroute_id] = item

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

    def _remove_wire(self, source: str, target: str, input_name: str) -> None:
        wire = self.wires.pop((target, input_name), None)
        if wire is not None:
            self.removeItem(wire)
        for node_id in (source, target):
            self.wires_of.get(node_id, set()).discard((target, input_name))

    def _reroute_points(self, reroute_id: str | None) -> list[QPointF]:
        points: list[QPointF] = []
        seen: set[str] = set()
        while reroute_id is not None and reroute_id in self.workflow.reroutes and reroute_id not in seen:
            seen.add(reroute_id)
            reroute = self.workflow.reroutes[reroute_id]
            item = self.reroutes.get(reroute_id)  # where it is drawn (it may be being dragged)
            points.insert(0, item.pos() if item is not None else QPointF(*reroute.position))
            reroute_id = reroute.parent
        return points

    def _place_wire(self, target: str, input_name: str) -> None:
        source = self.workflow.nodes[target].links[input_name]
        self.wires[(target, input_name)].set_ends(self.nodes[source.node].output_position(source.output),
                                                  self.nodes[target].input_position(input_name),
                                                  self._reroute_points(source.reroute))

    def update_wires(self, node_id: str) -> None:
        for target, input_name in self.wires_of.get(node_id, ()):
            node = self.workflow.nodes.get(target)
            if (target, input_name) in self.wires and node is not None and input_name in node.links:
                self._place_wire(target, input_name)

    def _refresh_node(self, node_id: str) -> None:
        item = self.nodes.get(node_id)
        if item is not None:
            item.refresh()
            self.update_wires(node_id)

    # -- following the model, one event at a time --------------------------------------------
    def _on_model_event(self, event: ev.GraphEvent) -> None:
        if isinstance(event, ev.NodeAdded):
            self._add_node_item(event.node.id)
            for input_name in event.node.links:
                self._add_wire(event.node.id, input_name)
        elif isinstance(event, ev.NodeRemoved):
            node = event.node
            for link in event.links:
                self._remove_wire(link.source, link.target, link.input)
                self._refresh_node(link.target)
            for input_name, source in node.links.items():
                self._remove_wire(source.node, node.id, input_name)
            self.wires_of.pop(node.id, None)
            item = self.nodes.pop(node.id, None)
            if item is not None:
                self.removeItem(item)
            # A placeholder shows the outputs others take from it: those may have changed.
            for source in {s.node for s in node.links.values()}:
                if source in self.nodes and self.nodes[source].placeholder:
                    self._refresh_node(source)
        elif isinstance(event, (ev.LinkAdded, ev.LinkRemoved)):
            link = event.link
            if isinstance(event, ev.LinkAdded) and event.replaced is not None:
                self._remove_wire(event.replaced.node, link.target, link.input)
            self._remove_wire(link.source, link.target, link.input)
            if isinstance(event, ev.LinkAdded):
                self._add_wire(link.target, link.input)
            self._refresh_node(link.target)
            if link.source in self.nodes and self.nodes[link.source].placeholder:
                self._refresh_node(link.source)
        elif isinstance(event, ev.NodeMoved):
            item = self.nodes[event.node_id]
            if (item.pos().x(), item.pos().y()) != tuple(event.position):
                item.setPos(*event.position)
        elif isinstance(event, (ev.GroupAdded, ev.GroupRemoved, ev.GroupChanged)):
            group_id = event.group.id
            if group_id in self.groups:
                self.removeItem(self.groups.pop(group_id))
            if not isinstance(event, ev.GroupRemoved):
                self._add_group_item(group_id)
        elif isinstance(event, (ev.RerouteAdded, ev.RerouteRemoved, ev.RerouteMoved)):
            reroute_id = event.reroute_id if isinstance(event, ev.RerouteMoved) else event.reroute.id
            if reroute_id in self.reroutes and not isinstance(event, ev.RerouteMoved):
                self.removeItem(self.reroutes.pop(reroute_id))
            if isinstance(event, ev.RerouteAdded):
                self._add_reroute_item(reroute_id)
            elif isinstance(event, ev.RerouteMoved):
                self.reroutes[reroute_id].refresh()
            for target, input_name in list(self.wires):
                self._place_wire(target, input_name)
        elif isinstance(event, ev.LinkRerouted):
            if (event.target, event.input) in self.wires:
                self._place_wire(event.target, event.input)
        else:
            node_id = ev.node_of(event)
            if node_id is not None:
                self._refresh_node(node_id)

    # -- status from runs and checks ---------------------------------------------------------
    def set_status(self, node_id: str, status: NodeStatus, progress: float = 0.0, message: str = "") -> None:
        item = self.nodes.get(node_id)
        if item is not None:
            item.status, item.progress, item.message = status, progress, message
            if NodeStatus(status).shows_result:
                item.stale = False
            item._tooltip()
            item.update()

    def set_preview(self, node_id: str, image: Any) -> None:
        """Show a picture inside a node (an output's result, a sampler's progress)."""
        item = self.nodes.get(node_id)
        if item is not None and image is not None and not image.isNull():
            item.preview = image
            item.refresh()
            self.update_wires(node_id)

    def clear_status(self) -> None:
        for item in self.nodes.values():
            item.status, item.progress, item.message = NodeStatus.NONE, 0.0, ""
            item._tooltip()
            item.update()

    def set_problems(self, problems: dict[str, str]) -> None:
        """Mark the nodes live validation found problems in (node id → first message)."""
        for node_id, item in self.nodes.items():
            message = problems.get(node_id, "")
            if message != item.problem:
                item.problem = message
                item._tooltip()
                item.update()

    def set_stale(self, node_ids: set[str]) -> None:
        """Mark the results a re-run would recompute as out of date (the others stay fresh)."""
        for node_id, item in self.nodes.items():
            stale = node_id in node_ids
            if stale != item.stale:
                item.stale = stale
                item.update()

    # -- mouse: drag wires from outputs, record moves for undo -------------------------------
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
                self.drag_type = output_type
                for node in self.nodes.values():  # sockets that would take it light up
                    node.update()
                event.accept()
                return
        self.press_positions = {node_id: tuple(item.node.position) for node_id, item in self.nodes.items()}
        self.press_reroutes = {r: tuple(self.workflow.reroutes[r].position) for r in self.reroutes}
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
            self.drag_type = None
            self.removeItem(wire)
            for node in self.nodes.values():
                node.update()
            target = None
            for item in self.nodes.values():
                port = item.port_at(event.scenePos())
                if port and port[0] == "input":
                    target = (item.node_id, port[1])
            if target is not None:
                self.try_connect(source, output, *target, screen_position=event.screenPos())
            elif self.node_at(event.scenePos()) is None and self.views():
                # Dropped on empty canvas: offer the nodes that take this wire, and wire the chosen one.
                view = self.views()[0]
                view.search_and_connect(source, output, event.scenePos())
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
            push(self.undo_stack, cmd.MoveNodes(self.workflow, moves))
        for reroute_id, before in getattr(self, "press_reroutes", {}).items():
            item = self.reroutes.get(reroute_id)
            if item is not None and (item.pos().x(), item.pos().y()) != before:
                after = (item.pos().x(), item.pos().y())
                push(self.undo_stack, cmd.MoveReroute(self.workflow, reroute_id, before, after))
        self.press_reroutes = {}

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        """A double-click on a wire (away from nodes) puts a reroute point there."""
        point = event.scenePos()
        if self.node_at(point) is None:
            wire = self.wire_at(point)
            if wire is not None:
                self.add_reroute_on_wire(*wire, point)
                event.accept()
                return
        super().mouseDoubleClickEvent(event)

    def place_wires_through(self, reroute_id: str) -> None:
        """Re-route the wires bending through a reroute point being dragged."""
        for (target, input_name) in list(self.wires):
            if self.workflow.nodes[target].links[input_name].reroute is not None:
                self._place_wire(target, input_name)

    # -- edits (each one undoable step) ------------------------------------------------------
    def edit_field(self, node_id: str, name: str) -> bool:
        """Edit a field in a small dialog with the same editor the inspector uses; the value
        is set as one undoable step."""
        from studio.app.field_dialog import ask_value

        node = self.workflow.nodes[node_id]
        cls = self.registry.get(node.type)
        spec = cls.spec().input(name) if cls else None
        if spec is None:
            return False
        current = node.values.get(name, spec.default)
        parent = self.views()[0] if self.views() else None
        files = self.file_choices.choices(node.type, name) if self.file_choices is not None else None
        accepted, value = ask_value(parent, spec, current, files)
        if not accepted or value == current:
            return False
        return self.set_value(node_id, name, value)

    def set_value(self, node_id: str, name: str, value: Any) -> bool:
        """Set one value as an undoable step (nothing when it is unchanged)."""
        node = self.workflow.nodes[node_id]
        if name in node.values and node.values[name] == value:
            return False
        push(self.undo_stack, cmd.SetValue(self.workflow, node_id, name, value))
        return True

    def set_value_on_all(self, node_ids: list[str], name: str, value: Any) -> bool:
        """One value on several nodes (the inspector's multi-selection), as one undoable step."""
        steps: list[cmd.Command] = [cmd.SetValue(self.workflow, n, name, value) for n in node_ids
                                    if self.workflow.nodes[n].values.get(name, object()) != value]
        if steps:
            push(self.undo_stack, cmd.Macro(self.workflow, f"Set {name} on {len(steps)} nodes", steps))
        return bool(steps)

    def set_seed_control(self, node_id: str, control: str) -> bool:
        from studio.graph.seeds import seed_control

        if seed_control(self.workflow.nodes[node_id]) == control:
            return False
        push(self.undo_stack, cmd.SetSeedControl(self.workflow, node_id, control))
        return True

    def advance_seeds(self) -> dict[tuple[str, str], int]:
        """After a run is queued: each seed whose control says so moves on (one undoable step)."""
        from studio.graph.seeds import seeds_after_run

        changes = seeds_after_run(self.workflow.nodes.values(), self.spec_of)
        if changes:
            push(self.undo_stack, cmd.Macro(self.workflow, "Seeds after run", [
                cmd.SetValue(self.workflow, node_id, name, value) for (node_id, name), value in changes.items()]))
        return changes

    def spec_of(self, type_name: str) -> Any:
        cls = self.registry.get(type_name)
        return cls.spec() if cls else None

    def free_spot(self, desired: tuple[float, float], size: tuple[float, float] | None = None,
                  leave_out: tuple[str, ...] = ()) -> tuple[float, float]:
        """The nearest place to ``desired`` where a node of ``size`` overlaps nothing."""
        occupied = occupied_rects(self.workflow, self.spec_of, leave_out)
        return free_position(occupied, size or (230.0, 160.0), desired)

    def add_node(self, type_name: str, position: tuple[float, float], values: dict[str, Any] | None = None,
                 select: bool = True) -> str:
        """Add a node at the free place nearest to ``position``, as one undoable step; the
        new node becomes the selection (however it was added)."""
        from studio.graph.model import Node

        spec = self.spec_of(type_name)
        probe = Workflow()
        probe.nodes["probe"] = Node("probe", type_name, dict(values or {}))
        _, _, width, height = node_rect(probe, "probe", lambda _t: spec, with_preview=True)
        place = self.free_spot(position, (width, height))
        command = push(self.undo_stack, cmd.AddNode(self.workflow, type_name, place, values))
        node_id = command.node_id  # type: ignore[attr-defined]
        if select:
            before = self.selected_ids()
            self.clearSelection()
            self.nodes[node_id].setSelected(True)
            if len(before) == 1:
                self.link_anchor = before[0]
        for view in self.views():
            if hasattr(view, "keep_minimap_clear"):
                view.keep_minimap_clear(self.nodes[node_id].sceneBoundingRect())
        return node_id

    def selected_ids(self) -> list[str]:
        """Selected nodes in id order (the scene's own order varies)."""
        return sorted((item.node_id for item in self.selectedItems() if isinstance(item, NodeItem)),
                      key=node_sort_key)

    def copy_selected(self) -> dict[str, Any] | None:
        chosen = self.selected_ids()
        return copy_nodes(self.workflow, chosen) if chosen else None

    def paste(self, clipboard: dict[str, Any], keep_incoming: bool = False,
              at: tuple[float, float] | None = None) -> list[str]:
        """Paste as one undoable step: the copies' top-left corner at ``at`` (the cursor)
        when given, else beside the originals, moved as a block to where it covers no node.
        The pasted nodes become the selection."""
        left, top, right, bottom = clipboard_bounds(clipboard)
        desired = at if at is not None else (left + 40.0, top + 40.0)
        block = (right - left + 230.0, bottom - top + 200.0)
        x, y = self.free_spot(desired, block)
        command = push(self.undo_stack, cmd.PasteNodes(self.workflow, clipboard, (x - left, y - top), keep_incoming))
        self.clearSelection()
        for new in command.new_ids.values():  # type: ignore[attr-defined]
            if new in self.nodes:
                self.nodes[new].setSelected(True)
        return list(command.new_ids.values())  # type: ignore[attr-defined]

    def delete_selected(self, reconnect: bool = False) -> None:
        """Delete the selection as one undoable step; with ``reconnect``, what flowed through
        the deleted nodes is wired around them (Blender's "delete with reconnect")."""
        from studio.graph.connect import reconnections

        chosen = self.selected_ids()
        if not chosen:
            return
        wires = reconnections(self.workflow, self.registry.spec, set(chosen)) if reconnect else []
        steps: list[cmd.Command] = [cmd.RemoveNodes(self.workflow, chosen)]
        steps += [cmd.Connect(self.workflow, *wire) for wire in wires]
        text = f"Delete {len(chosen)} node{'s' if len(chosen) != 1 else ''}" + (" with reconnect" if reconnect else "")
        push(self.undo_stack, cmd.Macro(self.workflow, text, steps))

    # -- node states and structure ------------------------------------------------------------
    def toggle_mode_selected(self, mode: NodeMode) -> bool:
        """Bypass or mute the selection (Ctrl+B, Ctrl+M); if every selected node already is,
        back to normal. One undoable step."""
        chosen = self.selected_ids()
        if not chosen:
            return False
        target = NodeMode.NORMAL if all(self.workflow.nodes[n].mode is mode for n in chosen) else mode
        push(self.undo_stack, cmd.SetMode(self.workflow, chosen, target))
        return True

    def toggle_collapsed_selected(self) -> bool:
        chosen = self.selected_ids()
        if not chosen:
            return False
        collapse = not all(self.workflow.nodes[n].collapsed for n in chosen)
        push(self.undo_stack, cmd.SetCollapsed(self.workflow, chosen, collapse))
        return True

    def color_selected(self, color: str | None) -> bool:
        chosen = self.selected_ids()
        if chosen:
            push(self.undo_stack, cmd.SetColor(self.workflow, chosen, color))
        return bool(chosen)

    def rename_node(self, node_id: str, title: str) -> bool:
        if self.workflow.nodes[node_id].title == title:
            return False
        push(self.undo_stack, cmd.SetTitle(self.workflow, node_id, title))
        return True

    def group_selected(self, title: str = "Group") -> str | None:
        """A group framing the selected nodes (Ctrl+G), with room for its title band."""
        chosen = self.selected_ids()
        if not chosen:
            return None
        rect = QRectF()
        for node_id in chosen:
            rect = rect.united(self.nodes[node_id].sceneBoundingRect())
        rect = rect.adjusted(-20, -50, 20, 20)
        command = push(self.undo_stack, cmd.AddGroup(self.workflow, title, (rect.x(), rect.y(), rect.width(),
                                                                            rect.height())))
        return command.group.id  # type: ignore[attr-defined]

    PRIMITIVES = {"INT": ("PrimitiveInt", "INT"), "FLOAT": ("PrimitiveFloat", "FLOAT"),
                  "STRING": ("PrimitiveString", "STRING"), "BOOLEAN": ("PrimitiveBoolean", "BOOLEAN")}

    def drive_from_primitive(self, node_id: str, name: str) -> str | None:
        """Turn a field into an input fed by a new primitive node holding its value (which
        can then feed other fields too), as one undoable step; None for fields a primitive
        cannot hold (choices)."""
        node = self.workflow.nodes[node_id]
        cls = self.registry.get(node.type)
        spec = cls.spec().input(name) if cls else None
        if spec is None or spec.choice_list() is not None or spec.type not in self.PRIMITIVES:
            return None
        type_name, output = ("Seed", "seed") if spec.seed else self.PRIMITIVES[spec.type]
        if spec.multiline:
            type_name = "PrimitiveStringMultiline"
        value_name = self.registry.get(type_name).spec().inputs[0].name
        value = node.values.get(name, spec.default)
        x, y = node.position
        self.undo_stack.beginMacro(f"Drive {name} from a primitive")
        primitive = self.add_node(type_name, (x - 300.0, y), {value_name: value})
        self.try_connect(primitive, output, node_id, name)
        self.undo_stack.endMacro()
        return primitive

    def change_group(self, group_id: str, **changes: Any) -> None:
        """Retitle, recolour or resize a group, as one undoable step."""
        push(self.undo_stack, cmd.ChangeGroup(self.workflow, group_id, **changes))

    def group_at(self, point: QPointF) -> str | None:
        """The group whose title band (or resize grip) is under a scene point."""
        for item in self.items(point):
            if isinstance(item, GroupItem):
                return item.group_id
        return None

    def inside_group(self, group_id: str) -> tuple[list[str], list[str]]:
        """The nodes and the other groups wholly inside a group's frame (they move with it)."""
        x, y, width, height = self.workflow.groups[group_id].bounds
        frame = QRectF(x, y, width, height)
        nodes = [n for n, item in self.nodes.items() if frame.contains(item.sceneBoundingRect().adjusted(6, 1, -6, -1))]
        groups = [g for g, other in self.workflow.groups.items()
                  if g != group_id and frame.contains(QRectF(*other.bounds))]
        return nodes, groups

    def move_group(self, group_id: str, dx: float, dy: float, nodes: list[str], groups: list[str]) -> None:
        """Move a group with the nodes and groups inside it, as one undoable step."""
        steps: list[cmd.Command] = []
        for moved in [group_id, *groups]:
            x, y, width, height = self.workflow.groups[moved].bounds
            steps.append(cmd.ChangeGroup(self.workflow, moved, bounds=(x + dx, y + dy, width, height)))
        if nodes:
            steps.append(cmd.MoveNodes(self.workflow, nudged(self.workflow, nodes, dx, dy)))
        push(self.undo_stack, cmd.Macro(self.workflow, "Move group", steps))

    def wire_at(self, point: QPointF) -> tuple[str, str] | None:
        """The wire (target node, input) passing under a scene point."""
        probe = QRectF(point.x() - 4, point.y() - 4, 8, 8)
        for key, wire in self.wires.items():
            if wire.shape().intersects(probe):
                return key
        return None

    def add_reroute_on_wire(self, target: str, input_name: str, point: QPointF) -> str:
        """A reroute point on a wire, where it was double-clicked; the wire bends through it."""
        parent = self.workflow.nodes[target].links[input_name].reroute
        command = push(self.undo_stack, cmd.AddReroute(self.workflow, (point.x(), point.y()),
                                                       [(target, input_name)], parent))
        return command.reroute.id  # type: ignore[attr-defined]

    # -- keyboard-only editing ---------------------------------------------------------------
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
            push(self.undo_stack, cmd.MoveNodes(self.workflow, nudged(self.workflow, chosen, dx, dy)))

    def select_neighbour(self, dx: int, dy: int) -> str | None:
        """Select the nearest node in a direction from the selected one (Alt+arrows)."""
        chosen = self.selected_ids()
        if not chosen:
            if self.workflow.nodes:
                first = min(self.workflow.nodes, key=lambda n: self.workflow.nodes[n].position)
                self.select_only(first)
                return first
            return None
        best = neighbour(self.workflow, chosen[0], dx, dy)
        if best is not None:
            self.select_only(best)
        return best

    def arrange_selected(self, how: str) -> None:
        """Align the selection's left or top edges, or distribute it evenly across or down."""
        moves = arranged(self.workflow, self.selected_ids(), how)
        if moves:
            push(self.undo_stack, cmd.MoveNodes(self.workflow, moves))

    def accepts_drag(self, socket_type: str) -> bool:
        return self.drag_type is not None and types_compatible(self.drag_type, socket_type)

    def connect_to_new(self, source: str, output: str, node_id: str) -> bool:
        """Wire a dragged output into the first free input of a node that takes it."""
        output_type = next((kind for name, kind in self.nodes[source].outputs if name == output), "*")
        cls = self.registry.get(self.workflow.nodes[node_id].type)
        for spec in cls.spec().inputs if cls else ():
            if types_compatible(output_type, spec.type) and spec.name not in self.workflow.nodes[node_id].links:
                return self.try_connect(source, output, node_id, spec.name)
        return False

    def try_connect(self, source: str, output: str, target: str, input_name: str, screen_position: Any = None) -> bool:
        """Connect if ``can_connect`` allows it (as one undoable step); otherwise say why."""
        verdict = can_connect(self.workflow, self.registry.spec, source, output, target, input_name)
        if not verdict:
            self.last_refusal = verdict.reason
            if screen_position is not None:
                QToolTip.showText(screen_position, verdict.reason)
            return False
        self.last_refusal = ""
        push(self.undo_stack, cmd.Connect(self.workflow, source, output, target, input_name))
        return True
