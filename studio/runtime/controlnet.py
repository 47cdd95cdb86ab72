"""ControlNets: loading them offline, and the hints they add to a sampling step.

A ControlNet travels on the conditioning (ComfyUI's way): ControlNetApply adds a hint — the
net, its image, a strength and the part of the schedule it acts in — to each conditioning
entry, and the sampler asks every active hint for the residuals it adds to the UNet.

T2I-Adapters load through the same loader: diffusers folders, and single files in diffusers'
layout or in the original TencentARC one (``t2iadapter_*_sd14v1.pth``: the full adapters,
their one-channel sketch variant and the light ones), renamed to diffusers' ``T2IAdapter``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studio.runtime.checkpoints import CONFIGS_DIR, ModelLoadError, read_state_dict
from studio.runtime.device import DevicePolicy
from studio.runtime.families import ModelFamily
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


def _family(state_dict: dict[str, torch.Tensor]) -> ModelFamily | None:
    """Which base model an LDM-layout ControlNet was trained for, from its cross-attention
    width (768 SD 1.x, 1024 SD 2.x, 2048 SDXL)."""
    widths = {value.shape[-1] for key, value in state_dict.items() if key.endswith("attn2.to_k.weight")}
    by_width = {768: ModelFamily.SD15, 1024: ModelFamily.SD2, 2048: ModelFamily.SDXL}
    return by_width.get(max(widths)) if widths else None


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
        for ldm, diffusers in (("label_emb.0.0", "add_embedding.linear_1"),
                               ("label_emb.0.2", "add_embedding.linear_2")):
            for kind in ("weight", "bias"):
                source = f"{prefix}{ldm}.{kind}"
                if source in state_dict and f"{diffusers}.{kind}" not in converted:
                    converted[f"{diffusers}.{kind}"] = state_dict[source]
    return converted


# Keys by which single files are told apart: T2I-Adapters in diffusers' layout start with
# "adapter."; TencentARC's full adapters have conv_in and a flat list of blocks in "body.",
# its light ones a small network per level ("body.0.in_conv", "body.0.body.0.block1", …).
T2I_FULL_KEY, T2I_LIGHT_KEY, T2I_DIFFUSERS_PREFIX = "conv_in.weight", "body.0.in_conv.weight", "adapter."
# TencentARC's full adapters have two blocks per level (the architecture ComfyUI reads too).
T2I_FULL_BLOCKS_PER_LEVEL = 2


def _looks_like_t2i_adapter(state_dict: dict[str, torch.Tensor]) -> bool:
    has_body = any(key.startswith("body.") for key in state_dict)
    return (has_body and (T2I_FULL_KEY in state_dict or T2I_LIGHT_KEY in state_dict)) or any(
        key.startswith(T2I_DIFFUSERS_PREFIX + "body.") for key in state_dict)


def _t2i_diffusers_names(path: Path, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An original-layout (TencentARC) T2I-Adapter's weights under diffusers' names.

    Full adapter: ``body.{2i+j}.block1`` is level i's resnet j (``adapter.body.i.resnets.j``),
    ``body.{2i}.in_conv`` that level's channel change. Light adapter: ``body.i.body.j`` is
    ``adapter.body.i.resnets.j``; ``in_conv``/``out_conv`` keep their names.
    """
    light = T2I_FULL_KEY not in state_dict
    out = {}
    for name, value in state_dict.items():
        parts = name.split(".")
        renamed = None
        if name.startswith("conv_in.") and not light:
            renamed = "adapter." + name
        elif parts[0] == "body" and len(parts) >= 4 and parts[1].isdigit():
            index, rest = int(parts[1]), parts[2:]
            if light:
                if rest[0] in ("in_conv", "out_conv") and len(rest) == 2:
                    renamed = f"adapter.body.{index}.{rest[0]}.{rest[1]}"
                elif rest[0] == "body" and len(rest) == 4 and rest[1].isdigit() and rest[2] in ("block1", "block2"):
                    renamed = f"adapter.body.{index}.resnets.{rest[1]}.{rest[2]}.{rest[3]}"
            else:
                level, block = divmod(index, T2I_FULL_BLOCKS_PER_LEVEL)
                if rest[0] in ("block1", "block2") and len(rest) == 2:
                    renamed = f"adapter.body.{level}.resnets.{block}.{rest[0]}.{rest[1]}"
                elif rest[0] == "in_conv" and block == 0 and len(rest) == 2:
                    renamed = f"adapter.body.{level}.in_conv.{rest[1]}"
                elif rest[0] in ("skep", "down_opt"):
                    raise ModelLoadError(path, f"is a T2I-Adapter variant with {rest[0]} layers ({name}), which "
                                         "diffusers' T2IAdapter has no place for; Seed Studio reads TencentARC's "
                                         "published full, sketch and light adapters")
        if renamed is None:
            raise ModelLoadError(path, f"looks like a T2I-Adapter in TencentARC's layout but has a weight "
                                 f"{name!r} that layout does not have")
        out[renamed] = value
    return out


