"""Building model parts without random initialisation: the modules are made with their
parameters on the "meta" device (accelerate's ``init_empty_weights``: shapes, no memory, no
initialisers run; buffers such as position ids are made for real), then the weights from the
file are assigned to them (``load_state_dict(assign=True)``). Safetensors files are memory
mapped and their tensors become the parameters as they are, without a copy, where their dtype
is the one wanted; only tensors of another dtype are converted.

This is what diffusers' and transformers' ``from_pretrained`` do at heart, without their
per-component configuration look-ups, hub path resolution and per-tensor moves, which cost
more than the reading itself for small models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from studio.runtime.model_errors import ModelLoadError

# The weights file of a diffusers model folder and of a transformers one.
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
TRANSFORMERS_WEIGHTS = "model.safetensors"


def read_config(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))


def build_empty(make: Any, *args: Any, transformers: bool = False, **kwargs: Any) -> Any:
    """``make(*args, **kwargs)`` with every parameter on the meta device (no memory) and the
    initialisers switched off (on meta tensors they still cost a Python call each), by the
    libraries' own switches; buffers are made as usual."""
    from accelerate import init_empty_weights

    if transformers:
        from transformers.initialization import no_init_weights
    else:
        from diffusers.models.modeling_utils import no_init_weights

    with init_empty_weights(include_buffers=False), no_init_weights():
        return make(*args, **kwargs)


# Converting many small tensors is dominated by the thread pool's start-up per call (on a
# busy 2-core machine, 0.2 s for a 300-tensor UNet with 2 threads, 1 ms with one): small
# tensors are converted on one thread, large ones with all.
SMALL_TENSOR = 1 << 20


def _converted(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    wanted = {name: tensor for name, tensor in tensors.items() if tensor.is_floating_point() and tensor.dtype != dtype}
    if not wanted:
        return tensors
    out = dict(tensors)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, tensor in wanted.items():
            if tensor.numel() < SMALL_TENSOR:
                out[name] = tensor.to(dtype)
    finally:
        torch.set_num_threads(threads)
    for name, tensor in wanted.items():
        if tensor.numel() >= SMALL_TENSOR:
            out[name] = tensor.to(dtype)
    return out


def assign_weights(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype,
                   path: Path, what: str, ignore_unexpected: bool = False) -> torch.nn.Module:
    """Make ``state_dict``'s tensors ``module``'s parameters and buffers (converted only where
    their dtype is not ``dtype``; integer buffers keep theirs). Every parameter must be
    given; a weight of another shape or one the module does not have is a ModelLoadError."""
    expected = module.state_dict()
    weights = {}
    for name, tensor in state_dict.items():
        target = expected.get(name)
        if target is None:
            continue  # reported below
        if tuple(tensor.shape) != tuple(target.shape):
            raise ModelLoadError(path, f"the {what}'s weight {name} is {tuple(tensor.shape)}, the architecture "
                                 f"needs {tuple(target.shape)}")
        weights[name] = tensor
    result = module.load_state_dict(_converted(weights, dtype), strict=False, assign=True)
    unexpected = [] if ignore_unexpected else [name for name in state_dict if name not in expected]
    missing = [name for name in result.missing_keys
               if _lookup(module, name) is not None and _lookup(module, name).device.type == "meta"]
    if missing or unexpected:
        detail = (f"is missing {len(missing)} weights (e.g. {missing[0]})" if missing
                  else f"has {len(unexpected)} weights it does not use (e.g. {unexpected[0]})")
        raise ModelLoadError(path, f"the {what} {detail}; the file is incomplete or of another architecture")
    # Floating buffers made at construction (not in the file) follow the model's dtype too.
    for submodule in module.modules():
        for name, buffer in list(submodule._buffers.items()):
            if buffer is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                submodule._buffers[name] = buffer.to(dtype)
    return module.eval().requires_grad_(False)


def _lookup(module: torch.nn.Module, name: str) -> torch.Tensor | None:
    owner_name, _, attribute = name.rpartition(".")
    try:
        owner = module.get_submodule(owner_name) if owner_name else module
    except AttributeError:
        return None
    return getattr(owner, attribute, None)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, memory mapped (nothing is read until used)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(path, f"damaged or not a safetensors file ({error})") from None


def diffusers_model(cls: Any, folder: Path, dtype: torch.dtype, what: str, config: dict[str, Any] | None = None,
                    state_dict: Mapping[str, torch.Tensor] | None = None) -> Any:
    """A diffusers model (UNet, VAE, …) from its folder's ``config.json`` and weights, or from
    ``config`` and ``state_dict`` (already in diffusers' names) when given."""
    folder = Path(folder)
    config = read_config(folder) if config is None else config
    if state_dict is None:
        state_dict = read_safetensors(folder / DIFFUSERS_WEIGHTS)
    model = build_empty(cls.from_config, config)
    return assign_weights(model, state_dict, dtype, folder, what)


def transformers_model(cls: Any, folder: Path, dtype: torch.dtype, what: str) -> Any:
    """A transformers model (a CLIP text encoder, …) from its folder's config and weights."""
    folder = Path(folder)
    config = cls.config_class.from_dict(read_config(folder))
    config.dtype = dtype
    model = build_empty(cls, config, transformers=True)
    return assign_weights(model, read_safetensors(folder / TRANSFORMERS_WEIGHTS), dtype, folder, what)


def has_single_weights_file(folder: Path, name: str) -> bool:
    """Whether a model folder holds its weights as one safetensors file (not sharded, not a
    pickle), the layout :func:`diffusers_model` and :func:`transformers_model` read."""
    return (Path(folder) / name).is_file() and (Path(folder) / "config.json").is_file()


def load_component(cls: Any, folder: Path, dtype: torch.dtype, what: str) -> Any:
    """One model of a diffusers pipeline folder (``unet/``, ``vae/``, ``text_encoder/``, …):
    built on the meta device and given the file's tensors when the folder holds one
    safetensors file; otherwise (sharded, pickled, variant files) by the library's own
    ``from_pretrained``."""
    folder = Path(folder)
    is_diffusers = hasattr(cls, "from_config") and hasattr(cls, "config_name")
    if is_diffusers and has_single_weights_file(folder, DIFFUSERS_WEIGHTS):
        return diffusers_model(cls, folder, dtype, what)
    if not is_diffusers and has_single_weights_file(folder, TRANSFORMERS_WEIGHTS):
        return transformers_model(cls, folder, dtype, what)
    return cls.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)


def single_file_model(cls: Any, convert: Any, state_dict: Mapping[str, torch.Tensor], config_folder: Path,
                      dtype: torch.dtype, path: Path, what: str, **config_changes: Any) -> Any:
    """One part of a single-file (LDM layout) checkpoint: its weights renamed by diffusers'
    converter ``convert`` (``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``) for
    the config in ``config_folder`` (with ``config_changes``), then assigned to the part built
    on the meta device. Weights the converter hands over that the part lacks are left out, as
    diffusers' ``from_single_file`` leaves them."""
    config = {**read_config(config_folder), **config_changes}
    converted = convert(checkpoint=state_dict, config=config)
    model = build_empty(cls.from_config, config)
    return assign_weights(model, converted, dtype, path, what, ignore_unexpected=True)
