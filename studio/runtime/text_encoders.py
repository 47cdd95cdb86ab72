"""The text encoders of FLUX.1 and SD3.5, loaded from the single files ComfyUI users have
(``clip_l.safetensors``, ``clip_g.safetensors``, ``t5xxl_fp16.safetensors``,
``t5xxl_fp8_e4m3fn.safetensors``, or inside an all-in-one checkpoint), and prompts encoded
with them as ComfyUI encodes them.

Each file holds one encoder in transformers' key layout; which one (CLIP-L, CLIP-G, T5-XXL)
and its size are read from its keys and shapes, so the same code loads full-size encoders and
the tiny ones of the tests. Weights stored in fp8 stay in fp8 and are computed layer by layer
in the compute precision (:func:`studio.runtime.weight_storage.load_into`).

Tokenizers are offline: CLIP's from ``resources/tokenizers/clip``, T5's from
``resources/tokenizers/t5`` (derived from stable-diffusion.cpp's copy of T5 v1.1's
SentencePiece vocabulary; see ``resources/tokenizers/make_t5_tokenizer.py``).

Prompts (ComfyUI's conventions, which diffusers' FLUX and SD3 pipelines share for plain
prompts): FLUX reads CLIP-L's pooled output (before its projection) and T5's last hidden
states, T5 padded to at least 256 tokens; SD3 reads CLIP-L's and CLIP-G's penultimate hidden
states side by side, padded with zeros to T5's width and followed by T5's states (at least
77 tokens), and both CLIPs' projected pooled outputs side by side. Weights ``(word:1.2)``
move a token's state away from the empty prompt's, as for SD.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from studio.runtime.checkpoints import ModelLoadError, TextEncoder, make_tokenizer
from studio.runtime.families import ModelFamily
from studio.runtime.prompts import tokenize_weighted
from studio.runtime.weight_storage import GROUP_OFFLOADED, TRANSIENT, load_into
from studio.settings import RESOURCES_DIR

T5_TOKENIZER_FILE = RESOURCES_DIR / "tokenizers" / "t5" / "tokenizer.json"
CLIP_KEY = "text_model.embeddings.token_embedding.weight"
T5_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
# Where an all-in-one checkpoint keeps each encoder (ComfyUI's and SD3.5's layout).
EMBEDDED_PREFIXES = {"clip_l": ("text_encoders.clip_l.transformer.", "text_encoders.clip_l."),
                     "clip_g": ("text_encoders.clip_g.transformer.", "text_encoders.clip_g."),
                     "t5xxl": ("text_encoders.t5xxl.transformer.", "text_encoders.t5xxl.")}
# Shortest T5 sequence by family (ComfyUI pads FLUX's prompts to 256 tokens, SD3's to 77).
T5_MIN_LENGTH = {ModelFamily.FLUX: 256, ModelFamily.SD3: 77}


@functools.lru_cache(maxsize=1)
def make_t5_tokenizer() -> Any:
    """T5 v1.1's tokenizer from the shipped vocabulary; never downloads anything. (One copy:
    tokenizers are only read.)"""
    from transformers import T5TokenizerFast

    if not T5_TOKENIZER_FILE.is_file():
        raise ModelLoadError(T5_TOKENIZER_FILE, "T5's tokenizer is missing from this installation; restore "
                             "resources/tokenizers/t5/tokenizer.json (resources/tokenizers/make_t5_tokenizer.py "
                             "derives it)")
    return T5TokenizerFast(tokenizer_file=str(T5_TOKENIZER_FILE), model_max_length=1 << 30, extra_ids=0)


def encoder_kind(state_dict: Mapping[str, Any]) -> str | None:
    """"clip_l", "clip_g" or "t5xxl" for a text encoder file in transformers' layout, or None.
    CLIP-G is told from CLIP-L by its width (1280, OpenCLIP ViT-bigG's)."""
    if T5_KEY in state_dict or ("shared.weight" in state_dict
                                and any(k.startswith("encoder.block.") for k in state_dict)):
        return "t5xxl"
    for key in (CLIP_KEY, CLIP_KEY.removeprefix("text_model.")):
        if key in state_dict:
            return "clip_g" if int(state_dict[key].shape[1]) >= 1280 else "clip_l"
    return None


def embedded_encoders(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The text encoders an all-in-one checkpoint carries, each with its own key names."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    for kind, prefixes in EMBEDDED_PREFIXES.items():
        for prefix in prefixes:
            weights = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
            if weights and (CLIP_KEY in weights or "shared.weight" in weights or T5_KEY in weights):
                found[kind] = weights
                break
    return found


def load_clip(path: Path, state_dict: Mapping[str, torch.Tensor], kind: str, dtype: torch.dtype,
              storage: torch.dtype | None = None) -> Any:
    """A CLIP text model (with its projection when the file has one) sized from its weights.
    Heads are 64 wide, as in every CLIP text tower; CLIP-G uses GELU, CLIP-L quick GELU."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    state_dict = {("" if key.startswith(("text_model.", "text_projection")) else "text_model.") + key: value
                  for key, value in state_dict.items()}
    token = state_dict[CLIP_KEY]
    hidden = int(token.shape[1])
    layers = 1 + max(int(key.split(".")[3]) for key in state_dict if key.startswith("text_model.encoder.layers."))
    projection = state_dict.get("text_projection.weight")
    config = CLIPTextConfig(
        vocab_size=int(token.shape[0]), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=int(state_dict["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        max_position_embeddings=int(state_dict["text_model.embeddings.position_embedding.weight"].shape[0]),
        projection_dim=int(projection.shape[0]) if projection is not None else hidden,
        hidden_act="gelu" if kind == "clip_g" else "quick_gelu", bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407 if kind == "clip_l" else 0)
    model_class = CLIPTextModelWithProjection if projection is not None else CLIPTextModel
    # Files name the tower's weights text_model.*; transformers' own names may lack the prefix.
    weights = {key.removeprefix("text_model."): value for key, value in state_dict.items()}
    return load_into(path, lambda: model_class(config), weights, dtype, storage, f"the {kind} text encoder",
                     name_in_file=lambda name: name.removeprefix("text_model."))


def load_t5(path: Path, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype,
            storage: torch.dtype | None = None) -> Any:
    """T5 v1.1's encoder (gated GELU, relative attention) sized from its weights."""
    from transformers import T5Config, T5EncoderModel

    bias = state_dict["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    query = state_dict[T5_KEY]
    heads = int(bias.shape[1])
    config = T5Config(
        vocab_size=int(state_dict["shared.weight"].shape[0]), d_model=int(query.shape[1]),
        d_kv=int(query.shape[0]) // heads, num_heads=heads,
        d_ff=int(state_dict["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0]),
        num_layers=1 + max(int(key.split(".")[2]) for key in state_dict if key.startswith("encoder.block.")),
        relative_attention_num_buckets=int(bias.shape[0]), relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False)
    weights = {key: value for key, value in state_dict.items() if not key.startswith("decoder.")}
    weights.setdefault("encoder.embed_tokens.weight", weights["shared.weight"])
    # T5's feed-forward output casts its input to its weight's precision: keep it out of fp8.
    return load_into(path, lambda: T5EncoderModel(config), weights, dtype, storage, "the T5 text encoder",
                     keep=(r"\.wo$",))


def load_encoder_file(path: Path, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype,
                      storage: torch.dtype | None = None, kind: str | None = None) -> tuple[str, Any]:
    """One text encoder file: its kind and its model."""
    found = encoder_kind(state_dict)
    if found is None:
        raise ModelLoadError(path, "is not a CLIP or T5 text encoder (no text_model.* or encoder.block.* weights "
                             "in transformers' layout)")
    if found == "t5xxl":
        return found, load_t5(path, state_dict, dtype, storage)
    kind = kind if kind in ("clip_l", "clip_g") else found
    return kind, load_clip(path, state_dict, kind, dtype, storage)


@dataclass
class TransformerTextEncoder(TextEncoder):
    """What flows through a CLIP socket for FLUX and SD3: some of CLIP-L, CLIP-G and T5-XXL
    (``roles`` names each of ``encoders``, in that order), encoded as the family does."""

    roles: tuple[str, ...] = ()
    t5_min_length: int = 256

    def encoder(self, role: str) -> tuple[Any, Any] | None:
        if role not in self.roles:
            return None
        index = self.roles.index(role)
        return self.tokenizers[index], self.encoders[index]

    def with_family(self, family: ModelFamily) -> TransformerTextEncoder:
        return replace(self, family=family, t5_min_length=T5_MIN_LENGTH.get(family, 77))

    def encode_text(self, manager: Any, text: str) -> list:
        """CLIPTextEncode's conditioning: the same text for every encoder."""
        with manager.use(*self.encoders, patches=self.patched_modules()):
            if self.family == ModelFamily.FLUX:
                hidden, extras = encode_flux(self, text, text)
            else:
                hidden, extras = encode_sd3(self, text, text, text, "empty_prompt")
        return [(hidden, extras)]


def text_encoder_for(family: ModelFamily, encoders: Mapping[str, Any], key: str) -> TransformerTextEncoder:
    """The CLIP socket's value for ``family`` (FLUX or SD3) from encoders by role."""
    order = [role for role in ("clip_l", "clip_g", "t5xxl") if role in encoders]
    tokenizers = [make_t5_tokenizer() if role == "t5xxl" else make_tokenizer("!" if role == "clip_g" else
                                                                              "<|endoftext|>") for role in order]
    if "t5xxl" in encoders:
        # Used once per prompt and the largest module after the transformer: the model
        # manager sends it back to system memory after each encoding, and group-offloads it
        # when it alone exceeds the GPU budget.
        setattr(encoders["t5xxl"], TRANSIENT, True)
    return TransformerTextEncoder(family, tokenizers, [encoders[role] for role in order], key, roles=tuple(order),
                                  t5_min_length=T5_MIN_LENGTH.get(family, 77))


# --- Encoding ------------------------------------------------------------------------------

def _device(module: Any) -> torch.device:
    """Where ``module`` computes: its weights' device, or the GPU it is group-offloaded to."""
    return getattr(module, GROUP_OFFLOADED, None) or next(module.parameters()).device


def _weighted(run, ids: torch.Tensor, weights: torch.Tensor, empty_ids: torch.Tensor) -> torch.Tensor:
    hidden = run(ids)
    if torch.all(weights == 1.0):
        return hidden
    empty = run(empty_ids)
    return empty + (hidden - empty) * weights[..., None].to(hidden.dtype)


def encode_clip(tokenizer: Any, encoder: Any, text: str, layer: int | None,
                projected: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP hidden states (1 × 77k × width; ``layer`` -2 is the penultimate, without the final
    norm; None the last) and the first chunk's pooled output (projected or not)."""
    device = _device(encoder)
    chunks = tokenize_weighted(tokenizer, text)
    ids = torch.tensor([[token for token, _, _ in chunk] for chunk in chunks], device=device)
    weights = torch.tensor([[weight for _, weight, _ in chunk] for chunk in chunks], device=device)
    empty = torch.tensor([[token for token, _, _ in tokenize_weighted(tokenizer, "")[0]]], device=device)
    text_model = getattr(encoder, "text_model", encoder)
    pooled: list[torch.Tensor] = []

    def run(batch: torch.Tensor) -> torch.Tensor:
        output = text_model(batch, output_hidden_states=layer is not None)
        if not pooled:
            first = output.pooler_output[:1]
            projection = getattr(encoder, "text_projection", None)
            pooled.append(projection(first) if projected and projection is not None else first)
        return output.last_hidden_state if layer is None else output.hidden_states[layer]

    with torch.no_grad():
        hidden = _weighted(run, ids, weights, empty)
    return hidden.reshape(1, -1, hidden.shape[-1]), pooled[0]


def encode_t5(tokenizer: Any, encoder: Any, text: str, min_length: int) -> torch.Tensor:
    """T5's last hidden states for the whole prompt (no 77-token chunks), ended by ``</s>`` and
    padded to ``min_length`` tokens (1 × n × width)."""
    device = _device(encoder)
    tokens: list[tuple[int, float]] = []
    for chunk in tokenize_weighted(_NoSpecialTokens(tokenizer), text):
        tokens.extend((token, weight) for token, weight, _ in chunk[1:-1] if token is not None)
    tokens.append((tokenizer.eos_token_id, 1.0))
    tokens += [(tokenizer.pad_token_id, 1.0)] * max(0, min_length - len(tokens))
    ids = torch.tensor([[token for token, _ in tokens]], device=device)
    weights = torch.tensor([[weight for _, weight in tokens]], device=device)
    empty = torch.full_like(ids, tokenizer.pad_token_id)
    empty[0, 0] = tokenizer.eos_token_id
    with torch.no_grad():
        return _weighted(lambda batch: encoder(batch).last_hidden_state, ids, weights, empty)


class _NoSpecialTokens:
    """A T5 tokenizer seen by :func:`tokenize_weighted`: no start token, and padding with a
    marker that :func:`encode_t5` drops (it pads on its own)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.bos_token_id = None
        self.eos_token_id = None
        self.pad_token_id = None

    def __call__(self, text: str, **kwargs: Any) -> dict:
        return self._tokenizer(text, **kwargs)


def encode_flux(clip: TransformerTextEncoder, clip_l_text: str, t5_text: str) -> tuple[torch.Tensor, dict]:
    """FLUX's conditioning: T5's states, and CLIP-L's pooled output (unprojected)."""
    t5 = clip.encoder("t5xxl")
    clip_l = clip.encoder("clip_l")
    if t5 is None or clip_l is None:
        raise ValueError("FLUX needs CLIP-L and T5-XXL; load both with DualCLIPLoader (type flux)")
    _, pooled = encode_clip(*clip_l, clip_l_text, None, projected=False)
    hidden = encode_t5(*t5, t5_text, clip.t5_min_length)
    return hidden.float().cpu(), {"pooled_output": pooled.float().cpu()}


def encode_sd3(clip: TransformerTextEncoder, clip_l_text: str, clip_g_text: str, t5_text: str,
               empty_padding: str = "empty_prompt") -> tuple[torch.Tensor, dict]:
    """SD3's conditioning: [CLIP-L ‖ CLIP-G] penultimate states (zero-padded to T5's width)
    followed by T5's states, and both CLIPs' projected pooled outputs side by side. An
    encoder that is absent contributes zeros, as in ComfyUI; with ``empty_padding`` "none"
    (CLIPTextEncodeSD3's default), so does an empty prompt of one encoder."""
    skip = {role: empty_padding == "none" and len(text) == 0
            for role, text in (("clip_l", clip_l_text), ("clip_g", clip_g_text), ("t5xxl", t5_text))}
    t5 = clip.encoder("t5xxl")
    width = int(t5[1].config.d_model) if t5 is not None else 4096
    states: list[torch.Tensor | None] = []
    pooled: list[torch.Tensor] = []
    widths = {"clip_l": 768, "clip_g": 1280}
    for role, text in (("clip_l", clip_l_text), ("clip_g", clip_g_text)):
        pair = clip.encoder(role)
        if pair is not None:
            widths[role] = int(pair[1].config.hidden_size)
        if pair is None or skip[role]:
            states.append(None)
            pooled.append(torch.zeros(1, widths[role]))
            continue
        hidden, pool = encode_clip(*pair, text, -2, projected=True)
        states.append(hidden.float().cpu())
        pooled.append(pool.float().cpu())
    out = None
    if any(state is not None for state in states):
        length = min(state.shape[1] for state in states if state is not None)
        parts = [state[:, :length] if state is not None else torch.zeros(1, length, widths[role])
                 for state, role in zip(states, ("clip_l", "clip_g"), strict=True)]
        joined = torch.cat(parts, dim=-1)
        out = torch.nn.functional.pad(joined, (0, max(0, width - joined.shape[-1])))
    if t5 is not None and not skip["t5xxl"]:
        t5_states = encode_t5(*t5, t5_text, clip.t5_min_length).float().cpu()
        out = t5_states if out is None else torch.cat([out, t5_states], dim=1)
    if out is None:
        out = torch.zeros(1, 77, width)
    return out, {"pooled_output": torch.cat(pooled, dim=-1)}
