"""The node registry: every node type by its type name.

Node types come from the modules of the ``nodes`` package and from plugin folders the user
listed in their settings (never from anywhere else). A plugin that fails to import or
declares a node wrongly is reported, not fatal: the rest of the library still loads.

The built-in library is imported from the project's own ``nodes`` folder, never found on
``sys.path``: the folder Seed Studio is started in may hold a ``nodes.py`` of its own
(ComfyUI's root does), and that file must never run in its place.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from studio.graph.sockets import NodeSpec
from studio.node_api import NodeBase, NodeDeclarationError, check_declaration

# The built-in node library: the ``nodes`` package beside the ``studio`` package.
LIBRARY_PACKAGE = "nodes"
LIBRARY_DIR = Path(__file__).resolve().parent.parent / LIBRARY_PACKAGE


class LibraryImportError(ImportError):
    """Another module took the built-in node library's name before it was imported."""


def import_library() -> ModuleType:
    """The built-in node library, imported from :data:`LIBRARY_DIR` whatever ``sys.path``
    holds; its modules (``nodes.io``, …) are then found inside that folder only."""
    existing = sys.modules.get(LIBRARY_PACKAGE)
    if existing is not None:
        locations = [Path(location).resolve() for location in getattr(existing, "__path__", ())]
        if LIBRARY_DIR not in locations:
            where = getattr(existing, "__file__", None) or "an unknown place"
            raise LibraryImportError(f"a module named {LIBRARY_PACKAGE!r} from {where} was imported before Seed "
                                     f"Studio's node library ({LIBRARY_DIR}); start Seed Studio on its own")
        return existing
    spec = importlib.util.spec_from_file_location(LIBRARY_PACKAGE, LIBRARY_DIR / "__init__.py",
                                                  submodule_search_locations=[str(LIBRARY_DIR)])
    if spec is None or spec.loader is None:
        raise LibraryImportError(f"Seed Studio's node library is missing from {LIBRARY_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[LIBRARY_PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(LIBRARY_PACKAGE, None)
        raise
    return module


@dataclass(frozen=True)
class PluginProblem:
    """Why a module of node types could not be used."""

    origin: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.message}"


class Registry:
    """Node classes by type name."""

    def __init__(self) -> None:
        self._classes: dict[str, type[NodeBase]] = {}
        self._origins: dict[str, str] = {}
        self.problems: list[PluginProblem] = []

    def register(self, cls: type[NodeBase], origin: str = "") -> type[NodeBase]:
        check_declaration(cls)
        existing = self._classes.get(cls.type_name)
        if existing is not None and existing is not cls:
            raise NodeDeclarationError(
                f"{cls.type_name} is already defined by {self._origins[cls.type_name]}")
        self._classes[cls.type_name] = cls
        self._origins[cls.type_name] = origin or cls.__module__
        return cls

    def get(self, type_name: str) -> type[NodeBase] | None:
        return self._classes.get(type_name)

    def spec(self, type_name: str) -> NodeSpec | None:
        cls = self._classes.get(type_name)
        return cls.spec() if cls is not None else None

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._classes

    def __iter__(self) -> Iterator[type[NodeBase]]:
        for name in sorted(self._classes):
            yield self._classes[name]

    def __len__(self) -> int:
        return len(self._classes)

    def types(self) -> list[str]:
        return sorted(self._classes)

    def origin(self, type_name: str) -> str:
        return self._origins.get(type_name, "")

    # -- discovery -----------------------------------------------------------------------
    def register_module(self, module: ModuleType, origin: str) -> int:
        """Register every node class defined in ``module``; returns how many."""
        count = 0
        # Classes the module defines, or (for a plugin package) its submodules define and
        # it re-exports; classes it merely imported from elsewhere are not its own.
        own = (module.__name__, module.__name__ + ".")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, NodeBase) and value is not NodeBase
                    and value.type_name and (value.__module__ == own[0] or value.__module__.startswith(own[1]))):
                try:
                    self.register(value, origin)
                    count += 1
                except NodeDeclarationError as error:
                    self.problems.append(PluginProblem(origin, str(error)))
        return count

    def discover_package(self, package_name: str = LIBRARY_PACKAGE) -> None:
        """Import every module of a package of node modules (the built-in library, from
        its own folder: see :func:`import_library`)."""
        package = import_library() if package_name == LIBRARY_PACKAGE else importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda item: item.name):
            if info.name.startswith("_"):
                continue
            name = f"{package_name}.{info.name}"
            try:
                module = importlib.import_module(name)
            except Exception as error:  # noqa: BLE001 - one broken module must not hide the others
                self.problems.append(PluginProblem(name, f"{type(error).__name__}: {error}"))
                continue
            self.register_module(module, name)

    def discover_folder(self, folder: Path) -> None:
        """Load node modules from a plugin folder: each ``*.py`` file and each package in it."""
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            self.problems.append(PluginProblem(str(folder), "plugin folder not found"))
            return
        # A namespace per folder so two folders' "utils.py" do not collide in sys.modules.
        namespace = "seed_studio_plugins_" + hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith((".", "_")):
                continue
            if entry.is_file() and entry.suffix == ".py":
                location, search = entry, None
            elif entry.is_dir() and (entry / "__init__.py").is_file():
                location, search = entry / "__init__.py", [str(entry)]
            else:
                continue
            module_name = f"{namespace}.{entry.stem}"
            module = self._import_file(module_name, location, search)
            if module is not None:
                self.register_module(module, str(entry))

    def _import_file(self, module_name: str, location: Path, search: list[str] | None) -> ModuleType | None:
        try:
            spec = importlib.util.spec_from_file_location(
                module_name, location, submodule_search_locations=search)
            if spec is None or spec.loader is None:
                raise ImportError("not an importable Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            return module
        except Exception as error:  # noqa: BLE001 - a plugin's own code can raise anything; it becomes a problem
            sys.modules.pop(module_name, None)
            last = traceback.extract_tb(error.__traceback__)[-1:] or None
            where = f" (line {last[0].lineno})" if last else ""
            self.problems.append(PluginProblem(str(location), f"{type(error).__name__}: {error}{where}"))
            return None


def build_registry(plugin_dirs: Iterable[Path] = ()) -> Registry:
    """The built-in node library plus the given plugin folders."""
    registry = Registry()
    registry.discover_package(LIBRARY_PACKAGE)
    for folder in plugin_dirs:
        registry.discover_folder(Path(folder))
    return registry