def _t2i_config(path: Path, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The ``T2IAdapter`` arguments that fit weights in diffusers' layout."""
    def levels(pattern: str) -> list[int]:
        return sorted({int(key.split(".")[2]) for key in state_dict
                       if key.startswith("adapter.body.") and pattern in key})

    def resnets(level: int) -> int:
        return len({key.split(".")[4] for key in state_dict if key.startswith(f"adapter.body.{level}.resnets.")})

    if "adapter.conv_in.weight" in state_dict:
        first = state_dict["adapter.conv_in.weight"]
        unshuffled = int(first.shape[1])
        body = levels(".resnets.")
        channels = [int(state_dict[f"adapter.body.{i}.resnets.0.block1.weight"].shape[0]) for i in body]
        kernel = int(state_dict["adapter.body.0.resnets.0.block2.weight"].shape[-1])
        if kernel != 1:
            raise ModelLoadError(path, f"is a T2I-Adapter whose blocks end in {kernel}×{kernel} convolutions; "
                                 "diffusers' T2IAdapter (and TencentARC's published adapters) use 1×1")
        # SDXL's full adapters unshuffle by 16 (3 or 1 colour channels: 768 or 256 inputs),
        # SD 1.x's by 8 (192 or 64); ComfyUI tells them apart the same way.
        adapter_type, factor = (("full_adapter_xl", 16) if unshuffled in (256, 768) else ("full_adapter", 8))
    elif "adapter.body.0.in_conv.weight" in state_dict:
        unshuffled = int(state_dict["adapter.body.0.in_conv.weight"].shape[1])
        body = levels(".out_conv.")
        widths = [int(state_dict[f"adapter.body.{i}.out_conv.weight"].shape[0]) for i in body]
        # diffusers' light adapter repeats its last width once more (320, 640, 1280 → four levels).
        channels, adapter_type, factor = widths[:-1], "light_adapter", 8
        if len(widths) < 2 or widths[-1] != widths[-2]:
            raise ModelLoadError(path, f"is a light T2I-Adapter with level widths {widths}; diffusers' light "
                                 "adapter needs its last two levels equally wide")
    else:
        raise ModelLoadError(path, "looks like a T2I-Adapter but has neither conv_in nor body.0.in_conv weights")
    if body != list(range(len(body))) or unshuffled % (factor * factor):
        raise ModelLoadError(path, f"is a T2I-Adapter of a shape diffusers' T2IAdapter cannot take (levels {body}, "
                             f"{unshuffled} input channels)")
    return {"in_channels": unshuffled // (factor * factor), "channels": channels, "num_res_blocks": resnets(0),
            "downscale_factor": factor, "adapter_type": adapter_type}


def _one_channel_as_rgb(state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """A one-channel (sketch) adapter reads the mean of the hint's three channels, as ComfyUI
    feeds it; that mean is folded into its first convolution, which then takes the RGB hint
    every T2I-Adapter is given. (Pixel-unshuffling puts colour c of offset k at channel
    c·f² + k, so the weights for each colour are the one-channel weights over three.)"""
    if config["in_channels"] != 1:
        return
    name = "adapter.conv_in.weight" if "adapter.conv_in.weight" in state_dict else "adapter.body.0.in_conv.weight"
    weight = state_dict[name]
    state_dict[name] = torch.cat([weight / 3] * 3, dim=1)
    config["in_channels"] = 3


def load_t2i_adapter_file(path: Path, state_dict: dict[str, torch.Tensor], policy: DevicePolicy) -> Any:
    """A single-file T2I-Adapter, in diffusers' layout or TencentARC's original one."""
    from diffusers import T2IAdapter

    if not any(key.startswith(T2I_DIFFUSERS_PREFIX) for key in state_dict):
        state_dict = _t2i_diffusers_names(path, state_dict)
    state_dict = dict(state_dict)
    config = _t2i_config(path, state_dict)
    _one_channel_as_rgb(state_dict, config)
    model = T2IAdapter(**config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ModelLoadError(path, f"does not fit the T2I-Adapter architecture ({str(error).splitlines()[0][:300]}"
                             ")") from None
    # Cast only when needed: diffusers warns on every .to(dtype), even to the same one.
    return model if model.dtype == policy.dtype else model.to(policy.dtype)


def load_controlnet(path: Path, policy: DevicePolicy, key: str, base_unet: Any = None) -> ControlNet:
    """A ControlNet or T2I-Adapter: a diffusers folder, or a single file in the original or
    diffusers layout (SD 1.x and SDXL ControlNets read with shipped configs, others need a
    config folder of the same name beside the file; a T2I-Adapter's shape is read from its
    weights). With ``base_unet``, the file holds differences to
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
    # TencentARC's adapters may keep their weights under "adapter", as ComfyUI also reads them.
    state_dict = read_state_dict(path, wrappers=("state_dict", "adapter"))
    if not _looks_like_controlnet(state_dict):
        if _looks_like_t2i_adapter(state_dict):
            return ControlNet(load_t2i_adapter_file(path, state_dict, policy).eval().requires_grad_(False), key)
        if "style_embedding" in state_dict:
            raise ModelLoadError(path, "is a T2I style adapter, which adds to the prompt rather than guiding with a "
                                 "hint image; it is not a ControlNet")
        raise ModelLoadError(path, "is not a ControlNet or T2I-Adapter (no hint block, zero convolutions or "
                             "adapter blocks in its weights)")
    sidecar = path.with_suffix("")
    family = _family(state_dict)
    if (sidecar / "config.json").is_file():
        config = sidecar
    elif family in (ModelFamily.SD15, ModelFamily.SDXL):
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
            adapter_total = (features if adapter_total is None
                             else [a + b for a, b in zip(adapter_total, features, strict=True)])
            continue
        down, mid = net(latents.to(net.dtype), t, encoder_hidden_states=embedding.to(net.dtype),
                        controlnet_cond=condition, conditioning_scale=hint.strength, return_dict=False, **added)
        down_total = list(down) if down_total is None else [a + b for a, b in zip(down_total, down, strict=True)]
        mid_total = mid if mid_total is None else mid_total + mid
    residuals: dict[str, Any] = {}
    if down_total is not None:
        residuals.update(down_block_additional_residuals=down_total, mid_block_additional_residual=mid_total)
    if adapter_total is not None:
        residuals["down_intrablock_additional_residuals"] = adapter_total
    return residuals
