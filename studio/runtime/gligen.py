"""GLIGEN: text phrases placed in boxes, as ComfyUI's GLIGENLoader and GLIGENTextBoxApply use
them (Li et al. 2023, "GLIGEN: Open-Set Grounded Text-to-Image Generation").

A GLIGEN file (ComfyUI's pruned layout) holds two things:

* ``position_net.*``: a small network that turns each box (x1, y1, x2, y2 as fractions of
  the picture, Fourier-embedded with 8 frequencies) and its phrase's *unprojected* pooled
  CLIP embedding into one grounding token; unused slots (up to 30) get learnt null features;
* one gated self-attention layer (``….fuser.*``) per transformer layer of an SD1.x UNet, in
  ComfyUI's order: input blocks, middle block, output blocks. After the self-attention of
  every transformer block of a layer, the visual tokens attend to themselves and the
  grounding tokens, and the result is added through ``tanh`` gates (``alpha_attn``,
  ``alpha_dense``): gates at 0 leave the model as it was.

A conditioning entry carries its boxes under ComfyUI's key: ``extras["gligen"] =
("position", Gligen, [(pooled, height, width, top, left), …])`` with sizes in latent cells.
While sampling, :func:`gligen_applied` puts the fusers into the diffusers UNet with hooks
for one model call; the shared UNet is never changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studio.runtime.checkpoints import ModelLoadError, read_state_dict

MAX_OBJECTS = 30  # grounding tokens per model call (ComfyUI's Gligen.max_objs)
FOURIER_FREQUENCIES = 8
FOURIER_TEMPERATURE = 100
POSITION_WIDTH = FOURIER_FREQUENCIES * 2 * 4  # sin and cos of each frequency, for x1 y1 x2 y2
# The key width of SD1.x GLIGEN files (CLIP ViT-L); with it ComfyUI uses 8 heads, otherwise
# heads 64 wide. Head counts leave no trace in the weights, so this rule is the file format's.
SD1_KEY_WIDTH, SD1_HEADS, OTHER_HEAD_WIDTH = 768, 8, 64
# Where the fusers' names place them, in the order ComfyUI counts transformer layers.
SECTIONS = ("input_blocks", "middle_block", "output_blocks")


def fourier_embedding(boxes: torch.Tensor) -> torch.Tensor:
    """Each coordinate at every frequency: [sin f0·b, cos f0·b, sin f1·b, …] (… × 4 → … × 64)."""
    frequencies = FOURIER_TEMPERATURE ** (torch.arange(FOURIER_FREQUENCIES) / FOURIER_FREQUENCIES)
    parts = []
    for frequency in frequencies:
        parts += [torch.sin(frequency * boxes), torch.cos(frequency * boxes)]
    return torch.cat(parts, dim=-1)


class PositionNet(nn.Module):
    """Boxes and phrase embeddings → grounding tokens (B × 30 × key width)."""

    def __init__(self, phrase_width: int, key_width: int) -> None:
        super().__init__()
        self.linears = nn.Sequential(nn.Linear(phrase_width + POSITION_WIDTH, 512), nn.SiLU(), nn.Linear(512, 512),
                                     nn.SiLU(), nn.Linear(512, key_width))
        self.null_positive_feature = nn.Parameter(torch.zeros(phrase_width))
        self.null_position_feature = nn.Parameter(torch.zeros(POSITION_WIDTH))

    def forward(self, boxes: torch.Tensor, masks: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
        masks = masks[..., None]
        # Empty slots (mask 0) get the learnt null features instead of zeros.
        phrases = phrases * masks + (1 - masks) * self.null_positive_feature.view(1, 1, -1)
        positions = fourier_embedding(boxes) * masks + (1 - masks) * self.null_position_feature.view(1, 1, -1)
        return self.linears(torch.cat([phrases, positions], dim=-1))


class _Attention(nn.Module):
    # Named as ComfyUI's CrossAttention, so a file's weights load as they are.
    def __init__(self, width: int, heads: int, head_width: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(width, heads * head_width, bias=False)
        self.to_k = nn.Linear(width, heads * head_width, bias=False)
        self.to_v = nn.Linear(width, heads * head_width, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(heads * head_width, width)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))
        return self.to_out[0](out.transpose(1, 2).reshape(batch, length, -1))


class _GEGLU(nn.Module):
    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class _FeedForward(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(_GEGLU(width, width * 4), nn.Identity(), nn.Linear(width * 4, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GatedSelfAttention(nn.Module):
    """One fuser: the visual tokens attend to themselves and the grounding tokens (projected
    to their width); the attention and a feed-forward layer add through tanh gates."""

    def __init__(self, width: int, key_width: int, heads: int, head_width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(key_width, width)
        self.attn = _Attention(width, heads, head_width)
        self.ff = _FeedForward(width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        visual = x.shape[1]
        tokens = torch.cat([x, self.linear(objects)], dim=1)
        x = x + torch.tanh(self.alpha_attn) * self.attn(self.norm1(tokens))[:, :visual]
        return x + torch.tanh(self.alpha_dense) * self.ff(self.norm2(x))


@dataclass(eq=False)
class Gligen:
    """What flows through a GLIGEN socket: the position network and one fuser per transformer
    layer of the UNet it was made for, in ComfyUI's order."""

    name: str
    position_net: PositionNet
    fusers: nn.ModuleList
    key: str

    @property
    def phrase_width(self) -> int:
        return int(self.position_net.null_positive_feature.shape[0])

    def grounding_tokens(self, boxes: Sequence[tuple], batch: int, height: int, width: int,
                         device: torch.device) -> torch.Tensor:
        """The grounding tokens for boxes ``(pooled, height, width, top, left)`` in latent
        cells on a ``height`` × ``width`` latent (ComfyUI's ``set_position``; no boxes is its
        ``set_empty``): corners as fractions, up to 30 slots, the empty ones masked out."""
        if len(boxes) > MAX_OBJECTS:
            raise ValueError(f"GLIGEN {self.name}: {len(boxes)} text boxes on one conditioning; it takes at most "
                             f"{MAX_OBJECTS}")
        corners = torch.zeros(MAX_OBJECTS, 4)
        masks = torch.zeros(MAX_OBJECTS)
        phrases = torch.zeros(MAX_OBJECTS, self.phrase_width)
        for index, (pooled, box_height, box_width, top, left) in enumerate(boxes):
            corners[index] = torch.tensor((left / width, top / height, (left + box_width) / width,
                                           (top + box_height) / height))
            masks[index] = 1.0
            phrases[index] = pooled.reshape(-1).float()
        position_net = self.position_net.to(device)
        with torch.no_grad():
            tokens = position_net(corners[None].to(device), masks[None].to(device), phrases[None].to(device))
        return tokens.expand(batch, -1, -1)


