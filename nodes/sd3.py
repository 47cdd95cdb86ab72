"""SD3.5 with ComfyUI's names and inputs: TripleCLIPLoader, CLIPTextEncodeSD3,
EmptySD3LatentImage (16-channel latents, also FLUX's), ModelSamplingSD3 and
ModelSamplingAuraFlow."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nodes.flux import _TextEncoderFiles, load_text_encoder_files, model_manager, require_transformer_clip
from studio.graph.sockets import CLIP, CONDITIONING, FLOAT, INT, LATENT, MODEL, STRING
from studio.node_api import MAX_RESOLUTION, Input, NodeBase, Output
from studio.runtime.families import ModelFamily

if TYPE_CHECKING:
    from studio.runtime.checkpoints import DiffusionModel, TextEncoder


class TripleCLIPLoader(_TextEncoderFiles):
    """Loads SD3.5's three text encoders from the text_encoders folder: CLIP-L, CLIP-G and
    T5-XXL (fp16 or fp8), each recognised from its contents."""

    type_name = "TripleCLIPLoader"
    category = "advanced/loaders"
    title = "TripleCLIPLoader"
    file_inputs = ("clip_name1", "clip_name2", "clip_name3")
    inputs = tuple(Input(name, STRING, default="", tooltip="file in the text_encoders folder") for name in file_inputs)
    outputs = (Output("CLIP", CLIP),)

    def run(self, ctx, clip_name1: str, clip_name2: str, clip_name3: str) -> tuple:
        return (load_text_encoder_files(ctx, [clip_name1, clip_name2, clip_name3], "sd3"),)


class CLIPTextEncodeSD3(NodeBase):
    """Encodes a prompt for SD3.5 with a text for each encoder (CLIP-L, CLIP-G, T5-XXL).
    `empty_padding` none: an encoder whose text is empty adds nothing (zeros); empty_prompt:
    it encodes the empty prompt."""

    type_name = "CLIPTextEncodeSD3"
    category = "advanced/conditioning"
    title = "CLIPTextEncodeSD3"
    inputs = (Input("clip", CLIP), Input("clip_l", STRING, default="", multiline=True),
              Input("clip_g", STRING, default="", multiline=True), Input("t5xxl", STRING, default="", multiline=True),
              Input("empty_padding", STRING, default="none", choices=("none", "empty_prompt")))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx, clip: TextEncoder, clip_l: str, clip_g: str, t5xxl: str,
            empty_padding: str) -> tuple:
        from studio.runtime.text_encoders import encode_sd3

        clip = require_transformer_clip(clip, ModelFamily.SD3,
                                        "SD3's text encoders (TripleCLIPLoader, or an SD3.5 checkpoint)")
        with model_manager(ctx.services).use(*clip.encoders, patches=clip.patched_modules()):
            hidden, extras = encode_sd3(clip, clip_l, clip_g, t5xxl, empty_padding)
        return ([(hidden, extras)],)


class EmptySD3LatentImage(NodeBase):
    """A blank 16-channel latent (SD3.5's and FLUX's) for images of this size."""

    type_name = "EmptySD3LatentImage"
    category = "latent/sd3"
    title = "EmptySD3LatentImage"
    inputs = (Input("width", INT, default=1024, min=16, max=MAX_RESOLUTION, step=16),
              Input("height", INT, default=1024, min=16, max=MAX_RESOLUTION, step=16),
              Input("batch_size", INT, default=1, min=1, max=4096))
    outputs = (Output("LATENT", LATENT),)

    def run(self, ctx, width: int, height: int, batch_size: int) -> tuple:
        import torch

        return ({"samples": torch.zeros(batch_size, 16, height // 8, width // 8)},)


class ModelSamplingSD3(NodeBase):
    """The time shift of a rectified-flow model (SD3.5: 3): higher spends more steps at high
    noise, for composition; lower, at low noise, for detail."""

    type_name = "ModelSamplingSD3"
    category = "advanced/model"
    title = "ModelSamplingSD3"
    inputs = (Input("model", MODEL), Input("shift", FLOAT, default=3.0, min=0.0, max=100.0, step=0.01))
    outputs = (Output("MODEL", MODEL),)
    multiplier = 1000.0

    def run(self, ctx, model: DiffusionModel, shift: float) -> tuple:
        from studio.runtime.schedules import FlowModelSampling

        return (replace(model, sampling=FlowModelSampling(shift=float(shift), multiplier=self.multiplier)),)


class ModelSamplingAuraFlow(ModelSamplingSD3):
    """ModelSamplingSD3 for models that read σ itself as the timestep (AuraFlow's convention;
    1.73 by default)."""

    type_name = "ModelSamplingAuraFlow"
    title = "ModelSamplingAuraFlow"
    inputs = (Input("model", MODEL), Input("shift", FLOAT, default=1.73, min=0.0, max=100.0, step=0.01))
    multiplier = 1.0
