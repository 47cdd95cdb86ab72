"""The layering of studio/ARCHITECTURE.md, checked by importing each layer in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["studio.graph", "studio.engine", "studio.node_api", "studio.settings"])
def test_pure_layers_import_neither_qt_nor_torch(module):
    code = (f"import sys, {module}; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'qtawesome')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_nodes_never_import_qt():
    for path in sorted((ROOT / "nodes").rglob("*.py")):
        assert not imported_modules(path) & {"PySide6", "qtawesome", "qtpy"}, path


def test_graph_and_engine_sources_name_neither_qt_nor_torch():
    for folder in ("studio/graph", "studio/engine"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            assert not imported_modules(path) & {"PySide6", "torch", "qtawesome", "numpy"}, path
