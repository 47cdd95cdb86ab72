"""Loading models from the model folders: checkpoints, VAEs, CLIP vision encoders and style
models."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from studio.fileinfo import file_identity
from studio.graph.sockets import CLIP, CLIP_VISION, MODEL, STRING, STYLE_MODEL, VAE
from studio.node_api import Input, NodeBase, Output
from studio.runtime.model_headers import inspect_model_header
from studio.runtime.models import ModelFolders
from studio.settings import Settings

if TYPE_CHECKING:
    from studio.node_api import NodeContext


def check_model_file(kind: str, input_name: str, values: Mapping[str, Any],
                     settings: Settings) -> list[tuple[str, str]]:
    name = values.get(input_name) or ""
    folders = ModelFolders.from_settings(settings)
    if not name:
        return [(input_name, f"choose a file from the {kind} folder")]
    if folders.find(kind, name) is None:
        where = ", ".join(str(folder) for folder in folders.folders_for(kind)) or "no model folders are set up"
        return [(input_name, f"model file {name!r} is not in the {kind} folder ({where})")]
    return []


def model_file_fingerprint(kind: str, name: str, settings: Settings) -> Any:
    path = ModelFolders.from_settings(settings).find(kind, name or "")
    if path is None:
        return None
    return file_identity(path)


class ModelFileInput:
    """For nodes that name a file in a model folder (mix in before NodeBase): validation that
    the file is there, naming the folder, and a cache fingerprint of its size and time, so a
    file replaced under the same name is loaded again."""

    model_kind: ClassVar[str] = ""
    model_input: ClassVar[str] = ""

    @classmethod
    def check(cls, values: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
        return check_model_file(cls.model_kind, cls.model_input, values, settings)

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], settings: Settings) -> Any:
        return model_file_fingerprint(cls.model_kind, values.get(cls.model_input, ""), settings)

    @classmethod
    def advise(cls, values: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
        # A file that is there but is not what the loader takes (a LoRA put in the checkpoints
        # folder, a download cut short) is told before the run, from its header alone. A
        # missing file is check's to report.
        path = ModelFolders.from_settings(settings).find(cls.model_kind, values.get(cls.model_input) or "")
        if path is None:
            return []
        try:
            reason = header_verdict(cls.model_kind, path)
        except OSError:
            return []  # gone or unreadable since it was found; the run will say so
        return [] if reason is None else [(cls.model_input, f"{reason}; loading it would fail")]


# What the header check said, by kind and file identity (path, size, modification time): validation runs often
# (the app's Problems panel re-checks on every edit) and a checkpoint's header holds thousands
# of names, so each file version is read once.
_HEADER_VERDICTS: dict[tuple[str | int, ...], str | None] = {}
_HEADER_VERDICTS_KEPT = 256


def header_verdict(kind: str, path: Path) -> str | None:
    """Why the loader of ``kind`` would refuse ``path`` (see :func:`inspect_model_header`), or
    None; remembered for as long as the file is unchanged."""
    key = (kind, *file_identity(path))
    if key not in _HEADER_VERDICTS:
        if len(_HEADER_VERDICTS) >= _HEADER_VERDICTS_KEPT:
            _HEADER_VERDICTS.clear()
        _HEADER_VERDICTS[key] = inspect_model_header(kind, path)
    return _HEADER_VERDICTS[key]


class CheckpointLoaderSimple(ModelFileInput, NodeBase):
    """Loads a Stable Diffusion checkpoint (SD 1.x, SD 2.x, SDXL or the SDXL refiner, and their
    9-channel inpainting models; a single .safetensors file or a diffusers folder) from the
    checkpoints folder, giving its denoising model, its text encoder and its VAE. Loaded once
    and shared by every node and run that uses the file."""

    type_name = "CheckpointLoaderSimple"
    category = "loaders"
    title = "Load Checkpoint"
    model_kind, model_input = "checkpoints", "ckpt_name"
    inputs = (Input("ckpt_name", STRING, default="", tooltip="file in the checkpoints folder"),)
    outputs = (Output("MODEL", MODEL), Output("CLIP", CLIP), Output("VAE", VAE))

    def run(self, ctx: NodeContext, ckpt_name: str) -> tuple:
        from studio.runtime.services import model_manager
        from studio.runtime.transformer_models import cpu_warning

        manager = model_manager(ctx.services)
        checkpoint = manager.load_checkpoint(ckpt_name)
        # An all-in-one FLUX/SD3.5 file on a CPU-only machine: said as UNETLoader says it.
        warning = cpu_warning(checkpoint.model, manager.policy)
        if warning:
            ctx.note(warning)
        return (checkpoint.model, checkpoint.clip, checkpoint.vae)


class VAELoader(ModelFileInput, NodeBase):
    """Loads a VAE from the vae folder, to decode or encode with instead of the checkpoint's."""

    type_name = "VAELoader"
    category = "loaders"
    title = "Load VAE"
    model_kind, model_input = "vae", "vae_name"
    inputs = (Input("vae_name", STRING, default="", tooltip="file in the vae folder"),)
    outputs = (Output("VAE", VAE),)


    def run(self, ctx: NodeContext, vae_name: str) -> tuple:
        from studio.runtime.services import model_manager

        return (model_manager(ctx.services).load_vae(vae_name),)


