"""Prompts through a checkpoint's CLIP text encoders: SD 1.x's and SD 2.x's one, SDXL's two side
by side, the SDXL refiner's one; and the textual-inversion lookup they share (GLIGEN's phrases
use it too).

Which layer is read, how SDXL's two encoders are joined and which one gives the pooled output
are facts of the model families, decided here once; the conditioning nodes only pass the
prompt in and wrap what comes out in ComfyUI's ``[(tokens, extras)]`` list. FLUX's and SD3's
encoders encode themselves (``studio.runtime.text_encoders``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from studio.runtime.families import ModelFamily
from studio.runtime.prompts import encode_prompt

if TYPE_CHECKING:
    from studio.runtime.checkpoints import TextEncoder

# Why the textual inversion NAME cannot be used (a sentence), or None when it can.
MissingEmbedding = Callable[[str], "str | None"]
Note = Callable[[str], None]


def embedding_lookup(manager: Any, clip: TextEncoder, index: int, missing: MissingEmbedding,
                     note: Note) -> Callable[[str], torch.Tensor]:
    """The vectors of ``embedding:NAME`` for encoder ``index`` of ``clip``. A missing embedding
    gives no vectors and a note (as ComfyUI's "embedding:NAME does not exist, ignoring"): the
    prompt without the word, rather than a failed render."""
    width = clip.encoders[index].config.hidden_size

    def vectors(name: str) -> torch.Tensor:
        reason = missing(name)
        if reason is None:
            return manager.embeddings.vectors(name, width, index)
        note(f"{reason}; it was left out of the prompt")
        return torch.zeros(0, width)

    return vectors


def _sdxl_layer(clip: TextEncoder) -> int:
    # SDXL's encoders (and the refiner's) are read at the layer before the one CLIP skip names.
    return min(clip.stop_at_layer, -1) - 1


def _same_length(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Prompts of different lengths on the two SDXL encoders: repeat the shorter's chunks.
    length = max(first.shape[1], second.shape[1])
    return tuple(t.repeat(1, -(-length // t.shape[1]), 1)[:, :length] for t in (first, second))  # type: ignore


def encode_sdxl_prompts(manager: Any, clip: TextEncoder, text_l: str, text_g: str, missing: MissingEmbedding,
                        note: Note) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's conditioning for ``text_l`` on its small encoder (CLIP ViT-L) and ``text_g`` on its
    large one (OpenCLIP ViT-bigG): both hidden states side by side (1 × tokens × 2048, the
    shorter prompt's chunks repeated), and the large encoder's pooled projection; float32 on
    the CPU."""
    if clip.family != ModelFamily.SDXL:
        raise ValueError(f"SDXL's two prompts need an SDXL text encoder, not {clip.family}'s")
    layer = _sdxl_layer(clip)
    with manager.use(*clip.encoders, patches=clip.patched_modules()):
        small, _ = encode_prompt(clip.tokenizers[0], clip.encoders[0], text_l, layer, normalise_skipped=False,
                                 embeddings=embedding_lookup(manager, clip, 0, missing, note))
        large, pooled = encode_prompt(clip.tokenizers[1], clip.encoders[1], text_g, layer, normalise_skipped=False,
                                      embeddings=embedding_lookup(manager, clip, 1, missing, note))
    return torch.cat(_same_length(small, large), dim=-1).float().cpu(), pooled.float().cpu()


def encode_clip_prompt(manager: Any, clip: TextEncoder, text: str, missing: MissingEmbedding,
                       note: Note) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One prompt's hidden states (1 × tokens × width) and pooled output (None for encoders
    without a projection), float32 on the CPU, read as the encoder's family reads it: SDXL gives
    the prompt to both encoders, the refiner reads its one encoder as SDXL reads its second, the
    others stop at CLIP skip's layer."""
    if clip.family == ModelFamily.SDXL:
        return encode_sdxl_prompts(manager, clip, text, text, missing, note)
    with manager.use(*clip.encoders, patches=clip.patched_modules()):
        lookup = embedding_lookup(manager, clip, 0, missing, note)
        if clip.family == ModelFamily.SDXL_REFINER:
            # The refiner's one encoder is SDXL's second: the layer before last, and its pooled
            # projection (which the refiner is conditioned on).
            hidden, pooled = encode_prompt(clip.tokenizers[0], clip.encoders[0], text, _sdxl_layer(clip),
                                           normalise_skipped=False, embeddings=lookup)
        else:
            hidden, pooled = encode_prompt(clip.tokenizers[0], clip.encoders[0], text, clip.stop_at_layer,
                                           embeddings=lookup)
    return hidden.float().cpu(), None if pooled is None else pooled.float().cpu()
