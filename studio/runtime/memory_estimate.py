"""A sampler's memory, estimated from the latent and the model before anything is allocated.

A request within every field's range can still be far beyond the machine (a 16384² picture is
a 2048² latent: the UNet's activations alone run to tens of gigabytes). :func:`check_sampler_memory`
estimates what sampling it and decoding its picture take and refuses, with a sentence naming the
sizes, when that is more than the device has free, instead of letting the allocations grow
until the machine swaps or the process dies.

The estimate is deliberately a lower bound (what the largest level of the denoiser holds at
once with memory-efficient attention, the sampler's copies of the latent, and the decoded
picture), so it refuses only what cannot fit, never a render that would have worked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GB = 1024 ** 3

# Values held per latent cell and feature channel at the denoiser's first level while one row
# of its batch is computed: the block's input, its skip connections, a resnet's intermediates
# and a transformer's q/k/v/out and feed-forward (GEGLU: 8 × the width).
UNET_VALUES_PER_CELL_AND_CHANNEL = 16
# A transformer denoiser (FLUX, SD3): values per token and hidden channel.
TRANSFORMER_VALUES_PER_TOKEN_AND_CHANNEL = 8
# Copies of the latent a sampler keeps (x, noise, denoised, derivatives, history).
SAMPLER_LATENT_COPIES = 8
# The decoded picture: the VAE's float output and the IMAGE made from it.
PICTURE_COPIES = 2


class MemoryEstimateError(Exception):
    """A request that cannot fit in the device's free memory; the message says what to lower."""


@dataclass(frozen=True)
class SamplerEstimate:
    latent_shape: tuple[int, ...]
    picture: tuple[int, int]
    denoiser: int
    latents: int
    decoded: int

    @property
    def total(self) -> int:
        return self.denoiser + self.latents + self.decoded


def _itemsize(dtype: Any) -> int:
    size = getattr(dtype, "itemsize", None)
    if isinstance(size, int) and size > 0:
        return size
    name = str(dtype)
    return 2 if ("16" in name) else 1 if "8" in name else 4


def _config_value(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


def estimate_sampler(unet: Any, latent_shape: Sequence[int], cfg: float = 2.0,
                     spatial_scale: int = 8) -> SamplerEstimate:
    """Bytes a sampler call on a latent of ``latent_shape`` (B×C×h×w) needs, in parts."""
    dims = [int(d) for d in latent_shape]
    rows, channels, height, width = (dims + [1, 1, 1, 1])[:4] if len(dims) >= 4 else (1, 4, 1, 1)
    cells = max(1, height * width)
    guided = 1 if cfg == 1.0 else 2  # cfg 1 skips the negative prompt's pass
    config = getattr(unet, "config", None)
    itemsize = _itemsize(getattr(unet, "dtype", None))
    widths = _config_value(config, "block_out_channels")
    if widths:
        denoiser = guided * rows * cells * int(widths[0]) * itemsize * UNET_VALUES_PER_CELL_AND_CHANNEL
    else:  # a transformer over patches of the latent
        patch = int(_config_value(config, "patch_size", 2) or 2)
        heads = int(_config_value(config, "num_attention_heads", 24) or 24)
        head_dim = int(_config_value(config, "attention_head_dim", 128) or 128)
        tokens = max(1, cells // (patch * patch))
        denoiser = guided * rows * tokens * heads * head_dim * itemsize * TRANSFORMER_VALUES_PER_TOKEN_AND_CHANNEL
    latents = rows * channels * cells * 4 * SAMPLER_LATENT_COPIES
    picture = (height * spatial_scale, width * spatial_scale)
    decoded = rows * 3 * picture[0] * picture[1] * 4 * PICTURE_COPIES
    return SamplerEstimate(tuple(dims), picture, denoiser, latents, decoded)


def _address_space_left() -> int | None:
    """What an address-space limit (``ulimit -v``, RLIMIT_AS) still lets this process map."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("VmSize:"):
                    return max(0, soft - int(line.split()[1]) * 1024)
    except OSError:
        pass
    return soft


def free_bytes(device: Any) -> int:
    """Bytes free on ``device``: the GPU's free memory plus what torch holds there; on
    the CPU the machine's available memory (``MemAvailable``), within any address-space limit."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        import torch

        # What the driver has free plus all torch holds here: the models in it are moved out
        # by the model manager when a render needs the room.
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device))
    if kind == "mps":
        return 1 << 62  # unified memory: no figure worth refusing on
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        try:
            import psutil

            available = int(psutil.virtual_memory().available)
        except Exception:  # noqa: BLE001 - no figure: do not refuse
            available = 1 << 62
    limit = _address_space_left()
    return available if limit is None else min(available, limit)


def _size(count: int) -> str:
    return f"{count / GB:.1f} GB" if count >= GB / 10 else f"{count / 1024 ** 2:.0f} MB"


def check_sampler_memory(node: str, unet: Any, latent_shape: Sequence[int], cfg: float = 2.0,
                         spatial_scale: int = 8, device: Any = None) -> SamplerEstimate | None:
    """Raise :class:`MemoryEstimateError` with a sentence when sampling this latent cannot fit
    in ``device``'s free memory (the UNet's device by default). ``node`` (a title, or "")
    starts the sentence where the caller does not name the node itself."""
    node_type = f"{node}: " if node else ""
    try:
        estimate = estimate_sampler(unet, latent_shape, cfg, spatial_scale)
    except (TypeError, ValueError, AttributeError, IndexError):
        return None  # a denoiser the estimate cannot read: no figure, no refusal
    device = device if device is not None else getattr(unet, "device", "cpu")
    free = free_bytes(device)
    if estimate.total > free:
        rows, _channels, height, width = (list(estimate.latent_shape) + [1, 1, 1, 1])[:4]
        where = "the GPU" if getattr(device, "type", str(device).split(":")[0]) == "cuda" else "this machine"
        raise MemoryEstimateError(
            f"{node_type}sampling a {width}×{height} latent ({estimate.picture[1]}×{estimate.picture[0]} pixels) "
            f"× batch {rows} needs about {_size(estimate.total)} (denoiser {_size(estimate.denoiser)}, latents "
            f"{_size(estimate.latents)}, decoded picture {_size(estimate.decoded)}) but {where} has "
            f"{_size(free)} free; lower the width, height or batch size")
    return estimate


__all__ = ["MemoryEstimateError", "SamplerEstimate", "check_sampler_memory", "estimate_sampler", "free_bytes"]
