"""studio --screenshot: the main window with the default workflow as a PNG, at scale 1 and 2.

Under a real X server (Xvfb, Qt's xcb platform) when Xvfb is installed — ``.ci/run`` installs
it — and offscreen otherwise. The PNGs are written to ``output/test-screenshots/`` in the
project (ignored by git) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.settings import PROJECT_ROOT, WORKFLOWS_DIR

SCREENSHOT_DIR = PROJECT_ROOT / "output" / "test-screenshots"


@pytest.fixture(scope="module")
def display(tmp_path_factory):
    """An X display from Xvfb, or None (then Qt's offscreen platform is used)."""
    if shutil.which("Xvfb") is None:
        yield None
        return
    number = 90 + os.getpid() % 100
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1920x1200x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket_path = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + 10
    while not socket_path.exists() and time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.05)
    assert socket_path.exists(), "Xvfb did not start"
    yield f":{number}"
    server.terminate()
    server.wait(10)


@pytest.mark.parametrize("scale", [1, 2])
def test_screenshot_of_the_main_window_with_the_default_workflow(display, scale):
    target = SCREENSHOT_DIR / f"main-window@{scale}x.png"
    target.unlink(missing_ok=True)
    env = dict(os.environ)
    if display is not None:
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    result = subprocess.run([sys.executable, "-m", "studio", "--screenshot", str(target), "--scale", str(scale)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    image = Image.open(target).convert("RGB")
    assert image.size == (1400 * scale, 900 * scale)
    # Dark theme: mostly dark, with the painted nodes, wires and panels in it.
    colours = image.resize((140, 90)).getcolors(140 * 90)
    dark = sum(count for count, (r, g, b) in colours if r + g + b < 150)
    assert dark > 0.6 * 140 * 90 and len(colours) > 50


FIRST_SHOW_CASES = {
    "default": WORKFLOWS_DIR / "default.json",
    "controlnet": WORKFLOWS_DIR / "tour" / "5_controlnet.json",
    "comfy-sdxl-refiner": PROJECT_ROOT / "tests" / "graph" / "comfy_files" / "sdxl_refiner_ui.json",
}
FIRST_SHOW_SIZES = [(1600, 1000), (1100, 700)]


def test_first_show_screenshots_of_three_graphs_at_two_window_sizes(display):
    """The window's real first show (size, show, then the view's own first fit), as
    ``studio --screenshot`` takes it: written to output/test-screenshots/first-show-*.png for a
    person to look at; checked here for a legible zoom and a drawn graph."""
    targets = {(name, size): SCREENSHOT_DIR / f"first-show-{name}-{size[0]}x{size[1]}.png"
               for name in FIRST_SHOW_CASES for size in FIRST_SHOW_SIZES}
    script = "\n".join([
        "import sys",
        "from pathlib import Path",
        "from studio.app.main import screenshot, _application",
        "from studio.app.node_item import DETAIL_ZOOM",
        "from PySide6.QtWidgets import QApplication",
        *[f"screenshot(Path({str(target)!r}), Path({str(FIRST_SHOW_CASES[name])!r}), 1.0, {size!r})"
          for (name, size), target in targets.items()],
    ])
    env = dict(os.environ)
    if display is not None:
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    for (_, size), target in targets.items():
        image = Image.open(target).convert("RGB")
        assert image.size == size
        colours = image.resize((160, 100)).getcolors(160 * 100)
        assert len(colours) > 60, f"{target.name}: looks blank"


def test_screenshots_of_the_editing_features(display, tmp_path):
    """Popups and dialogs included (taken from the X screen): an imported ComfyUI file with
    groups, bypassed and muted nodes and reroute points; a wire dropped on empty canvas with
    the filtered search open; a model drop-down open; the gallery viewer; the value diff of
    two pictures. Written to output/test-screenshots/editor-*.png for a person to look at."""
    if display is None:
        pytest.skip("needs Xvfb: popups are only on a real screen")
    names = ["editor-comfy-groups-bypass-mute-reroutes.png", "editor-wire-dropped-search.png",
             "editor-model-drop-down.png", "editor-gallery-viewer.png", "editor-value-diff.png"]
    for name in names:
        (SCREENSHOT_DIR / name).unlink(missing_ok=True)
    # Its renders and autosaves go to a folder of the test's, not the user's.
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"output_dir": str(tmp_path / "output"), "autosave_dir": str(tmp_path / "autosave"),
                                  "temp_dir": str(tmp_path / "temp")}))
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", SEED_STUDIO_CONFIG=str(config))
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "tests" / "app" / "editor_screenshots.py"),
                             str(SCREENSHOT_DIR)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in names:
        image = Image.open(SCREENSHOT_DIR / name).convert("RGB")
        assert len(image.resize((192, 120)).getcolors(192 * 120)) > 60, f"{name}: looks blank"
