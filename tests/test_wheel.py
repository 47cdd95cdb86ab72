"""Seed Studio installed from its wheel works away from the repository: the wheel holds the code,
the shipped resources and workflows, and a render of the default workflow from another folder
finds the demo model and writes its picture.

The wheel goes into a fresh virtual environment that borrows the test environment's
site-packages for its dependencies (a ``.pth`` line, which adds the folder to ``sys.path`` but
runs none of the ``.pth`` files in it, so the checkout's editable install stays out), so
nothing heavy is installed again and nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from studio.settings import PROJECT_ROOT

# What the build reads from the checkout.
BUILD_INPUTS = ("pyproject.toml", "README.md", "studio", "nodes", "resources", "workflows")
# The checkout's data folders and the packages they are installed as.
DATA_FOLDERS = {"resources": "seed_studio_resources", "workflows": "seed_studio_workflows"}

WHERE_THINGS_ARE = """
import json, studio, studio.settings as s
print(json.dumps({"studio": studio.__file__, "resources": str(s.RESOURCES_DIR), "workflows": str(s.WORKFLOWS_DIR)}))
"""


def _build_wheel(tmp_path: Path) -> Path:
    # The build runs on a copy, so that it writes no build/ or egg-info folder into the
    # checkout (other test runs may be reading it).
    source = tmp_path / "source"
    for name in BUILD_INPUTS:
        origin = PROJECT_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / name)
    dist = tmp_path / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "--quiet", "-w", str(dist), str(source)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = dist.glob("seed_studio-*.whl")
    return wheel


def _expected_files() -> set[str]:
    """What the wheel must hold: every module of the code and every shipped file, under the
    names they are installed as."""
    expected = set()
    for package in ("studio", "nodes"):
        expected |= {path.relative_to(PROJECT_ROOT).as_posix()
                     for path in (PROJECT_ROOT / package).rglob("*.py") if "__pycache__" not in path.parts}
    for folder, package in DATA_FOLDERS.items():
        root = PROJECT_ROOT / folder
        for path in root.rglob("*"):
            # The scripts that made the shipped files are tooling; the wheel leaves them out.
            script = path.suffix == ".py" and path.name != "__init__.py"
            if path.is_file() and "__pycache__" not in path.parts and not script:
                expected.add(f"{package}/{path.relative_to(root).as_posix()}")
    return expected


def _environment_with_the_wheel(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    (site_packages / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    # The test environment's pip installs into the new one (it has none of its own).
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                             "--no-index", "--quiet", str(wheel)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


@pytest.mark.slow
def test_the_wheel_renders_the_default_workflow_from_another_folder(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        held = set(archive.namelist())
    missing = sorted(_expected_files() - held)
    assert not missing, f"the wheel lacks {missing[:10]}"

    venv = _environment_with_the_wheel(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "SEED_STUDIO_CONFIG": str(elsewhere / "no-settings.json")}
    environment.pop("PYTHONPATH", None)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", WHERE_THINGS_ARE], cwd=elsewhere, env=environment,
                           capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    found = json.loads(where.stdout)
    # The wheel's code and files, not the checkout's (its editable install must not leak in).
    for place in found.values():
        assert Path(place).resolve().is_relative_to(venv.resolve()), found

    default = Path(found["workflows"]) / "default.json"
    out = tmp_path / "out"
    render = subprocess.run([str(venv / "bin" / "studio"), "render", str(default), "--out", str(out),
                             "--set", "4.steps=2"], cwd=elsewhere, env=environment,
                            capture_output=True, text=True, timeout=180)
    assert render.returncode == 0, render.stdout + render.stderr
    [picture] = [Path(line) for line in render.stdout.splitlines() if line.strip()]
    assert picture.suffix == ".png" and picture.is_file() and out in picture.parents
    assert picture.read_bytes().startswith(b"\x89PNG")
