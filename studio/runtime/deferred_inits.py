"""Packages whose ``__init__`` runs only when one of its own names is asked for.

diffusers' ``models.unets``, ``models.transformers``, ``models.autoencoders`` and
``models.controlnets`` packages import every model class they hold (about 140 modules: video,
audio and image transformers Seed Studio never builds) as soon as any one module inside them is
imported, although diffusers' own lazy top level (``diffusers.UNet2DConditionModel``) and its
modules import the submodule they need by its full name. Deferring them, torch and the
libraries a render imports take 3.7 s instead of 4.0 on this project's 2-core CPU when idle
(3,294 modules instead of 3,433; under a load of 4, 2.0 s less); ``bench/startup_bench.py``
prints the render's start-up.

With :func:`defer_package_inits` those packages are made as empty packages (their ``__path__``
set, so their submodules import as usual); the first access to a name their ``__init__``
defines (``from diffusers.models.transformers import SD3Transformer2DModel``) runs it then, so
every name is still there for whoever asks.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Iterable, Sequence
from typing import Any

DIFFUSERS_MODEL_PACKAGES = (
    "diffusers.models.unets",
    "diffusers.models.transformers",
    "diffusers.models.autoencoders",
    "diffusers.models.controlnets",
)


class _DeferredInitLoader(importlib.abc.Loader):
    """Makes the package module and leaves its ``__init__`` to the first missing name."""

    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module, with __path__ and __spec__ from the spec

    def exec_module(self, module: types.ModuleType) -> None:
        real = self.real
        lock = threading.RLock()

        def run_init(name: str) -> Any:
            with lock:
                if module.__dict__.get("__getattr__") is run_init:
                    del module.__dict__["__getattr__"]
                    real.exec_module(module)
            if name.startswith("__") and name.endswith("__") and name not in module.__dict__ and name != "__all__":
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            try:
                return module.__dict__[name]
            except KeyError:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}") from None

        module.__getattr__ = run_init  # type: ignore[method-assign]


class _DeferredInitFinder(importlib.abc.MetaPathFinder):
    def __init__(self, packages: Iterable[str]) -> None:
        self.packages = frozenset(packages)

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name not in self.packages:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return None  # not a package on disk: import it as usual
        spec.loader = _DeferredInitLoader(spec.loader)  # type: ignore[arg-type]
        return spec


def defer_package_inits(packages: Iterable[str] = DIFFUSERS_MODEL_PACKAGES) -> None:
    """From now on, the ``packages`` not imported yet run their ``__init__`` on first use of a
    name it defines, not when a module inside them is imported. Idempotent."""
    wanted = frozenset(packages) - set(sys.modules)
    for finder in sys.meta_path:
        if isinstance(finder, _DeferredInitFinder):
            wanted -= finder.packages
    if wanted:
        sys.meta_path.insert(0, _DeferredInitFinder(wanted))
