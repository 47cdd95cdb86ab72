"""Model folders: where checkpoints, LoRAs, VAEs, ControlNets and upscalers are found.

Each model root uses ComfyUI's sub-folder names (``checkpoints``, ``loras``, ``vae``, …), and
ComfyUI's ``extra_model_paths.yaml`` files are read too, so an artist points Seed Studio at
an existing install and copies nothing. Listing never opens a model file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from studio.engine.validate import Problem
from studio.graph.comfy.definitions import MODEL_INPUTS
from studio.graph.model import NodeMode, Workflow
from studio.settings import DEMO_MODELS_DIR, Settings

MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
KINDS = ("checkpoints", "vae", "loras", "controlnet", "upscale_models", "embeddings", "clip_vision",
         "text_encoders", "diffusion_models", "hypernetworks", "style_models", "gligen")
# Older names ComfyUI still accepts for two folders.
ALIASES = {"clip": "text_encoders", "unet": "diffusion_models", "t2i_adapter": "controlnet"}


def _is_diffusers_folder(path: Path) -> bool:
    """A diffusers model saved as a folder: a pipeline (model_index.json) or one model."""
    return (path / "model_index.json").is_file() or (path / "config.json").is_file()


class ModelPathsError(ValueError):
    """An extra_model_paths.yaml that cannot be used, naming the file."""


def read_extra_model_paths(path: Path) -> dict[str, list[Path]]:
    """Folders by kind from one ComfyUI ``extra_model_paths.yaml``.

    Each top-level section may set ``base_path`` (relative to the file's folder), then maps a
    kind to a folder or to several, one per line, relative to ``base_path``.
    """
    import yaml  # PyYAML comes with transformers; only needed when such a file is configured

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ModelPathsError(f"{path}: cannot read model paths ({error})") from None
    found: dict[str, list[Path]] = {}
    if not isinstance(data, dict):
        return found
    for section in data.values():
        if not isinstance(section, dict):
            continue
        base = path.parent
        if isinstance(section.get("base_path"), str):
            base = path.parent / os.path.expandvars(os.path.expanduser(section["base_path"]))
        for kind, value in section.items():
            if kind in ("base_path", "is_default") or not isinstance(value, str):
                continue
            kind = ALIASES.get(kind, kind)
            for line in value.splitlines():
                line = line.strip()
                if line:
                    found.setdefault(kind, []).append(base / os.path.expandvars(os.path.expanduser(line)))
    return found


@dataclass
class ModelFolders:
    """The folders searched for each kind of model, in order."""

    folders: dict[str, list[Path]] = field(default_factory=dict)

    @classmethod
    def from_roots(cls, roots: Iterable[Path], extra_model_paths: Iterable[Path] = ()) -> ModelFolders:
        folders: dict[str, list[Path]] = {}
        for root in roots:
            root = Path(root).expanduser()
            for kind in KINDS:
                folders.setdefault(kind, []).append(root / kind)
            for alias, kind in ALIASES.items():
                if (root / alias).is_dir():
                    folders[kind].append(root / alias)
        for yaml_path in extra_model_paths:
            for kind, paths in read_extra_model_paths(Path(yaml_path).expanduser()).items():
                folders.setdefault(kind, []).extend(paths)
        return cls(folders)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelFolders:
        # The demo models come last, so an artist's model of the same name wins.
        return cls.from_roots((*settings.model_roots, DEMO_MODELS_DIR), settings.extra_model_paths)

    def folders_for(self, kind: str) -> list[Path]:
        return list(self.folders.get(ALIASES.get(kind, kind), []))

    def list(self, kind: str) -> list[str]:
        """Model files of a kind, named as ComfyUI names them (relative, with ``/``)."""
        names: set[str] = set()
        for folder in self.folders_for(kind):
            if not folder.is_dir():
                continue
            for directory, subdirectories, files in os.walk(folder, followlinks=True):
                relative = Path(directory).relative_to(folder)
                if relative != Path(".") and _is_diffusers_folder(Path(directory)):
                    # A folder named like a weights file beside it holds that file's
                    # configs, not a model of its own.
                    if not any(Path(directory + suffix).is_file() for suffix in MODEL_SUFFIXES):
                        names.add(relative.as_posix())
                    subdirectories[:] = []  # its weights belong to it, not listed one by one
                    continue
                subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
                for name in files:
                    if name.lower().endswith(MODEL_SUFFIXES):
                        names.add((relative / name).as_posix())
        return sorted(names)

    def find(self, kind: str, name: str) -> Path | None:
        """The file a model name refers to (ComfyUI files may use ``\\`` in names)."""
        relative = Path(*name.replace("\\", "/").split("/"))
        if relative.is_absolute() or ".." in relative.parts:
            return None
        for folder in self.folders_for(kind):
            candidate = folder / relative
            if candidate.is_file() or (candidate.is_dir() and _is_diffusers_folder(candidate)):
                return candidate
        return None


def missing_models(workflow: Workflow, folders: ModelFolders, skip_types: set[str] = frozenset()) -> list[Problem]:
    """Model files a workflow names that are not in the model folders, each with the folder
    it was expected in (nodes of ``skip_types`` are left to check themselves)."""
    problems = []
    for node in workflow.nodes.values():
        if node.mode is NodeMode.MUTE or node.type in skip_types:
            continue
        for input_name, value in node.values.items():
            kind = MODEL_INPUTS.get((node.type, input_name))
            if kind is None or not isinstance(value, str) or input_name in node.links:
                continue
            if folders.find(kind, value) is None:
                where = ", ".join(str(folder) for folder in folders.folders_for(kind)) or "no model folders are set up"
                problems.append(Problem("missing_model", f"model file {value!r} is not in the {kind} folder "
                                        f"({where})", node.id, node.type, input_name))
    return problems
