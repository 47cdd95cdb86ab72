"""Model merging, with ComfyUI's names, inputs, defaults and arithmetic (its
``comfy_extras/nodes_model_merging.py``; the facts are listed in ``studio.runtime.merging``).

A merge is lazy: the MODEL or CLIP it outputs carries patches that refer to the other model's
weights, merged only while a sampler or text encoder runs, so merging copies nothing and the
loaded models stay as they were. CheckpointSave and VAESave write the result as single files
in the original (LDM) layout that the loaders, and other tools, read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodes.io import safe_output_folder
from studio.graph.sockets import CLIP, FLOAT, MODEL, STRING, VAE
from studio.lazy import lazy_module
from studio.node_api import Input, NodeBase, Output
from studio.runtime.families import ModelFamily

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import DiffusionModel, TextEncoder, Vae

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")

RATIO = {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}
MULTIPLIER = {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}
CATEGORY = "advanced/model_merging"
PREFIX_TOOLTIP = "file name start inside the output folder; may contain sub-folders"


def _family_name(family: str) -> str:
    from studio.runtime.checkpoints import FAMILY_NAMES

    return FAMILY_NAMES.get(family, family)


def _require_same_family(first: str, first_family: str, second: str, second_family: str, what: str) -> None:
    if first_family != second_family:
        raise ValueError(f"{second} is {_family_name(second_family)} and {first} is {_family_name(first_family)}: "
                         f"only {what}s of the same family merge")


def _note_unmerged(ctx: Any, other: str, first: str, names: list[str]) -> None:
    if names:
        shown = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
        ctx.note(f"{len(names)} weights of {other} have other shapes than {first}'s and were not merged ({shown})")


def merge_models(ctx: Any, model1: DiffusionModel, model2: DiffusionModel,
                 strengths: Callable[[str], tuple[float, float]]) -> DiffusionModel:
    """model1 carrying the patches that merge model2 into it; ``strengths(name)`` gives each
    UNet weight's (add, keep)."""
    from studio.runtime.merging import merge_patches

    _require_same_family("model1", model1.family, "model2", model2.family, "model")
    patches, unmerged = merge_patches("unet", model1.unet, model2.unet,
                                      (p for p in model2.patches if p.target == "unet"), strengths)
    _note_unmerged(ctx, "model2", "model1", unmerged)
    return replace(model1, patches=tuple(model1.patches) + tuple(patches))


def merge_clips(ctx: Any, clip1: TextEncoder, clip2: TextEncoder, add: float, keep: float) -> TextEncoder:
    """clip1 carrying the patches that merge clip2's text encoders into its own, each weight
    ``keep · clip1 + add · clip2``."""
    from studio.runtime.merging import CLIP_MERGE_SKIPS, merge_patches

    _require_same_family("clip1", clip1.family, "clip2", clip2.family, "text encoder")
    added: list[Any] = []
    unmerged: list[str] = []
    for index, (encoder, other) in enumerate(zip(clip1.encoders, clip2.encoders, strict=True)):
        target = f"clip{index}"
        patches, skipped = merge_patches(target, encoder, other, (p for p in clip2.patches if p.target == target),
                                         lambda name: (add, keep), skip=CLIP_MERGE_SKIPS)
        added.extend(patches)
        unmerged.extend(f"{target}:{name}" for name in skipped)
    _note_unmerged(ctx, "clip2", "clip1", unmerged)
    return replace(clip1, patches=tuple(clip1.patches) + tuple(added))


class ModelMergeSimple(NodeBase):
    """Blends two models of the same family weight by weight: model1 × ratio + model2 ×
    (1 − ratio). Ratio 1 is model1 as it is, 0 is model2. LoRAs already on either model are
    part of what is blended. Nothing is copied: the blend is made while the sampler runs."""

    type_name = "ModelMergeSimple"
    category = CATEGORY
    title = "Merge Models"
    inputs = (Input("model1", MODEL), Input("model2", MODEL), Input("ratio", FLOAT, **RATIO))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx: NodeContext, model1: DiffusionModel, model2: DiffusionModel, ratio: float) -> tuple:
        return (merge_models(ctx, model1, model2, lambda name: (1.0 - ratio, ratio)),)


