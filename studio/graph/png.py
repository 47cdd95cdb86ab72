"""The workflow a rendered PNG carries in its text chunks: what to write (:func:`workflow_texts`)
and reading it back (:func:`read_png_text`).

Pure Python (no Pillow), so the graph layer can open a PNG dropped on the canvas or given to
``studio render`` without the torch side. Reads tEXt, zTXt and iTXt chunks; stops at the
first image data, since text chunks written by Seed Studio and ComfyUI come before it.

A PNG is a file anyone may hand us, and a compressed chunk can inflate a thousandfold: only
the chunks asked for are inflated, each keyword once, and everything read from one file
shares one budget, so a small hostile file cannot make us spend more than that.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Collection

from studio.graph.comfy import to_comfy_api, to_comfy_ui
from studio.graph.connect import SpecLookup
from studio.graph.format import dumps
from studio.graph.model import Workflow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The keyword under which Seed Studio stores its own workflow JSON.
WORKFLOW_TEXT_KEY = "seed-studio-workflow"
# The keywords a workflow can come from: Seed Studio's own, then ComfyUI's two.
WORKFLOW_TEXT_KEYS = (WORKFLOW_TEXT_KEY, "workflow", "prompt")
# A text chunk larger than this is not a workflow.
MAX_TEXT_BYTES = 64 * 1024 * 1024
# All the text read from one file together; a file that Seed Studio writes carries its
# workflow three times (its own chunk and ComfyUI's two), well under this.
MAX_TOTAL_TEXT_BYTES = 96 * 1024 * 1024


def workflow_texts(workflow: Workflow, spec_of: SpecLookup) -> dict[str, str]:
    """The text chunks that make an image reopen as ``workflow``, in Seed Studio and in
    ComfyUI: the native JSON under :data:`WORKFLOW_TEXT_KEY`, and ComfyUI's ``workflow`` (UI
    format) and ``prompt`` (API format). What the app, ``studio render`` and ``studio batch``
    hand their engine (``Engine(..., image_metadata=workflow_texts)``). The exporters write
    any graph (what ComfyUI cannot express is left out with a remark), so a failure here is a
    bug, raised rather than hidden."""
    return {
        WORKFLOW_TEXT_KEY: dumps(workflow),
        "prompt": json.dumps(to_comfy_api(workflow, spec_of)),
        "workflow": json.dumps(to_comfy_ui(workflow, spec_of)),
    }


class PngTextError(ValueError):
    """A file that is not a PNG, or whose text chunks are damaged or too large."""


class _Budget:
    """How many more bytes of text this file may give us."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, size: int) -> None:
        if size > MAX_TEXT_BYTES:
            raise PngTextError(f"a text chunk holds more than {MAX_TEXT_BYTES // 2**20} MB, "
                               "more than any workflow")
        if size > self.left:
            raise PngTextError(f"its text chunks hold more than {MAX_TOTAL_TEXT_BYTES // 2**20} MB together, "
                               "more than any workflow")
        self.left -= size

    def inflate(self, data: bytes) -> bytes:
        limit = min(MAX_TEXT_BYTES, self.left) + 1
        decompressor = zlib.decompressobj()
        text = decompressor.decompress(data, limit)
        # Whatever is left unread (or a result at the limit) is over the budget: stop there
        # rather than inflate the rest.
        self.take(len(text) + (1 if decompressor.unconsumed_tail else 0))
        return text


def _read_chunk(kind: bytes, body: bytes, budget: _Budget) -> str:
    if kind == b"tEXt":
        budget.take(len(body))
        return body.decode("latin-1")
    if kind == b"zTXt":
        return budget.inflate(body[1:]).decode("latin-1")
    compressed, rest = body[0], body[2:]  # iTXt: flag, method, language, translated keyword, text
    _language, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    if compressed:
        return budget.inflate(text).decode("utf-8")
    budget.take(len(text))
    return text.decode("utf-8")


def read_png_text(data: bytes, keys: Collection[str] | None = None) -> dict[str, str]:
    """The text chunks of a PNG file as ``{keyword: text}``: those whose keyword is in
    ``keys`` (all of them when None), the first chunk of each keyword. Every failure,
    running out of memory included, is a :class:`PngTextError`."""
    if not data.startswith(PNG_SIGNATURE):
        raise PngTextError("not a PNG file")
    texts: dict[str, str] = {}
    budget = _Budget(MAX_TOTAL_TEXT_BYTES)
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        start = offset + 8
        if start + length > len(data):
            raise PngTextError("the file ends in the middle of a chunk")
        offset = start + length + 4
        if kind in (b"IDAT", b"IEND"):
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        # The keyword is at most 79 bytes: read it before copying (or inflating) anything.
        keyword_bytes = data[start:start + min(length, 80)].partition(b"\0")[0]
        keyword = keyword_bytes.decode("latin-1")
        if keyword in texts or (keys is not None and keyword not in keys):
            continue
        try:
            texts[keyword] = _read_chunk(kind, data[start + len(keyword_bytes) + 1:start + length], budget)
        except (zlib.error, UnicodeDecodeError, IndexError) as error:
            raise PngTextError(f"damaged {kind.decode('latin-1')} chunk {keyword!r:.40} ({error})") from None
        except MemoryError:
            raise PngTextError(f"not enough memory to read its {keyword!r:.40} text chunk") from None
    return texts
