"""The demo models' data generator: seeded, captioned as drawn, held-out pairs and held-out
phrasings kept out; the shape-type measure."""

from __future__ import annotations

import random
import re

import numpy as np

from studio.demo import shapes
from tests.demo.phrasings import held_out_phrasings
from tests.demo.pixels import analyse, in_region, shape_type

WORD = re.compile(r"[a-z]+")


def test_the_same_seed_draws_the_same_pictures_and_another_seed_others():
    first, scenes = shapes.batch(5, 20)
    again, scenes_again = shapes.batch(5, 20)
    other, _ = shapes.batch(6, 20)
    assert scenes == scenes_again and np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_training_scenes_never_use_a_held_out_colour_pair_and_held_out_scenes_only_those():
    _, scenes = shapes.batch(1, 2000)
    assert not any((s.colour, s.background) in shapes.HELD_OUT for s in scenes)
    assert all(s.colour != s.background for s in scenes)
    rng = random.Random(2)
    assert all((s.colour, s.background) in shapes.HELD_OUT
               for s in (shapes.random_scene(rng, held_out=True) for _ in range(200)))


def test_pictures_show_the_captioned_colours_and_place():
    pictures, scenes = shapes.batch(3, 60)
    for picture, scene in zip(pictures, scenes, strict=True):
        result = analyse(picture)
        assert (result.colour, result.background) == (scene.colour, scene.background), scene
        assert in_region(scene.position, result.centroid), (scene, result.centroid)


def test_every_caption_word_order_names_every_part():
    scene = shapes.Scene("triangle", "purple", "yellow", "bottom", "small")
    captions = {scene.caption(variant) for variant in range(4)}
    assert len(captions) == 4
    for caption in captions:
        for words in ("small purple triangle", "at the bottom", "yellow background"):
            assert words in caption, caption


def test_a_caption_leaves_out_the_parts_it_is_told_to():
    scene = shapes.Scene("circle", "orange", "blue", "left", "large")
    assert scene.caption(0, frozenset({"size", "place"})) == "an orange circle, blue background"
    assert scene.caption(2, frozenset({"background"})) == "a large orange circle, on the left"
    assert scene.caption(1, frozenset({"place"})) == "blue background, a large orange circle"
    assert scene.caption(3, frozenset(shapes.CAPTION_PARTS)) == "a circle"


def test_the_hint_is_a_white_blob_where_the_shape_is():
    scene = shapes.Scene("square", "red", "green", "right", "large", dx=0.03, dy=-0.02)
    hint = analyse(np.asarray(shapes.hint(scene)))
    picture = analyse(np.asarray(shapes.draw(scene)))
    assert (hint.colour, hint.background) == ("white", "black")
    assert np.hypot(hint.centroid[0] - picture.centroid[0], hint.centroid[1] - picture.centroid[1]) < 0.01


def test_random_colour_scenes_are_drawn_in_their_own_distinct_colours():
    rng = random.Random(4)
    for _ in range(50):
        scene = shapes.any_colour_scene(rng)
        colour, background = np.array(shapes.rgb(scene.colour)), np.array(shapes.rgb(scene.background))
        assert np.linalg.norm(colour - background) > 120
        picture = np.asarray(shapes.draw(scene)).astype(int)
        mask = np.asarray(shapes.draw_mask(scene))
        assert np.abs(picture[mask == 255] - colour).max() <= 1
        assert np.abs(picture[mask == 0] - background).max() <= 1
    assert shapes.rgb("purple") == shapes.COLOURS["purple"] and shapes.rgb("#0a80ff") == (10, 128, 255)


def training_phrasings(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [shapes.random_scene(rng).phrase(rng) for _ in range(count)]


def test_phrasings_vary_and_never_use_a_held_out_phrasing():
    """The widened grammar: many word orders, prepositions, synonyms, requests and capitals, and
    no caption with a phrasing held out of training."""
    captions = training_phrasings(5000)
    assert len(set(captions)) > 4500
    assert not any(shapes.held_out_phrasing(caption) for caption in captions)
    lowered = [caption.lower() for caption in captions]
    for words in ("to the left", "in the upper", "lower half", "middle", "center", "big", "tiny", "please draw",
                  "on the left side", "at the bottom"):
        assert any(words in caption for caption in lowered), words
    assert any(caption.isupper() for caption in captions) and any(caption[0].isupper() for caption in captions)
    assert any("," not in caption for caption in captions)
    # The shape's name first, in the middle and last.
    positions = {min(2, caption.split().index(shape) * 3 // len(caption.split()))
                 for caption in lowered for shape in shapes.SHAPES if shape in caption.split()}
    assert positions == {0, 1, 2}


def test_a_phrasing_names_what_it_does_not_leave_out():
    rng = random.Random(9)
    scene = shapes.Scene("triangle", "orange", "blue", "bottom", "small")
    for _ in range(200):
        caption = scene.phrase(rng, frozenset()).lower()
        assert "triangle" in caption and "orange" in caption and "blue" in caption, caption
        assert any(word in caption for word in ("bottom", "lower")), caption
        assert any(word in caption for word in ("small", "tiny")), caption
        words = set(WORD.findall(caption))
        assert not words & {"left", "right", "top", "upper", "centre", "large", "red"}, caption


def test_the_held_out_phrasing_set_is_never_a_training_phrasing():
    """At least 100 prompts, each naming a vocabulary shape, colours and place; each uses a
    phrasing the training grammar never produces (it redraws any caption that does), and
    otherwise only words the training grammar uses."""
    asked = held_out_phrasings()
    assert len(asked) >= 100 and len({a.prompt for a in asked}) == len(asked)
    captions = training_phrasings(20000, seed=1)
    trained_words = {word for caption in captions for word in WORD.findall(caption.lower())}
    seen = {caption.lower() for caption in captions}
    for prompt in asked:
        assert prompt.shape in shapes.SHAPES and prompt.place in shapes.POSITIONS, prompt
        assert prompt.colour in shapes.COLOURS and prompt.background in (None, *shapes.COLOURS), prompt
        assert prompt.colour != prompt.background, prompt
        assert shapes.held_out_phrasing(prompt.prompt), prompt
        assert prompt.prompt.lower() not in seen, prompt
        assert set(WORD.findall(prompt.prompt.lower())) <= trained_words, prompt
        words = set(WORD.findall(prompt.prompt.lower()))
        assert prompt.shape in words and prompt.colour in words, prompt
        assert prompt.background is None or prompt.background in words, prompt
    held_pairs = sum((a.colour, a.background) in shapes.HELD_OUT for a in asked)
    assert held_pairs >= len(asked) // 6, held_pairs


def test_the_shape_type_measure_names_every_drawn_shape():
    pictures, scenes = shapes.batch(12, 150)
    assert all(shape_type(picture) == scene.shape for picture, scene in zip(pictures, scenes, strict=True))
    # A square with slightly rounded corners is a square; a rounder one, whose corners are a
    # third or more of its side, is neither a circle nor a square.
    from PIL import Image, ImageDraw

    for radius, expected in ((5, "square"), (9, None), (11, None), (15, "circle")):
        picture = Image.new("RGB", (64, 64), (20, 20, 20))
        ImageDraw.Draw(picture).rounded_rectangle((17, 17, 46, 46), radius=radius, fill=(245, 135, 25))
        assert shape_type(np.asarray(picture)) == expected, radius