def _heads(path: Path, name: str, width: int, key_width: int) -> tuple[int, int]:
    if key_width == SD1_KEY_WIDTH:
        return SD1_HEADS, width // SD1_HEADS
    heads = width // OTHER_HEAD_WIDTH
    if heads == 0:
        raise ModelLoadError(path, f"fuser {name!r} is {width} wide with {key_width}-wide grounding tokens; "
                             f"such fusers have {OTHER_HEAD_WIDTH}-wide heads, so it must be at least "
                             f"{OTHER_HEAD_WIDTH} wide")
    return heads, OTHER_HEAD_WIDTH


def _fuser_order(path: Path, prefix: str) -> tuple[int, int]:
    parts = prefix.split(".")
    for index, part in enumerate(parts):
        if part in SECTIONS:
            block = parts[index + 1] if index + 1 < len(parts) else ""
            return SECTIONS.index(part), int(block) if block.isdigit() else 0
    raise ModelLoadError(path, f"fuser {prefix!r} is in none of an SD1.x UNet's {', '.join(SECTIONS)}")


def read_gligen(path: Path, key: str = "") -> Gligen:
    """Load a GLIGEN file; a clear error for anything that is not one."""
    path = Path(path)
    state_dict = read_state_dict(path)
    if "position_net.null_positive_feature" not in state_dict or "position_net.linears.4.weight" not in state_dict:
        raise ModelLoadError(path, "is not a GLIGEN model (expected position_net.* weights and a fuser per "
                             "transformer layer)")
    phrase_width = int(state_dict["position_net.null_positive_feature"].shape[0])
    key_width = int(state_dict["position_net.linears.4.weight"].shape[0])
    position_net = PositionNet(phrase_width, key_width)
    position_weights = {name[len("position_net."):]: value
                        for name, value in state_dict.items() if name.startswith("position_net.")}
    _load(path, "position_net", position_net, position_weights)
    prefixes = sorted({name.split(".fuser.")[0] for name in state_dict if ".fuser." in name},
                      key=lambda prefix: _fuser_order(path, prefix))
    if not prefixes:
        raise ModelLoadError(path, "holds no fusers (….fuser.* weights), so it would change nothing")
    fusers = []
    for prefix in prefixes:
        weights = {name.split(".fuser.")[1]: value for name, value in state_dict.items()
                   if name.startswith(prefix + ".fuser.")}
        if "linear.weight" not in weights:
            raise ModelLoadError(path, f"fuser {prefix!r} has no linear.weight")
        width, fuser_key_width = (int(size) for size in weights["linear.weight"].shape)
        fuser = GatedSelfAttention(width, fuser_key_width, *_heads(path, prefix, width, fuser_key_width))
        _load(path, f"fuser {prefix!r}", fuser, weights)
        fusers.append(fuser)
    return Gligen(path.name, position_net.eval().requires_grad_(False),
                  nn.ModuleList(fusers).eval().requires_grad_(False), key or path.name)


