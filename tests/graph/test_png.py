from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.graph.png import PngTextError, read_png_text


def png_with(texts) -> bytes:
    info = PngInfo()
    for kind, key, value in texts:
        if kind == "tEXt":
            info.add_text(key, value)
        elif kind == "zTXt":
            info.add_text(key, value, zip=True)
        else:
            info.add_itxt(key, value, zip=True)
    buffer = BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_reads_plain_compressed_and_international_text_chunks():
    data = png_with([("tEXt", "prompt", "{}"), ("zTXt", "workflow", "z" * 1000),
                     ("iTXt", "seed-studio-workflow", "ünïcode ✓")])
    assert read_png_text(data) == {"prompt": "{}", "workflow": "z" * 1000, "seed-studio-workflow": "ünïcode ✓"}


def test_refuses_what_is_not_a_png_or_is_cut_short():
    with pytest.raises(PngTextError, match="not a PNG"):
        read_png_text(b"GIF89a....")
    data = png_with([("tEXt", "k", "v" * 100)])
    with pytest.raises(PngTextError, match="ends in the middle"):
        read_png_text(data[:60])
