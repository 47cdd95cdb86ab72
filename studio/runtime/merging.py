"""Merging changes into model weights: the patch protocol that LoRAs and model merges share,
the model-merge arithmetic of ComfyUI's merging nodes, and writing a patched model to a file.

A MODEL or CLIP carries patches; the shared model it was loaded as never changes. While a
sampler or text encoder runs, :meth:`ModelManager.use` merges each parameter's patches into
the shared weights (in float32, in the order they were added, then cast back once) and
restores them exactly afterwards; a save computes the same values without touching the model.

Facts of ComfyUI's merging (its source, ComfyUI 0.8.0: ``comfy_extras/nodes_model_merging.py``,
``ModelPatcher.add_patches`` / ``get_key_patches`` in ``comfy/model_patcher.py``,
``calculate_weight`` in ``comfy/lora.py``); no code of it is used here:

- A merge adds, for every weight (parameter or buffer) of model2 that model1 also has, a patch
  ``w ← w · strength_model + strength_patch · w2``, where ``w2`` is model2's weight with model2's
  own patches (LoRAs, earlier merges) applied. Patches of one weight apply in the order they
  were added, each on the result of the previous ones, in float32.
- ``ModelMergeSimple`` and ``ModelMergeBlocks``: strength_model ``ratio``, strength_patch
  ``1 − ratio``; so ratio 1 is model1 and ratio 0 is model2.
- ``ModelMergeBlocks`` picks the ratio of the longest of its input names (``input``,
  ``middle``, ``out``) that the weight's LDM name starts with: ``input`` for
  ``input_blocks.*``, ``middle`` for ``middle_block.*``, ``out`` for ``output_blocks.*`` and for
  the final norm and convolution (``out.0``, ``out.2``); weights in none of them (the time and
  label embeddings) take the first input's ratio, ``input``.
- ``ModelMergeSubtract``: strength_model ``multiplier``, strength_patch ``−multiplier``, so
  ``multiplier · (w1 − w2)``. ``ModelMergeAdd``: both 1, so ``w1 + w2``.
- The CLIP merges do the same over the text encoders' weights, leaving out those whose names
  end in ``.position_ids`` or ``.logit_scale``.
- A weight of model2 whose shape differs from model1's is not added (ComfyUI logs "WEIGHT NOT
  MERGED"), but model1's weight is still scaled by strength_model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from studio.fileio import next_counter
from studio.runtime.ldm_names import unet_layout, unet_ldm_name

CLIP_MERGE_SKIPS = (".position_ids", ".logit_scale")
BLOCK_GROUPS = ("input", "middle", "out")


class ParameterPatch(Protocol):
    """A change to one weight (parameter or buffer) of a model, merged while it is used."""

    target: str  # which model of the MODEL/CLIP: "unet", or "clip0" / "clip1" for a text encoder

    @property
    def parameter(self) -> str:
        """The weight's name in the target model's state dict."""

    @property
    def is_identity(self) -> bool:
        """Whether applying it leaves every weight as it is (strength 0, ratio 1)."""

    def apply(self, value: torch.Tensor) -> torch.Tensor:
        """The weight with this change, from the weight as the earlier patches left it
        (float32, on the device the model is on)."""


def parameter_tensor(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The parameter or buffer ``name`` (a state-dict key) of ``model`` itself, not a copy."""
    module_path, _, attribute = name.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    tensor = getattr(module, attribute, None)
    if not isinstance(tensor, torch.Tensor):
        raise KeyError(f"{type(model).__name__} has no weight {name!r}")
    return tensor


def patched_value(tensor: torch.Tensor, patches: Iterable[ParameterPatch],
                  device: torch.device | None = None) -> torch.Tensor:
    """``tensor`` with ``patches`` applied in order, in float32 (a new tensor)."""
    value = tensor.detach().to(device or tensor.device, torch.float32, copy=True)
    for patch in patches:
        if not patch.is_identity:
            value = patch.apply(value)
    return value


def patch_chains(patches: Iterable[tuple[torch.nn.Module, ParameterPatch]]
                 ) -> list[tuple[torch.nn.Module, str, list[ParameterPatch]]]:
    """The patches that change something, grouped by the weight they change (model, name),
    each group in the order the patches were added."""
    chains: dict[tuple[int, str], tuple[torch.nn.Module, str, list[ParameterPatch]]] = {}
    for model, patch in patches:
        if not patch.is_identity:
            chains.setdefault((id(model), patch.parameter), (model, patch.parameter, []))[2].append(patch)
    return list(chains.values())


