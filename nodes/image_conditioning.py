"""Conditioning from a picture for models that read one beside the latent: inpainting models
(9 input channels: mask and masked picture) and InstructPix2Pix (8: the source picture), with
ComfyUI's names, inputs and outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodes.latent import vae_encode
from studio.graph.sockets import BOOLEAN, CONDITIONING, IMAGE, LATENT, MASK, VAE
from studio.lazy import lazy_module
from studio.node_api import Input, NodeBase, Output

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import Vae

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")


def _with(conditioning: list, **values) -> list:
    return [(embedding, {**extras, **values}) for embedding, extras in conditioning]


class InpaintModelConditioning(NodeBase):
    """For an inpainting model: encodes the picture, and the picture with the masked area
    greyed out, and hands the model the latter and the mask with the prompts. The latent is
    the picture's own, with the mask as its noise mask unless `noise_mask` is off (then the
    whole picture is resampled, guided by the model's mask input)."""

    type_name = "InpaintModelConditioning"
    category = "conditioning/inpaint"
    title = "InpaintModelConditioning"
    inputs = (Input("positive", CONDITIONING), Input("negative", CONDITIONING), Input("vae", VAE),
              Input("pixels", IMAGE), Input("mask", MASK), Input("noise_mask", BOOLEAN, default=True))
    outputs = (Output("positive", CONDITIONING), Output("negative", CONDITIONING), Output("latent", LATENT))

    def run(self, ctx: NodeContext, positive: list, negative: list, vae: Vae, pixels: torch.Tensor, mask: torch.Tensor,
            noise_mask: bool) -> tuple:
        from studio.runtime.vae_codec import inpainting_inputs

        # Trimmed to multiples of 8, as ComfyUI trims them, whatever the VAE's own factor.
        pixels, mask, greyed = inpainting_inputs(pixels, mask, 8)
        concat_latent = vae_encode(ctx, vae, greyed)
        latent = {"samples": vae_encode(ctx, vae, pixels)}
        if noise_mask:
            latent["noise_mask"] = mask
        values = {"concat_latent_image": concat_latent, "concat_mask": mask}
        return (_with(positive, **values), _with(negative, **values), latent)


class InstructPixToPixConditioning(NodeBase):
    """For an InstructPix2Pix model: the source picture to edit, encoded and handed to the
    model with the instruction prompts; the latent is an empty one of its size."""

    type_name = "InstructPixToPixConditioning"
    category = "conditioning/instructpix2pix"
    title = "InstructPixToPixConditioning"
    inputs = (Input("positive", CONDITIONING), Input("negative", CONDITIONING), Input("vae", VAE),
              Input("pixels", IMAGE))
    outputs = (Output("positive", CONDITIONING), Output("negative", CONDITIONING), Output("latent", LATENT))

    def run(self, ctx: NodeContext, positive: list, negative: list, vae: Vae, pixels: torch.Tensor) -> tuple:
        concat_latent = vae_encode(ctx, vae, pixels)
        return (_with(positive, concat_latent_image=concat_latent), _with(negative, concat_latent_image=concat_latent),
                {"samples": torch.zeros_like(concat_latent)})
