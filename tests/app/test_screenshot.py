"""studio --screenshot: the main window as a PNG, at scale 1 and 2 (written under the
test's folder for a person to look at)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from studio.settings import PROJECT_ROOT, WORKFLOWS_DIR


@pytest.mark.parametrize("scale", [1, 2])
def test_screenshot_of_the_main_window(tmp_path, scale):
    target = tmp_path / f"window@{scale}x.png"
    result = subprocess.run([sys.executable, "-m", "studio", "--screenshot", str(target),
                             str(WORKFLOWS_DIR / "txt2img.json"), "--scale", str(scale)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    image = Image.open(target).convert("RGB")
    assert image.size == (1400 * scale, 900 * scale)
    # Dark theme: mostly dark, with the painted nodes and wires in it.
    colours = image.resize((140, 90)).getcolors(140 * 90)
    dark = sum(count for count, (r, g, b) in colours if r + g + b < 150)
    assert dark > 0.6 * 140 * 90 and len(colours) > 50
