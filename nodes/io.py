"""Reading and writing image files: LoadImage, SaveImage, PreviewImage."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageSequence, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from studio.fileinfo import file_identity
from studio.fileio import next_counter, write_new_file
from studio.graph.sockets import IMAGE, MASK, STRING
from studio.lazy import lazy_module
from studio.node_api import Input, NodeBase, Output
from studio.settings import Settings

if TYPE_CHECKING:
    from studio.node_api import NodeContext

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Characters that some file system refuses in a name; replaced so a prefix works everywhere.
_UNSAFE_NAME_CHARACTERS = re.compile(r'[<>:"|?*\x00-\x1f]')
# Bidirectional-text controls (and the invisible direction marks) let a name read differently
# from what it is ("gpj.exe" shown as "exe.jpg"): removed from file names.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def locate_input_image(name: str, settings: Settings) -> tuple[Path | None, bool]:
    """Resolve LoadImage's ``image`` value: ``(file, False)`` when it names a file inside one
    of the input folders (the user's, then the samples shipped with Seed Studio), else
    ``(None, outside)`` where ``outside`` says it leads out of them (``../``, a symbolic link,
    an absolute path elsewhere).

    Whether a name leads outside is decided from the folders alone, never from whether the
    file exists, so that a workflow cannot probe the disk through LoadImage's errors. An
    absolute path outside the folders is read only when the settings allow it
    (``allow_absolute_image_paths``, off by default), as ComfyUI reads only its input folder.
    """
    if not name:
        return None, False
    candidate = Path(name).expanduser()
    outside = False
    for folder in settings.image_search_dirs:
        root = folder.expanduser().resolve()
        path = (root / candidate).resolve()  # an absolute candidate replaces the root
        if not _inside(path, root):
            outside = True
            continue
        if path.is_file():
            return path, False
    if candidate.is_absolute() and settings.allow_absolute_image_paths:
        path = candidate.resolve()
        return (path if path.is_file() else None), False
    return None, outside


def find_input_image(name: str, settings: Settings) -> Path | None:
    """The file LoadImage's ``image`` value names inside the input folders, or None."""
    return locate_input_image(name, settings)[0]


def image_file_fingerprint(path: Path | None) -> Any:
    """The fingerprint of a node that reads the image file ``path`` (None: not found), so that
    a file edited on disk under the same name is loaded again."""
    return None if path is None else file_identity(path)


def input_image_problem(name: str, settings: Settings) -> str | None:
    """Why LoadImage cannot read ``name`` (a sentence), or None when it can."""
    path, outside = locate_input_image(name, settings)
    if path is not None:
        return None
    folders = ", ".join(str(folder) for folder in settings.image_search_dirs)
    if outside:
        # The same sentence whether or not something is there.
        return (f"image {name!r} is outside the input folders ({folders}); LoadImage reads only files inside "
                "them")
    return f"image file {name!r} not found (looked in {folders})"


# The most pixels (all frames together) LoadImage decodes: 64 megapixels, e.g. 8192×8192, or a
# 60-frame animation at 1024², take about 1 GB as float pictures with their masks.
MAX_LOADED_PIXELS = 64 * 1024 * 1024


class LoadImage(NodeBase):
    """Loads an image file as IMAGE, and its transparency as MASK (1 where transparent).

    The file is looked up in the input folders (and the bundled samples) and must lie inside
    one of them; absolute paths elsewhere only where the settings allow them. Animated files
    give one batch item per frame.
    """

    type_name = "LoadImage"
    category = "image"
    title = "Load Image"
    inputs = (Input("image", STRING, default="", tooltip="file name in the input folder"),)
    outputs = (Output("IMAGE", IMAGE), Output("MASK", MASK))

    @classmethod
    def check(cls, values: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
        problem = input_image_problem(values.get("image") or "", settings)
        return [("image", problem)] if problem is not None else []

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], settings: Settings) -> Any:
        return image_file_fingerprint(find_input_image(values.get("image") or "", settings))

    def run(self, ctx: NodeContext, image: str) -> tuple[torch.Tensor, torch.Tensor]:
        from studio.runtime.images import pil_to_tensors

        path = find_input_image(image, ctx.settings)
        if path is None:
            raise FileNotFoundError(input_image_problem(image, ctx.settings))
        try:
            with Image.open(path) as opened:
                # Judged from the header before anything is decoded: a tiny file can describe a
                # picture of gigabytes (one large plain frame, or hundreds of APNG frames).
                width, height = opened.size
                frames_declared = max(1, int(getattr(opened, "n_frames", 1) or 1))
                if width * height * frames_declared > MAX_LOADED_PIXELS:
                    raise ValueError(
                        f"{path.name} is {width}×{height} with {frames_declared} frame(s), "
                        f"{width * height * frames_declared / 1e6:,.0f} megapixels in all; LoadImage reads at most "
                        f"{MAX_LOADED_PIXELS / 1e6:,.0f} megapixels (about {MAX_LOADED_PIXELS * 16 / 2**30:.0f} GB "
                        "as pictures in memory): scale it down or keep fewer frames")
                frames = [pil_to_tensors(frame) for frame in ImageSequence.Iterator(opened)]
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
            raise ValueError(f"{path.name} is not an image Seed Studio can read ({error})") from None
        size = frames[0][0].shape[1:3]
        frames = [frame for frame in frames if frame[0].shape[1:3] == size]
        images = torch.cat([frame[0] for frame in frames])
        masks = torch.cat([frame[1] for frame in frames])
        return images, masks


