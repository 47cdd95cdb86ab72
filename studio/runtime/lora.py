"""LoRA: reading the files artists download and applying them without changing the model.

Key layouts read (facts of the formats):
- kohya / sd-scripts: ``lora_unet_<module with _>``, ``lora_te_`` (SD1/SD2 text encoder),
  ``lora_te1_`` / ``lora_te2_`` (SDXL's two), each with ``.lora_down.weight``,
  ``.lora_up.weight`` and ``.alpha``. UNet modules are named the diffusers way
  (``down_blocks_0_attentions_0_…``, SD1 LoRAs) or the LDM way (``input_blocks_4_1_…``,
  SDXL LoRAs); both are recognised.
- diffusers / PEFT: ``unet.<module>.lora_A.weight`` / ``.lora_B.weight`` (or ``.lora.down`` /
  ``.lora.up``), ``text_encoder.…``, ``text_encoder_2.…``, with optional ``.alpha``.
- LoCon (LyCORIS): the same down/up pairs on convolutions (down k×k, up 1×1).
Other LyCORIS kinds (LoHa, LoKr) are not applied; their keys are counted as ignored.

A loaded LoRA becomes a list of weight patches carried by the MODEL/CLIP object that the
LoraLoader node outputs; the cached base model is untouched. Patches are merged into the
shared weights only while a sampler or encoder uses them and are then restored from an exact
copy, so strength 0, or no LoRA, is the base model bit for bit. Model merges are patches of
the same kind (``studio.runtime.merging``), so LoRAs and merges stack in the order applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from studio.runtime.families import MULTI_ENCODER_FAMILIES, ModelFamily
from studio.runtime.ldm_names import unet_layout, unet_ldm_name

_SUFFIXES = {
    ".lora_down.weight": "down", ".lora_up.weight": "up", ".lora_A.weight": "down", ".lora_B.weight": "up",
    ".lora.down.weight": "down", ".lora.up.weight": "up", ".alpha": "alpha",
}
_SUFFIX_PATTERN = re.compile("(" + "|".join(re.escape(s) for s in sorted(_SUFFIXES, key=len, reverse=True)) + ")$")


@dataclass(frozen=True)
class WeightPatch:
    """A low-rank change to one weight: ``strength · alpha/rank · up @ down`` (a
    :class:`studio.runtime.merging.ParameterPatch`, merged while the model is used)."""

    target: str  # "unet", or "clip0" / "clip1" for the text encoders
    module: str  # the module's path inside that model
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None
    strength: float

    @property
    def parameter(self) -> str:
        return self.module + ".weight"

    @property
    def is_identity(self) -> bool:
        return self.strength == 0

    def apply(self, value: torch.Tensor) -> torch.Tensor:
        return value + self.delta(value)

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        rank = self.down.shape[0]
        scale = self.strength * (self.alpha / rank if self.alpha else 1.0)
        down = self.down.to(weight.device, torch.float32)
        up = self.up.to(weight.device, torch.float32)
        if weight.ndim == 4:
            change = torch.einsum("or,rikl->oikl", up.flatten(1), down.reshape(rank, *down.shape[1:]))
            if change.shape != weight.shape:  # a 1×1 LoRA on a 1×1 convolution stored flat
                change = change.reshape(weight.shape)
        else:
            change = up.flatten(1) @ down.flatten(1)
        return (change * scale).to(weight.dtype)


@dataclass
class LoraReport:
    """How much of a LoRA file applied to the model it was loaded for."""

    matched: int = 0
    ignored: list[str] = field(default_factory=list)

    def sentence(self, name: str) -> str:
        text = f"{name}: {self.matched} layers patched"
        if self.ignored:
            shown = ", ".join(self.ignored[:3]) + (" …" if len(self.ignored) > 3 else "")
            text += f"; {len(self.ignored)} keys not used ({shown})"
        return text


def _module_names(model: torch.nn.Module) -> set[str]:
    return {name for name, module in model.named_modules()
            if isinstance(getattr(module, "weight", None), torch.Tensor) and name}


def _unet_aliases(unet: torch.nn.Module) -> dict[str, str]:
    """Every name a LoRA may use for a UNet module → its diffusers path."""
    # Transformers (FLUX, SD3) have no LDM names; their own names are diffusers'.
    layers, with_attention = unet_layout(unet) if hasattr(unet, "up_blocks") else (0, frozenset())
    aliases: dict[str, str] = {}
    for name in _module_names(unet):
        aliases["lora_unet_" + name.replace(".", "_")] = name
        aliases["unet." + name] = name
        aliases[name] = name
        ldm = unet_ldm_name(name, layers, with_attention) if layers else None
        if ldm is not None:
            aliases["lora_unet_" + ldm.replace(".", "_")] = name
    return aliases


def _text_aliases(encoder: torch.nn.Module, index: int, family: ModelFamily) -> dict[str, str]:
    aliases: dict[str, str] = {}
    several = family in MULTI_ENCODER_FAMILIES  # their encoders are te1, te2 (, te3)
    kohya = f"lora_te{index + 1}_" if several else "lora_te_"
    peft = ("text_encoder.", "text_encoder_2.", "text_encoder_3.")[index]
    clip = "CLIP" in type(encoder).__name__
    for name in _module_names(encoder):
        # transformers 5 flattened CLIPTextModel; files name it as before, under text_model.
        canonical = (name if not clip or name.startswith(("text_model.", "text_projection"))
                     else "text_model." + name)
        aliases[kohya + canonical.replace(".", "_")] = name
        aliases[peft + canonical] = name
    return aliases


def read_patches(state_dict: dict[str, torch.Tensor], unet: torch.nn.Module | None,
                 encoders: list[torch.nn.Module], family: ModelFamily, strength_model: float,
                 strength_clip: float) -> tuple[list[WeightPatch], LoraReport]:
    """The patches a LoRA file makes to this model, and what in it did not apply."""
    targets: dict[str, dict[str, str]] = {}
    if unet is not None:
        targets["unet"] = _unet_aliases(unet)
    for index, encoder in enumerate(encoders):
        targets[f"clip{index}"] = _text_aliases(encoder, index, family)
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    report = LoraReport()
    patches: list[WeightPatch] = []
    reader = getattr(unet, "read_lora", None)
    if reader is not None:  # keys in a transformer's original names (FLUX's BFL layout)
        patches, used, report.matched = reader(state_dict, strength_model)
        state_dict = {key: value for key, value in state_dict.items() if key not in used}
    for key, value in state_dict.items():
        match = _SUFFIX_PATTERN.search(key)
        if match is None:
            report.ignored.append(key)
            continue
        base, role = key[:match.start()], _SUFFIXES[match.group(1)]
        for target, aliases in targets.items():
            module = aliases.get(base)
            if module is not None:
                parts.setdefault((target, module), {})[role] = value
                break
        else:
            report.ignored.append(key)
    for (target, module), found in sorted(parts.items()):
        if "down" not in found or "up" not in found:
            report.ignored.extend(f"{target}:{module}.{role}" for role in found)
            continue
        alpha = found.get("alpha")
        strength = strength_model if target == "unet" else strength_clip
        patches.append(WeightPatch(target, module, found["down"], found["up"],
                                   float(alpha) if alpha is not None else None, strength))
        report.matched += 1
    return patches, report
