"""Names of UNet weights in the original CompVis/LDM layout, from their diffusers names.

kohya's SDXL LoRAs name UNet layers the LDM way (``input_blocks_4_1_…``), while diffusers
names them ``down_blocks.1.attentions.0.…``; this maps one onto the other for any UNet
configuration (the layout diffusers' single-file converter reads).
"""

from __future__ import annotations

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
          "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
         "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
         "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def _resnet(rest: str) -> str:
    name, _, tail = rest.partition(".")
    return f"{RESNET[name]}.{tail}" if tail else RESNET[name]


def unet_ldm_name(name: str, layers_per_block: int, up_blocks_with_attention: frozenset[int]) -> str | None:
    """The LDM name of a diffusers UNet module or parameter (``down_blocks.0.resnets.1.conv1``
    → ``input_blocks.2.0.in_layers.2``), or None when it has no LDM counterpart."""
    for prefix, ldm in FIXED.items():
        if name == prefix or name.startswith(prefix + "."):
            return ldm + name[len(prefix):]
    parts = name.split(".")
    try:
        if parts[0] == "down_blocks":
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            first = 1 + block * (layers_per_block + 1)
            if kind == "resnets":
                return f"input_blocks.{first + index}.0.{_resnet(rest)}".rstrip(".")
            if kind == "attentions":
                return f"input_blocks.{first + index}.1.{rest}".rstrip(".")
            if kind == "downsamplers":
                return f"input_blocks.{first + layers_per_block}.0.op.{'.'.join(parts[5:])}".rstrip(".")
        elif parts[0] == "mid_block":
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                return f"middle_block.{index * 2}.{_resnet(rest)}".rstrip(".")
            return f"middle_block.1.{rest}".rstrip(".")
        elif parts[0] == "up_blocks":
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            first = block * (layers_per_block + 1)
            if kind == "resnets":
                return f"output_blocks.{first + index}.0.{_resnet(rest)}".rstrip(".")
            if kind == "attentions":
                return f"output_blocks.{first + index}.1.{rest}".rstrip(".")
            if kind == "upsamplers":
                slot = 2 if block in up_blocks_with_attention else 1
                return f"output_blocks.{first + layers_per_block}.{slot}.{'.'.join(parts[4:])}".rstrip(".")
    except (IndexError, ValueError, KeyError):
        return None
    return None


def unet_layout(unet) -> tuple[int, frozenset[int]]:
    """What ``unet_ldm_name`` needs to know about a UNet."""
    with_attention = frozenset(i for i, block in enumerate(unet.up_blocks) if hasattr(block, "attentions"))
    return unet.config.layers_per_block, with_attention
