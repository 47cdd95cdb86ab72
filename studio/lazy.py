"""Modules imported when first used, not when the module naming them is imported.

The node library names torch in hundreds of places, but listing, validating and converting
workflows needs none of it: ``torch = lazy_module("torch")`` makes ``torch`` a stand-in that
imports the real module on its first attribute access (``torch.cat``, ``torch.Tensor``), so
``studio nodes``, ``validate`` and ``convert`` start in a fraction of a second.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands in for the module ``name`` until an attribute is asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_module"] = None

    def _load(self) -> types.ModuleType:
        module = self.__dict__["_lazy_module"]
        if module is None:
            module = importlib.import_module(self.__name__)
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") and attribute.endswith("__") and attribute not in ("__version__", "__path__",
                                                                                        "__file__", "__all__"):
            raise AttributeError(attribute)
        return getattr(self._load(), attribute)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        state = "imported" if self.__dict__["_lazy_module"] is not None else "not imported yet"
        return f"<lazy module {self.__name__!r} ({state})>"


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on first use (see :class:`LazyModule`)."""
    return LazyModule(name)
