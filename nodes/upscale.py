"""Upscaling images with a model (ESRGAN-family and other spandrel architectures)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodes.loaders import ModelFileInput
from studio.graph.sockets import IMAGE, STRING, UPSCALE_MODEL
from studio.lazy import lazy_module
from studio.node_api import Input, NodeBase, Output

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.upscale import UpscaleModel

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")

# ComfyUI's tiling for this node (its inputs carry no tile settings, so files stay compatible).
TILE_SIZE, TILE_OVERLAP = 512, 32


class UpscaleModelLoader(ModelFileInput, NodeBase):
    """Loads an upscale model (ESRGAN, Real-ESRGAN, SwinIR, HAT, …; .pth or .safetensors)
    from the upscale_models folder."""

    type_name = "UpscaleModelLoader"
    category = "loaders"
    title = "Load Upscale Model"
    model_kind, model_input = "upscale_models", "model_name"
    inputs = (Input("model_name", STRING, default="", tooltip="file in the upscale_models folder"),)
    outputs = (Output("UPSCALE_MODEL", UPSCALE_MODEL),)


    def run(self, ctx: NodeContext, model_name: str) -> tuple:
        from studio.runtime.services import model_manager

        return (model_manager(ctx.services).load_upscale_model(model_name),)


class ImageUpscaleWithModel(NodeBase):
    """Enlarges images by the model's factor (×2, ×4 …), in overlapping tiles so that even
    very large results fit in memory; when the GPU runs out anyway, the tiles get smaller."""

    type_name = "ImageUpscaleWithModel"
    category = "image/upscaling"
    title = "Upscale Image (using Model)"
    inputs = (Input("upscale_model", UPSCALE_MODEL), Input("image", IMAGE))
    outputs = (Output("IMAGE", IMAGE),)

    def run(self, ctx: NodeContext, upscale_model: UpscaleModel, image: torch.Tensor) -> tuple:
        from studio.runtime.services import model_manager
        from studio.runtime.upscale import upscale_tiled

        manager = model_manager(ctx.services)
        tile_size, overlap = TILE_SIZE, TILE_OVERLAP
        with manager.use(upscale_model.descriptor.model):
            while True:
                try:
                    return (upscale_tiled(upscale_model, image, tile_size, overlap, ctx.progress),)
                except torch.OutOfMemoryError:
                    if tile_size <= 64:
                        raise
                    # Make room (other models leave the GPU), then retry with smaller tiles,
                    # as ComfyUI does.
                    manager.free_memory(keep=(upscale_model.descriptor.model,))
                    tile_size //= 2
                    overlap = min(overlap, tile_size // 4)
