"""FLUX.1 and the loaders of today's model files, with ComfyUI's names and inputs:
UNETLoader (a transformer alone, with its storage precision), CLIPLoader and DualCLIPLoader
(text encoder files), CLIPTextEncodeFlux, FluxGuidance and ModelSamplingFlux."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nodes.loaders import ModelFileInput, check_model_file, model_file_fingerprint
from studio.graph.sockets import CLIP, CONDITIONING, FLOAT, INT, MODEL, STRING
from studio.node_api import MAX_RESOLUTION, Input, NodeBase, Output
from studio.runtime.families import ModelFamily
from studio.settings import Settings

if TYPE_CHECKING:
    from studio.runtime.checkpoints import DiffusionModel, TextEncoder
    from studio.runtime.text_encoders import TransformerTextEncoder

# ComfyUI's choices; the types Seed Studio loads are LOADED_CLIP_TYPES (others are refused
# with a sentence when the graph is checked).
CLIP_LOADER_TYPES = ("stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
                     "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2",
                     "ovis")
DUAL_CLIP_TYPES = ("sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15", "kandinsky5",
                   "kandinsky5_image", "ltxv", "newbie")
LOADED_CLIP_TYPES = ("stable_diffusion", "sd3", "flux", "sdxl")
DEVICES = ("default", "cpu")
# UNETLoader's storage precisions (studio.runtime.weight_storage.WEIGHT_DTYPES).
WEIGHT_DTYPE_NAMES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")
# The torch side is imported on first use: listing and validating nodes needs no torch.


def model_manager(services):
    from studio.runtime.services import model_manager as manager

    return manager(services)


def file_key(path):
    from studio.runtime.model_manager import file_key as key

    return key(path)


def load_text_encoder_files(ctx, names: list[str], clip_type: str):
    """The text encoder files named, as one CLIP (cached like any model file)."""
    from studio.runtime.transformer_models import load_text_encoders

    manager = model_manager(ctx.services)
    paths = [manager.resolve("text_encoders", name) for name in names]
    key = "+".join(file_key(path) for path in paths) + f"|{clip_type}"
    return manager._cached("text_encoders:" + key,
                           lambda: load_text_encoders(paths, clip_type, manager.policy, key))


class _TextEncoderFiles(NodeBase):
    file_inputs: tuple[str, ...] = ()

    @classmethod
    def check(cls, values: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
        problems = [problem for name in cls.file_inputs
                    for problem in check_model_file("text_encoders", name, values, settings)]
        clip_type = values.get("type")
        if clip_type is not None and clip_type not in LOADED_CLIP_TYPES:
            problems.append(("type", f"type {clip_type!r} is for a model family Seed Studio does not load; it loads "
                             f"{', '.join(LOADED_CLIP_TYPES)}"))
        return problems

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], settings: Settings) -> Any:
        return [model_file_fingerprint("text_encoders", values.get(name, ""), settings) for name in cls.file_inputs]

    @classmethod
    def advise(cls, values: Mapping[str, Any], settings: Settings) -> list[tuple[str, str]]:
        # A file that is there but is no text encoder (a checkpoint, a LoRA), from its header.
        from nodes.loaders import header_verdict
        from studio.runtime.models import ModelFolders

        problems = []
        for name in cls.file_inputs:
            path = ModelFolders.from_settings(settings).find("text_encoders", values.get(name) or "")
            try:
                reason = header_verdict("text_encoders", path) if path is not None else None
            except OSError:
                reason = None
            if reason:
                problems.append((name, f"{reason}; loading it would fail"))
        return problems


class UNETLoader(ModelFileInput, NodeBase):
    """Loads a diffusion transformer alone (FLUX.1 dev or schnell, SD3.5 Large, Large Turbo or
    Medium; a single file in the original layout, or a diffusers transformer folder) from the
    diffusion_models folder. `weight_dtype` fp8 keeps its weights in 8 bits and computes each
    layer in 16 (half the memory); `default` keeps an fp8 file in fp8."""

    type_name = "UNETLoader"
    category = "advanced/loaders"
    title = "Load Diffusion Model"
    model_kind, model_input = "diffusion_models", "unet_name"
    inputs = (Input("unet_name", STRING, default="", tooltip="file in the diffusion_models folder"),
              Input("weight_dtype", STRING, default="default", choices=WEIGHT_DTYPE_NAMES))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx, unet_name: str, weight_dtype: str) -> tuple:
        from studio.runtime.transformer_models import cpu_warning, load_diffusion_model

        manager = model_manager(ctx.services)
        path = manager.resolve("diffusion_models", unet_name)
        key = file_key(path / "config.json" if path.is_dir() else path)
        model = manager._cached(f"diffusion_model:{key}|{weight_dtype}",
                                lambda: load_diffusion_model(path, manager.policy, key, weight_dtype))
        warning = cpu_warning(model, manager.policy)
        if warning:
            ctx.note(warning)
        return (model,)


class CLIPLoader(_TextEncoderFiles):
    """Loads one text encoder file from the text_encoders folder: CLIP-L for SD 1.x
    (`stable_diffusion`), or one of SD3's (`sd3`: CLIP-L, CLIP-G or T5-XXL alone)."""

    type_name = "CLIPLoader"
    category = "advanced/loaders"
    title = "Load CLIP"
    file_inputs = ("clip_name",)
    inputs = (Input("clip_name", STRING, default="", tooltip="file in the text_encoders folder"),
              Input("type", STRING, default="stable_diffusion", choices=CLIP_LOADER_TYPES),
              Input("device", STRING, default="default", choices=DEVICES, optional=True))
    outputs = (Output("CLIP", CLIP),)

    def run(self, ctx, clip_name: str, type: str,  # noqa: A002 (ComfyUI's name)
            device: str = "default") -> tuple:
        return (load_text_encoder_files(ctx, [clip_name], type),)