def patched_state_dict(model: torch.nn.Module, patches: Sequence[ParameterPatch],
                       device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The weights ``model`` has while :meth:`ModelManager.use` merges ``patches`` into it,
    computed the same way (so bit for bit the same), on ``device``; the model is not changed."""
    chains = {name: chain for _, name, chain in patch_chains((model, patch) for patch in patches)}
    state = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        value = patched_value(tensor, chains[name]).to(tensor.dtype) if name in chains else tensor.detach()
        state[name] = value.to(device)  # one weight at a time: no second copy of the model on the GPU
    return state


@dataclass(frozen=True, eq=False)
class MergePatch:
    """One weight of a merge: ``w · keep + add · w2``, with ``w2`` the other model's weight
    of the same name (with that model's own patches), read when the patch is applied; the
    other model is referred to, not copied."""

    target: str
    parameter: str
    source: torch.nn.Module = field(repr=False)
    source_patches: tuple[ParameterPatch, ...]
    add: float  # ComfyUI's strength_patch
    keep: float  # ComfyUI's strength_model

    @property
    def is_identity(self) -> bool:
        return self.add == 0.0 and self.keep == 1.0

    def apply(self, value: torch.Tensor) -> torch.Tensor:
        if self.keep != 1.0:
            value = value * self.keep
        if self.add != 0.0:
            other = patched_value(parameter_tensor(self.source, self.parameter), self.source_patches, value.device)
            if other.shape == value.shape:  # another shape (an inpainting UNet's input) stays model1's
                value = value + self.add * other
        return value


def merge_patches(target: str, model: torch.nn.Module, other: torch.nn.Module,
                  other_patches: Iterable[ParameterPatch], strengths: Callable[[str], tuple[float, float]],
                  skip: tuple[str, ...] = ()) -> tuple[list[MergePatch], list[str]]:
    """The patches that merge ``other`` (carrying ``other_patches``) into ``model``, and the
    names of the weights left unmerged because their shapes differ.

    ``strengths(name)`` gives each weight's (add, keep); weights whose names end in one of
    ``skip`` are left out, as are weights only one of the models has.
    """
    own = model.state_dict(keep_vars=True)
    nested: dict[str, list[ParameterPatch]] = {}
    for patch in other_patches:
        nested.setdefault(patch.parameter, []).append(patch)
    patches, mismatched = [], []
    for name, tensor in other.state_dict(keep_vars=True).items():
        if name not in own or name.endswith(skip):
            continue
        if own[name].shape != tensor.shape:
            mismatched.append(name)
        add, keep = strengths(name)
        patch = MergePatch(target, name, other, tuple(nested.get(name, ())), float(add), float(keep))
        if not patch.is_identity:
            patches.append(patch)
    return patches, mismatched


def block_strengths(unet: Any, input: float, middle: float, out: float) -> Callable[[str], tuple[float, float]]:
    """ModelMergeBlocks' (add, keep) for each UNet weight, from its LDM name (see the module
    docstring for ComfyUI's rule)."""
    layers, with_attention = unet_layout(unet)
    ratios = dict(zip(BLOCK_GROUPS, (input, middle, out), strict=True))

    def strengths(name: str) -> tuple[float, float]:
        ldm = unet_ldm_name(name, layers, with_attention) or ""
        group = max((g for g in BLOCK_GROUPS if ldm.startswith(g)), key=len, default=BLOCK_GROUPS[0])
        return 1.0 - ratios[group], ratios[group]

    return strengths


# -- writing new files ---------------------------------------------------------------------
def _claim(temporary: Path, target: Path) -> bool:
    """Give ``temporary`` the name ``target`` unless something has that name already."""
    try:
        os.link(temporary, target)
        return True
    except FileExistsError:
        return False
    except OSError:
        # No hard links on this file system: reserve the name exclusively, then move the
        # complete file onto the reservation (only ours is replaced).
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(temporary, target)
        return True


def save_new_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], folder: Path, stem: str,
                         write_configs: Callable[[Path], None] | None = None) -> Path:
    """Write ``tensors`` as ``folder/stem_00001_.safetensors`` (ComfyUI's naming), the next
    number that is free, never overwriting anything; with ``write_configs``, a config folder
    of the same name (``stem_00001_/``) is written first, so the file never appears without it.

    The file is complete on disk before its name appears (temporary file, then a link).
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    os.close(handle)
    temporary = Path(name)
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        counter = next_counter(folder, stem)
        while True:
            path = folder / f"{stem}_{counter:05d}_.safetensors"
            configs = path.with_suffix("")
            counter += 1
            if path.exists() or configs.exists():
                continue
            if write_configs is not None:
                try:
                    configs.mkdir()
                except FileExistsError:
                    continue
                try:
                    write_configs(configs)
                except BaseException:
                    shutil.rmtree(configs, ignore_errors=True)
                    raise
            if _claim(temporary, path):
                return path
            if write_configs is not None:
                shutil.rmtree(configs, ignore_errors=True)
    finally:
        temporary.unlink(missing_ok=True)
