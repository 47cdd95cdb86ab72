"""Where Seed Studio reads and writes: the one place settings come from.

Settings are read from a JSON file (``$SEED_STUDIO_CONFIG``, else ``settings.json`` in the
user config folder), then passed to whatever needs them; nothing reads them behind the
caller's back. Every key is optional::

    {
      "output_dir": "~/Pictures/Seed Studio",
      "input_dirs": ["~/Pictures/inputs"],
      "plugin_dirs": ["~/seed-studio-nodes"],
      "model_roots": ["~/ComfyUI/models"],
      "extra_model_paths": ["~/ComfyUI/extra_model_paths.yaml"],
      "cache_megabytes": 4096
    }
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import platformdirs

APP_NAME = "seed-studio"
# The folder that holds the ``studio`` package: the repository's root in a checkout (what the
# tests and tools start their subprocesses in). Installed from a wheel it is site-packages, so
# nothing Seed Studio ships is looked up from it: see :func:`package_folder`.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The repository's top-level resources/ and workflows/ folders, installed as packages of these
# names (pyproject.toml maps them), so that a wheel carries them as an editable install does.
RESOURCES_PACKAGE = "seed_studio_resources"
WORKFLOWS_PACKAGE = "seed_studio_workflows"


def package_folder(package: str) -> Path:
    """Where an installed data package (:data:`RESOURCES_PACKAGE`, :data:`WORKFLOWS_PACKAGE`)
    lies on disk, found through ``importlib.resources`` wherever Seed Studio is installed.
    It must be a real folder: the model libraries open configs and weights by path."""
    try:
        folder = files(package)
    except ModuleNotFoundError:
        raise RuntimeError(f"Seed Studio's data package {package!r} is not installed: install the project "
                           "(`make`, or `pip install .`) rather than running it from a copy of the sources") from None
    if not isinstance(folder, Path):
        raise RuntimeError(f"Seed Studio's data package {package!r} is not a folder on disk ({folder}); "
                           "install Seed Studio unzipped")
    return folder


RESOURCES_DIR = package_folder(RESOURCES_PACKAGE)
WORKFLOWS_DIR = package_folder(WORKFLOWS_PACKAGE)
# Sample images shipped with the project; always searched after the user's input folders.
SAMPLE_IMAGES_DIR = RESOURCES_DIR / "images"
# The embedded demo models, in ComfyUI's folder layout; always searched after the user's roots.
DEMO_MODELS_DIR = RESOURCES_DIR / "models"


class SettingsError(ValueError):
    """A settings file that cannot be used, naming the file and the key."""


def _data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


SPEEDS = ("default", "fast")


@dataclass(frozen=True)
class Settings:
    """Folders and limits for one session of the app or the CLI."""

    output_dir: Path = field(default_factory=lambda: _data_dir() / "output")
    input_dirs: tuple[Path, ...] = field(default_factory=lambda: (_data_dir() / "input",))
    temp_dir: Path = field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)) / "temp")
    # Where the app keeps copies of open graphs every few seconds, for recovery after a crash.
    autosave_dir: Path = field(default_factory=lambda: _data_dir() / "autosave")
    # LoadImage reads files inside the input folders only; this lets it read an absolute
    # path anywhere else too (as a trusted, single-user setup may want).
    allow_absolute_image_paths: bool = False
    # Node plugin folders are only ever the ones listed here: code is never picked up from a
    # folder the user did not name.
    plugin_dirs: tuple[Path, ...] = ()
    # Folders with ComfyUI's model sub-folders (checkpoints/, loras/, vae/, …).
    model_roots: tuple[Path, ...] = field(default_factory=lambda: (_data_dir() / "models",))
    # ComfyUI extra_model_paths.yaml files, read as ComfyUI reads them.
    extra_model_paths: tuple[Path, ...] = ()
    # Keep only the model in use on the GPU (for cards with little memory).
    low_vram: bool = False
    # "fast": compile the denoiser (regional torch.compile, cached on disk), channels-last and
    # cuDNN autotuning on a GPU; the first render of a size pays the compile time. "default":
    # eager. On the CPU both are the same (compiling there costs more than it saves).
    speed: str = "default"
    # How much the engine's result cache may hold (models are held by the model manager).
    cache_bytes: int = 4 * 1024**3

    @property
    def image_search_dirs(self) -> tuple[Path, ...]:
        return (*self.input_dirs, SAMPLE_IMAGES_DIR)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def config_path(cls) -> Path:
        configured = os.environ.get("SEED_STUDIO_CONFIG")
        if configured:
            return Path(configured).expanduser()
        return Path(platformdirs.user_config_dir(APP_NAME)) / "settings.json"

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Settings:
        """Settings from the config file; the defaults where there is none."""
        config = Path(path) if path is not None else cls.config_path()
        if not config.is_file():
            return cls()
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise SettingsError(f"{config}: cannot read settings ({error})") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{config}: expected a JSON object")
        return cls.from_mapping(data, str(config))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "settings") -> Settings:
        def folder(key: str, value: Any) -> Path:
            if not isinstance(value, str) or not value:
                raise SettingsError(f"{source}: {key} must be a folder path, found {value!r}")
            return Path(value).expanduser()

        def folders(key: str) -> tuple[Path, ...]:
            value = data[key]
            if not isinstance(value, list):
                raise SettingsError(f"{source}: {key} must be a list of folder paths")
            return tuple(folder(key, item) for item in value)

        changes: dict[str, Any] = {}
        for key in ("output_dir", "temp_dir", "autosave_dir"):
            if key in data:
                changes[key] = folder(key, data[key])
        for key in ("input_dirs", "plugin_dirs", "model_roots", "extra_model_paths"):
            if key in data:
                changes[key] = folders(key)
        for key in ("low_vram", "allow_absolute_image_paths"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise SettingsError(f"{source}: {key} must be true or false")
                changes[key] = data[key]
        if "speed" in data:
            if data["speed"] not in SPEEDS:
                raise SettingsError(f"{source}: speed must be one of {', '.join(SPEEDS)}")
            changes["speed"] = data["speed"]
        if "cache_megabytes" in data:
            megabytes = data["cache_megabytes"]
            if isinstance(megabytes, bool) or not isinstance(megabytes, int) or megabytes < 0:
                raise SettingsError(f"{source}: cache_megabytes must be a whole number ≥ 0")
            changes["cache_bytes"] = megabytes * 1024**2
        return cls(**changes)
