"""What model files are called and the error a file that cannot be used raises: shared by the
loaders (torch) and the header checks that validation runs (no torch). The two readers every
loader uses are here too, so that a damaged or unsafe file is reported the same way whatever
kind of model it was meant to be (they import torch when called)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class ModelLoadError(ValueError):
    """A model file that cannot be used, naming the file and what was wrong with it."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path.name}: {message}")


def read_safetensors(path: Path) -> dict[str, Any]:
    """Every tensor of a safetensors file, on the CPU; a damaged file is a ModelLoadError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(path, f"damaged or not a safetensors file ({error})") from None


def read_weights_pickle(path: Path, refused: str, kind: str) -> Any:
    """A pickled file read by torch's weights-only unpickler, which builds tensors and plain
    data and nothing else. ``refused`` is the message for a file it will not read; ``kind``
    names what a damaged file should have been ("a hypernetwork file")."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Refused by the weights-only unpickler: Python objects (code) besides tensors, a
        # pickle protocol it does not read, or not a pickle at all. None of it is loaded.
        raise ModelLoadError(path, refused) from None
    except Exception as error:  # noqa: BLE001 - the weights-only unpickler raises many kinds on garbage
        raise ModelLoadError(path, f"damaged or not {kind} ({type(error).__name__}: {error})") from None
