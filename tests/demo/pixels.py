"""The pixel analysis the demo-model tests measure with: which named colour the background
and the shape are, where the shape's centroid is, and how striped the shape is.

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

