"""The demo models' data: captioned pictures of one simple shape on a plain background.

Everything is drawn from a seed, so a training set, a held-out set or a test prompt is the same
on every machine. A scene is a shape (circle, square, triangle) in a named colour, of a named
size, at a named position, on a background of another named colour; its caption says so in
plain English, in one of several word orders (``Scene.caption``), or in any of the many ways
people phrase such a prompt (``Scene.phrase``: word orders, articles, prepositions, synonyms,
commas or none, capitals, polite words).

Some colour pairings never appear in training (``HELD_OUT``), nor do some phrasings
(``HELD_OUT_PHRASINGS``), so that whether the model generalises to unseen combinations and to
unseen ways of saying the same thing can be measured.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache
from itertools import product

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (35, 70, 215),
    "yellow": (240, 215, 35),
    "purple": (130, 50, 175),
    "orange": (245, 135, 25),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
# Centre of the shape, as fractions of the image side (x, y).
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "centre": (0.5, 0.5),
}
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "centre": "in the centre"}
# Half the shape's extent, as a fraction of the image side.
SIZES = {"small": 0.14, "large": 0.23}
STYLES = ("plain", "striped")
# (shape colour, background colour) pairs left out of training.
HELD_OUT = (("red", "green"), ("blue", "yellow"), ("purple", "white"), ("orange", "black"),
            ("white", "blue"), ("green", "purple"))
JITTER = 0.04
# What a caption says besides the shape's name; any of them can be left out.
CAPTION_PARTS = ("size", "colour", "place", "background")

# The widened caption grammar (``Scene.phrase``). Every word here is a real CLIP token.
SIZE_WORDS = {"small": ("small", "tiny"), "large": ("large", "big")}
PLACE_WORDS = {
    "left": ("left", "left side", "left-hand side", "left hand side"),
    "right": ("right", "right side", "right-hand side", "right hand side"),
    "top": ("top", "top side", "upper side", "upper part", "upper half", "top edge"),
    "bottom": ("bottom", "bottom side", "lower side", "lower part", "lower half", "bottom edge"),
    "centre": ("centre", "center", "middle"),
}
PREPOSITIONS = ("on", "at", "to", "in")
PLACE_SUFFIXES = ("of the picture", "of the image", "of the frame")
REQUESTS = ("draw", "please draw", "draw me", "please draw me", "paint", "make", "show", "show me",
            "create", "generate", "render", "a picture of", "an image of", "a drawing of", "i want",
            "please, draw", "i would like")
# Phrasings the models never train on: a caption with any of them is redrawn (``Scene.phrase``).
# The held-out phrasing set in the tests (tests/demo/held_out_phrasings.tsv) has one or more of
# them in every prompt, and otherwise only the words of this grammar.
HELD_OUT_PHRASINGS = (
    r"\bat (the )?(left|right)\b",          # trained: on / to / in the left, at the top
    r"\bon (the )?(top|bottom)\b",          # trained: at / in the bottom, on the left
    r"\bin (the )?middle\b",                # trained: at the middle, in the centre, middle
    r"(^|[,.]) ?(a |an )?(small|tiny|large|big) ?($|[,.])",  # size as a clause of its own
    r"\bplease (paint|make|show|create|generate|render)\b",  # trained: please draw, paint, make
    r"\bmake me\b",                         # trained: draw me, show me, make
    r"\bover an? \w+ background\b",         # trained: over <colour>, on a <colour> background
)
_HELD_OUT_PHRASINGS = tuple(re.compile(pattern) for pattern in HELD_OUT_PHRASINGS)


def held_out_phrasing(caption: str) -> bool:
    """Whether a caption uses a phrasing held out of training (``HELD_OUT_PHRASINGS``)."""
    text = caption.lower()
    return any(pattern.search(text) for pattern in _HELD_OUT_PHRASINGS)


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    position: str
    size: str
    style: str = "plain"
    # Small offsets of the centre (fractions of the side) so positions are regions, not points.
    dx: float = 0.0
    dy: float = 0.0

    @property
    def centre(self) -> tuple[float, float]:
        x, y = POSITIONS[self.position]
        return x + self.dx, y + self.dy

    def caption(self, variant: int = 0, leave_out: frozenset[str] = frozenset()) -> str:
        """The scene in words, in one of four word orders; ``leave_out`` names parts (of
        ``CAPTION_PARTS``) the caption does not mention, as many artists' prompts do not."""
        words = [word for word, part in ((self.size, "size"), (self.colour, "colour")) if part not in leave_out]
        thing = " ".join([*words, self.shape])
        thing = ("an " if thing[0] in "aeiou" else "a ") + thing
        where = "" if "place" in leave_out else POSITION_PHRASES[self.position]
        ground = "" if "background" in leave_out else f"{self.background} background"
        templates = (
            (f"{thing} {where}".strip(), ground),
            (ground, f"{thing} {where}".strip()),
            (f"{thing} on a {ground}" if ground else thing, where),
            (where, thing, ground),
        )
        return ", ".join(piece for piece in templates[variant % len(templates)] if piece)

    def phrase(self, rng: random.Random, leave_out: frozenset[str] | None = None) -> str:
        """The scene in words, phrased at random as people phrase a prompt: any order of the
        shape, the place and the background, articles or none, prepositions ("on", "at", "to",
        "in"), synonyms ("left side", "upper part", "middle", "big", "tiny", …), commas or none,
        capitals, a request ("please draw …"), the shape's name first or last. A quarter of them
        are ``caption``'s word orders. Never a phrasing of ``HELD_OUT_PHRASINGS``. Without
        ``leave_out``, the size goes unsaid in 30% of them and each other part in 5%."""
        while True:
            if leave_out is None:
                omitted = frozenset(part for part, share in (("size", 0.3), ("colour", 0.05), ("place", 0.05),
                                                            ("background", 0.05)) if rng.random() < share)
            else:
                omitted = leave_out
            text = self.caption(rng.randrange(4), omitted) if rng.random() < 0.25 else self._phrase(rng, omitted)
            if not held_out_phrasing(text):
                return text

    def _phrase(self, rng: random.Random, omitted: frozenset[str]) -> str:
        size = "" if "size" in omitted else rng.choice(SIZE_WORDS[self.size])
        colour = "" if "colour" in omitted else self.colour
        article = rng.choice(("a", "a", "a", "one", "the", ""))
        form = rng.randrange(6)
        if form == 0 or not colour:      # a big red circle
            thing = " ".join(w for w in (size, colour, self.shape) if w)
        elif form == 1:                  # a red big circle
            thing = " ".join(w for w in (colour, size, self.shape) if w)
        elif form == 2:                  # a big circle in red
            thing = " ".join(w for w in (size, self.shape, "in", colour) if w)
        elif form == 3:                  # a big circle that is red / coloured red
            thing = " ".join(w for w in (size, self.shape, rng.choice(("that is", "which is", "coloured",
                                                                        "colored")), colour) if w)
        elif form == 4:                  # a big circle, red
            thing = " ".join(w for w in (size, self.shape) if w) + ", " + colour
        else:                            # a red-coloured big circle
            thing = " ".join(w for w in (size, f"{colour} coloured", self.shape) if w)
        if article == "a" and thing[0] in "aeiou":
            article = "an"
        thing = f"{article} {thing}".strip()
        parts = [thing]
        if "place" not in omitted:
            word = rng.choice(PLACE_WORDS[self.position])
            if rng.random() < 0.1 and self.position == "centre":
                where = rng.choice(("centred", "centered", "in the centre", "in the center"))
            elif rng.random() < 0.12:
                where = word                            # "red circle left"
            else:
                the = "" if rng.random() < 0.15 else "the "
                where = f"{rng.choice(PREPOSITIONS)} {the}{word}"
            if rng.random() < 0.15 and where not in ("centred", "centered"):
                where += " " + rng.choice(PLACE_SUFFIXES)
            parts.append(where)
        if "background" not in omitted:
            a = "an" if self.background[0] in "aeiou" else "a"
            parts.append(rng.choice((f"{self.background} background", f"{self.background} background",
                                     f"{a} {self.background} background", f"on {a} {self.background} background",
                                     f"on {self.background}", f"over {self.background}",
                                     f"with {a} {self.background} background", f"the background is {self.background}",
                                     f"background {self.background}", f"with the background {self.background}")))
        rng.shuffle(parts)
        joined = parts[0]
        for part in parts[1:]:
            joined += rng.choice((", ", ", ", " ", " and ")) + part
        if rng.random() < 0.3:
            joined = f"{rng.choice(REQUESTS)} {joined}"
        if rng.random() < 0.1:
            joined += "."
        style = rng.random()
        if style < 0.15:
            joined = joined[0].upper() + joined[1:]
        elif style < 0.2:
            joined = joined.title()
        elif style < 0.23:
            joined = joined.upper()
        return joined


