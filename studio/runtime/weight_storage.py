"""Filling a model built without weights from a state dict, optionally keeping its layers'
weights in a storage precision (fp8) and computing each layer in the compute precision —
what ComfyUI's ``weight_dtype`` does, with diffusers' layerwise casting hooks.

The model is built with :func:`accelerate.init_empty_weights` (parameters on the "meta"
device: nothing is allocated or initialised at random), then every parameter is taken from
the file: linear and convolution weights in the storage precision when one is asked for,
everything else (norms, embeddings) in the compute precision. A weight the file lacks is an
error naming it, never a random value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

# Attribute names set on modules: used only to encode prompts (moved off the GPU after use),
# and group-offloaded (the device they compute on; the manager never moves them whole).
TRANSIENT = "studio_transient"
GROUP_OFFLOADED = "studio_offloaded_to"


def offload_blocks(module: torch.nn.Module, device: torch.device) -> None:
    """Keep ``module``'s weights in system memory and bring them to ``device`` one block (one
    entry of its ModuleLists) at a time while it runs: diffusers' group offloading, which
    works on any torch module, overlapped with compute on a CUDA stream."""
    from diffusers.hooks import apply_group_offloading

    apply_group_offloading(module, onload_device=device, offload_device=torch.device("cpu"),
                           offload_type="block_level", num_blocks_per_group=1, use_stream=device.type == "cuda")
    setattr(module, GROUP_OFFLOADED, device)


FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
# ComfyUI's weight_dtype choices for UNETLoader, and the storage precision of each; "default"
# keeps a file's own precision when it is fp8 (ComfyUI's behaviour), else the compute one.
WEIGHT_DTYPES = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
                 "fp8_e5m2": torch.float8_e5m2}


def file_storage_dtype(state_dict: Mapping[str, torch.Tensor]) -> torch.dtype | None:
    """fp8 when most of a file's large weights are stored in fp8 (fp8 files keep their norms
    and biases in 16 or 32 bits), else None."""
    counts: dict[torch.dtype, int] = {}
    for value in state_dict.values():
        if value.ndim >= 2:
            counts[value.dtype] = counts.get(value.dtype, 0) + value.numel()
    if not counts:
        return None
    dtype = max(counts, key=counts.get)
    return dtype if dtype in FP8_DTYPES else None


def storage_for(weight_dtype: str, state_dict: Mapping[str, torch.Tensor]) -> torch.dtype | None:
    """The storage precision a UNETLoader ``weight_dtype`` asks for with this file."""
    chosen = WEIGHT_DTYPES.get(weight_dtype)
    return chosen if chosen is not None else file_storage_dtype(state_dict)


def _cast_layers() -> tuple[type, ...]:
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS

    return tuple(_GO_LC_SUPPORTED_PYTORCH_LAYERS)


def load_into(path: Path, build: Callable[[], torch.nn.Module], weights: Mapping[str, torch.Tensor],
              dtype: torch.dtype, storage: torch.dtype | None, what: str,
              name_in_file: Callable[[str], str] = str, keep: tuple[str, ...] = ()) -> Any:
    """``build()`` without weights, filled from ``weights`` (named as the module's own names
    are, after ``name_in_file``): in ``dtype``, or with linear/convolution weights kept in
    ``storage`` and cast to ``dtype`` layer by layer while the model runs. Layers whose names
    match a pattern of ``keep`` stay in ``dtype`` (T5's output projections, which cast their
    input to their own weight's precision)."""
    import re

    from accelerate import init_empty_weights

    from studio.runtime.checkpoints import ModelLoadError

    with init_empty_weights():
        module = build()
    cast_layers = _cast_layers()
    stored = set()
    if storage is not None:
        for name, layer in module.named_modules():
            if isinstance(layer, cast_layers) and not any(re.search(pattern, name) for pattern in keep):
                stored.update(f"{name}.{parameter}" for parameter, _ in layer.named_parameters(recurse=False))
    expected = dict(module.named_parameters())
    weights = {name: weights[name_in_file(name)] for name in [*expected, *dict(module.named_buffers())]
               if name_in_file(name) in weights}
    missing = [name for name in expected if name not in weights]
    if missing:
        raise ModelLoadError(path, f"{what} is missing {len(missing)} weights (e.g. {missing[0]}); the file is "
                             "incomplete or of another size")
    values = {}
    for name, parameter in expected.items():
        value = weights[name]
        if tuple(value.shape) != tuple(parameter.shape):
            raise ModelLoadError(path, f"{what}: weight {name} has shape {tuple(value.shape)}, expected "
                                 f"{tuple(parameter.shape)}; the file is of another architecture")
        values[name] = value.to(storage if name in stored else dtype)
    module.load_state_dict(values, strict=False, assign=True)
    for name, buffer in module.named_buffers():
        if name in weights and buffer.is_floating_point() and tuple(buffer.shape) == tuple(weights[name].shape):
            buffer.data = weights[name].to(dtype)
    if storage is not None:
        from diffusers.hooks import apply_layerwise_casting

        apply_layerwise_casting(module, storage_dtype=storage, compute_dtype=dtype, skip_modules_pattern=keep)
    module.eval().requires_grad_(False)
    module.compute_dtype = dtype
    return module


def compute_dtype(module: torch.nn.Module) -> torch.dtype:
    """The precision ``module`` computes in (its weights' own, unless stored in fp8)."""
    dtype = getattr(module, "compute_dtype", None)
    if dtype is not None:
        return dtype
    return next(module.parameters()).dtype


def module_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def offload_if_too_big(transformer: torch.nn.Module, policy: Any, force: bool = False) -> torch.device | None:
    """On a GPU smaller than the model (its weights over the model manager's budget), keep
    the weights in system memory and bring them to the GPU one block at a time while the
    model runs (diffusers' group offloading, overlapped with compute on a CUDA stream).
    Returns the device it computes on when offloaded, else None (the manager moves it)."""
    budget = policy.memory_budget()
    if not force and (not policy.is_gpu or budget is None or module_bytes(transformer) <= budget):
        return None
    transformer.enable_group_offload(onload_device=policy.device, offload_device=torch.device("cpu"),
                                     offload_type="block_level", num_blocks_per_group=1,
                                     use_stream=policy.device.type == "cuda")
    return policy.device
