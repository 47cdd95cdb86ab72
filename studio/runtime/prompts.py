"""Prompt weighting as ComfyUI reads it, and encoding prompts of any length with CLIP.

Weights: ``(text)`` multiplies by 1.1 (nesting multiplies again), ``(text:1.3)`` sets 1.3,
``\\(`` and ``\\)`` are literal parentheses; square brackets are ordinary text (ComfyUI does
not read them as weights). Long prompts are cut into chunks of 75 tokens, each encoded with
its own start and end tokens, and joined, so nothing past token 77 is lost. A token of
weight w becomes ``empty + w·(encoded − empty)``, where ``empty`` is the encoding of the
empty prompt: weights push a token away from "nothing", not merely scale it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# "embedding:NAME" in a prompt, as ComfyUI writes textual inversion embeddings.
from studio.runtime.names import EMBEDDING  # noqa: F401 (declared without torch, for validation)

CHUNK_TOKENS = 75
# Stand-in token for embedding vectors; its own embedding row is replaced while encoding.
PLACEHOLDER_TOKEN = 0
EmbeddingLookup = Callable[[str], torch.Tensor]
_hook_lock = threading.Lock()
# Escaped brackets are hidden behind control characters while the weights are read.
_OPEN, _CLOSE = "\x00\x01", "\x00\x02"


@dataclass(frozen=True)
class WeightedText:
    text: str
    weight: float


def _split_groups(text: str) -> list[str]:
    """Top-level pieces: plain runs and balanced ``( … )`` groups (unbalanced ones are text)."""
    pieces: list[str] = []
    depth = 0
    current = ""
    for character in text:
        if character == "(":
            if depth == 0 and current:
                pieces.append(current)
                current = ""
            depth += 1
            current += character
        elif character == ")" and depth > 0:
            depth -= 1
            current += character
            if depth == 0:
                pieces.append(current)
                current = ""
        else:
            current += character
    if current:
        pieces.append(current)
    return pieces


def _weigh(text: str, weight: float) -> list[WeightedText]:
    out: list[WeightedText] = []
    for piece in _split_groups(text):
        if len(piece) >= 2 and piece[0] == "(" and piece[-1] == ")":
            inner = piece[1:-1]
            inner_weight = weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight = float(inner[colon + 1:])
                    inner = inner[:colon]
                except ValueError:
                    pass
            out.extend(_weigh(inner, inner_weight))
        else:
            out.append(WeightedText(piece, weight))
    return out


def parse_weights(prompt: str) -> list[WeightedText]:
    """Split a prompt into runs of text with their weights."""
    protected = prompt.replace("\\(", _OPEN).replace("\\)", _CLOSE)
    runs = _weigh(protected, 1.0)
    return [WeightedText(run.text.replace(_OPEN, "(").replace(_CLOSE, ")"), run.weight) for run in runs
            if run.text]


def tokenize_weighted(tokenizer: Any, prompt: str, embeddings: EmbeddingLookup | None = None
                      ) -> list[list[tuple[int, float, torch.Tensor | None]]]:
    """Token ids with weights (and embedding vectors where ``embedding:NAME`` stood), in
    chunks of 77: start, 75 tokens, end, padding."""
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    tokens: list[tuple[int, float, torch.Tensor | None]] = []
    for run in parse_weights(prompt):
        pieces = EMBEDDING.split(run.text)
        for index, piece in enumerate(pieces):
            if index % 2 == 1:  # an embedding name
                if embeddings is None:
                    raise ValueError(f"the prompt uses embedding:{piece}, but no embeddings are available here")
                vectors = embeddings(piece)
                tokens.extend((PLACEHOLDER_TOKEN, run.weight, vector) for vector in vectors)
            elif piece:
                ids = tokenizer(piece, add_special_tokens=False, truncation=False)["input_ids"]
                tokens.extend((token, run.weight, None) for token in ids)
    chunks = []
    for offset in range(0, max(len(tokens), 1), CHUNK_TOKENS):
        body = tokens[offset:offset + CHUNK_TOKENS]
        chunk = [(start, 1.0, None), *body, (end, 1.0, None)]
        chunk += [(pad, 1.0, None)] * (CHUNK_TOKENS + 2 - len(chunk))
        chunks.append(chunk)
    return chunks


def _token_embedding(encoder: Any) -> torch.nn.Module:
    text_model = getattr(encoder, "text_model", encoder)
    return text_model.embeddings.token_embedding


def _hidden_states(encoder: Any, ids: torch.Tensor, stop_at_layer: int, normalise: bool) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor | None]:
    output = encoder(ids, output_hidden_states=stop_at_layer != -1)
    if stop_at_layer == -1:
        hidden = output.last_hidden_state
    else:
        hidden = output.hidden_states[stop_at_layer]
        if normalise:
            final_norm = getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm
            hidden = final_norm(hidden)
    pooled = getattr(output, "text_embeds", None)
    return hidden, pooled


def encode_prompt(tokenizer: Any, encoder: Any, prompt: str, stop_at_layer: int = -1, *,
                  normalise_skipped: bool = True, penultimate: bool = False,
                  embeddings: EmbeddingLookup | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode a prompt of any length: hidden states (1 × 77k × dim) and, for encoders with a
    projection, the pooled embedding of the first chunk.

    ``penultimate`` takes the layer before the last without its final norm (SDXL's way);
    ``stop_at_layer`` is CLIPSetLastLayer's setting for the others. ``embeddings`` maps a
    textual inversion name to its vectors for this encoder.
    """
    device = next(encoder.parameters()).device
    chunks = tokenize_weighted(tokenizer, prompt, embeddings)
    ids = torch.tensor([[token for token, _, _ in chunk] for chunk in chunks], device=device)
    weights = torch.tensor([[weight for _, weight, _ in chunk] for chunk in chunks], device=device)
    replacements = [(row, column, vector) for row, chunk in enumerate(chunks)
                    for column, (_, _, vector) in enumerate(chunk) if vector is not None]
    layer, normalise = (-2, False) if penultimate else (stop_at_layer, normalise_skipped)
    with torch.no_grad():
        if replacements:
            hidden, pooled = _encode_with_vectors(encoder, ids, replacements, layer, normalise)
        else:
            hidden, pooled = _hidden_states(encoder, ids, layer, normalise)
        if not torch.all(weights == 1.0):
            empty_chunks = tokenize_weighted(tokenizer, "")
            empty_ids = torch.tensor([[token for token, _, _ in empty_chunks[0]]], device=device)
            empty, _ = _hidden_states(encoder, empty_ids, layer, normalise)
            hidden = empty + (hidden - empty) * weights[..., None].to(hidden.dtype)
    hidden = hidden.reshape(1, -1, hidden.shape[-1])
    if pooled is not None:
        pooled = pooled[:1]
    return hidden, pooled


def _encode_with_vectors(encoder: Any, ids: torch.Tensor, replacements: list, layer: int,
                         normalise: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    # The shared model is never changed: for this one call, the token embedding layer's
    # output gets the embedding's vectors written where their placeholders are.
    module = _token_embedding(encoder)

    def write_vectors(_module, _inputs, output):
        output = output.clone()
        for row, column, vector in replacements:
            output[row, column] = vector.to(output.device, output.dtype)
        return output

    with _hook_lock:
        handle = module.register_forward_hook(write_vectors)
        try:
            return _hidden_states(encoder, ids, layer, normalise)
        finally:
            handle.remove()
