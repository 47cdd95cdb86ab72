"""How much the demo VAE's latent code of a shape depends on the background around it."""

from __future__ import annotations

import numpy as np
import torch

from studio.demo import shapes
from studio.settings import DEMO_MODELS_DIR


def demo_vae():
    """The shipped demo VAE, in float32."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(DEMO_MODELS_DIR / "checkpoints" / "seed-shapes" / "vae",
                                         torch_dtype=torch.float32).eval()


def shape_code_distances(vae) -> tuple[float, float]:
    """The latent code at the middle of a large centred square, for every (shape colour,
    background) pair: the mean distance between the codes of one shape colour on two
    backgrounds, and between those of two shape colours on one background. A first figure near
    0 is a code that says the shape's colour alone, which the base model can compose with any
    background; a large one makes it learn each pair's own code, which it cannot for a pair it
    never saw."""
    pairs = [(c, b) for c in shapes.COLOURS for b in shapes.COLOURS if c != b]
    pictures = np.stack([np.asarray(shapes.draw(shapes.Scene("square", c, b, "centre", "large"))) for c, b in pairs])
    with torch.no_grad():
        latents = vae.encode(torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mean
    centres = (latents[:, :, 3:5, 3:5].mean(dim=(2, 3)) * vae.config.scaling_factor).numpy()
    codes = dict(zip(pairs, centres, strict=True))
    distance = lambda a, b: float(np.linalg.norm(codes[a] - codes[b]))  # noqa: E731
    same_colour = np.mean([distance(a, b) for a in pairs for b in pairs if a[0] == b[0] and a != b])
    same_background = np.mean([distance(a, b) for a in pairs for b in pairs if a[1] == b[1] and a != b])
    return float(same_colour), float(same_background)