def moved_anywhere(scene: Scene, rng: random.Random) -> Scene:
    """The scene with its shape's centre moved to a random place in the middle 60% of the
    picture; its position word (and so its caption) still names the old place."""
    x, y = POSITIONS[scene.position]
    return Scene(scene.shape, scene.colour, scene.background, scene.position, scene.size, scene.style,
                 rng.uniform(0.2, 0.8) - x, rng.uniform(0.2, 0.8) - y)


def rgb(colour: str) -> tuple[int, int, int]:
    """A named colour's RGB, or an ``#rrggbb`` colour's."""
    if colour in COLOURS:
        return COLOURS[colour]
    return tuple(int(colour[start:start + 2], 16) for start in (1, 3, 5))


def any_colour_scene(rng: random.Random, style: str = "plain") -> Scene:
    """A scene in two random colours (``#rrggbb``) far enough apart to tell the shape from its
    background: pictures for the VAE, which must draw any colour on any other, not only the
    vocabulary's training pairs, or the base model could not draw the pairs held out of them."""
    scene = random_scene(rng, style=style)
    while True:
        colour, background = (tuple(rng.randrange(256) for _ in range(3)) for _ in range(2))
        if sum((a - b) ** 2 for a, b in zip(colour, background, strict=True)) > 120 ** 2:
            break
    return Scene(scene.shape, "#%02x%02x%02x" % colour, "#%02x%02x%02x" % background, scene.position,
                 scene.size, style, scene.dx, scene.dy)


