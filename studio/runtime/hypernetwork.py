"""Hypernetworks (AUTOMATIC1111's ``.pt`` layout): small networks that change what every
attention layer of the UNet attends to.

A file is a pickled dict: for each feature width (320, 640, 768, 1280, …) a pair of layer
stacks, one for the keys and one for the values; besides them its options
(``activation_func``, ``is_layer_norm``, ``use_dropout``, ``activate_output``,
``last_layer_dropout``). While sampling, an attention layer whose key input has one of those
widths gets ``x + strength · net_k(x)`` as the input of its key projection and
``x + strength · net_v(x)`` as that of its value projection, in self- and cross-attention
alike (as ComfyUI applies them, its ``nodes_hypernetwork``). Read with ``weights_only``: the
file holds only tensors, numbers, strings and lists.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from studio.runtime.model_errors import ModelLoadError, read_weights_pickle

ACTIVATIONS = {
    "linear": torch.nn.Identity, "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU, "elu": torch.nn.ELU,
    "swish": torch.nn.Hardswish, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
    "softsign": torch.nn.Softsign, "mish": torch.nn.Mish,
}


@dataclass(frozen=True)
class Hypernetwork:
    """One loaded hypernetwork at a strength: per feature width, the key and value networks."""

    name: str
    networks: dict[int, tuple[torch.nn.Module, torch.nn.Module]]
    strength: float


def _stack(path: Path, weights: dict, options: dict) -> torch.nn.Module:
    """One layer stack as A1111 built it: linear layers, each followed by the activation
    (not the last unless ``activate_output``) and a layer norm when ``is_layer_norm``
    (dropout is left out: it does nothing at inference)."""
    names = [key[:-len(".weight")] for key in weights if key.endswith(".weight")]
    layers: list[torch.nn.Module] = []
    index = 0
    while index < len(names):
        weight, bias = weights[f"{names[index]}.weight"], weights.get(f"{names[index]}.bias")
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or not isinstance(bias, torch.Tensor):
            raise ModelLoadError(path, f"layer {names[index]!r} is not a linear layer's weight and bias")
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight.float(), "bias": bias.float()})
        layers.append(linear)
        # "last" counts the layer norms too, so with them the activation also follows the last
        # linear layer: ComfyUI reads files this way, and a shared workflow should match it.
        last = index == len(names) - 1
        if options["activation_func"] != "linear" and (not last or options["activate_output"]):
            layers.append(ACTIVATIONS[options["activation_func"]]())
        if options["is_layer_norm"]:
            index += 1
            norm_weight, norm_bias = weights[f"{names[index]}.weight"], weights[f"{names[index]}.bias"]
            norm = torch.nn.LayerNorm(norm_weight.shape[0])
            norm.load_state_dict({"weight": norm_weight.float(), "bias": norm_bias.float()})
            layers.append(norm)
        index += 1
    return torch.nn.Sequential(*layers).eval().requires_grad_(False)


def read_hypernetwork(path: Path, strength: float) -> Hypernetwork:
    """Load a hypernetwork file; a clear error for anything that is not one."""
    data = read_weights_pickle(path, "is not a plain hypernetwork file (it holds Python objects besides weights, "
                               "which are never loaded)", "a hypernetwork file")
    if not isinstance(data, dict):
        raise ModelLoadError(path, "is not a hypernetwork file (expected a dictionary)")
    options = {"activation_func": data.get("activation_func", "linear"),
               "is_layer_norm": bool(data.get("is_layer_norm", False)),
               "activate_output": bool(data.get("activate_output", False))}
    if options["activation_func"] not in ACTIVATIONS:
        raise ModelLoadError(path, f"uses the activation {options['activation_func']!r}; known: "
                             f"{', '.join(ACTIVATIONS)}")
    networks = {}
    for key, value in data.items():
        try:
            width = int(key)
        except (TypeError, ValueError):
            continue
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, dict) for v in value)):
            raise ModelLoadError(path, f"width {width}: expected a pair of layer stacks (keys, values)")
        networks[width] = (_stack(path, value[0], options), _stack(path, value[1], options))
    if not networks:
        raise ModelLoadError(path, "holds no layer stacks (no feature widths like 320 or 768)")
    return Hypernetwork(path.name, networks, float(strength))


@contextmanager
def hypernetworks_applied(unet: torch.nn.Module, hypernetworks: Sequence[Hypernetwork]) -> Iterator[None]:
    """While the block runs, every attention layer's key and value projections see their
    inputs changed by the hypernetworks (in order, as chained loaders apply them)."""
    active = [h for h in hypernetworks if h.strength != 0]
    if not active:
        yield
        return
    handles = []

    def hook(index: int):
        def change(module, args):
            x = args[0]
            for hypernetwork in active:
                pair = hypernetwork.networks.get(x.shape[-1])
                if pair is not None:
                    x = x + pair[index](x.float()).to(x.dtype) * hypernetwork.strength
            return (x, *args[1:])
        return change

    device = next(unet.parameters()).device
    for hypernetwork in active:  # once per run, not per attention call
        for pair in hypernetwork.networks.values():
            for net in pair:
                net.to(device)
    try:
        for name, module in unet.named_modules():
            if name.endswith((".attn1", ".attn2")) and hasattr(module, "to_k") and hasattr(module, "to_v"):
                handles.append(module.to_k.register_forward_pre_hook(hook(0)))
                handles.append(module.to_v.register_forward_pre_hook(hook(1)))
        yield
    finally:
        for handle in handles:
            handle.remove()
