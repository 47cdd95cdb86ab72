"""Turning prompts into conditioning, and combining conditioning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from studio.fileinfo import file_identity
from studio.graph.sockets import CLIP, CONDITIONING, FLOAT, INT, MASK, STRING
from studio.lazy import lazy_module
from studio.node_api import MAX_RESOLUTION, Input, NodeBase, Output
from studio.runtime.embeddings import EmbeddingLibrary
from studio.runtime.families import ModelFamily
from studio.runtime.model_errors import ModelLoadError
from studio.runtime.models import ModelFolders
from studio.runtime.names import EMBEDDING

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import TextEncoder
    from studio.runtime.clip_text import MissingEmbedding, Note

# Imported on first use: listing and validating nodes needs no torch.
torch = lazy_module("torch")


def _not_found(library: EmbeddingLibrary, name: str) -> str | None:
    """Why ``embedding:NAME`` cannot be used (a sentence) when its file is missing, else None."""
    try:
        library.find(name)
    except ModelLoadError:
        where = ", ".join(str(folder) for folder in library.folders.folders_for("embeddings")) or "none set up"
        return f"embedding {name!r} is not in the embeddings folders ({where})"
    return None


def missing_embeddings(values, inputs: tuple[str, ...], settings) -> list[tuple[str, str]]:
    """(input, sentence) for each embedding the prompts in ``inputs`` name that is missing."""
    library = EmbeddingLibrary(ModelFolders.from_settings(settings))
    found = []
    for input_name in inputs:
        text = values.get(input_name)
        for name in dict.fromkeys(EMBEDDING.findall(text if isinstance(text, str) else "")):
            reason = _not_found(library, name)
            if reason is not None:
                found.append((input_name, f"{reason}; the prompt will be encoded without it"))
    return found


def embedding_sources(ctx: NodeContext, manager: Any) -> tuple[MissingEmbedding, Note]:
    """What the runtime's prompt encoders need to look up ``embedding:NAME``: why a name
    cannot be used (or None), and a note told to the artist once per run."""
    def missing(name: str) -> str | None:
        return _not_found(manager.embeddings, name)

    def note_once(message: str) -> None:
        if message not in ctx.notes:
            ctx.note(message)

    return missing, note_once


def encode(ctx: NodeContext, clip: TextEncoder, text: str) -> list:
    """``text`` as ComfyUI's CONDITIONING, ``[(tokens, {"pooled_output": …})]``."""
    from studio.runtime.clip_text import encode_clip_prompt
    from studio.runtime.services import model_manager

    manager = model_manager(ctx.services)
    if hasattr(clip, "encode_text"):  # FLUX's and SD3's encoders (studio.runtime.text_encoders)
        return clip.encode_text(manager, text)
    hidden, pooled = encode_clip_prompt(manager, clip, text, *embedding_sources(ctx, manager))
    return [(hidden, {"pooled_output": pooled} if pooled is not None else {})]


class CLIPTextEncode(NodeBase):
    """Encodes a prompt for the sampler. Weights work as in ComfyUI: (word) is ×1.1,
    (word:1.3) sets 1.3, \\( and \\) are literal brackets. Prompts longer than 77 tokens are
    encoded in chunks, none of the text is dropped. embedding:NAME uses the textual inversion
    NAME from the embeddings folder."""

    type_name = "CLIPTextEncode"
    category = "conditioning"
    title = "CLIP Text Encode (Prompt)"
    inputs = (Input("text", STRING, default="", multiline=True), Input("clip", CLIP))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    @classmethod
    def fingerprint(cls, values, settings):
        # An embedding file replaced under the same name must be read again.
        names = EMBEDDING.findall(values.get("text") or "")
        if not names:
            return None
        library = EmbeddingLibrary(ModelFolders.from_settings(settings))
        found = []
        for name in names:
            try:
                found.append([name, *file_identity(library.find(name))])
            except ModelLoadError:
                found.append([name, None])
        return found

    @classmethod
    def advise(cls, values, settings):
        return missing_embeddings(values, ("text",), settings)

    def run(self, ctx: NodeContext, text: str, clip: TextEncoder) -> tuple:
        return (encode(ctx, clip, text),)