def all_combinations(include_held_out: bool = False) -> list[tuple[str, str, str, str, str]]:
    """Every (shape, colour, background, position, size), held-out colour pairs excluded by default."""
    return [(shape, colour, background, position, size)
            for shape, colour, background, position, size
            in product(SHAPES, COLOURS, COLOURS, POSITIONS, SIZES)
            if colour != background and (include_held_out or (colour, background) not in HELD_OUT)]


@cache
def _training_combinations() -> tuple[tuple[str, str, str, str, str], ...]:
    return tuple(all_combinations())


def random_scene(rng: random.Random, held_out: bool = False, style: str = "plain") -> Scene:
    """A seeded scene: from the training combinations, or only from the held-out pairs."""
    if held_out:
        colour, background = rng.choice(HELD_OUT)
        shape, position, size = rng.choice(SHAPES), rng.choice(list(POSITIONS)), rng.choice(list(SIZES))
    else:
        shape, colour, background, position, size = rng.choice(_training_combinations())
    return Scene(shape, colour, background, position, size, style,
                 rng.uniform(-JITTER, JITTER), rng.uniform(-JITTER, JITTER))


def shape_polygon(scene: Scene, side: float) -> list[tuple[float, float]] | tuple[float, float, float, float]:
    """The shape's outline in pixels: a bounding box for circles and squares, else a polygon."""
    cx, cy = (c * side for c in scene.centre)
    r = SIZES[scene.size] * side
    if scene.shape == "triangle":
        # Equilateral, pointing up, centred on its bounding box so the centroid is near (cx, cy).
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    return (cx - r, cy - r, cx + r, cy + r)


def draw_mask(scene: Scene, size: int = 64, supersample: int = 4) -> Image.Image:
    """The shape's area as an anti-aliased greyscale mask (255 inside)."""
    big = size * supersample
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    outline = shape_polygon(scene, big)
    if scene.shape == "circle":
        draw.ellipse(outline, fill=255)
    elif scene.shape == "square":
        draw.rectangle(outline, fill=255)
    else:
        draw.polygon(outline, fill=255)
    return mask.resize((size, size), Image.Resampling.BOX)


def draw(scene: Scene, size: int = 64, supersample: int = 4) -> Image.Image:
    """The scene as an RGB picture. The "striped" style paints the shape with horizontal bands
    of its colour and the background's, an eighth of the image tall (the latent's cell height, so the
    VAE needs nothing new to represent them)."""
    big = size * supersample
    picture = Image.new("RGB", (big, big), rgb(scene.background))
    paint = Image.new("RGB", (big, big), rgb(scene.colour))
    if scene.style == "striped":
        band = big // 8
        rows = ImageDraw.Draw(paint)
        for top in range(band, big, 2 * band):
            rows.rectangle((0, top, big, top + band - 1), fill=rgb(scene.background))
    mask = draw_mask(scene, big, 1)
    picture.paste(paint, (0, 0), mask)
    return picture.resize((size, size), Image.Resampling.BOX)


def hint(scene: Scene, size: int = 64) -> Image.Image:
    """A ControlNet hint for the scene: its shape as a white blob on black."""
    return draw_mask(scene, size).convert("RGB")


def batch(seed: int, count: int, size: int = 64, held_out: bool = False, style: str = "plain",
          ) -> tuple[np.ndarray, list[Scene]]:
    """``count`` seeded scenes drawn as an (N, H, W, 3) uint8 array, with the scenes."""
    rng = random.Random(seed)
    scenes = [random_scene(rng, held_out, style) for _ in range(count)]
    return np.stack([np.asarray(draw(scene, size)) for scene in scenes]), scenes