class ModelMergeBlocks(NodeBase):
    """Blends two models like Merge Models, with a ratio per part of the UNet: `input` for
    the input (down) blocks, `middle` for the middle block, `out` for the output (up) blocks
    and the final layers; the time embedding goes with `input`. Each ratio is model1's share
    (1: model1, 0: model2)."""

    type_name = "ModelMergeBlocks"
    category = CATEGORY
    title = "Merge Models by Block"
    inputs = (Input("model1", MODEL), Input("model2", MODEL), Input("input", FLOAT, **RATIO),
              Input("middle", FLOAT, **RATIO), Input("out", FLOAT, **RATIO))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx: NodeContext, model1: DiffusionModel, model2: DiffusionModel, input: float, middle: float,
            out: float) -> tuple:
        from studio.runtime.merging import block_strengths

        return (merge_models(ctx, model1, model2, block_strengths(model1.unet, input, middle, out)),)


class ModelMergeSubtract(NodeBase):
    """The difference of two models, times a multiplier: (model1 − model2) × multiplier.
    Added to a third model with Add Models, it carries over what model1 learned beyond model2
    (the usual recipe for an inpainting or style version of another model)."""

    type_name = "ModelMergeSubtract"
    category = CATEGORY
    title = "Subtract Models"
    inputs = (Input("model1", MODEL), Input("model2", MODEL), Input("multiplier", FLOAT, **MULTIPLIER))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx: NodeContext, model1: DiffusionModel, model2: DiffusionModel, multiplier: float) -> tuple:
        return (merge_models(ctx, model1, model2, lambda name: (-multiplier, multiplier)),)


class ModelMergeAdd(NodeBase):
    """The sum of two models' weights, model1 + model2: adds a difference made by Subtract
    Models to a model."""

    type_name = "ModelMergeAdd"
    category = CATEGORY
    title = "Add Models"
    inputs = (Input("model1", MODEL), Input("model2", MODEL))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx: NodeContext, model1: DiffusionModel, model2: DiffusionModel) -> tuple:
        return (merge_models(ctx, model1, model2, lambda name: (1.0, 1.0)),)


class CLIPMergeSimple(NodeBase):
    """Blends two text encoders of the same family weight by weight: clip1 × ratio + clip2 ×
    (1 − ratio) (1: clip1, 0: clip2). Position ids and the logit scale stay clip1's."""

    type_name = "CLIPMergeSimple"
    category = CATEGORY
    title = "Merge Text Encoders"
    inputs = (Input("clip1", CLIP), Input("clip2", CLIP), Input("ratio", FLOAT, **RATIO))
    outputs = (Output("CLIP", CLIP),)

    def run(self, ctx: NodeContext, clip1: TextEncoder, clip2: TextEncoder, ratio: float) -> tuple:
        return (merge_clips(ctx, clip1, clip2, 1.0 - ratio, ratio),)


class CLIPMergeSubtract(NodeBase):
    """The difference of two text encoders, times a multiplier: (clip1 − clip2) × multiplier.
    Position ids and the logit scale stay clip1's."""

    type_name = "CLIPMergeSubtract"
    category = CATEGORY
    title = "Subtract Text Encoders"
    inputs = (Input("clip1", CLIP), Input("clip2", CLIP), Input("multiplier", FLOAT, **MULTIPLIER))
    outputs = (Output("CLIP", CLIP),)

    def run(self, ctx: NodeContext, clip1: TextEncoder, clip2: TextEncoder, multiplier: float) -> tuple:
        return (merge_clips(ctx, clip1, clip2, -multiplier, multiplier),)


class CLIPMergeAdd(NodeBase):
    """The sum of two text encoders' weights, clip1 + clip2. Position ids and the logit scale
    stay clip1's."""

    type_name = "CLIPMergeAdd"
    category = CATEGORY
    title = "Add Text Encoders"
    inputs = (Input("clip1", CLIP), Input("clip2", CLIP))
    outputs = (Output("CLIP", CLIP),)

    def run(self, ctx: NodeContext, clip1: TextEncoder, clip2: TextEncoder) -> tuple:
        return (merge_clips(ctx, clip1, clip2, 1.0, 1.0),)


def _metadata(ctx: Any, model: DiffusionModel | None = None, title: str = "") -> dict[str, str]:
    """The safetensors header's text: the workflow (ComfyUI keeps its prompt and workflow
    there too) and, for a checkpoint, ComfyUI's model-spec entries where it writes them."""
    metadata = dict(ctx.embedded_texts)
    if model is not None:
        architecture = {ModelFamily.SDXL: "stable-diffusion-xl-v1-base",
                        ModelFamily.SDXL_REFINER: "stable-diffusion-xl-v1-refiner"}.get(model.family)
        if architecture is not None:
            metadata.update({"modelspec.sai_model_spec": "1.0.0", "modelspec.implementation": "sgm",
                             "modelspec.architecture": architecture, "modelspec.title": title})
        prediction = {"epsilon": "epsilon", "v_prediction": "v"}.get(model.prediction_type)
        if prediction is not None:
            metadata["modelspec.predict_key"] = prediction
    return metadata


