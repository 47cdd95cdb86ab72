"""The demo models' data generator: seeded, captioned as drawn, held-out pairs kept out."""

from __future__ import annotations

import random

import numpy as np

from studio.demo import shapes
from tests.demo.pixels import analyse, in_region


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
    for picture, scene in zip(pictures, scenes):
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