class unCLIPCheckpointLoader(CheckpointLoaderSimple):  # noqa: N801 (ComfyUI's type name)
    """Loads an SD 2.1 unCLIP checkpoint (sd21-unclip-l or -h) from the checkpoints folder:
    its denoising model, text encoder and VAE, and the CLIP vision model it carries, which
    turns pictures into the image prompts unCLIPConditioning gives the model. Other
    checkpoints load too, with no CLIP vision model."""

    type_name = "unCLIPCheckpointLoader"
    title = "unCLIPCheckpointLoader"
    outputs = (Output("MODEL", MODEL), Output("CLIP", CLIP), Output("VAE", VAE), Output("CLIP_VISION", CLIP_VISION))

    def run(self, ctx: NodeContext, ckpt_name: str) -> tuple:
        from studio.runtime.services import model_manager

        checkpoint = model_manager(ctx.services).load_checkpoint(ckpt_name)
        if checkpoint.clip_vision is None:
            ctx.note(f"{ckpt_name} carries no CLIP vision model (it is not an unCLIP checkpoint), so the "
                     "CLIP_VISION output is empty; load one with CLIPVisionLoader")
        return (checkpoint.model, checkpoint.clip, checkpoint.vae, checkpoint.clip_vision)


class CLIPVisionLoader(ModelFileInput, NodeBase):
    """Loads a CLIP vision model (an image encoder: ViT-L/14, ViT-H/14 or ViT-bigG/14, in the
    transformers or the OpenCLIP layout) from the clip_vision folder, for image prompts."""

    type_name = "CLIPVisionLoader"
    category = "loaders"
    title = "Load CLIP Vision"
    model_kind, model_input = "clip_vision", "clip_name"
    inputs = (Input("clip_name", STRING, default="", tooltip="file in the clip_vision folder"),)
    outputs = (Output("CLIP_VISION", CLIP_VISION),)

    def run(self, ctx: NodeContext, clip_name: str) -> tuple:
        from studio.runtime.clip_vision import load_clip_vision
        from studio.runtime.services import model_manager

        return (load_clip_vision(model_manager(ctx.services), clip_name),)


class StyleModelLoader(ModelFileInput, NodeBase):
    """Loads a style model (a T2I style adapter) from the style_models folder: it turns a
    picture's CLIP vision tokens into extra prompt tokens (Apply Style Model)."""

    type_name = "StyleModelLoader"
    category = "loaders"
    title = "Load Style Model"
    model_kind, model_input = "style_models", "style_model_name"
    inputs = (Input("style_model_name", STRING, default="", tooltip="file in the style_models folder"),)
    outputs = (Output("STYLE_MODEL", STYLE_MODEL),)

    def run(self, ctx: NodeContext, style_model_name: str) -> tuple:
        from studio.runtime.clip_vision import load_style_model
        from studio.runtime.services import model_manager

        return (load_style_model(model_manager(ctx.services), style_model_name),)
