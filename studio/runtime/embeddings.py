"""Textual inversion embeddings: ``embedding:NAME`` in a prompt, read from the embeddings
folders in the formats artists download (as ComfyUI reads them):

- A1111 ``.pt``: ``{"string_to_param": {"*": tensor[n, 768]}, "name": …}``
- ``.safetensors`` with one tensor (``emb_params`` or any name) of shape [n, width]
- SDXL: ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``
- diffusers ``.bin``: ``{"<token>": tensor[width]}``

Vectors are chosen by the width of the text encoder they are for.
"""

from __future__ import annotations

from pathlib import Path

from studio.lazy import lazy_module
from studio.runtime.model_errors import SAFETENSORS_SUFFIXES, ModelLoadError, read_safetensors, read_weights_pickle
from studio.runtime.models import ModelFolders

# Only reading an embedding's vectors needs torch; finding its file (validation) does not.
torch = lazy_module("torch")

SUFFIXES = ("", ".safetensors", ".pt", ".bin", ".pth")


def read_embedding_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return read_safetensors(path)
    data = read_weights_pickle(path, "is not a plain-weights file: pickled embeddings are read only when they "
                               "hold nothing but weights and names (convert it to .safetensors)",
                               "an embedding file")
    if isinstance(data, dict) and isinstance(data.get("string_to_param"), dict):
        data = data["string_to_param"]
    if not isinstance(data, dict):
        raise ModelLoadError(path, "does not hold embedding vectors")
    return {str(key): value for key, value in data.items() if isinstance(value, torch.Tensor)}


class EmbeddingLibrary:
    """Embeddings by name from the embeddings folders, read once each."""

    def __init__(self, folders: ModelFolders) -> None:
        self.folders = folders
        self._cache: dict[Path, dict[str, torch.Tensor]] = {}

    def find(self, name: str) -> Path:
        for suffix in SUFFIXES:
            path = self.folders.find("embeddings", name + suffix)
            if path is not None and path.is_file():
                return path
        where = ", ".join(str(folder) for folder in self.folders.folders_for("embeddings")) or "none set up"
        raise ModelLoadError(Path(name), f"embedding not found in the embeddings folders ({where})")

    def vectors(self, name: str, width: int, encoder_index: int = 0) -> torch.Tensor:
        """The embedding's vectors for a text encoder of this width (n × width)."""
        path = self.find(name)
        if path not in self._cache:
            self._cache[path] = read_embedding_file(path)
        tensors = self._cache[path]
        preferred = ("clip_l", "clip_g")[encoder_index] if encoder_index < 2 else None
        candidates = ([tensors[preferred]] if preferred in tensors else []) + list(tensors.values())
        for tensor in candidates:
            vectors = tensor.reshape(-1, tensor.shape[-1]) if tensor.ndim > 1 else tensor[None]
            if vectors.shape[-1] == width:
                return vectors.float()
        widths = sorted({t.shape[-1] for t in tensors.values()})
        raise ModelLoadError(path, f"has vectors {widths} wide, but this text encoder needs {width}")
