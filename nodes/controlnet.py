"""ControlNet: loading one and applying its hint image to conditioning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodes.loaders import ModelFileInput
from studio.graph.sockets import CONDITIONING, CONTROL_NET, FLOAT, IMAGE, MODEL, STRING, VAE
from studio.node_api import Input, NodeBase, Output

if TYPE_CHECKING:
    import torch

    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import DiffusionModel, Vae
    from studio.runtime.controlnet import ControlHint, ControlNet


def with_hint(conditioning: list, hint: ControlHint) -> list:
    """Each entry with the hint added after any it already has (ControlNets chain)."""
    return [(embedding, {**extras, "control": tuple(extras.get("control", ())) + (hint,)})
            for embedding, extras in conditioning]


class ControlNetLoader(ModelFileInput, NodeBase):
    """Loads a ControlNet or T2I-Adapter from the controlnet folder: a diffusers folder, or a
    single file in the original or diffusers layout (SD 1.x and SDXL)."""

    type_name = "ControlNetLoader"
    category = "loaders"
    title = "Load ControlNet Model"
    model_kind, model_input = "controlnet", "control_net_name"
    inputs = (Input("control_net_name", STRING, default="", tooltip="file or folder in the controlnet folder"),)
    outputs = (Output("CONTROL_NET", CONTROL_NET),)


    def run(self, ctx: NodeContext, control_net_name: str) -> tuple:
        from studio.runtime.services import model_manager

        return (model_manager(ctx.services).load_controlnet(control_net_name),)


class DiffControlNetLoader(ModelFileInput, NodeBase):
    """Loads a ControlNet stored as differences from its base model (smaller "diff" files),
    adding the model's own weights back."""

    type_name = "DiffControlNetLoader"
    category = "loaders"
    title = "Load ControlNet Model (diff)"
    model_kind, model_input = "controlnet", "control_net_name"
    inputs = (Input("model", MODEL),
              Input("control_net_name", STRING, default="", tooltip="file in the controlnet folder"))
    outputs = (Output("CONTROL_NET", CONTROL_NET),)


    def run(self, ctx: NodeContext, model: DiffusionModel, control_net_name: str) -> tuple:
        from studio.runtime.services import model_manager

        manager = model_manager(ctx.services)
        return (manager.load_controlnet(control_net_name, base_unet=model.unet, base_key=model.key),)


class ControlNetApply(NodeBase):
    """Guides a conditioning with a ControlNet and its hint image (edges, a pose, a depth
    map…) for the whole sampling, at a strength."""

    type_name = "ControlNetApply"
    category = "conditioning/controlnet"
    title = "Apply ControlNet"
    inputs = (Input("conditioning", CONDITIONING), Input("control_net", CONTROL_NET), Input("image", IMAGE),
              Input("strength", FLOAT, default=1.0, min=0.0, max=10.0, step=0.01))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: list, control_net: ControlNet, image: torch.Tensor,
            strength: float) -> tuple:
        from studio.runtime.controlnet import ControlHint

        if strength == 0:
            return (conditioning,)
        return (with_hint(conditioning, ControlHint(control_net, image, strength)),)


class ControlNetApplyAdvanced(NodeBase):
    """Guides the positive and negative conditioning with a ControlNet, at a strength, during
    part of the sampling only (start_percent to end_percent of the steps). Chain several
    for several hints."""

    type_name = "ControlNetApplyAdvanced"
    category = "conditioning/controlnet"
    title = "Apply ControlNet (Advanced)"
    inputs = (
        Input("positive", CONDITIONING),
        Input("negative", CONDITIONING),
        Input("control_net", CONTROL_NET),
        Input("image", IMAGE),
        Input("strength", FLOAT, default=1.0, min=0.0, max=10.0, step=0.01),
        Input("start_percent", FLOAT, default=0.0, min=0.0, max=1.0, step=0.001),
        Input("end_percent", FLOAT, default=1.0, min=0.0, max=1.0, step=0.001),
        Input("vae", VAE, optional=True, tooltip="only ControlNets that read latents need it"),
    )
    outputs = (Output("positive", CONDITIONING), Output("negative", CONDITIONING))

    @classmethod
    def check(cls, values, settings):
        if values.get("start_percent", 0.0) > values.get("end_percent", 1.0):
            return [("start_percent", "starts after it ends: start_percent must not exceed end_percent")]
        return []

    def run(self, ctx: NodeContext, positive: list, negative: list, control_net: ControlNet, image: torch.Tensor,
            strength: float, start_percent: float, end_percent: float, vae: Vae | None = None) -> tuple:
        from studio.runtime.controlnet import ControlHint

        if strength == 0 or start_percent >= end_percent:
            return (positive, negative)
        hint = ControlHint(control_net, image, strength, start_percent, end_percent)
        return (with_hint(positive, hint), with_hint(negative, hint))
