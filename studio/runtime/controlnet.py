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

from studio.runtime.checkpoints import CONFIGS_DIR, ModelLoadError, read_state_dict
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


def _family(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Which base model an LDM-layout ControlNet was trained for, from its cross-attention
    width (768 SD 1.x, 1024 SD 2.x, 2048 SDXL)."""
    widths = {value.shape[-1] for key, value in state_dict.items() if key.endswith("attn2.to_k.weight")}
    return {768: "sd15", 1024: "sd2", 2048: "sdxl"}.get(max(widths)) if widths else None


def _looks_like_controlnet(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("control_model.", "input_hint_block", "controlnet_cond_embedding", "zero_convs"))
               for k in state_dict)


def _converted(state_dict: dict[str, torch.Tensor], config: Path) -> dict[str, torch.Tensor]:
    """The original-layout ControlNet in diffusers' keys. diffusers' converter does the work
    but (in 0.42) leaves out SDXL's size-conditioning embedding (``label_emb``), though its own
    key table lists it; those four weights are carried over here."""
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    converted = convert_controlnet_checkpoint(state_dict, ControlNetModel.load_config(str(config)))
    for prefix in ("control_model.", ""):
        for ldm, diffusers in (("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2")):
            for kind in ("weight", "bias"):
                source = f"{prefix}{ldm}.{kind}"
                if source in state_dict and f"{diffusers}.{kind}" not in converted:
                    converted[f"{diffusers}.{kind}"] = state_dict[source]
    return converted


def load_controlnet(path: Path, policy: DevicePolicy, key: str, base_unet: Any = None) -> ControlNet:
    """A ControlNet or T2I-Adapter: a diffusers folder, or a single file in the original or
    diffusers layout (SD 1.x and SDXL read with shipped configs; others need a config folder
    of the same name beside the file). With ``base_unet``, the file holds differences to
    that model's weights (DiffControlNetLoader) and they are added back."""
    from diffusers import ControlNetModel, T2IAdapter

    options = {"local_files_only": True, "torch_dtype": policy.dtype}
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise ModelLoadError(path, "is a folder without config.json, so not a diffusers ControlNet")
        kind = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
        classes = {"ControlNetModel": ControlNetModel, "T2IAdapter": T2IAdapter}
        if kind not in classes:
            raise ModelLoadError(path, f"is not a ControlNet or T2I-Adapter (its config names {kind})")
        try:
            model = classes[kind].from_pretrained(path, **options)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(path, f"cannot be loaded as a {kind} ({str(error).splitlines()[0][:300]})") \
                from None
        return ControlNet(model.eval().requires_grad_(False), key)
    state_dict = read_state_dict(path)
    if not _looks_like_controlnet(state_dict):
        raise ModelLoadError(path, "is not a ControlNet (no hint block or zero convolutions in its weights)")
    sidecar = path.with_suffix("")
    family = _family(state_dict)
    if (sidecar / "config.json").is_file():
        config = sidecar
    elif family in ("sd15", "sdxl"):
        config = CONFIGS_DIR / f"controlnet-{family}"
    else:
        raise ModelLoadError(path, f"is a ControlNet for a model Seed Studio ships no config for; put its "
                             f"diffusers config.json in {sidecar}/")
    try:
        model = ControlNetModel.from_single_file(_converted(state_dict, config), config=str(config), **options)
    except (ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(path, f"does not fit the ControlNet architecture "
                             f"({str(error).splitlines()[0][:300]})") from None
    missing = [name for name, value in model.state_dict().items() if value.device.type == "meta"]
    if missing:
        raise ModelLoadError(path, f"is missing {len(missing)} weights (e.g. {missing[0]})")
    if base_unet is not None:
        # A "diff" ControlNet stores its copy of the UNet's encoder as differences from the
        # model it was trained on; the hint block and zero convolutions are stored as they are.
        base = base_unet.state_dict()
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if name in base and base[name].shape == value.shape:
                    value.add_(base[name].to(value))
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
    """UNet keyword arguments carrying the summed residuals of the hints active now
    (ControlNets add to the skip connections and the middle; T2I-Adapters inside the
    encoder blocks)."""
    down_total: list[torch.Tensor] | None = None
    mid_total: torch.Tensor | None = None
    adapter_total: list[torch.Tensor] | None = None
    height, width = latents.shape[2] * 8, latents.shape[3] * 8
    for hint in hints:
        if not hint.active_at(fraction):
            continue
        net = hint.net.model
        condition = hint_tensor(hint, height, width, latents.shape[0], latents.device, net.dtype)
        if type(net).__name__ == "T2IAdapter":
            features = [feature * hint.strength for feature in net(condition)]
            adapter_total = features if adapter_total is None else [a + b for a, b in zip(adapter_total, features)]
            continue
        down, mid = net(latents.to(net.dtype), t, encoder_hidden_states=embedding.to(net.dtype),
                        controlnet_cond=condition, conditioning_scale=hint.strength, return_dict=False, **added)
        down_total = list(down) if down_total is None else [a + b for a, b in zip(down_total, down)]
        mid_total = mid if mid_total is None else mid_total + mid
    residuals: dict[str, Any] = {}
    if down_total is not None:
        residuals.update(down_block_additional_residuals=down_total, mid_block_additional_residual=mid_total)
    if adapter_total is not None:
        residuals["down_intrablock_additional_residuals"] = adapter_total
    return residuals
