"""Prompt weighting as ComfyUI reads it, and encoding prompts of any length with CLIP.

Weights: ``(text)`` multiplies by 1.1 (nesting multiplies again), ``(text:1.3)`` sets 1.3,
``\\(`` and ``\\)`` are literal parentheses; square brackets are ordinary text (ComfyUI does
not read them as weights). Long prompts are cut into chunks of 75 tokens, each encoded with
its own start and end tokens, and joined, so nothing past token 77 is lost. A token of
weight w becomes ``empty + w·(encoded − empty)``, where ``empty`` is the encoding of the
empty prompt: weights push a token away from "nothing", not merely scale it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

CHUNK_TOKENS = 75
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


def tokenize_weighted(tokenizer: Any, prompt: str) -> list[list[tuple[int, float]]]:
    """Token ids with weights, in chunks of 77 (start, 75 tokens, end, padding)."""
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    tokens: list[tuple[int, float]] = []
    for run in parse_weights(prompt):
        ids = tokenizer(run.text, add_special_tokens=False, truncation=False)["input_ids"]
        tokens.extend((token, run.weight) for token in ids)
    chunks = []
    for offset in range(0, max(len(tokens), 1), CHUNK_TOKENS):
        body = tokens[offset:offset + CHUNK_TOKENS]
        chunk = [(start, 1.0), *body, (end, 1.0)]
        chunk += [(pad, 1.0)] * (CHUNK_TOKENS + 2 - len(chunk))
        chunks.append(chunk)
    return chunks


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
                  normalise_skipped: bool = True, penultimate: bool = False) -> tuple[torch.Tensor,
                                                                                      torch.Tensor | None]:
    """Encode a prompt of any length: hidden states (1 × 77k × dim) and, for encoders with a
    projection, the pooled embedding of the first chunk.

    ``penultimate`` takes the layer before the last without its final norm (SDXL's way);
    ``stop_at_layer`` is CLIPSetLastLayer's setting for the others.
    """
    device = next(encoder.parameters()).device
    chunks = tokenize_weighted(tokenizer, prompt)
    ids = torch.tensor([[token for token, _ in chunk] for chunk in chunks], device=device)
    weights = torch.tensor([[weight for _, weight in chunk] for chunk in chunks], device=device)
    layer, normalise = (-2, False) if penultimate else (stop_at_layer, normalise_skipped)
    with torch.no_grad():
        hidden, pooled = _hidden_states(encoder, ids, layer, normalise)
        if not torch.all(weights == 1.0):
            empty_chunks = tokenize_weighted(tokenizer, "")
            empty_ids = torch.tensor([[token for token, _ in empty_chunks[0]]], device=device)
            empty, _ = _hidden_states(encoder, empty_ids, layer, normalise)
            hidden = empty + (hidden - empty) * weights[..., None].to(hidden.dtype)
    hidden = hidden.reshape(1, -1, hidden.shape[-1])
    if pooled is not None:
        pooled = pooled[:1]
    return hidden, pooled
