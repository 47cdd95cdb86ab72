"""What every way of starting Seed Studio does before it imports anything else.

Python puts the folder it was started in on ``sys.path`` for ``python -m studio`` and
``python -c``, ahead of the installed packages. A folder an artist works in may hold Python
files of its own (ComfyUI's root has a ``nodes.py``, the name of our node library), and none
of them may be imported in place of Seed Studio's modules or the libraries it uses. The
project's own root is kept: its modules are the real ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _same_folder(entry: str, folder: Path) -> bool:
    try:
        return Path(entry or os.curdir).resolve() == folder
    except (OSError, RuntimeError):
        return False


def keep_working_folder_off_path() -> None:
    """Take the working folder off ``sys.path`` (as ``''`` or as its full path), unless it
    is the project's root."""
    try:
        working = Path.cwd().resolve()
    except OSError:  # the folder was deleted under us: nothing there can be imported anyway
        working = None
    if working == PROJECT_ROOT:
        return
    sys.path[:] = [entry for entry in sys.path
                   if entry and not (working is not None and _same_folder(entry, working))]
