"""Derives T5 v1.1's tokenizer (``t5/tokenizer.json``, the SentencePiece unigram vocabulary
of 32,000 pieces plus 100 ``<extra_id_N>`` sentinels, as ``transformers.T5TokenizerFast``
reads it) from the copy that stable-diffusion.cpp embeds in its source as a byte array.

Source: the sdist of ``stable-diffusion-cpp-python`` 0.4.7 on PyPI (MIT licence, William
Murray), which vendors stable-diffusion.cpp (MIT licence, leejet); the array
``t5_tokenizer_json_str`` in ``vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp``.
The vocabulary itself is Google's T5 SentencePiece model (``spiece.model`` of
google-research/text-to-text-transfer-transformer, Apache License 2.0), the one FLUX.1 and
SD3.5 use. Only the ``tokenizer.json`` is kept (the bytes as they are, re-serialised
compactly); no code of either project is used.

    pip download --no-deps --no-binary :all: stable-diffusion-cpp-python==0.4.7 -d /tmp/sdcpp
    python resources/tokenizers/make_t5_tokenizer.py /tmp/sdcpp/stable_diffusion_cpp_python-0.4.7.tar.gz
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

MEMBER = "vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp"
ARRAY = "t5_tokenizer_json_str"


def main(sdist: str) -> None:
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(MEMBER))
        source = archive.extractfile(member).read().decode("ascii")
    start = source.index(f"{ARRAY}[] = {{")
    body = source[source.index("{", start) + 1:source.index("};", start)]
    data = bytes(int(value, 16) for value in re.findall(r"0x([0-9a-fA-F]{2})", body))
    document = json.loads(data.decode("utf-8"))
    folder = Path(__file__).parent / "t5"
    folder.mkdir(exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(document, ensure_ascii=False, separators=(",", ":")),
                                           encoding="utf-8")
    pieces = len(document["model"]["vocab"])
    print(f"{pieces} pieces written to {folder / 'tokenizer.json'}")


if __name__ == "__main__":
    main(sys.argv[1])
