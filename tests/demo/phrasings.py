"""The held-out phrasing set (``held_out_phrasings.tsv`` beside this file): prompts phrased in
ways the demo models never train on, each with the shape, colours and place it asks for."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

HELD_OUT_PHRASINGS_FILE = Path(__file__).with_name("held_out_phrasings.tsv")


@dataclass(frozen=True)
class Asked:
    prompt: str
    shape: str
    colour: str
    background: str | None  # None: the prompt names no background
    place: str


def held_out_phrasings() -> list[Asked]:
    lines = [line for line in HELD_OUT_PHRASINGS_FILE.read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")]
    header, *rows = (line.split("\t") for line in lines)
    assert header == ["prompt", "shape", "colour", "background", "place"], header
    return [Asked(prompt, shape, colour, background or None, place)
            for prompt, shape, colour, background, place in rows]


def sample(count: int, seed: int) -> list[tuple[int, Asked]]:
    """``count`` seeded prompts of the set, with their indices in it (which seed their renders)."""
    asked = held_out_phrasings()
    return sorted(random.Random(seed).sample(list(enumerate(asked)), count), key=lambda pair: pair[0])