class CLIPSetLastLayer(NodeBase):
    """Makes the text encoder stop at an earlier layer ("CLIP skip"): -1 is the last layer,
    -2 the one before it (what many SD 1.x anime models expect)."""

    type_name = "CLIPSetLastLayer"
    category = "conditioning"
    title = "CLIP Set Last Layer"
    inputs = (Input("clip", CLIP), Input("stop_at_clip_layer", INT, default=-1, min=-24, max=-1, step=1))
    outputs = (Output("CLIP", CLIP),)

    def run(self, ctx: NodeContext, clip: TextEncoder, stop_at_clip_layer: int) -> tuple:
        return (clip.with_last_layer(stop_at_clip_layer),)


class ConditioningCombine(NodeBase):
    """Uses two conditionings together: the sampler averages what each asks for."""

    type_name = "ConditioningCombine"
    category = "conditioning"
    title = "Conditioning (Combine)"
    inputs = (Input("conditioning_1", CONDITIONING), Input("conditioning_2", CONDITIONING))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning_1: list, conditioning_2: list) -> tuple:
        return (conditioning_1 + conditioning_2,)


class ConditioningZeroOut(NodeBase):
    """Replaces a conditioning with zeros of the same shape (a true "nothing" negative)."""

    type_name = "ConditioningZeroOut"
    category = "conditioning/advanced"
    title = "Conditioning Zero Out"
    inputs = (Input("conditioning", CONDITIONING),)
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: list) -> tuple:
        out = []
        for embedding, extras in conditioning:
            extras = dict(extras)
            if extras.get("pooled_output") is not None:
                extras["pooled_output"] = torch.zeros_like(extras["pooled_output"])
            out.append((torch.zeros_like(embedding), extras))
        return (out,)