def _load(path: Path, what: str, module: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    try:
        module.load_state_dict({name: value.float() for name, value in weights.items()}, strict=True)
    except RuntimeError as error:
        raise ModelLoadError(path, f"{what}: its weights do not fit GLIGEN's layout "
                             f"({str(error).splitlines()[-1].strip()[:300]})") from None


def load_gligen(manager: Any, name: str) -> Gligen:
    """A GLIGEN model by its name in the ``gligen`` folders, loaded once and shared."""
    from studio.runtime.model_manager import file_key

    path = manager.resolve("gligen", name)
    key = file_key(path)
    return manager._cached("gligen:" + key, lambda: read_gligen(path, key))


# --- Text boxes ----------------------------------------------------------------------------

def phrase_embedding(tokenizer: Any, encoder: Any, text: str, embeddings: Any = None) -> torch.Tensor:
    """A phrase's pooled CLIP embedding *before* the text projection (1 × width), what GLIGEN
    was trained on: the final-norm output at the first chunk's end token, as the encoder's
    ``text_model`` gives it. Read while :func:`encode_prompt` runs, so textual inversions in
    the phrase act as in a prompt; weights do not change it (as in ComfyUI)."""
    from studio.runtime.prompts import encode_prompt

    captured: list[torch.Tensor] = []

    def keep_first(_module, _args, output) -> None:
        if not captured:  # later calls encode the empty prompt for weights
            captured.append(output.pooler_output if hasattr(output, "pooler_output") else output[1])

    text_model = getattr(encoder, "text_model", encoder)
    handle = text_model.register_forward_hook(keep_first)
    try:
        encode_prompt(tokenizer, encoder, text, embeddings=embeddings)
    finally:
        handle.remove()
    return captured[0][:1].float().cpu()


def with_text_box(conditioning: list, gligen: Gligen, pooled: torch.Tensor, width: int, height: int, x: int,
                  y: int) -> list:
    """``conditioning`` with one more box on every entry (sizes in pixels, stored in latent
    cells as ComfyUI's GLIGENTextBoxApply stores them); the entry's boxes now use ``gligen``."""
    out = []
    for embedding, extras in conditioning:
        extras = dict(extras)
        previous = list(extras["gligen"][2]) if "gligen" in extras else []
        if len(previous) >= MAX_OBJECTS:
            raise ValueError(f"conditioning_to already holds {len(previous)} GLIGEN text boxes, the most one "
                             "conditioning takes")
        extras["gligen"] = ("position", gligen, previous + [(pooled, height // 8, width // 8, y // 8, x // 8)])
        out.append((embedding, extras))
    return out


def gligen_per_entry(positive: Sequence[tuple], entries: Sequence[tuple]) -> list[Any]:
    """Each entry's ``gligen`` value as the sampler uses it. The positive side's are its own;
    on any other side, when none of its entries without an area has boxes, the boxes of the
    positive entries without an area are handed round its entries without area and boxes
    (ComfyUI's ``apply_empty_x_to_equal_area``), so that guidance compares like with like."""
    values = [extras.get("gligen") for _, extras in entries]
    if entries is positive:
        return values
    given = [extras["gligen"] for _, extras in positive if "area" not in extras and extras.get("gligen") is not None]
    plain = [index for index, (_, extras) in enumerate(entries) if "area" not in extras]
    if not given or not plain or any(values[index] is not None for index in plain):
        return values
    for number, gligen in enumerate(given):
        values[plain[number % len(plain)]] = gligen
    return values


# --- Sampling ------------------------------------------------------------------------------

def transformer_layers(unet: nn.Module) -> list[nn.Module]:
    """The UNet's transformer layers (diffusers' ``Transformer2DModel``) in the order ComfyUI
    counts its SpatialTransformers: down blocks, middle block, up blocks."""
    blocks = [*getattr(unet, "down_blocks", ()), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", ())]
    return [layer for block in blocks if block is not None for layer in getattr(block, "attentions", ())
            if hasattr(layer, "transformer_blocks")]


@contextmanager
def gligen_applied(unet: nn.Module, gligen_value: Any, latent_shape: Sequence[int]) -> Iterator[None]:
    """While the block runs, every transformer block of the UNet passes its hidden states,
    right after their self-attention residual, through its layer's fuser with the grounding
    tokens of ``gligen_value`` (a conditioning entry's ``gligen``; None: nothing changes).
    ``latent_shape`` is the shape of the latent (or area) the UNet sees, which the boxes are
    fractions of. The fusers compute in float32 and their result is cast back."""
    if gligen_value is None:
        yield
        return
    kind, gligen, boxes = gligen_value
    layers = transformer_layers(unet)
    if len(layers) != len(gligen.fusers):
        raise ValueError(f"GLIGEN {gligen.name} has {len(gligen.fusers)} fusers but the model has {len(layers)} "
                         "transformer layers: it was made for another kind of model (GLIGEN is for SD 1.x)")
    batch, _, height, width = latent_shape
    device = next(unet.parameters()).device
    tokens = gligen.grounding_tokens(boxes if kind == "position" else [], batch, height, width, device)
    handles = []

    def fuse_after_self_attention(fuser: nn.Module, block: nn.Module) -> None:
        seen: dict[str, torch.Tensor] = {}

        def keep_input(_module, args, kwargs) -> None:
            seen["hidden"] = args[0] if args else kwargs["hidden_states"]

        def fuse(_module, _args, attention: torch.Tensor) -> torch.Tensor:
            # The block adds its input to what attn1 returns; returning attention plus the
            # fuser's change leaves that sum fuser(input + attention), bit for bit when the
            # change is zero (gates at 0).
            residual = (seen.pop("hidden") + attention).float()
            change = fuser(residual, tokens.to(residual.device)) - residual
            return attention + change.to(attention.dtype)

        handles.append(block.register_forward_pre_hook(keep_input, with_kwargs=True))
        handles.append(block.attn1.register_forward_hook(fuse))

    try:
        for layer, fuser in zip(layers, gligen.fusers, strict=False):
            width_here = int(layer.transformer_blocks[0].norm1.normalized_shape[0])
            if fuser.linear.out_features != width_here:
                raise ValueError(f"GLIGEN {gligen.name} does not fit this model: a transformer layer {width_here} "
                                 f"wide meets a fuser {fuser.linear.out_features} wide (GLIGEN is for SD 1.x)")
            fuser.to(device)
            for block in layer.transformer_blocks:
                if getattr(block, "norm_type", "layer_norm") != "layer_norm":
                    raise ValueError(f"GLIGEN {gligen.name}: this model's transformer blocks normalise with "
                                     f"{block.norm_type!r}; GLIGEN fits SD 1.x blocks (layer_norm)")
                fuse_after_self_attention(fuser, block)
        yield
    finally:
        for handle in handles:
            handle.remove()

