"""Draws seed_sample.png, the sample picture the default workflow loads (no photo, so no
licence question): a sunset over hills, with a transparent hole so LoadImage's MASK output
has something to show. Run from the project root: python resources/images/make_sample.py"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 512, 384


def draw() -> Image.Image:
    y = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    top, bottom = np.array([40, 60, 140]), np.array([250, 170, 90])
    sky = (top * (1 - y) + bottom * y).repeat(WIDTH, axis=1)
    image = Image.fromarray(sky.astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(image)
    pen.ellipse((300, 150, 400, 250), fill=(255, 230, 150))
    x = np.arange(WIDTH)
    for depth, colour in ((0.55, (70, 90, 110)), (0.7, (40, 70, 60)), (0.85, (25, 45, 35))):
        ridge = HEIGHT * depth + 25 * np.sin(x / (40 + 60 * depth)) + 12 * np.sin(x / 17 + depth * 9)
        pen.polygon([(0, HEIGHT)] + list(zip(x.tolist(), ridge.tolist())) + [(WIDTH, HEIGHT)], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(0.6)).convert("RGBA")
    alpha = Image.new("L", image.size, 255)
    ImageDraw.Draw(alpha).ellipse((40, 40, 120, 120), fill=0)
    image.putalpha(alpha)
    return image


if __name__ == "__main__":
    draw().save(Path(__file__).with_name("seed_sample.png"), optimize=True)
