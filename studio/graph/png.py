"""Reading the workflow that a rendered PNG carries in its text chunks.

Pure Python (no Pillow), so the graph layer can open a PNG dropped on the canvas or given to
``studio render`` without the torch side. Reads tEXt, zTXt and iTXt chunks; stops at the
first image data, since text chunks written by Seed Studio and ComfyUI come before it.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The keyword under which Seed Studio stores its own workflow JSON.
WORKFLOW_TEXT_KEY = "seed-studio-workflow"
# Text chunks larger than this are not a workflow; refusing them bounds the memory a hostile
# file can make us spend.
MAX_TEXT_BYTES = 64 * 1024 * 1024


class PngTextError(ValueError):
    """A file that is not a PNG, or whose text chunks are damaged."""


def _inflate(data: bytes) -> bytes:
    decompressor = zlib.decompressobj()
    text = decompressor.decompress(data, MAX_TEXT_BYTES)
    if decompressor.unconsumed_tail:
        raise PngTextError("a compressed text chunk is larger than any workflow")
    return text


def read_png_text(data: bytes) -> dict[str, str]:
    """The text chunks of a PNG file as ``{keyword: text}``."""
    if not data.startswith(PNG_SIGNATURE):
        raise PngTextError("not a PNG file")
    texts: dict[str, str] = {}
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if len(body) != length:
            raise PngTextError("the file ends in the middle of a chunk")
        offset += 12 + length
        if kind in (b"IDAT", b"IEND"):
            break
        try:
            if kind == b"tEXt":
                keyword, _, text = body.partition(b"\0")
                texts[keyword.decode("latin-1")] = text.decode("latin-1")
            elif kind == b"zTXt":
                keyword, _, rest = body.partition(b"\0")
                texts[keyword.decode("latin-1")] = _inflate(rest[1:]).decode("latin-1")
            elif kind == b"iTXt":
                keyword, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _language, _, rest = rest.partition(b"\0")
                _translated, _, text = rest.partition(b"\0")
                raw = _inflate(text) if compressed else text
                texts[keyword.decode("latin-1")] = raw.decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError) as error:
            raise PngTextError(f"damaged {kind.decode('latin-1')} chunk ({error})") from None
    return texts