def safe_output_folder(output_root: Path, prefix: str) -> tuple[Path, str]:
    """Split a filename prefix like ``portraits/cat`` into a folder inside ``output_root``
    and a file stem, whatever the prefix tries (``../../x``, ``/etc/x``, ``C:\\x``).

    Parent references, roots and drive letters are dropped rather than refused, so a
    workflow from someone else still renders, and the result is checked once more after
    symbolic links are resolved.
    """
    parts = [part for part in re.split(r"[\\/]+", prefix)
             if part not in ("", ".", "..") and not re.fullmatch(r"[A-Za-z]:", part)]
    parts = [_UNSAFE_NAME_CHARACTERS.sub("_", _BIDI_CONTROLS.sub("", part)).strip(" .") for part in parts]
    parts = [part for part in parts if part]
    stem = parts.pop() if parts else "SeedStudio"
    root = output_root.expanduser().resolve()
    folder = root.joinpath(*parts) if parts else root
    resolved = folder.resolve()
    if resolved != root and root not in resolved.parents:
        raise PermissionError(f"the filename prefix {prefix!r} leads outside the output folder {root}")
    return resolved, stem


def save_images(images: torch.Tensor, folder: Path, stem: str, texts: Mapping[str, str],
                compress_level: int = 4) -> list[Path]:
    """Write each image of the batch as ``stem_00001_.png`` and up, never overwriting, with
    ``texts`` (the workflow) in text chunks."""
    from studio.runtime.images import tensor_to_pil

    info = PngInfo()
    for key, text in texts.items():
        info.add_text(key, text, zip=False)
    written = []
    counter = next_counter(folder, stem, ".png")
    for image in images:
        buffer = BytesIO()
        tensor_to_pil(image).save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
        data = buffer.getvalue()
        while True:
            path = folder / f"{stem}_{counter:05d}_.png"
            counter += 1
            if write_new_file(path, data):
                written.append(path)
                break
    return written


class SaveImage(NodeBase):
    """Saves images as PNG files in the output folder, with the workflow embedded so that
    opening the PNG restores the graph (in Seed Studio, and in ComfyUI where the graph can
    be expressed there). Existing files are never overwritten: each image
    gets the next free number. The prefix may name sub-folders, which always stay inside
    the output folder. The images also pass through unchanged to the ``images`` output, as
    in newer ComfyUI, so a graph can go on from a saved stage."""

    type_name = "SaveImage"
    category = "image"
    title = "Save Image"
    is_output = True
    inputs = (Input("images", IMAGE),
              Input("filename_prefix", STRING, default="SeedStudio",
                    tooltip="file name start; may contain sub-folders, e.g. portraits/cat"))
    outputs = (Output("images", IMAGE),)

    def run(self, ctx: NodeContext, images: torch.Tensor, filename_prefix: str) -> tuple[torch.Tensor]:
        folder, stem = safe_output_folder(ctx.settings.output_dir, filename_prefix)
        for path in save_images(images, folder, stem, ctx.embedded_texts):
            ctx.record_file(path)
        return (images,)


# Preview files kept in the temporary folder; older ones are removed when a preview is written,
# so previews never pile up however long the app or a server runs.
MAX_PREVIEW_FILES = 200
PREVIEW_MAX_AGE_SECONDS = 24 * 3600


def prune_previews(folder: Path, keep: int = MAX_PREVIEW_FILES, max_age: float = PREVIEW_MAX_AGE_SECONDS) -> int:
    """Remove preview files beyond the newest ``keep`` and any older than ``max_age``
    seconds; returns how many were removed."""
    import time

    try:
        found = []
        for path in folder.glob("preview_*.png"):
            try:
                found.append((path.stat().st_mtime, path))
            except OSError:
                continue
    except OSError:
        return 0
    found.sort(reverse=True)
    oldest = time.time() - max_age
    removed = 0
    for index, (mtime, path) in enumerate(found):
        if index >= keep or mtime < oldest:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed


class PreviewImage(NodeBase):
    """Shows images without keeping them: they are written to a temporary folder that is
    not the output folder (which keeps the newest 200 previews of the last day). The images
    pass through unchanged to the ``images`` output."""

    type_name = "PreviewImage"
    category = "image"
    title = "Preview Image"
    is_output = True
    inputs = (Input("images", IMAGE),)
    outputs = (Output("images", IMAGE),)

    def run(self, ctx: NodeContext, images: torch.Tensor) -> tuple[torch.Tensor]:
        folder = ctx.settings.temp_dir.expanduser()
        prune_previews(folder, keep=max(0, MAX_PREVIEW_FILES - len(images)))
        stem = "preview_" + secrets.token_hex(4)
        for path in save_images(images, folder, stem, ctx.embedded_texts, compress_level=1):
            ctx.record_file(path)
        return (images,)

