"""However Seed Studio is started, no file of the folder it is started in runs in place of
its own modules (ComfyUI's root holds a ``nodes.py``, the name of our node library)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HOSTILE_NODES = '''
from pathlib import Path
Path(__file__).with_name("marker.txt").write_text("the working folder's nodes.py ran")
'''


def console_script() -> Path | None:
    script = Path(sys.executable).with_name("studio")
    return script if script.is_file() else None


STARTS = {
    "python -m studio": lambda: [sys.executable, "-m", "studio", "nodes", "--json"],
    "python -c": lambda: [sys.executable, "-c",
                          "from studio.cli import main; raise SystemExit(main(['nodes', '--json']))"],
    "console script": lambda: [str(console_script()), "nodes", "--json"],
}


@pytest.mark.parametrize("start", sorted(STARTS))
def test_a_nodes_py_in_the_working_folder_never_runs_and_the_library_is_still_found(tmp_path, start):
    if start == "console script" and console_script() is None:
        pytest.skip("the studio console script is not installed beside this interpreter")
    (tmp_path / "nodes.py").write_text(HOSTILE_NODES)
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(STARTS[start](), cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=environment)
    assert not (tmp_path / "marker.txt").exists()
    assert result.returncode == 0, result.stderr
    types = {node["type"] for node in json.loads(result.stdout)}
    assert {"KSampler", "LoadImage", "SaveImage"} <= types
    assert "node plugin not loaded" not in result.stderr


def test_the_library_is_refused_when_another_module_took_its_name(tmp_path, monkeypatch):
    from studio.registry import LibraryImportError, import_library

    impostor = type(sys)("nodes")
    impostor.__file__ = str(tmp_path / "nodes.py")
    monkeypatch.setitem(sys.modules, "nodes", impostor)
    with pytest.raises(LibraryImportError, match="a module named 'nodes' from .*nodes.py was imported before"):
        import_library()


def test_the_working_folder_is_taken_off_the_import_path_unless_it_is_the_project(tmp_path, monkeypatch):
    from studio.startup import PROJECT_ROOT, keep_working_folder_off_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", str(tmp_path), "/somewhere/else"])
    keep_working_folder_off_path()
    assert sys.path == ["/somewhere/else"]
    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.setattr(sys, "path", ["", str(PROJECT_ROOT)])
    keep_working_folder_off_path()
    assert sys.path == ["", str(PROJECT_ROOT)]
