"""studio --screenshot: the main window with the default workflow as a PNG, at scale 1 and 2.

Under a real X server (Xvfb, Qt's xcb platform) when Xvfb is installed — ``.ci/run`` installs
it — and offscreen otherwise. The PNGs are written to ``output/test-screenshots/`` in the
project (ignored by git) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.settings import PROJECT_ROOT

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
