"""Image prompts: encoding pictures with a CLIP vision model, and conditioning on them
(unCLIP models, SDXL revision, T2I style adapters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.graph.sockets import CLIP_VISION, CLIP_VISION_OUTPUT, CONDITIONING, FLOAT, IMAGE, STRING, STYLE_MODEL
from studio.lazy import lazy_module
from studio.node_api import Input, NodeBase, Output

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.clip_vision import ClipVision, ClipVisionOutput, StyleModel

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")


class CLIPVisionEncode(NodeBase):
    """Encodes pictures with a CLIP vision model, for image prompts (unCLIP Conditioning,
    Apply Style Model). Each picture is resized so its shorter side is the model's size (224)
    and its centre is cut out (crop "center"), or squeezed whole to a square (crop "none")."""

    type_name = "CLIPVisionEncode"
    category = "conditioning"
    title = "CLIP Vision Encode"
    inputs = (Input("clip_vision", CLIP_VISION), Input("image", IMAGE),
              Input("crop", STRING, default="center", choices=("center", "none")))
    outputs = (Output("CLIP_VISION_OUTPUT", CLIP_VISION_OUTPUT),)

    def run(self, ctx: NodeContext, clip_vision: ClipVision | None, image: torch.Tensor, crop: str) -> tuple:
        from studio.runtime.clip_vision import encode_image
        from studio.runtime.services import model_manager

        if clip_vision is None:
            raise ValueError("clip_vision: no CLIP vision model arrived (the checkpoint loader's CLIP_VISION output "
                             "is empty when the checkpoint carries none); load one with CLIPVisionLoader")
        with model_manager(ctx.services).use(clip_vision.model):
            return (encode_image(clip_vision, image, crop=crop == "center"),)


class unCLIPConditioning(NodeBase):  # noqa: N801 (ComfyUI's type name)
    """Adds pictures (a CLIP vision output) to a prompt for an unCLIP model (SD 2.1 unCLIP) or
    SDXL ("revision"). strength weighs the pictures (several of these nodes add up);
    noise_augmentation (0..1) noises their embedding first, so the result keeps less of the
    picture and follows the prompt more. Strength 0 leaves the conditioning as it was."""

    type_name = "unCLIPConditioning"
    category = "conditioning"
    title = "unCLIPConditioning"
    inputs = (Input("conditioning", CONDITIONING), Input("clip_vision_output", CLIP_VISION_OUTPUT),
              Input("strength", FLOAT, default=1.0, min=-10.0, max=10.0, step=0.01),
              Input("noise_augmentation", FLOAT, default=0.0, min=0.0, max=1.0, step=0.01))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: list, clip_vision_output: ClipVisionOutput, strength: float,
            noise_augmentation: float) -> tuple:
        if strength == 0:
            return (conditioning,)
        picture = {"clip_vision_output": clip_vision_output, "strength": float(strength),
                   "noise_augmentation": float(noise_augmentation)}
        # Appended to what earlier unCLIP nodes added: the sampler sums all the pictures.
        return ([(embedding, {**extras, "unclip_conditioning": [*extras.get("unclip_conditioning", ()), picture]})
                 for embedding, extras in conditioning],)


class StyleModelApply(NodeBase):
    """Adds a picture's style to a prompt: the style model turns the picture's CLIP vision
    tokens into extra prompt tokens, appended to each conditioning entry. strength_type
    "multiply" scales those tokens by strength; "attn_bias" weighs the attention paid to them
    (only strength 1.0 here, which leaves them as they are)."""

    type_name = "StyleModelApply"
    category = "conditioning/style_model"
    title = "Apply Style Model"
    inputs = (Input("conditioning", CONDITIONING), Input("style_model", STYLE_MODEL),
              Input("clip_vision_output", CLIP_VISION_OUTPUT),
              Input("strength", FLOAT, default=1.0, min=0.0, max=10.0, step=0.001),
              Input("strength_type", STRING, default="multiply", choices=("multiply", "attn_bias")))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: list, style_model: StyleModel, clip_vision_output: ClipVisionOutput,
            strength: float, strength_type: str) -> tuple:
        if strength_type == "attn_bias" and strength != 1.0:
            raise ValueError("strength_type: attn_bias with a strength other than 1.0 needs attention masks on the "
                             "prompt, which Seed Studio's sampler does not apply; use multiply")
        if any("attention_mask" in extras for _, extras in conditioning):
            raise ValueError("conditioning: it carries an attention mask, which Seed Studio's sampler does not apply")
        tokens = style_model.tokens(clip_vision_output)
        # Every picture's tokens in a row, as one prompt (ComfyUI flattens the batch).
        tokens = tokens.flatten(0, 1).unsqueeze(0)
        if strength_type == "multiply":
            tokens = tokens * strength
        out = []
        for embedding, extras in conditioning:
            if tokens.shape[-1] != embedding.shape[-1]:
                raise ValueError(f"style_model: it makes tokens {tokens.shape[-1]} wide and the prompt's are "
                                 f"{embedding.shape[-1]} wide: the style model is for another model family")
            extra = tokens.to(embedding.dtype).expand(embedding.shape[0], -1, -1)
            out.append((torch.cat([embedding, extra], dim=1), dict(extras)))
        return (out,)
