"""Live previews look like the result: the map from latents to colours is fitted to the
model's own VAE (here the demo model's, whose latents the SD 1.5 factors misread)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from studio.engine import Engine, NodeProgress
from studio.graph import load
from studio.runtime.sampling import latent_preview
from studio.runtime.services import create_services
from studio.settings import WORKFLOWS_DIR


def test_the_last_preview_matches_the_picture_and_the_fixed_factors_do_not(registry, settings):
    engine = Engine(registry, settings, services=create_services(settings))
    workflow = load(WORKFLOWS_DIR / "default.json")
    previews = []
    report = engine.run(workflow, on_event=lambda event: previews.append(event.preview)
                        if isinstance(event, NodeProgress) and event.preview is not None else None)
    assert report.ok, report.errors
    picture = np.asarray(Image.open(report.files[-1][1]).convert("RGB"), dtype=np.float32) / 255
    last = previews[-1][0].numpy()  # h × w × 3 at the latent's size
    cell = picture.shape[0] // last.shape[0]
    blocks = picture.reshape(last.shape[0], cell, last.shape[1], cell, 3).mean(axis=(1, 3))
    fitted_error = float(np.abs(last - blocks).mean())
    assert fitted_error < 0.08, fitted_error
    # SD 1.5's fixed factors, the previous preview, read this model's latents as another picture.
    model = engine.services.models.load_checkpoint("seed-shapes").model
    latent = torch.from_numpy(np.ascontiguousarray(blocks.transpose(2, 0, 1) * 2 - 1))[None]
    encoded = model.preview_vae.vae.encode(torch.nn.functional.interpolate(
        latent, scale_factor=cell).to(next(model.preview_vae.vae.parameters()).dtype)).latent_dist.mean.float()
    fixed_error = float(np.abs(latent_preview(encoded, "sd15")[0].numpy() - blocks).mean())
    fitted_again = float(np.abs(latent_preview(encoded, "sd15", model.preview_vae)[0].numpy() - blocks).mean())
    assert fitted_again < 0.08 < fixed_error
