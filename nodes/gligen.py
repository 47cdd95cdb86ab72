"""GLIGEN: phrases placed in boxes, with ComfyUI's loader and text-box nodes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodes.conditioning import embedding_sources
from nodes.loaders import ModelFileInput
from studio.graph.sockets import CLIP, CONDITIONING, GLIGEN, INT, STRING
from studio.node_api import MAX_RESOLUTION, Input, NodeBase, Output

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import TextEncoder
    from studio.runtime.gligen import Gligen


class GLIGENLoader(ModelFileInput, NodeBase):
    """Loads a GLIGEN model from the gligen folder (SD 1.x): it lets GLIGEN Textbox Apply place
    phrases in boxes of the picture."""

    type_name = "GLIGENLoader"
    category = "loaders"
    title = "GLIGEN Loader"
    model_kind, model_input = "gligen", "gligen_name"
    inputs = (Input("gligen_name", STRING, default="", tooltip="file in the gligen folder"),)
    outputs = (Output("GLIGEN", GLIGEN),)

    def run(self, ctx: NodeContext, gligen_name: str) -> tuple:
        from studio.runtime.gligen import load_gligen
        from studio.runtime.services import model_manager

        return (load_gligen(model_manager(ctx.services), gligen_name),)


class GLIGENTextBoxApply(NodeBase):
    """Asks for `text` inside a box of the picture (width × height at x, y, in pixels, rounded
    down to multiples of 8) through a GLIGEN model. Chain several for several boxes (up to 30
    per conditioning); the negative side gets the same boxes while sampling, as in ComfyUI."""

    type_name = "GLIGENTextBoxApply"
    category = "conditioning/gligen"
    title = "GLIGEN Textbox Apply"
    inputs = (Input("conditioning_to", CONDITIONING), Input("clip", CLIP), Input("gligen_textbox_model", GLIGEN),
              Input("text", STRING, default="", multiline=True),
              Input("width", INT, default=64, min=8, max=MAX_RESOLUTION, step=8),
              Input("height", INT, default=64, min=8, max=MAX_RESOLUTION, step=8),
              Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
              Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=8))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning_to: list, clip: TextEncoder, gligen_textbox_model: Gligen, text: str,
            width: int, height: int, x: int, y: int) -> tuple:
        from studio.runtime.clip_text import embedding_lookup
        from studio.runtime.gligen import phrase_embedding, with_text_box
        from studio.runtime.services import model_manager

        manager = model_manager(ctx.services)
        # The pooled embedding comes from the encoder ComfyUI takes it from: the only one, or
        # SDXL's second (OpenCLIP ViT-bigG).
        index = len(clip.encoders) - 1
        with manager.use(clip.encoders[index], patches=clip.patched_modules()):
            pooled = phrase_embedding(clip.tokenizers[index], clip.encoders[index], text,
                                      embedding_lookup(manager, clip, index, *embedding_sources(ctx, manager)))
        if pooled.shape[-1] != gligen_textbox_model.phrase_width:
            raise ValueError(f"gligen_textbox_model ({gligen_textbox_model.name}) reads "
                             f"{gligen_textbox_model.phrase_width}-wide phrase embeddings but clip gives "
                             f"{pooled.shape[-1]}-wide ones: use the text encoder of the family it was made for "
                             "(SD 1.x)")
        return (with_text_box(conditioning_to, gligen_textbox_model, pooled, width, height, x, y),)
