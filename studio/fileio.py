"""Writing files so that a crash or a full disk never leaves a half-written one behind."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

# The process's umask, read once (reading it means setting it). Files are created with the
# permissions any program's files get (0666 less the umask), not mkstemp's private 0600.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def _written_beside(target: Path, data: bytes) -> str:
    """A new temporary file in ``target``'s folder holding ``data``, on disk (flushed and
    synced) before the caller gives it ``target``'s name; its path. Nothing is left behind
    when the writing fails."""
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            if hasattr(os, "fchmod"):
                os.fchmod(handle, FILE_MODE)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so readers see either the old file or the new one, never a mix. Saving through a
    symbolic link writes the file it points to and keeps the link."""
    target = Path(path)
    if target.is_symlink():
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _written_beside(target, data)
    try:
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
    temporary = _written_beside(target, data)
    try:
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


def next_counter(folder: Path, stem: str, suffix: str = "") -> int:
    """The number after the highest in ``folder``'s ``stem_NNNNN_<suffix>`` names (ComfyUI's
    output naming), 1 when there is none; with an empty ``suffix`` any ending counts. A
    starting guess: the writer still claims the name without overwriting (write_new_file)."""
    pattern = re.compile(re.escape(stem) + r"_(\d+)_" + (re.escape(suffix) + "$" if suffix else ""))
    highest = 0
    if folder.is_dir():
        for path in folder.iterdir():
            match = pattern.match(path.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


# Less free space than this on an output folder's disk is a full disk: a picture and its
# workflow text take a few MB.
MIN_FREE_BYTES = 64 * 1024 * 1024


def output_folder_problem(folder: str | os.PathLike[str], min_free: int = MIN_FREE_BYTES) -> str | None:
    """Why ``folder`` cannot take output files (a sentence), or None when it can, so that a
    render finds out before sampling rather than at its save. Nothing is left behind: an
    existing folder gets a probe file, written and removed; a missing one is judged by the
    nearest folder above it that exists (it must be a folder one may write in). A disk with
    less than ``min_free`` bytes free is full."""
    import shutil

    target = Path(folder).expanduser()
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create the output folder {target}: {existing} is a file, not a folder"
    try:
        if existing == target:
            handle, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=target)
            os.close(handle)
            os.unlink(probe)
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        verb = "write in" if existing == target else "create"
        return f"cannot {verb} the output folder {target} ({error.strerror or error})"
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return None
    if free < min_free:
        return (f"the disk holding the output folder {target} is full ({free // 2**20} MB free); "
                "free some space or choose another folder (--out)")
    return None
