"""Draws the tour workflows' input pictures from the demo data generator (studio.demo.shapes).
Run from the project root: python resources/images/make_shapes_inputs.py

- shapes_scene.png: a large red circle on the left, blue background (img2img's input);
- shapes_inpaint.png: a small yellow square at the top on green, with a transparent hole at
  the bottom right, where the inpaint workflow paints (LoadImage's MASK is 1 where transparent);
- shapes_hint.png: a white blob at the lower right on black (the ControlNet's hint).
"""

from pathlib import Path

from PIL import Image, ImageDraw

from studio.demo.shapes import Scene, draw, hint

HERE = Path(__file__).resolve().parent


def main() -> None:
    draw(Scene("circle", "red", "blue", "left", "large")).save(HERE / "shapes_scene.png")
    inpaint = draw(Scene("square", "yellow", "green", "top", "small")).convert("RGBA")
    alpha = Image.new("L", inpaint.size, 255)
    ImageDraw.Draw(alpha).rectangle((34, 34, 63, 63), fill=0)
    inpaint.putalpha(alpha)
    inpaint.save(HERE / "shapes_inpaint.png")
    hint(Scene("circle", "white", "black", "centre", "large", dx=0.2, dy=0.18)).save(HERE / "shapes_hint.png")


if __name__ == "__main__":
    main()
