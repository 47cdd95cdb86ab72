"""Hypernetworks, with ComfyUI's loader node."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nodes.loaders import ModelFileInput
from studio.graph.sockets import FLOAT, MODEL, STRING
from studio.node_api import Input, NodeBase, Output

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import DiffusionModel


class HypernetworkLoader(ModelFileInput, NodeBase):
    """Applies a hypernetwork from the hypernetworks folder (AUTOMATIC1111's .pt files) to a
    model: small networks that change what every attention layer attends to, by `strength`.
    Several chain. The base model is not changed."""

    type_name = "HypernetworkLoader"
    category = "loaders"
    title = "Load Hypernetwork"
    model_kind, model_input = "hypernetworks", "hypernetwork_name"
    inputs = (Input("model", MODEL),
              Input("hypernetwork_name", STRING, default="", tooltip="file in the hypernetworks folder"),
              Input("strength", FLOAT, default=1.0, min=-10.0, max=10.0, step=0.01))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx: NodeContext, model: DiffusionModel, hypernetwork_name: str, strength: float) -> tuple:
        from studio.runtime.hypernetwork import read_hypernetwork
        from studio.runtime.services import model_manager

        path = model_manager(ctx.services).resolve("hypernetworks", hypernetwork_name)
        hypernetwork = read_hypernetwork(path, strength)
        return (replace(model, hypernetworks=(*model.hypernetworks, hypernetwork)),)
