"""How a node type is declared.

A node is one small class: a type name, a category, a title, a docstring (its help text),
typed inputs and outputs, and one ``run`` method that receives the inputs by name and returns
the outputs in declared order::

    class ImageInvert(NodeBase):
        \"\"\"Inverts every channel of an image (1 - value).\"\"\"

        type_name = "ImageInvert"
        category = "image"
        title = "Invert Image"
        inputs = (Input("image", IMAGE),)
        outputs = (Output("IMAGE", IMAGE),)

        def run(self, ctx, image):
            return (1.0 - image,)

The registry finds such classes in the modules of ``nodes/`` (and of plugin folders the user
configured). Nodes never import Qt and reach the outside world only through ``ctx``.
No torch here: this module is shared by the engine, which must not import it.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from studio.graph.sockets import InputSpec, NodeSpec, OutputSpec

if TYPE_CHECKING:
    from studio.runtime.model_manager import ModelManager
    from studio.runtime.seed_batches import SeedBatcher
    from studio.settings import Settings

# Short names for declarations, so node modules read like a table.
Input = InputSpec
Output = OutputSpec

# The largest width or height any image node accepts, as ComfyUI's MAX_RESOLUTION.
MAX_RESOLUTION = 16384
# Seeds are unsigned 64-bit, as in ComfyUI, so shared workflows keep their seeds.
SEED_MAX = 0xFFFF_FFFF_FFFF_FFFF


class NodeDeclarationError(TypeError):
    """A node class that is declared wrongly (found when the registry loads it)."""


@dataclass
class Services:
    """What the caller of a run lends its nodes (``ctx.services``), each None when not given:
    the model manager (read it with :func:`studio.runtime.services.model_manager`, which
    says clearly when it is missing) and the seed batcher of a batch or ``--sweep``
    (:mod:`studio.runtime.seed_batches`). Built by
    :func:`studio.runtime.services.create_services`; the engine itself uses none of them."""

    models: ModelManager | None = None
    seed_batches: SeedBatcher | None = None


@runtime_checkable
class NodeContext(Protocol):
    """Everything a node may use of the run it is part of: ``ctx`` in :meth:`NodeBase.run`.

    The engine hands its own (:class:`studio.engine.RunContext`); a test may hand anything
    with these members (``tests/node_context.py``'s ``FakeContext``).
    """

    @property
    def node_id(self) -> str:
        """The id of the node being run (in the workflow)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def services(self) -> Services: ...

    @property
    def notes(self) -> Sequence[str]:
        """What :meth:`note` was told so far in this node's run, oldest first."""

    @property
    def embedded_texts(self) -> Mapping[str, str]:
        """Text to embed in written files (``{PNG text keyword: text}``) so they reopen as
        the workflow that made them; what it holds is the caller's choice."""

    def check_cancelled(self) -> None:
        """Raise the run's cancellation if it was cancelled; call it inside long loops."""

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        """Report ``step`` of ``total`` done, with an optional small IMAGE-like preview
        (and check for cancellation)."""

    def note(self, message: str) -> None:
        """Tell the artist something about this run that is not an error."""

    def record_file(self, path: Path) -> None:
        """Note a file this node wrote, so the run report (and a cached re-run) lists it."""


class NodeBase:
    """Base class of every node type. Subclasses fill in the class attributes and ``run``."""

    type_name: ClassVar[str] = ""
    category: ClassVar[str] = ""
    title: ClassVar[str] = ""
    # Raise when the meaning of inputs or outputs changes, so old cache entries are not reused.
    version: ClassVar[int] = 1
    inputs: ClassVar[tuple[InputSpec, ...]] = ()
    outputs: ClassVar[tuple[OutputSpec, ...]] = ()
    # Output nodes (save, preview) are what a run asks for when no target is named.
    is_output: ClassVar[bool] = False
    # False for nodes whose result may differ with identical inputs (true randomness,
    # clocks): they run every time.
    cacheable: ClassVar[bool] = True

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], settings: Settings) -> Any:
        """Extra cache-key material for what the values do not show: a file's size and
        modification time, say. Must be JSON-serialisable. ``None`` adds nothing."""
        return None

    @classmethod
    def check(cls, values: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
        """Problems with field values that ranges and choices cannot express, as
        ``(input name, sentence)`` pairs; checked with the rest before anything runs."""
        return []

    @classmethod
    def has_own_check(cls) -> bool:
        """Whether this type adds checks of its own (most do not; validation skips them)."""
        return cls.check.__func__ is not NodeBase.check.__func__  # type: ignore[attr-defined]

    @classmethod
    def advise(cls, values: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
        """Like :meth:`check`, for what is worth saying but does not stop a run (a missing
        embedding, which the prompt goes without): warnings, as ``(input name, sentence)``."""
        return []

    @classmethod
    def has_own_advice(cls) -> bool:
        return cls.advise.__func__ is not NodeBase.advise.__func__  # type: ignore[attr-defined]

    def run(self, ctx: NodeContext, **inputs: Any) -> tuple[Any, ...]:
        raise NotImplementedError(f"{type(self).__name__} does not implement run()")

    # -- derived descriptions ------------------------------------------------------------
    @classmethod
    def spec(cls) -> NodeSpec:
        return _spec_of(cls)

    @classmethod
    def help_text(cls) -> str:
        return textwrap.dedent(cls.__doc__ or "").strip()

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Everything about the type, JSON-ready (``studio nodes --json``, the library panel)."""
        return {
            "type": cls.type_name,
            "title": cls.title,
            "category": cls.category,
            "description": cls.help_text(),
            "version": cls.version,
            "output_node": cls.is_output,
            "inputs": [spec.describe() for spec in cls.inputs],
            "outputs": [spec.describe() for spec in cls.outputs],
        }


_SPECS: dict[type[NodeBase], NodeSpec] = {}


def _spec_of(cls: type[NodeBase]) -> NodeSpec:
    """The class's spec, made once (validation and planning ask for it per node per run)."""
    spec = _SPECS.get(cls)
    if spec is None:
        spec = _SPECS[cls] = NodeSpec(cls.type_name, tuple(cls.inputs), tuple(cls.outputs), cls.is_output)
    return spec


def check_declaration(cls: type[NodeBase]) -> None:
    """Refuse a node class whose declaration would confuse the engine or the artist."""
    name = cls.__qualname__
    if not cls.type_name or not isinstance(cls.type_name, str):
        raise NodeDeclarationError(f"{name} has no type_name")
    if not cls.category or not cls.title:
        raise NodeDeclarationError(f"{cls.type_name} needs a category and a title")
    if not cls.help_text():
        raise NodeDeclarationError(f"{cls.type_name} needs a docstring: it is the node's help text")
    if cls.run is NodeBase.run:
        raise NodeDeclarationError(f"{cls.type_name} does not implement run()")
    for kind, specs in (("input", cls.inputs), ("output", cls.outputs)):
        names = [spec.name for spec in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise NodeDeclarationError(f"{cls.type_name} declares the {kind} {duplicates[0]!r} twice")
    parameters = inspect.signature(cls.run).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if not accepts_any:
        missing = [spec.name for spec in cls.inputs if spec.name not in parameters]
        if missing:
            raise NodeDeclarationError(f"{cls.type_name}.run() does not take the input {missing[0]!r}")
    check_run_annotations(cls)


# The Python types a run() parameter may be annotated with, by the socket type of its input,
# compared by name as annotations read under ``from __future__ import annotations`` (so torch
# is never imported here). A FLOAT input takes an int too (files write 1 for 1.0); choice
# inputs are STRING. Any other socket type (MODEL, CLIP, VAE, CONTROL_NET, UPSCALE_MODEL,
# SIGMAS, …) carries an object of a runtime class: any class name, but not a widget's scalar;
# the wildcard "*" takes anything.
RUN_ANNOTATIONS: dict[str, frozenset[str]] = {
    "INT": frozenset({"int"}),
    "FLOAT": frozenset({"float", "int"}),
    "STRING": frozenset({"str"}),
    "BOOLEAN": frozenset({"bool"}),
    "IMAGE": frozenset({"Tensor", "torch.Tensor"}),
    "MASK": frozenset({"Tensor", "torch.Tensor"}),
    "LATENT": frozenset({"dict"}),
    "CONDITIONING": frozenset({"list"}),
}
_SCALAR_ANNOTATIONS = frozenset({"int", "float", "str", "bool", "bytes", "complex"})


def _split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` outside brackets."""
    parts: list[str] = []
    depth = start = 0
    for index, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _annotation_names(annotation: Any) -> list[str]:
    """The type names an annotation allows, without None and without generic arguments:
    ``"torch.Tensor | None"`` → ``["torch.Tensor"]``, ``"dict[str, Any]"`` → ``["dict"]``."""
    if isinstance(annotation, type):
        module = "" if annotation.__module__ == "builtins" else f"{annotation.__module__}."
        text = f"{module}{annotation.__qualname__}"
    else:
        text = str(annotation)
    names: list[str] = []
    for part in _split_top_level(text, "|"):
        base, _, arguments = part.partition("[")
        base = base.removeprefix("typing.")
        if base in ("Optional", "Union"):
            names.extend(name for argument in _split_top_level(arguments.removesuffix("]"), ",")
                         for name in _annotation_names(argument))
        elif base not in ("None", "NoneType"):
            names.append(base)
    return names


def check_run_annotations(cls: type[NodeBase]) -> None:
    """Refuse a node class whose ``run()`` annotates an input with a type its socket never
    carries (an IMAGE parameter annotated ``int``, say): the annotations are the node's
    contract with the nodes wired to it, so they must agree with the declared sockets.
    Parameters without an annotation are not checked."""
    parameters = inspect.signature(cls.run).parameters
    for spec in cls.inputs:
        parameter = parameters.get(spec.name)
        if parameter is None or parameter.annotation is inspect.Parameter.empty or spec.type == "*":
            continue
        names = _annotation_names(parameter.annotation)
        allowed = RUN_ANNOTATIONS.get(spec.type)
        if allowed is None:
            wrong = [name for name in names if name in _SCALAR_ANNOTATIONS]
            expected = "an object of a runtime class, not a scalar"
        else:
            wrong = [name for name in names if name not in allowed]
            expected = " or ".join(sorted(allowed))
        if wrong or not names:
            raise NodeDeclarationError(
                f"{cls.type_name}.run() annotates the input {spec.name!r} as {parameter.annotation!r}, but it is "
                f"a {spec.type} socket: expected {expected}")
