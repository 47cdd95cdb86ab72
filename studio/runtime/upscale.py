"""Model upscalers through spandrel (ESRGAN, Real-ESRGAN and its compact SRVGG, SwinIR, HAT,
…: the MIT-licensed architectures of spandrel's core), run in overlapping tiles so that large
outputs fit in memory, with progress and cancellation per tile.

spandrel declares torchvision as a requirement, but only two of its architectures use it
(LaMa inpainting and RestoreFormer face restoration; neither upscales), and no CPU build of
torchvision exists for this torch. So spandrel is installed without that requirement and, when
torchvision is absent, imported with a stand-in for the three torchvision names those two
architectures import; calling either of them then says torchvision is missing. The stand-in
is removed right after the import, so nothing else ever sees it.
"""

from __future__ import annotations

import enum
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studio.runtime.checkpoints import ModelLoadError, read_state_dict
from studio.runtime.device import DevicePolicy


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("this model architecture needs torchvision, which is not installed")

    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")  # type: ignore[attr-defined]
    functional.rotate = missing  # type: ignore[attr-defined]
    functional.normalize = missing  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    return {"torchvision": root, "torchvision.transforms": transforms, "torchvision.transforms.functional": functional}


def import_spandrel() -> Any:
    try:
        import spandrel

        return spandrel
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("torchvision"):
            raise
    for name in [name for name in sys.modules if name == "spandrel" or name.startswith("spandrel.")]:
        del sys.modules[name]  # the failed attempt's half-imported modules
    stand_in = _torchvision_stand_in()
    sys.modules.update(stand_in)
    try:
        import spandrel
    finally:
        for name in stand_in:
            sys.modules.pop(name, None)
    return spandrel


@dataclass
class UpscaleModel:
    """What flows through an UPSCALE_MODEL socket."""

    descriptor: Any  # spandrel's ImageModelDescriptor
    key: str

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)


# Where training code keeps the weights inside a pickle: BasicSR (Real-ESRGAN, SwinIR, HAT…)
# saves {"params_ema": …} and/or {"params": …}, preferring the averaged weights as spandrel
# does; others {"state_dict": …}, {"model": …} or {"net": …}.
WEIGHT_WRAPPERS = ("model_state_dict", "state_dict", "params_ema", "params-ema", "params", "model", "net")
# Prefixes left by training wrappers (DataParallel, BasicSR's generator) on every key.
COMMON_PREFIXES = ("module.", "netG.")


def _unprefixed(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in COMMON_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def load_upscale_model(path: Path, policy: DevicePolicy, key: str) -> UpscaleModel:
    """An upscaler from a ``.pth``/``.safetensors`` file; pickles are read weights-only, and
    their weights may sit one level down (``{"params_ema": …}``, as Real-ESRGAN ships them)."""
    spandrel = import_spandrel()
    # spandrel unwraps these itself only when it reads the file; it is given the weights.
    state_dict = _unprefixed(read_state_dict(path, wrappers=WEIGHT_WRAPPERS))
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise ModelLoadError(path, "is not an upscaler architecture Seed Studio knows (spandrel found none that "
                             "fits its weights)") from None
    except (ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(path, f"cannot be loaded as an upscaler ({str(error).splitlines()[0][:300]})") \
            from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelLoadError(path, f"is a {descriptor.architecture.name} model, which does not turn images into "
                             "images")
    descriptor.model.eval().requires_grad_(False)
    # Half precision only where the architecture is stable in it; otherwise float32.
    half_ok = {torch.float16: descriptor.supports_half, torch.bfloat16: descriptor.supports_bfloat16}
    if half_ok.get(policy.dtype, False):
        descriptor.model.to(policy.dtype)
    return UpscaleModel(descriptor, key)


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """Weights along one side of a tile: rising over the overlap where a neighbour precedes
    it, falling where one follows, so overlapping tiles cross-fade."""
    weight = torch.ones(length)
    if overlap > 0:
        ramp = torch.linspace(0, 1, overlap + 2)[1:-1]
        if not at_start:
            weight[:overlap] = ramp
        if not at_end:
            weight[-overlap:] = ramp.flip(0)
    return weight


def upscale_tiled(model: UpscaleModel, image: torch.Tensor, tile: int, overlap: int,
                  progress: Callable[[int, int], None]) -> torch.Tensor:
    """Upscale B×H×W×C (0..1) tile by tile; the output is assembled on the CPU."""
    module = model.descriptor.model
    device = next(module.parameters()).device
    dtype = next(module.parameters()).dtype
    scale = model.scale
    batch, height, width, _ = image.shape
    pixels = image[..., :3].movedim(-1, 1).float()
    stride = max(1, tile - overlap)
    rows = list(range(0, max(height - overlap, 1), stride)) if height > tile else [0]
    columns = list(range(0, max(width - overlap, 1), stride)) if width > tile else [0]
    output = torch.zeros(batch, 3, height * scale, width * scale)
    weights = torch.zeros(1, 1, height * scale, width * scale)
    total, done = len(rows) * len(columns), 0
    with torch.no_grad():
        for top in rows:
            for left in columns:
                bottom, right = min(top + tile, height), min(left + tile, width)
                top_, left_ = max(0, bottom - tile), max(0, right - tile)
                piece = pixels[:, :, top_:bottom, left_:right].to(device, dtype)
                result = model.descriptor(piece).float().cpu().clamp(0, 1)
                vertical = _ramp(result.shape[2], overlap * scale, top_ == 0, bottom == height)
                horizontal = _ramp(result.shape[3], overlap * scale, left_ == 0, right == width)
                mask = (vertical[:, None] * horizontal[None, :])[None, None]
                region = (slice(None), slice(None), slice(top_ * scale, bottom * scale),
                          slice(left_ * scale, right * scale))
                output[region] += result * mask
                weights[region] += mask
                done += 1
                progress(done, total)
    return (output / weights.clamp(min=1e-8)).movedim(1, -1)
