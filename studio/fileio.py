"""Writing files so that a crash or a full disk never leaves a half-written one behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# The process's umask, read once (reading it means setting it). Files are created with the
# permissions any program's files get (0666 less the umask), not mkstemp's private 0600.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def _temporary_beside(target: Path) -> tuple[int, str]:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    if hasattr(os, "fchmod"):
        os.fchmod(handle, FILE_MODE)
    return handle, temporary


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so readers see either the old file or the new one, never a mix. Saving through a
    symbolic link writes the file it points to and keeps the link."""
    target = Path(path)
    if target.is_symlink():
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _temporary_beside(target)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_new_file(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write ``data`` to ``path`` only if nothing is there; returns False if something is.

    The data is complete on disk before the name appears (temporary file, then a hard link
    that fails if the name exists), so an existing output is never overwritten, even by a
    second process racing for the same name.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _temporary_beside(target)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
        except OSError:
            # Some file systems (FAT, some network shares) have no hard links: fall back to
            # an exclusive create, which still never overwrites.
            try:
                with open(target, "xb") as stream:
                    stream.write(data)
            except FileExistsError:
                return False
        return True
    finally:
        Path(temporary).unlink(missing_ok=True)