class DualCLIPLoader(_TextEncoderFiles):
    """Loads two text encoder files from the text_encoders folder as one CLIP: `flux` (CLIP-L
    and T5-XXL, fp16 or fp8), `sd3` (two of CLIP-L, CLIP-G, T5-XXL), `sdxl` (CLIP-L and
    CLIP-G). Each file is recognised from its contents, in either order."""

    type_name = "DualCLIPLoader"
    category = "advanced/loaders"
    title = "DualCLIPLoader"
    file_inputs = ("clip_name1", "clip_name2")
    inputs = (Input("clip_name1", STRING, default="", tooltip="file in the text_encoders folder"),
              Input("clip_name2", STRING, default="", tooltip="file in the text_encoders folder"),
              Input("type", STRING, default="sdxl", choices=DUAL_CLIP_TYPES),
              Input("device", STRING, default="default", choices=DEVICES, optional=True))
    outputs = (Output("CLIP", CLIP),)

    def run(self, ctx, clip_name1: str, clip_name2: str, type: str,  # noqa: A002 (ComfyUI's name)
            device: str = "default") -> tuple:
        return (load_text_encoder_files(ctx, [clip_name1, clip_name2], type),)


def require_transformer_clip(clip: Any, family: ModelFamily, needed: str) -> TransformerTextEncoder:
    """``clip`` when it is ``family``'s text encoders (CLIP-L, CLIP-G, T5-XXL by role), else a
    sentence saying what the node needs (``needed``) and what is wired in."""
    if getattr(clip, "roles", None) is None or clip.family != family:
        raise ValueError(f"this node needs {needed}; the CLIP wired in is "
                         f"{getattr(clip, 'family', type(clip).__name__)}")
    return clip


class CLIPTextEncodeFlux(NodeBase):
    """Encodes a prompt for FLUX: `clip_l` for CLIP-L's summary of it, `t5xxl` for T5's
    reading (usually the same text, or a longer description), and the distilled `guidance`
    FLUX.1 dev follows (schnell ignores it)."""

    type_name = "CLIPTextEncodeFlux"
    category = "advanced/conditioning/flux"
    title = "CLIPTextEncodeFlux"
    inputs = (Input("clip", CLIP), Input("clip_l", STRING, default="", multiline=True),
              Input("t5xxl", STRING, default="", multiline=True),
              Input("guidance", FLOAT, default=3.5, min=0.0, max=100.0, step=0.1))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx, clip: TextEncoder, clip_l: str, t5xxl: str, guidance: float) -> tuple:
        from studio.runtime.text_encoders import encode_flux

        clip = require_transformer_clip(clip, ModelFamily.FLUX, "FLUX's text encoders (CLIP-L and T5-XXL)")
        with model_manager(ctx.services).use(*clip.encoders, patches=clip.patched_modules()):
            hidden, extras = encode_flux(clip, clip_l, t5xxl)
        return ([(hidden, {**extras, "guidance": float(guidance)})],)


class FluxGuidance(NodeBase):
    """Sets the distilled guidance FLUX.1 dev follows (3.5 by default; higher follows the
    prompt more literally). Use it with cfg 1 on the sampler."""

    type_name = "FluxGuidance"
    category = "advanced/conditioning/flux"
    title = "FluxGuidance"
    inputs = (Input("conditioning", CONDITIONING), Input("guidance", FLOAT, default=3.5, min=0.0, max=100.0, step=0.1))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx, conditioning: list, guidance: float) -> tuple:
        return ([(embedding, {**extras, "guidance": float(guidance)}) for embedding, extras in conditioning],)


class ModelSamplingFlux(NodeBase):
    """FLUX's resolution-dependent time shift: μ goes linearly from `base_shift` at 256 latent
    patches to `max_shift` at 4096 (1024²), so larger images spend more steps at high noise."""

    type_name = "ModelSamplingFlux"
    category = "advanced/model"
    title = "ModelSamplingFlux"
    inputs = (Input("model", MODEL), Input("max_shift", FLOAT, default=1.15, min=0.0, max=100.0, step=0.01),
              Input("base_shift", FLOAT, default=0.5, min=0.0, max=100.0, step=0.01),
              Input("width", INT, default=1024, min=16, max=MAX_RESOLUTION, step=8),
              Input("height", INT, default=1024, min=16, max=MAX_RESOLUTION, step=8))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx, model: DiffusionModel, max_shift: float, base_shift: float, width: int,
            height: int) -> tuple:
        from studio.runtime.flux import FluxModelSampling

        slope = (max_shift - base_shift) / (4096 - 256)
        mu = width * height / (8 * 8 * 2 * 2) * slope + base_shift - slope * 256
        if not math.isfinite(mu):
            raise ValueError("the shift is not a finite number")
        return (replace(model, sampling=FluxModelSampling(shift=mu)),)
