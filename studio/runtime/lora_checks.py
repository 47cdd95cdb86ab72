"""Checking what a LoRA file holds against the model it is applied to, before anything samples.

A LoRA is a file from anywhere. One with a NaN or infinite value (an alpha, a weight) would
turn every picture black and still report success; one made for a model of other sizes
would fail deep inside the sampler with a bare tensor message. Both are refused when the
LoRA is applied, with a sentence naming the file and the layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch


class LoraContentError(ValueError):
    """A LoRA whose values or shapes cannot be applied to this model."""


def _target_model(patch: Any, unet: torch.nn.Module | None, encoders: Sequence[torch.nn.Module]) -> torch.nn.Module:
    if patch.target == "unet" and unet is not None:
        return unet
    index = int(patch.target.removeprefix("clip"))
    return encoders[index]


def _layer(patch: Any) -> str:
    return f"layer {patch.module}" + ("" if patch.target == "unet" else f" of text encoder {patch.target[4:]}")


def _shape(tensor: torch.Tensor) -> str:
    return "×".join(str(size) for size in tensor.shape) or "a single number"


def check_lora_patches(patches: Sequence[Any], unet: torch.nn.Module | None,
                       encoders: Sequence[torch.nn.Module], lora_name: str) -> None:
    """Raise :class:`LoraContentError` for the first patch that holds a value that is not
    finite, or whose weights do not fit the weight of the layer it changes."""
    for patch in patches:
        where = f"{lora_name}: {_layer(patch)}"
        # Every number the patch carries, whatever its kind (down/up weights, alpha, …).
        for field in dataclasses.fields(patch):
            value = getattr(patch, field.name)
            if isinstance(value, torch.Tensor):
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise LoraContentError(f"{where}: its {field.name} weights hold NaN or infinite values "
                                           "(the file is damaged)")
            elif isinstance(value, float) and not math.isfinite(value):
                raise LoraContentError(f"{where}: its {field.name} is {value}, not a usable number "
                                       "(the file is damaged)")
        try:
            weight = _target_model(patch, unet, encoders).get_submodule(patch.module).weight
        except (AttributeError, IndexError, ValueError) as error:
            raise LoraContentError(f"{where}: the model has no such layer ({error})") from None
        down, up = patch.down, patch.up
        if down.ndim < 2 or up.ndim < 2 or down.shape[0] == 0:
            raise LoraContentError(f"{where}: its down ({_shape(down)}) and up ({_shape(up)}) weights are not "
                                   "a low-rank pair")
        # The change computed on shapes alone (the meta device holds no data), by the very
        # code that merges it, so whatever it accepts is what is checked.
        try:
            change = patch.delta(torch.empty(weight.shape, dtype=weight.dtype, device="meta"))
        except (RuntimeError, ValueError, IndexError):
            change = None
        if change is None or change.shape != weight.shape:
            raise LoraContentError(f"{where}: its down ({_shape(down)}) and up ({_shape(up)}) weights do not fit "
                                   f"the model's weight ({_shape(weight)}); the LoRA was made for another model")
