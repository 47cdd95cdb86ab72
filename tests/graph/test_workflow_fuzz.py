"""Generated native workflow files and PNGs: the loader either opens them or raises its own
WorkflowFormatError (the PNG reader its PngTextError); nothing else escapes, and whatever
opens can be saved and read back unchanged. About 1,500 inputs per run."""

from __future__ import annotations

import contextlib
import json
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.graph import WorkflowFormatError, dumps, loads
from studio.graph.files import workflow_from_bytes
from studio.graph.format import FORMAT_NAME
from studio.graph.png import PNG_SIGNATURE, WORKFLOW_TEXT_KEYS, PngTextError, read_png_text

FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# Text with everything JSON can carry, lone surrogates included (which no file can store).
any_text = st.text(st.characters(codec=None, categories=None), max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), any_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(any_text, inner, max_size=4)),
                           max_leaves=20)
node_ids = st.one_of(st.sampled_from(["1", "2", "3"]), any_text)
link = st.one_of(st.fixed_dictionaries({"node": node_ids, "output": st.sampled_from(["IMAGE", "MASK", "x"])},
                                       optional={"slot": json_values}),
                 json_values)
node = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["LoadImage", "ImageInvert", "SaveImage", "Nope"]), json_values)},
    optional={"title": st.one_of(any_text, json_values), "position": st.one_of(st.lists(st.floats(), max_size=3),
                                                                                json_values),
              "size": json_values, "mode": st.one_of(st.sampled_from(["normal", "bypass", "mute"]), json_values),
              "values": st.one_of(st.dictionaries(any_text, json_values, max_size=4), json_values),
              "links": st.one_of(st.dictionaries(st.sampled_from(["image", "images", "x"]), link, max_size=3),
                                 json_values),
              "color": json_values, "collapsed": json_values, "kept": json_values})
native_documents = st.fixed_dictionaries(
    {"format": st.one_of(st.just(FORMAT_NAME), st.just(FORMAT_NAME), json_values),
     "version": st.one_of(st.just(1), st.just(1), json_values)},
    optional={"nodes": st.one_of(st.dictionaries(node_ids, node, max_size=4), json_values),
              "groups": st.one_of(st.dictionaries(any_text, st.fixed_dictionaries(
                  {}, optional={"title": json_values, "bounds": json_values, "color": json_values}), max_size=2),
                  json_values),
              "meta": json_values, "extra": json_values})


def opens_cleanly_or_says_why(registry, raw: bytes) -> None:
    try:
        workflow, _report = workflow_from_bytes(raw, registry.spec, "fuzz")
    except WorkflowFormatError as error:
        assert error.path and error.message
        return
    text = dumps(workflow)  # whatever opens can be written back…
    text.encode("utf-8")
    assert dumps(loads(text)) == text  # …and read again unchanged


@FUZZ
@given(document=native_documents, allow_nan=st.booleans())
def test_fuzzed_native_documents(registry, document, allow_nan):
    try:
        raw = json.dumps(document, allow_nan=allow_nan).encode()
    except ValueError:
        return  # NaN or infinity with allow_nan off: not JSON
    opens_cleanly_or_says_why(registry, raw)


@FUZZ
@given(document=native_documents, cut=st.integers(0, 400),
       flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
       depth=st.sampled_from([0, 0, 0, 99, 101, 600, 5000]))
def test_fuzzed_bytes_of_damaged_native_files(registry, document, cut, flips, depth):
    text = json.dumps(document)
    if depth:  # a kept field nested this deep, written out by hand (json.dumps would recurse)
        text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    raw = bytearray(text.encode("utf-8", "surrogatepass"))
    for position, byte in flips:
        raw[position % len(raw)] = byte
    opens_cleanly_or_says_why(registry, bytes(raw[:len(raw) - cut % (len(raw) + 1)]))


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


keywords = st.one_of(st.sampled_from([key.encode() for key in (*WORKFLOW_TEXT_KEYS, "parameters", "")]),
                     st.binary(max_size=90))
texts = st.one_of(native_documents.map(lambda d: json.dumps(d).encode("utf-8", "surrogatepass")),
                  st.binary(max_size=60))
text_chunks = st.one_of(
    st.tuples(keywords, texts).map(lambda kt: chunk(b"tEXt", kt[0] + b"\0" + kt[1])),
    st.tuples(keywords, texts, st.integers(0, 9)).map(
        lambda ktl: chunk(b"zTXt", ktl[0] + b"\0\0" + zlib.compress(ktl[1], ktl[2]))),
    st.tuples(keywords, texts, st.booleans()).map(
        lambda ktc: chunk(b"iTXt", ktc[0] + b"\0" + bytes([ktc[2], 0]) + b"en\0\0"
                          + (zlib.compress(ktc[1]) if ktc[2] else ktc[1]))),
    st.tuples(st.sampled_from([b"zTXt", b"iTXt", b"tEXt", b"IHDR", b"abcd"]), st.binary(max_size=40)).map(
        lambda kb: chunk(*kb)),
)
pngs = st.tuples(st.lists(text_chunks, max_size=5), st.integers(0, 200), st.booleans()).map(
    lambda parts: (PNG_SIGNATURE + b"".join(parts[0]) + (chunk(b"IEND", b"") if parts[2] else b""),
                   parts[1]))


@FUZZ
@given(png=pngs)
def test_fuzzed_pngs(registry, png):
    data, cut = png
    data = data[:len(data) - cut % (len(data) - len(PNG_SIGNATURE) + 1)]
    with contextlib.suppress(PngTextError):
        read_png_text(data)
    opens_cleanly_or_says_why(registry, data)
