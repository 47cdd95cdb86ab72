"""Packages whose __init__ waits for the first name it defines (studio.runtime.deferred_inits)."""

from __future__ import annotations

import importlib
import sys

import pytest

from studio.runtime.deferred_inits import defer_package_inits


@pytest.fixture
def heavy_package(tmp_path, monkeypatch):
    """A package whose __init__ imports all its modules and counts how often it ran."""
    package = tmp_path / "heavy_models"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import builtins\nbuiltins.heavy_init_runs = getattr(builtins, 'heavy_init_runs', 0) + 1\n"
        "from .small import Small\nfrom .huge import Huge\n")
    (package / "small.py").write_text("class Small:\n    pass\n")
    (package / "huge.py").write_text("from . import small\nclass Huge(small.Small):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins
    monkeypatch.setattr(builtins, "heavy_init_runs", 0, raising=False)
    meta_path = list(sys.meta_path)
    yield "heavy_models"
    sys.meta_path[:] = meta_path
    for name in [name for name in sys.modules if name.split(".")[0] == "heavy_models"]:
        del sys.modules[name]


def test_a_module_inside_imports_without_the_package_init(heavy_package):
    import builtins

    defer_package_inits([heavy_package])
    small = importlib.import_module(f"{heavy_package}.small")
    assert small.Small.__name__ == "Small"
    assert builtins.heavy_init_runs == 0
    assert f"{heavy_package}.huge" not in sys.modules


def test_the_first_name_asked_of_the_package_runs_its_init_once(heavy_package):
    import builtins

    defer_package_inits([heavy_package])
    small = importlib.import_module(f"{heavy_package}.small")
    package = sys.modules[heavy_package]
    assert package.Huge.__mro__[1] is small.Small  # the same module objects, not a second copy
    from heavy_models import Small  # noqa: F401 (a from-import of a name the __init__ defines)

    assert builtins.heavy_init_runs == 1
    with pytest.raises(AttributeError, match="Missing"):
        package.Missing  # noqa: B018


def test_packages_imported_already_and_repeated_calls_change_nothing(heavy_package):
    importlib.import_module(heavy_package)
    before = list(sys.meta_path)
    defer_package_inits([heavy_package])
    defer_package_inits([heavy_package])
    assert sys.meta_path == before
