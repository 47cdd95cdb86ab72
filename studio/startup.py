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


# What rendering needs before its first node runs: torch, the runtime and the libraries the
# model loaders build Stable Diffusion's parts from. Listing, validating and converting need
# none of it (the node library imports torch on first use; see studio.lazy).
RUNTIME_MODULES = (
    "torch",
    "studio.runtime.services",
    "studio.runtime.sampling",
    "studio.runtime.prompts",
    "studio.runtime.images",
    "safetensors.torch",
    "accelerate",
    "studio.runtime.meta_loading",
    "diffusers.models.unets.unet_2d_condition",
    "diffusers.models.autoencoders.autoencoder_kl",
    "transformers.models.clip.modeling_clip",
    "transformers.models.clip.tokenization_clip",
)


class RuntimeImport:
    """Imports :data:`RUNTIME_MODULES` on a thread of its own, started at once, so that a
    render reads, parses and checks its workflow while torch and the model libraries load.

    Call :meth:`wait` before anything of the runtime is imported on the calling thread (two
    threads importing the same packages at once can deadlock in Python's import locks).
    """

    def __init__(self, modules: tuple[str, ...] = RUNTIME_MODULES) -> None:
        import threading
        import time

        self.modules = modules
        self.error: BaseException | None = None
        self.began = time.perf_counter()
        self.seconds = 0.0  # how long the imports took
        self.waited = 0.0  # how long the caller waited for them
        self._thread = threading.Thread(target=self._run, name="runtime-import", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import importlib
        import time

        try:
            for name in self.modules:
                try:
                    importlib.import_module(name)
                except ImportError:
                    if name == "torch":
                        raise
                    # An optional library's layout changed: the loader imports what it needs itself.
        except BaseException as error:  # noqa: BLE001 - the background thread hands any failure to wait()
            self.error = error
        finally:
            self.seconds = time.perf_counter() - self.began

    def wait(self) -> None:
        """Block until the imports are done; re-raise what stopped them."""
        import time

        began = time.perf_counter()
        self._thread.join()
        self.waited = time.perf_counter() - began
        if self.error is not None:
            raise self.error
