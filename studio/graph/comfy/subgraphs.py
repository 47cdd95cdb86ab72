"""ComfyUI subgraphs on export: which expanded subgraph instances go back to ComfyUI as one
instance node with their definition, and which must stay plain nodes (and why).

The importer expands every instance into plain nodes (the engine runs those), records on each
node where it came from (``extra["comfy_subgraph"]``: the instance in the top graph, its id in
the definition, the nested instances between) and keeps the file's definitions and instance
nodes (``workflow.extra["comfy"]["definitions"]``, ``workflow.extra["comfy_subgraphs"]``).
An instance is written back when all its nodes are still there and every wire that crosses
its edge still passes through one of its inputs or outputs; its definition is then rebuilt
from the nodes as they are now (values, places, inner wires), so edits made in Seed Studio
show in ComfyUI. Otherwise its nodes are written as plain nodes, with a remark that says why.

Facts about the format (ComfyUI front end, ``types/serialisation.ts`` and ``SubgraphNode``):
a definition's ``inputs``/``outputs`` list its slots by index with a ``name``; inside it,
links from origin id -10 come from its inputs and links to target id -20 go to its outputs;
an instance node's inputs match the definition's by name, its outputs by index; an instance's
``widgets_values`` hold one value per input that carries a widget (a widget of an inner node
shown on the instance), and those values are what its inner fields get.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from studio.graph.comfy.importer import SUBGRAPH_INPUT_ID, SUBGRAPH_OUTPUT_ID
from studio.graph.comfy.writer import LevelItem, Wire, comfy_fields, entry_name, output_slot, write_level
from studio.graph.connect import SpecLookup
from studio.graph.model import Node, Workflow, node_sort_key

# The top instance and one level of subgraphs inside it are written back; deeper nesting is
# written as plain nodes.
MAX_KEPT_DEPTH = 2

Scope = tuple[str, ...]


def _instance_key(scope: Scope) -> tuple[str, Scope]:
    return ("instance", scope)


def _link_ends(item: Any) -> tuple[Any, Any, Any, Any] | None:
    """(origin, origin slot, target, target slot) of a stored link, either form."""
    if isinstance(item, dict):
        return item.get("origin_id"), item.get("origin_slot"), item.get("target_id"), item.get("target_slot")
    if isinstance(item, list) and len(item) >= 5:
        return item[1], item[2], item[3], item[4]
    return None


def _slot_names(entries: Any) -> list[Any]:
    return [entry.get("name") if isinstance(entry, dict) else None for entry in entries] \
        if isinstance(entries, list) else []


@dataclass
class _Definition:
    """A stored subgraph definition and the wiring of its edge, by slot."""

    raw: dict[str, Any]
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: list[Any] = field(default_factory=list)
    boundary: list[Any] = field(default_factory=list)
    # (inner node id, its input slot) → the subgraph input slot that feeds it
    entries: dict[tuple[str, int], int] = field(default_factory=dict)
    # (inner node id, its output slot) → the subgraph output slot it feeds
    exits: dict[tuple[str, int], int] = field(default_factory=dict)
    # subgraph input slot → the (inner node id, input slot)s it feeds
    fans: dict[int, list[tuple[str, int]]] = field(default_factory=dict)

    @classmethod
    def read(cls, raw: dict[str, Any]) -> _Definition:
        definition = cls(raw)
        stored_nodes = raw.get("nodes")
        nodes = stored_nodes if isinstance(stored_nodes, list) else []
        definition.nodes = {str(node.get("id")): node for node in nodes if isinstance(node, dict)}
        definition.links = [link for link in raw.get("links") or [] if _link_ends(link) is not None] \
            if isinstance(raw.get("links"), list) else []
        for link in definition.links:
            origin, origin_slot, target, target_slot = _link_ends(link)  # type: ignore[misc]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (origin_slot, target_slot)):
                continue
            from_input, to_output = str(origin) == str(SUBGRAPH_INPUT_ID), str(target) == str(SUBGRAPH_OUTPUT_ID)
            if from_input or to_output:
                definition.boundary.append(link)
            if from_input and not to_output:
                definition.entries.setdefault((str(target), target_slot), origin_slot)
                definition.fans.setdefault(origin_slot, []).append((str(target), target_slot))
            elif to_output and not from_input:
                definition.exits.setdefault((str(origin), origin_slot), target_slot)
        return definition

    @property
    def name(self) -> str:
        name = self.raw.get("name")
        return name if isinstance(name, str) else str(self.raw.get("id"))

    def input_slot(self, instance: dict[str, Any], index: Any) -> int | None:
        """The definition's input slot that input ``index`` of an instance node stands for."""
        names = _slot_names(instance.get("inputs"))
        if not isinstance(index, int) or not 0 <= index < len(names) or names[index] is None:
            return None
        declared = _slot_names(self.raw.get("inputs"))
        return declared.index(names[index]) if names[index] in declared else None

    def instance_input(self, instance: dict[str, Any], slot: int) -> int | None:
        """Which input of an instance node the definition's input ``slot`` is."""
        declared = _slot_names(self.raw.get("inputs"))
        if not 0 <= slot < len(declared) or declared[slot] is None:
            return None
        names = _slot_names(instance.get("inputs"))
        return names.index(declared[slot]) if declared[slot] in names else None


