"""The pixel analysis the demo-model tests measure with: which named colour the background
and the shape are, where the shape's centroid is, which shape it is (circle, square,
triangle), and how striped the shape is.

The background is the median colour of the picture's outer ring of pixels; the shape is every
pixel far from that colour (the anti-aliased edge is left out by the threshold); each colour
is named by the nearest of the vocabulary's colours in RGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.demo.shapes import COLOURS

# RGB distance beyond which a pixel is not background.
SHAPE_THRESHOLD = 60.0
# Fewer pixels than this (of 64×64) is "no shape drawn".
MIN_SHAPE_PIXELS = 12


def nearest_colour(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda name: float(np.sum((np.asarray(COLOURS[name], float) - rgb) ** 2)))


@dataclass
class Analysis:
    background: str
    background_rgb: np.ndarray
    colour: str | None
    colour_rgb: np.ndarray | None
    centroid: tuple[float, float] | None  # (x, y) as fractions of the width and height
    shape_pixels: int


def as_rgb(image) -> np.ndarray:
    """A float RGB array 0..255 from an IMAGE tensor row (H × W × 3, 0..1) or a uint8 array."""
    array = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image, dtype=float)
    return array * 255 if array.max() <= 1.0 + 1e-6 else array


def analyse(image) -> Analysis:
    rgb = as_rgb(image)[..., :3]
    height, width = rgb.shape[:2]
    ring = np.concatenate([rgb[:2].reshape(-1, 3), rgb[-2:].reshape(-1, 3),
                           rgb[:, :2].reshape(-1, 3), rgb[:, -2:].reshape(-1, 3)])
    background = np.median(ring, axis=0)
    far = np.linalg.norm(rgb - background, axis=-1) > SHAPE_THRESHOLD
    count = int(far.sum())
    if count < MIN_SHAPE_PIXELS:
        return Analysis(nearest_colour(background), background, None, None, None, count)
    colour = np.median(rgb[far], axis=0)
    ys, xs = np.nonzero(far)
    centroid = ((xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height)
    return Analysis(nearest_colour(background), background, nearest_colour(colour), colour, centroid, count)


def in_region(position: str, centroid: tuple[float, float] | None) -> bool:
    """Whether a centroid lies in the named part of the picture."""
    if centroid is None:
        return False
    x, y = centroid
    return {"left": x < 0.4, "right": x > 0.6, "top": y < 0.4, "bottom": y > 0.6,
            "centre": 0.35 <= x <= 0.65 and 0.35 <= y <= 0.65}[position]


def follows(analysis: Analysis, colour: str, background: str, position: str) -> bool:
    return analysis.background == background and analysis.colour == colour and in_region(position, analysis.centroid)


def shape_mask(image) -> np.ndarray:
    """Where the picture is far from its background colour (H × W booleans)."""
    rgb = as_rgb(image)[..., :3]
    return np.linalg.norm(rgb - analyse(image).background_rgb, axis=-1) > SHAPE_THRESHOLD


def stripes(image) -> float:
    """How striped the shape is: shape/background changes met going down each column that
    crosses the shape, on average, less the two of a plain shape (0 for a plain shape, about
    1 for the striped training pictures, whose bands cross a shape once or twice). Blind to
    where the bands start."""
    mask = shape_mask(image)
    columns = mask[:, mask.any(axis=0)]
    if columns.shape[1] == 0:
        return 0.0
    padded = np.pad(columns, ((1, 1), (0, 0)))
    changes = np.abs(np.diff(padded.astype(int), axis=0)).sum(axis=0)
    return float(changes.mean() - 2)



@dataclass
class Outline:
    """How a shape fills its bounding box: ``fill`` is the share of the box's pixels inside the
    shape; ``corners`` the share of each corner's quarter-by-quarter patch inside it (top left,
    top right, bottom left, bottom right); ``aspect`` the box's width over its height."""

    fill: float
    corners: tuple[float, float, float, float]
    aspect: float


def outline(image) -> Outline | None:
    """The shape's outline measures, or None when no shape is drawn. The shape's pixels here are
    those nearer its colour than the background's (so the anti-aliased edge is cut halfway
    whatever the two colours' contrast), and only their largest connected patch counts (so a
    stray speck does not widen the box)."""
    from scipy import ndimage

    result = analyse(image)
    if result.colour_rgb is None:
        return None
    rgb = as_rgb(image)[..., :3]
    # Nearer the shape's colour than the background's: the edge cut halfway, whatever the contrast.
    nearer = np.linalg.norm(rgb - result.colour_rgb, axis=-1) < np.linalg.norm(rgb - result.background_rgb, axis=-1)
    labels, count = ndimage.label(nearer, structure=np.ones((3, 3)))
    if count == 0:
        return None
    mask = labels == 1 + int(np.argmax(ndimage.sum_labels(labels > 0, labels, range(1, count + 1))))
    ys, xs = np.nonzero(mask)
    if len(xs) < MIN_SHAPE_PIXELS:
        return None
    box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(float)
    height, width = box.shape
    ch, cw = max(1, round(height / 4)), max(1, round(width / 4))
    corners = (box[:ch, :cw].mean(), box[:ch, -cw:].mean(), box[-ch:, :cw].mean(), box[-ch:, -cw:].mean())
    return Outline(float(box.mean()), tuple(float(c) for c in corners), width / height)


# The drawn shapes (64×64, either size, seen as ``outline`` sees them) measure: circles fill
# 0.72–0.83 of their box with each corner patch 0.15–0.46 full; squares 0.99–1 with corners
# 0.95–1; triangles (pointing up) 0.50–0.58 with the bottom corners 0.69–0.94 fuller than the
# top ones (which are empty). The limits below lie about halfway between (a square may have one
# corner rounded off), so a rounded square (every corner about two thirds full, fill near 0.9)
# is neither a circle nor a square.
def shape_type(image) -> str | None:
    """Which of the vocabulary's shapes the picture's shape is: "triangle" (top corners of its
    bounding box empty, bottom ones full, about half the box filled), "square" (the corners
    full, the box filled) or "circle" (the corners mostly empty, about π/4 of a squarish box
    filled); None for no shape or one that is none of these."""
    measured = outline(image)
    if measured is None:
        return None
    top_left, top_right, bottom_left, bottom_right = measured.corners
    top, bottom = max(top_left, top_right), min(bottom_left, bottom_right)
    if bottom - top >= 0.35 and measured.fill < 0.7:
        return "triangle"
    squarish = 0.8 <= measured.aspect <= 1.25
    corners = sum(measured.corners) / 4
    if squarish and corners >= 0.7 and min(measured.corners) >= 0.5 and measured.fill >= 0.88:
        return "square"
    if squarish and corners <= 0.5 and 0.65 <= measured.fill <= 0.86:
        return "circle"
    return None


ATTRIBUTES = ("colour", "place", "shape")


def judged(image, shape: str, colour: str, background: str | None, place: str) -> dict[str, bool]:
    """Each attribute a prompt asks for, right or not: "colour" (the shape's colour, and the
    background's when the prompt names one), "place" (the centroid in the asked part) and
    "shape" (``shape_type``)."""
    result = analyse(image)
    return {"colour": result.colour == colour and (background is None or result.background == background),
            "place": bool(in_region(place, result.centroid)),
            "shape": shape_type(image) == shape}
