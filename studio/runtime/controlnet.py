"""ControlNets: loading them offline, and the hints they add to a sampling step.

A ControlNet travels on the conditioning (ComfyUI's way): ControlNetApply adds a hint — the
net, its image, a strength and the part of the schedule it acts in — to each conditioning
entry, and the sampler asks every active hint for the residuals it adds to the UNet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studio.runtime.checkpoints import ModelLoadError, read_state_dict
from studio.runtime.device import DevicePolicy
from studio.runtime.images import center_crop_to_aspect, resize_image


@dataclass
class ControlNet:
    """What flows through a CONTROL_NET socket."""

    model: Any
    key: str


@dataclass(frozen=True)
class ControlHint:
    """One ControlNet applied to one conditioning entry."""

    net: ControlNet
    image: torch.Tensor  # IMAGE, B×H×W×3 in 0..1
    strength: float
    start: float = 0.0  # fraction of the schedule where it starts acting…
    end: float = 1.0  # …and where it stops

    def active_at(self, fraction: float) -> bool:
        return self.strength != 0 and self.start <= fraction < self.end


def load_controlnet(path: Path, policy: DevicePolicy, key: str) -> ControlNet:
    """A diffusers ControlNet folder, or a single file with a diffusers config folder of the
    same name beside it."""
    from diffusers import ControlNetModel

    options = {"local_files_only": True, "torch_dtype": policy.dtype}
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise ModelLoadError(path, "is a folder without config.json, so not a diffusers ControlNet")
        if json.loads(config.read_text(encoding="utf-8")).get("_class_name") != "ControlNetModel":
            raise ModelLoadError(path, "is not a ControlNet (its config names another model class)")
        try:
            model = ControlNetModel.from_pretrained(path, **options)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(path, f"cannot be loaded as a ControlNet ({str(error).splitlines()[0][:300]})") \
                from None
        return ControlNet(model.eval().requires_grad_(False), key)
    state_dict = read_state_dict(path)
    if not any(k.startswith(("control_model.", "input_hint_block", "controlnet_cond_embedding", "zero_convs"))
               for k in state_dict):
        raise ModelLoadError(path, "is not a ControlNet (no hint block or zero convolutions in its weights)")
    sidecar = path.with_suffix("")
    if not (sidecar / "config.json").is_file():
        raise ModelLoadError(path, f"needs its architecture: put a diffusers config.json in {sidecar}/ "
                             "(Seed Studio does not ship ControlNet configs yet)")
    try:
        model = ControlNetModel.from_single_file(state_dict, config=str(sidecar), **options)
    except (ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(path, f"does not fit its config ({str(error).splitlines()[0][:300]})") from None
    return ControlNet(model.eval().requires_grad_(False), key)


def hint_tensor(hint: ControlHint, height: int, width: int, batch: int, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """The hint image at the latent's pixel size (centre-cropped to its aspect, as ComfyUI
    does), as the B×3×H×W batch the ControlNet reads."""
    image = hint.image[..., :3].float()
    if image.shape[1:3] != (height, width):
        image = resize_image(center_crop_to_aspect(image, width, height), width, height, "nearest-exact")
    image = image.movedim(-1, 1)
    if image.shape[0] != batch:
        image = image[:1].expand(batch, -1, -1, -1)
    return image.to(device, dtype)


def control_residuals(hints: tuple[ControlHint, ...], fraction: float, latents: torch.Tensor, t: torch.Tensor,
                      embedding: torch.Tensor, added: dict[str, Any]) -> dict[str, Any]:
    """UNet keyword arguments carrying the summed residuals of the hints active now."""
    down_total: list[torch.Tensor] | None = None
    mid_total: torch.Tensor | None = None
    height, width = latents.shape[2] * 8, latents.shape[3] * 8
    for hint in hints:
        if not hint.active_at(fraction):
            continue
        net = hint.net.model
        condition = hint_tensor(hint, height, width, latents.shape[0], latents.device, net.dtype)
        down, mid = net(latents.to(net.dtype), t, encoder_hidden_states=embedding.to(net.dtype),
                        controlnet_cond=condition, conditioning_scale=hint.strength, return_dict=False, **added)
        down_total = list(down) if down_total is None else [a + b for a, b in zip(down_total, down)]
        mid_total = mid if mid_total is None else mid_total + mid
    if down_total is None:
        return {}
    return {"down_block_additional_residuals": down_total, "mid_block_additional_residual": mid_total}