@dataclass
class SubgraphExport:
    """How the top graph is written: the instances kept (their nodes go inside definitions),
    the definitions to write, the top graph's wires and what was flattened, and why."""

    members: set[str] = field(default_factory=set)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    wires: list[Wire] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)


class _Unfit(Exception):
    """Why an instance cannot be written back as a subgraph (a sentence for the remark)."""


def _without_layout(definition: dict[str, Any]) -> dict[str, Any]:
    nodes = [{key: value for key, value in node.items() if key not in ("pos", "size", "order")}
             for node in definition.get("nodes", [])]
    return {**definition, "nodes": nodes}


class _Planner:
    def __init__(self, workflow: Workflow, spec_of: SpecLookup) -> None:
        self.workflow = workflow
        self.spec_of = spec_of
        top = workflow.extra.get("comfy")
        stored = top.get("definitions") if isinstance(top, dict) else None
        subgraphs = stored.get("subgraphs") if isinstance(stored, dict) else None
        self.order: list[str] = []
        self.definitions: dict[str, _Definition] = {}
        for raw in subgraphs if isinstance(subgraphs, list) else []:
            if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"] not in self.definitions:
                self.definitions[raw["id"]] = _Definition.read(raw)
                self.order.append(raw["id"])
        kept = workflow.extra.get("comfy_subgraphs")
        instances = kept.get("instances") if isinstance(kept, dict) else None
        self.instances: dict[str, dict[str, Any]] = {
            instance_id: entry for instance_id, entry in (instances.items() if isinstance(instances, dict) else ())
            if isinstance(entry, dict) and isinstance(entry.get("node"), dict)
            and isinstance(entry.get("members"), list)}
        self.records: dict[str, dict[str, Any]] = {}
        for node in workflow.nodes.values():
            record = node.extra.get("comfy_subgraph")
            if isinstance(record, dict) and isinstance(record.get("instance"), str) and "node" in record \
                    and isinstance(record.get("path", []), list):
                self.records[node.id] = record

    # -- where things are ----------------------------------------------------------------
    def scope_of(self, node_id: str) -> Scope:
        record = self.records[node_id]
        return (record["instance"], *(str(inner) for inner in record.get("path", [])))

    def instance_node(self, scope: Scope) -> dict[str, Any] | None:
        if len(scope) == 1:
            return self.instances[scope[0]]["node"] if scope[0] in self.instances else None
        parent = self.definition_of(scope[:-1])
        return parent.nodes.get(scope[-1]) if parent is not None else None

    def definition_of(self, scope: Scope) -> _Definition | None:
        instance = self.instance_node(scope)
        kind = instance.get("type") if instance is not None else None
        return self.definitions.get(kind) if isinstance(kind, str) else None

    def input_index(self, node: Node, input_name: str) -> int | None:
        stored = comfy_fields(node).get("inputs")
        names = [entry_name(entry) for entry in stored if isinstance(entry, dict)] if isinstance(stored, list) else []
        return names.index(input_name) if input_name in names else None

    def lift(self, node_id: str, slot: int | None, direction: str, depth: int) -> tuple[Hashable, int] | None:
        """The item and slot that stand for a node's input or output at the level ``depth``
        instances deep (0: the top graph): the node itself, or the instance holding it."""
        scope = self.scope_of(node_id)
        key: Hashable = node_id
        inner = str(self.records[node_id]["node"])
        for level in range(len(scope), depth, -1):
            definition = self.definition_of(scope[:level])
            instance = self.instance_node(scope[:level])
            if definition is None or instance is None or slot is None:
                return None
            if direction == "in":
                slot = definition.entries.get((inner, slot))
                slot = definition.instance_input(instance, slot) if slot is not None else None
            else:
                slot = definition.exits.get((inner, slot))
            key, inner = _instance_key(scope[:level]), scope[level - 1]
        return (key, slot) if slot is not None else None

    # -- one instance --------------------------------------------------------------------
    def keep(self, instance_id: str, built: dict[str, dict[str, Any]]) -> tuple[set[str], dict[str, Any],
                                                                                   dict[str, dict[str, Any]]]:
        """The members, instance node and definitions of an instance that can be written
        back; raises :class:`_Unfit` saying why not."""
        entry = self.instances[instance_id]
        top_scope: Scope = (instance_id,)
        top_definition = self.definition_of(top_scope)
        if top_definition is None:
            raise _Unfit("its definition is not in the workflow")
        members = {str(member) for member in entry["members"]}
        for member in sorted(members, key=node_sort_key):
            if member not in self.workflow.nodes or self.records.get(member, {}).get("instance") != instance_id:
                raise _Unfit(f"its node {self.describe_missing(member)} was deleted")

        scopes = self.scopes(top_scope)
        member_at: dict[tuple[Scope, str], str] = {}
        for member in members:
            scope = self.scope_of(member)
            if scope not in scopes:
                raise _Unfit(f"node {self.workflow.nodes[member].label} is not where its definition has it")
            member_at[(scope, str(self.records[member]["node"]))] = member

        for scope in scopes:
            definition = self.definition_of(scope)
            assert definition is not None
            for inner, raw in definition.nodes.items():
                if (*scope, inner) not in scopes and (scope, inner) not in member_at:
                    # A reroute or a front-end primitive that the import turned into wires or values.
                    raise _Unfit(f"its node {inner} ({raw.get('type')}) has no node of its own in Seed Studio")

        wires: dict[Scope, list[Wire]] = {scope: [] for scope in scopes}
        for target in self.workflow.nodes.values():
            for input_name, source in target.links.items():
                if source.node not in self.workflow.nodes or not ({source.node, target.id} & members):
                    continue
                wire = self.inner_wire(members, self.workflow.nodes[source.node], source.output, target, input_name)
                if wire is not None:
                    wires[wire[0]].append(wire[1])

        for scope in scopes:
            definition = self.definition_of(scope)
            assert definition is not None
            for slot in sorted(definition.fans):
                self.check_fan(members, member_at, scopes, scope, slot)

        definitions: dict[str, dict[str, Any]] = {}
        for scope in sorted(scopes, key=len):
            definition = self.definition_of(scope)
            assert definition is not None
            written = self.write_definition(scope, definition, scopes, member_at, wires[scope])
            definition_id = definition.raw["id"]
            for other in (definitions.get(definition_id), built.get(definition_id)):
                if other is not None and _without_layout(other) != _without_layout(written):
                    raise _Unfit(f"its subgraph {definition.name!r} now differs from another use of it")
            definitions.setdefault(definition_id, written)
        return members, self.instance_data(top_scope, top_definition, member_at, scopes), definitions

    def scopes(self, top: Scope) -> set[Scope]:
        """The instance and every subgraph instance inside it, as the definitions have them."""
        found: set[Scope] = set()
        pending = [top]
        while pending:
            scope = pending.pop()
            if len(scope) > MAX_KEPT_DEPTH:
                raise _Unfit(f"it holds subgraphs nested more than {MAX_KEPT_DEPTH - 1} deep")
            definition = self.definition_of(scope)
            if definition is None:
                raise _Unfit(f"the definition of its subgraph node {scope[-1]} is not in the workflow")
            found.add(scope)
            pending += [(*scope, inner) for inner, node in definition.nodes.items()
                        if node.get("type") in self.definitions]
        return found

    def inner_wire(self, members: set[str], source: Node, output: str, target: Node,
                   input_name: str) -> tuple[Scope, Wire] | None:
        """The wire inside the instance that a link touching its nodes is, or None for a link
        of the top graph (checked here: it must cross the edge through a slot)."""
        source_scope = self.scope_of(source.id) if source.id in members else ()
        target_scope = self.scope_of(target.id) if target.id in members else ()
        level: Scope = ()
        if source.id in members and target.id in members:
            # The scopes' common prefix: they may be of different depths, so zip stops at the shorter.
            for a, b in zip(source_scope, target_scope, strict=False):
                if a != b:
                    break
                level = (*level, a)
        origin: tuple[Hashable, int | str] | None = (source.id, output)
        if source.id in members and source_scope != level:
            origin = self.lift(source.id, output_slot(source, output, self.spec_of), "out", len(level))
            if origin is None:
                raise _Unfit(f"node {source.label} output {output!r} is wired to node {target.label}, but no "
                             "output of the subgraph passes it on")
        end: tuple[Hashable, int | str] | None = (target.id, input_name)
        if target.id in members and target_scope != level:
            end = self.lift(target.id, self.input_index(target, input_name), "in", len(level))
            if end is None:
                raise _Unfit(f"node {target.label} input {input_name!r} is wired from node {source.label}, "
                             "not through an input of the subgraph")
        if not level:
            return None
        link_id = dict(target.links[input_name].extra).get("comfy_link_id")
        return level, Wire(origin[0], origin[1], end[0], end[1], link_id)  # type: ignore[index]

    def leaves(self, scopes: set[Scope], member_at: dict[tuple[Scope, str], str], scope: Scope,
               slot: int) -> list[tuple[str, str]]:
        """The fields (node id, input name) that a subgraph input slot feeds, through nested
        subgraphs too."""
        definition = self.definition_of(scope)
        found: list[tuple[str, str]] = []
        for inner, inner_slot in definition.fans.get(slot, []) if definition is not None else []:
            child = (*scope, inner)
            if child in scopes:
                nested = self.definition_of(child)
                instance = self.instance_node(child)
                nested_slot = nested.input_slot(instance, inner_slot) if nested and instance else None
                if nested_slot is not None:
                    found += self.leaves(scopes, member_at, child, nested_slot)
            elif (scope, inner) in member_at:
                node = self.workflow.nodes[member_at[(scope, inner)]]
                stored = comfy_fields(node).get("inputs")
                names = [entry_name(e) for e in stored if isinstance(e, dict)] if isinstance(stored, list) else []
                if inner_slot < len(names) and isinstance(names[inner_slot], str):
                    found.append((node.id, names[inner_slot]))
        return found

    def check_fan(self, members: set[str], member_at: dict[tuple[Scope, str], str], scopes: set[Scope],
                  scope: Scope, slot: int) -> None:
        """Every field one input of the subgraph feeds must still be wired alike: all from the
        same place outside it, or all not at all."""
        sources = set()
        for node_id, input_name in self.leaves(scopes, member_at, scope, slot):
            link = self.workflow.nodes[node_id].links.get(input_name)
            if link is not None and link.node in members and self.scope_of(link.node)[:len(scope)] == scope:
                raise _Unfit(f"node {self.workflow.nodes[node_id].label} input {input_name!r} is wired from inside "
                             "the subgraph, where the subgraph feeds it from one of its inputs")
            sources.add((link.node, link.output) if link is not None else None)
        if len(sources) > 1:
            definition = self.definition_of(scope)
            names = _slot_names(definition.raw.get("inputs")) if definition is not None else []
            name = names[slot] if slot < len(names) else slot
            raise _Unfit(f"the fields its input {name!r} feeds are no longer wired alike")

    def write_definition(self, scope: Scope, definition: _Definition, scopes: set[Scope],
                         member_at: dict[tuple[Scope, str], str], wires: list[Wire]) -> dict[str, Any]:
        items: dict[Hashable, LevelItem] = {}
        for inner, raw in definition.nodes.items():
            if (*scope, inner) in scopes:
                items[_instance_key((*scope, inner))] = LevelItem(raw.get("id"), raw=raw)
            elif (scope, inner) in member_at:
                node = self.workflow.nodes[member_at[(scope, inner)]]
                record = self.records[node.id]
                stored_exposed = record.get("exposed")
                exposed = stored_exposed if isinstance(stored_exposed, dict) else {}
                own = {name: value for name, value in exposed.items() if value is not None}
                items[node.id] = LevelItem(record["node"], node=node, values={**node.values, **own} if own else None)
        nodes, links, used = write_level(items, wires, self.spec_of, fixed=tuple(definition.boundary),
                                         stored=tuple(definition.links), link_objects=True, by_id=False)
        written = dict(definition.raw)
        written.update(nodes=nodes, links=links)
        state = written.get("state")
        if isinstance(state, dict):
            state = dict(state)
            node_ids = [node["id"] for node in nodes
                        if isinstance(node["id"], int) and not isinstance(node["id"], bool)]
            for key, found in (("lastNodeId", node_ids), ("lastLinkId", [i for i in used if not isinstance(i, bool)])):
                previous = state.get(key)
                if isinstance(previous, int) and found and max(found) > previous:
                    state[key] = max(found)
            written["state"] = state
        return written

    def instance_data(self, scope: Scope, definition: _Definition, member_at: dict[tuple[Scope, str], str],
                      scopes: set[Scope]) -> dict[str, Any]:
        """The instance node as the file had it, with as many outputs as its definition and
        the current values of the inner fields it shows."""
        data = dict(self.instances[scope[0]]["node"])
        stored_outputs, stored_declared = data.get("outputs"), definition.raw.get("outputs")
        outputs = list(stored_outputs) if isinstance(stored_outputs, list) else []
        declared = stored_declared if isinstance(stored_declared, list) else []
        for slot in range(len(outputs), len(declared)):
            entry = declared[slot] if isinstance(declared[slot], dict) else {}
            outputs.append({"name": entry.get("name", f"#{slot}"), "type": entry.get("type", "*")})
        data["outputs"] = outputs
        shown = data.get("widgets_values")
        entries = [entry for entry in data.get("inputs") or [] if isinstance(entry, dict)
                   and isinstance(entry.get("widget"), dict)] if isinstance(data.get("inputs"), list) else []
        if isinstance(shown, list) and entries and len(shown) == len(entries):
            shown = list(shown)
            declared_inputs = _slot_names(definition.raw.get("inputs"))
            for index, entry in enumerate(entries):
                if entry.get("name") not in declared_inputs:
                    continue
                for node_id, input_name in self.leaves(scopes, member_at, scope, declared_inputs.index(entry["name"])):
                    exposed = self.records[node_id].get("exposed")
                    if isinstance(exposed, dict) and input_name in exposed:
                        shown[index] = self.workflow.nodes[node_id].values.get(input_name)
                        break
            data["widgets_values"] = shown
        return data

    def describe_missing(self, member: str) -> str:
        """A deleted member by its id inside the definition and, where known, its type."""
        *outer, inner = member.split(":")
        scope: Scope = tuple(outer)
        definition = self.definition_of(scope) if scope and scope[0] in self.instances else None
        node = definition.nodes.get(inner) if definition is not None else None
        kind = node.get("type") if isinstance(node, dict) else None
        return f"{inner} ({kind})" if isinstance(kind, str) else inner

    # -- the whole graph -----------------------------------------------------------------
    def plan(self) -> SubgraphExport:
        export = SubgraphExport()
        built: dict[str, dict[str, Any]] = {}
        kept_in: dict[str, str] = {}
        for instance_id in sorted(self.instances, key=node_sort_key):
            name = self.instances[instance_id]["node"].get("type")
            definition = self.definitions.get(name) if isinstance(name, str) else None
            shown = definition.name if definition is not None else name
            try:
                members, data, definitions = self.keep(instance_id, built)
            except _Unfit as why:
                export.remarks.append(f"subgraph {shown!r} (node {instance_id}) was written as plain nodes: {why}")
                continue
            for definition_id, written in definitions.items():
                built.setdefault(definition_id, written)
            export.members |= members
            export.instances[instance_id] = data
            kept_in.update((member, instance_id) for member in members)
        export.definitions = {definition_id: built[definition_id] for definition_id in self.order
                              if definition_id in built}

        for target in self.workflow.nodes.values():
            for input_name, source in target.links.items():
                if source.node not in self.workflow.nodes:
                    continue
                source_instance, target_instance = kept_in.get(source.node), kept_in.get(target.id)
                if source_instance is not None and source_instance == target_instance:
                    continue
                origin: tuple[Hashable, int | str] | None = (source.node, source.output)
                if source_instance is not None:
                    node = self.workflow.nodes[source.node]
                    origin = self.lift(source.node, output_slot(node, source.output, self.spec_of), "out", 0)
                end: tuple[Hashable, int | str] | None = (target.id, input_name)
                if target_instance is not None:
                    end = self.lift(target.id, self.input_index(target, input_name), "in", 0)
                if origin is not None and end is not None:
                    link_id = dict(source.extra).get("comfy_link_id")
                    export.wires.append(Wire(origin[0], origin[1], end[0], end[1], link_id))
        return export


def plan_subgraphs(workflow: Workflow, spec_of: SpecLookup) -> SubgraphExport:
    """Which of the workflow's expanded ComfyUI subgraphs can be written back, and how."""
    return _Planner(workflow, spec_of).plan()
