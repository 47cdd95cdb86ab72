"""What tells one version of a file from another without reading it.

Cache fingerprints (a node reads a file: an image, a model, an embedding) and remembered
verdicts about files need the same answer to "is this still the file I saw?". It is given
here once, torch-free, so nodes can ask it while a workflow is only being validated.
"""

from __future__ import annotations

import os
from pathlib import Path


def file_identity(path: str | os.PathLike[str]) -> list[str | int]:
    """``[resolved path, size in bytes, modification time in ns]`` of the file at ``path``:
    JSON-ready, so it can go straight into a cache fingerprint. A file replaced or edited under
    the same name gets a different identity. Raises ``OSError`` when the file is gone."""
    file_path = Path(path)
    stat = file_path.stat()
    return [str(file_path.resolve()), stat.st_size, stat.st_mtime_ns]
