from __future__ import annotations

import struct
import zlib
from io import BytesIO

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.graph import WorkflowFormatError, files
from studio.graph.files import workflow_from_bytes
from studio.graph.png import PNG_SIGNATURE, WORKFLOW_TEXT_KEYS, PngTextError, read_png_text
from tests.hostile import run_with_memory_limit


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


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_of_chunks(*chunks: bytes) -> bytes:
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    return PNG_SIGNATURE + header + b"".join(chunks) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


def bomb(key: str, megabytes: int) -> bytes:
    """A zTXt chunk of a few kilobytes that inflates to ``megabytes`` of zeros."""
    return chunk(b"zTXt", key.encode() + b"\0\0" + zlib.compress(bytes(megabytes * 2**20), 9))


def test_a_png_of_sixty_compressed_text_chunks_is_refused_within_a_memory_cap(tmp_path):
    # 60 zTXt chunks of 60 MB each, 3.6 MB on disk: inflating them all needs 3.6 GB.
    one = zlib.compress(bytes(60 * 2**20), 9)
    keys = [*WORKFLOW_TEXT_KEYS, *(f"junk{index}" for index in range(57))]
    path = tmp_path / "bomb.png"
    path.write_bytes(png_of_chunks(*(chunk(b"zTXt", key.encode() + b"\0\0" + one) for key in keys)))
    assert path.stat().st_size < 5 * 2**20
    result = run_with_memory_limit(f"""
        from studio.graph import WorkflowFormatError
        from studio.graph.files import open_workflow
        try:
            open_workflow({str(path)!r}, lambda type_name: None)
        except WorkflowFormatError as error:
            print(error)
        """, megabytes=600)
    assert result.returncode == 0, result.stderr
    assert "text chunks hold more than 96 MB together" in result.stdout
    assert "bomb.png" in result.stdout


def test_only_the_chunks_a_workflow_comes_from_are_inflated():
    data = png_of_chunks(bomb("parameters", 80), chunk(b"tEXt", b"workflow\0{}"))
    assert read_png_text(data, WORKFLOW_TEXT_KEYS) == {"workflow": "{}"}
    with pytest.raises(PngTextError, match="a text chunk holds more than 64 MB"):
        read_png_text(data)


def test_a_repeated_keyword_is_read_once_and_its_copies_are_not_inflated():
    data = png_of_chunks(chunk(b"tEXt", b"prompt\0first"), bomb("prompt", 80))
    assert read_png_text(data) == {"prompt": "first"}


def test_running_out_of_memory_is_a_clear_error_not_a_memory_error(monkeypatch, registry):
    data = png_with([("zTXt", "workflow", "{}")])

    def exhausted(*args):
        raise MemoryError

    monkeypatch.setattr(zlib, "decompressobj", exhausted)
    with pytest.raises(PngTextError, match="not enough memory to read its 'workflow' text chunk"):
        read_png_text(data)
    with pytest.raises(WorkflowFormatError, match="hostile.png: \\$: not enough memory"):
        workflow_from_bytes(data, registry.spec, "hostile.png")
    monkeypatch.setattr(files, "parse_json", exhausted)
    with pytest.raises(WorkflowFormatError, match="huge.json: \\$: not enough memory to open it"):
        workflow_from_bytes(b"[]", registry.spec, "huge.json")