class CheckpointSave(NodeBase):
    """Saves a model, its text encoder and a VAE as one checkpoint file (.safetensors, in the
    original layout that Seed Studio, ComfyUI and A1111 load) with their merges and LoRAs
    merged in. The file goes into the output folder (the prefix may name sub-folders there;
    by default checkpoints/) with the next free number: nothing is overwritten. A model of
    an architecture Seed Studio ships no configs for gets its configs in a folder of the same
    name beside it. Move the file (and that folder) to the checkpoints folder to load it."""

    type_name = "CheckpointSave"
    category = CATEGORY
    title = "Save Checkpoint"
    is_output = True
    inputs = (Input("model", MODEL), Input("clip", CLIP), Input("vae", VAE),
              Input("filename_prefix", STRING, default="checkpoints/ComfyUI", tooltip=PREFIX_TOOLTIP))
    outputs = ()

    def run(self, ctx: NodeContext, model: DiffusionModel, clip: TextEncoder, vae: Vae, filename_prefix: str) -> tuple:
        from studio.runtime.checkpoints import CONFIGS_DIR
        from studio.runtime.ldm_export import checkpoint_to_ldm, needs_config_folder, write_config_folder
        from studio.runtime.merging import save_new_safetensors
        from studio.runtime.services import model_manager

        if clip.family != model.family:
            raise ValueError(f"clip is the text encoder of {_family_name(clip.family)} and model is "
                             f"{_family_name(model.family)}: a checkpoint holds its own family's text encoder")
        manager = model_manager(ctx.services)
        unet_state = manager.patched_weights(model.unet, model.patches)
        encoder_states = [manager.patched_weights(encoder, [p for p in clip.patches if p.target == f"clip{index}"])
                          for index, encoder in enumerate(clip.encoders)]
        vae_state = manager.patched_weights(vae.vae, ())
        state = checkpoint_to_ldm(model.family, model.unet, vae.vae, clip.encoders, unet_state, vae_state,
                                  encoder_states)
        if model.prediction_type == "v_prediction":
            state["v_pred"] = torch.tensor([])  # ComfyUI's mark of a v-prediction checkpoint

        def write_configs(folder: Path) -> None:
            write_config_folder(folder, model.family, model.unet, vae.vae, clip.encoders, model.scheduler_config,
                                CONFIGS_DIR / model.family / "model_index.json")

        shipped = not needs_config_folder(model.family, model.unet, vae.vae, clip.encoders, CONFIGS_DIR)
        folder, stem = safe_output_folder(ctx.settings.output_dir, filename_prefix)
        path = save_new_safetensors(state, _metadata(ctx, model, stem), folder, stem,
                                    None if shipped else write_configs)
        ctx.record_file(path)
        return ()


class VAESave(NodeBase):
    """Saves a VAE as a .safetensors file in the original layout (what the vae folder holds
    and Load VAE reads) into the output folder (by default its vae/ sub-folder) with the next
    free number: nothing is overwritten. A VAE of another architecture than SD's gets its
    config in a folder of the same name beside it."""

    type_name = "VAESave"
    category = CATEGORY
    title = "Save VAE"
    is_output = True
    inputs = (Input("vae", VAE),
              Input("filename_prefix", STRING, default="vae/ComfyUI_vae", tooltip=PREFIX_TOOLTIP))
    outputs = ()

    def run(self, ctx: NodeContext, vae: Vae, filename_prefix: str) -> tuple:
        from studio.runtime.checkpoints import CONFIGS_DIR
        from studio.runtime.ldm_export import same_architecture, vae_to_ldm
        from studio.runtime.merging import save_new_safetensors
        from studio.runtime.services import model_manager

        module = vae.vae
        # ComfyUI writes a VAE's own keys, without the checkpoint's first_stage_model. prefix.
        state = vae_to_ldm(module, model_manager(ctx.services).patched_weights(module, ()), prefix="")
        state = {key: value.contiguous() for key, value in state.items()}
        # VAELoader builds a single-file VAE from SD's VAE config unless a config sits beside it.
        shipped = same_architecture(module, CONFIGS_DIR / ModelFamily.SD15 / "vae" / "config.json")
        folder, stem = safe_output_folder(ctx.settings.output_dir, filename_prefix)
        path = save_new_safetensors(state, _metadata(ctx), folder, stem,
                                    None if shipped else lambda configs: module.save_config(configs))
        ctx.record_file(path)
        return ()