class ConditioningSetArea(NodeBase):
    """Makes a conditioning apply to one rectangle of the image (pixel units, multiples of
    8), with a strength; combine it with a whole-image prompt to place things."""

    type_name = "ConditioningSetArea"
    category = "conditioning"
    title = "Conditioning (Set Area)"
    inputs = (
        Input("conditioning", CONDITIONING),
        Input("width", INT, default=64, min=64, max=MAX_RESOLUTION, step=8),
        Input("height", INT, default=64, min=64, max=MAX_RESOLUTION, step=8),
        Input("x", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("y", INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("strength", FLOAT, default=1.0, min=0.0, max=10.0, step=0.01),
    )
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: list, width: int, height: int, x: int, y: int,
            strength: float) -> tuple:
        area = (height // 8, width // 8, y // 8, x // 8)
        return ([(embedding, {**extras, "area": area, "strength": strength}) for embedding, extras in conditioning],)


class CLIPTextEncodeSDXL(NodeBase):
    """SDXL prompt with its size conditioning: text_g goes to the large encoder, text_l to the
    small one, and the sizes tell the model what resolution and crop the image should look
    like it came from (4096² and no crop for extra detail, for example)."""

    type_name = "CLIPTextEncodeSDXL"
    category = "conditioning/advanced"
    title = "CLIP Text Encode (SDXL)"
    inputs = (
        Input("clip", CLIP),
        Input("width", INT, default=1024, min=0, max=MAX_RESOLUTION),
        Input("height", INT, default=1024, min=0, max=MAX_RESOLUTION),
        Input("crop_w", INT, default=0, min=0, max=MAX_RESOLUTION),
        Input("crop_h", INT, default=0, min=0, max=MAX_RESOLUTION),
        Input("target_width", INT, default=1024, min=0, max=MAX_RESOLUTION),
        Input("target_height", INT, default=1024, min=0, max=MAX_RESOLUTION),
        Input("text_g", STRING, default="", multiline=True),
        Input("text_l", STRING, default="", multiline=True),
    )
    outputs = (Output("CONDITIONING", CONDITIONING),)

    @classmethod
    def advise(cls, values, settings):
        return missing_embeddings(values, ("text_g", "text_l"), settings)

    def run(self, ctx: NodeContext, clip: TextEncoder, width: int, height: int, crop_w: int, crop_h: int,
            target_width: int, target_height: int, text_g: str, text_l: str) -> tuple:
        from studio.runtime.clip_text import encode_sdxl_prompts
        from studio.runtime.services import model_manager

        if clip.family != ModelFamily.SDXL:
            raise ValueError(f"this node needs an SDXL text encoder; the CLIP wired in is {clip.family}")
        manager = model_manager(ctx.services)
        hidden, pooled = encode_sdxl_prompts(manager, clip, text_l, text_g, *embedding_sources(ctx, manager))
        extras = {"pooled_output": pooled, "width": width, "height": height, "crop_w": crop_w,
                  "crop_h": crop_h, "target_width": target_width, "target_height": target_height}
        return ([(hidden, extras)],)


class CLIPTextEncodeSDXLRefiner(NodeBase):
    """SDXL refiner prompt with its aesthetic score: the refiner was trained knowing how good
    each picture was rated, so a high score (6, the default) asks for a "better" picture and a
    low one (2.5, what a negative prompt gets by default) for a worse; width and height are
    the size the picture should look like it came from."""

    type_name = "CLIPTextEncodeSDXLRefiner"
    category = "conditioning/advanced"
    title = "CLIP Text Encode (SDXL Refiner)"
    inputs = (
        Input("ascore", FLOAT, default=6.0, min=0.0, max=1000.0, step=0.01),
        Input("width", INT, default=1024, min=0, max=MAX_RESOLUTION),
        Input("height", INT, default=1024, min=0, max=MAX_RESOLUTION),
        Input("text", STRING, default="", multiline=True),
        Input("clip", CLIP),
    )
    outputs = (Output("CONDITIONING", CONDITIONING),)

    @classmethod
    def advise(cls, values, settings):
        return missing_embeddings(values, ("text",), settings)

    def run(self, ctx: NodeContext, ascore: float, width: int, height: int, text: str, clip: TextEncoder) -> tuple:
        if clip.family != ModelFamily.SDXL_REFINER:
            raise ValueError(f"this node needs the SDXL refiner's text encoder; the CLIP wired in is {clip.family}")
        [(hidden, extras)] = encode(ctx, clip, text)
        return ([(hidden, {**extras, "aesthetic_score": ascore, "width": width, "height": height})],)


def _first_of(conditioning_from: list, ctx, type_name: str) -> tuple[torch.Tensor, dict]:
    if not conditioning_from:
        raise ValueError("conditioning_from is empty: it needs at least one prompt's conditioning")
    if len(conditioning_from) > 1:
        ctx.note(f"conditioning_from holds {len(conditioning_from)} conditionings; {type_name} uses only the "
                 "first, as ComfyUI does")
    return conditioning_from[0]


def _check_width(embedding: torch.Tensor, other: torch.Tensor) -> None:
    if embedding.shape[-1] != other.shape[-1]:
        raise ValueError(f"conditioning_to has {embedding.shape[-1]} values per token and conditioning_from "
                         f"{other.shape[-1]}: they come from different text encoders")


class ConditioningConcat(NodeBase):
    """Appends the tokens of conditioning_from (its first entry) after those of each entry of
    conditioning_to, as if the prompts had been written one after the other but encoded
    separately, so neither changes the other's words."""

    type_name = "ConditioningConcat"
    category = "conditioning"
    title = "Conditioning (Concat)"
    inputs = (Input("conditioning_to", CONDITIONING), Input("conditioning_from", CONDITIONING))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning_to: list, conditioning_from: list) -> tuple:
        appended, _ = _first_of(conditioning_from, ctx, self.type_name)
        out = []
        for embedding, extras in conditioning_to:
            _check_width(embedding, appended)
            out.append((torch.cat([embedding, appended.to(embedding)], dim=1), dict(extras)))
        return (out,)


class ConditioningAverage(NodeBase):
    """Mixes two prompts' conditioning: conditioning_to_strength of conditioning_to and the
    rest of conditioning_from (its first entry), token by token, and likewise their pooled
    outputs. conditioning_from is cut or padded with zeros to conditioning_to's length."""

    type_name = "ConditioningAverage"
    category = "conditioning"
    title = "Conditioning (Average)"
    inputs = (Input("conditioning_to", CONDITIONING), Input("conditioning_from", CONDITIONING),
              Input("conditioning_to_strength", FLOAT, default=1.0, min=0.0, max=1.0, step=0.01))
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning_to: list, conditioning_from: list,
            conditioning_to_strength: float) -> tuple:
        source, source_extras = _first_of(conditioning_from, ctx, self.type_name)
        pooled_from = source_extras.get("pooled_output")
        strength = conditioning_to_strength
        out = []
        for embedding, extras in conditioning_to:
            _check_width(embedding, source)
            mixed_in = source[:, :embedding.shape[1]].to(embedding)
            if mixed_in.shape[1] < embedding.shape[1]:
                padding = embedding.new_zeros(mixed_in.shape[0], embedding.shape[1] - mixed_in.shape[1],
                                              embedding.shape[2])
                mixed_in = torch.cat([mixed_in, padding], dim=1)
            extras = dict(extras)
            # An entry without a pooled output takes conditioning_from's, as in ComfyUI.
            pooled_to = extras.get("pooled_output", pooled_from)
            if pooled_from is not None and pooled_to is not None:
                extras["pooled_output"] = pooled_to * strength + pooled_from.to(pooled_to) * (1.0 - strength)
            elif pooled_from is not None:
                extras["pooled_output"] = pooled_from
            out.append((embedding * strength + mixed_in * (1.0 - strength), extras))
        return (out,)


