"""What model files are called and the error a file that cannot be used raises: shared by the
loaders (torch) and the header checks that validation runs (no torch)."""

from __future__ import annotations

from pathlib import Path

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class ModelLoadError(ValueError):
    """A model file that cannot be used, naming the file and what was wrong with it."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path.name}: {message}")
