"""LoRA loaders, with ComfyUI's names and inputs."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nodes.loaders import ModelFileInput
from studio.graph.sockets import CLIP, FLOAT, MODEL, STRING
from studio.node_api import Input, NodeBase, Output

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import DiffusionModel, TextEncoder

STRENGTH = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}


def _apply(ctx, lora_name: str, model: DiffusionModel, clip: TextEncoder | None, strength_model: float,
           strength_clip: float) -> tuple[DiffusionModel, TextEncoder | None]:
    from studio.runtime.lora import read_patches
    from studio.runtime.lora_checks import check_lora_patches
    from studio.runtime.services import model_manager

    manager = model_manager(ctx.services)
    state = manager.load_lora(lora_name)
    encoders = clip.encoders if clip is not None else []
    patches, report = read_patches(state, model.unet, encoders, model.family, strength_model, strength_clip)
    if report.matched == 0:
        raise ValueError(f"{lora_name}: none of its {len(state)} keys matches this {model.family} model "
                         "(is it made for another model family?)")
    # A NaN would render black and report success; a wrong shape would fail mid-sampling.
    check_lora_patches(patches, model.unet, encoders, lora_name)
    ctx.note(report.sentence(lora_name))
    unet_patches = tuple(p for p in patches if p.target == "unet")
    clip_patches = tuple(p for p in patches if p.target != "unet")
    patched_model = replace(model, patches=model.patches + unet_patches)
    patched_clip = replace(clip, patches=clip.patches + clip_patches) if clip is not None else None
    return patched_model, patched_clip


class LoraLoader(ModelFileInput, NodeBase):
    """Applies a LoRA from the loras folder to a model and its text encoder (kohya, diffusers
    and PEFT files, LoCon included). Several LoRAs stack by chaining loaders. The base model
    is not changed: other branches and later runs without the LoRA see it as it was."""

    type_name = "LoraLoader"
    category = "loaders"
    title = "Load LoRA"
    model_kind, model_input = "loras", "lora_name"
    inputs = (
        Input("model", MODEL),
        Input("clip", CLIP),
        Input("lora_name", STRING, default="", tooltip="file in the loras folder"),
        Input("strength_model", FLOAT, **STRENGTH),
        Input("strength_clip", FLOAT, **STRENGTH),
    )
    outputs = (Output("MODEL", MODEL), Output("CLIP", CLIP))


    def run(self, ctx: NodeContext, model: DiffusionModel, clip: TextEncoder, lora_name: str, strength_model: float,
            strength_clip: float) -> tuple:
        return _apply(ctx, lora_name, model, clip, strength_model, strength_clip)


class LoraLoaderModelOnly(ModelFileInput, NodeBase):
    """Applies a LoRA to the model only (its text-encoder part, if any, is left out)."""

    type_name = "LoraLoaderModelOnly"
    category = "loaders"
    title = "Load LoRA (Model Only)"
    model_kind, model_input = "loras", "lora_name"
    inputs = (
        Input("model", MODEL),
        Input("lora_name", STRING, default="", tooltip="file in the loras folder"),
        Input("strength_model", FLOAT, **STRENGTH),
    )
    outputs = (Output("MODEL", MODEL),)


    def run(self, ctx: NodeContext, model: DiffusionModel, lora_name: str, strength_model: float) -> tuple:
        patched, _ = _apply(ctx, lora_name, model, None, strength_model, 0.0)
        return (patched,)