class ConditioningSetMask(NodeBase):
    """Makes a conditioning apply where the mask is white, with a strength; "mask bounds"
    also samples the prompt in the rectangle around the mask, at full resolution, as
    ConditioningSetArea does."""

    type_name = "ConditioningSetMask"
    category = "conditioning"
    title = "Conditioning (Set Mask)"
    inputs = (
        Input("conditioning", CONDITIONING),
        Input("mask", MASK),
        Input("strength", FLOAT, default=1.0, min=0.0, max=10.0, step=0.01),
        Input("set_cond_area", STRING, default="default", choices=("default", "mask bounds")),
    )
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: list, mask: torch.Tensor, strength: float,
            set_cond_area: str) -> tuple:
        from studio.runtime.images import as_mask_batch

        values = {"mask": as_mask_batch(mask), "set_area_to_bounds": set_cond_area != "default",
                  "mask_strength": strength}
        return ([(embedding, {**extras, **values}) for embedding, extras in conditioning],)


class ConditioningSetTimestepRange(NodeBase):
    """Makes a conditioning act only during part of sampling: from `start` to `end`, as
    fractions of the way from the first step (0) to the last (1). Combine two prompts with
    different ranges to change the prompt partway."""

    type_name = "ConditioningSetTimestepRange"
    category = "conditioning/advanced"
    title = "Conditioning Set Timestep Range"
    inputs = (
        Input("conditioning", CONDITIONING),
        Input("start", FLOAT, default=0.0, min=0.0, max=1.0, step=0.001),
        Input("end", FLOAT, default=1.0, min=0.0, max=1.0, step=0.001),
    )
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: list, start: float, end: float) -> tuple:
        values = {"start_percent": start, "end_percent": end}
        return ([(embedding, {**extras, **values}) for embedding, extras in conditioning],)


class ConditioningSetAreaPercentage(NodeBase):
    """Makes a conditioning apply to one rectangle of the image, given as fractions of the
    image's width and height (so it fits any size), with a strength."""

    type_name = "ConditioningSetAreaPercentage"
    category = "conditioning"
    title = "Conditioning (Set Area with Percentage)"
    inputs = (
        Input("conditioning", CONDITIONING),
        Input("width", FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
        Input("height", FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
        Input("x", FLOAT, default=0.0, min=0.0, max=1.0, step=0.01),
        Input("y", FLOAT, default=0.0, min=0.0, max=1.0, step=0.01),
        Input("strength", FLOAT, default=1.0, min=0.0, max=10.0, step=0.01),
    )
    outputs = (Output("CONDITIONING", CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: list, width: float, height: float, x: float, y: float,
            strength: float) -> tuple:
        # ComfyUI's form: the sampler turns the fractions into latent pixels for its size.
        values = {"area": ("percentage", height, width, y, x), "strength": strength, "set_area_to_bounds": False}
        return ([(embedding, {**extras, **values}) for embedding, extras in conditioning],)
