"""Makes tests/nodes/data/comfy_nodes.safetensors: what ComfyUI's own image, mask, latent and
conditioning nodes give for small hand-made inputs, which tests/nodes/test_comfy_nodes.py
compares Seed Studio's nodes with. Not a test; CI never needs ComfyUI.

Run it with ComfyUI's venv (DEVELOPERS.md, "ComfyUI as a reference"; the data was made at
ComfyUI commit 618b803, Pillow 13.0.0, torch 2.13.0 on the CPU), from the repository root:

    /tmp/comfy-venv/bin/python tests/nodes/comfy_nodes_reference.py --comfyui /tmp/ComfyUI

ComfyUI's node classes are called directly; its server module is replaced by a stand-in
(GetImageSize only uses it to show the size on the node). Each entry is stored under
``<case>.<name>``: the inputs the test feeds both sides, and ``<case>.out`` ComfyUI's result.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import torch

OUT = Path(__file__).parent / "data" / "comfy_nodes.safetensors"


def ramp_image(batch: int, height: int, width: int) -> torch.Tensor:
    """A smooth, colourful B×H×W×3 test picture in 0..1, the same on any machine."""
    b = torch.arange(batch, dtype=torch.float32)[:, None, None, None]
    y = torch.arange(height, dtype=torch.float32)[None, :, None, None]
    x = torch.arange(width, dtype=torch.float32)[None, None, :, None]
    c = torch.arange(3, dtype=torch.float32)[None, None, None, :]
    return (torch.sin(0.7 * x + 1.3 * y + 2.1 * c + b) * 0.5 + 0.5).contiguous()


def ramp_latent(batch: int, channels: int, height: int, width: int, phase: float = 0.0) -> torch.Tensor:
    b = torch.arange(batch, dtype=torch.float32)[:, None, None, None]
    c = torch.arange(channels, dtype=torch.float32)[None, :, None, None]
    y = torch.arange(height, dtype=torch.float32)[None, None, :, None]
    x = torch.arange(width, dtype=torch.float32)[None, None, None, :]
    return torch.cos(0.9 * x - 0.4 * y + 1.7 * c + 0.5 * b + phase).contiguous()


def grey_ramp(height: int, width: int) -> torch.Tensor:
    """A 1×H×W×3 diagonal ramp from black to white, slightly tinted, for dithering."""
    y = torch.arange(height, dtype=torch.float32)[:, None, None]
    x = torch.arange(width, dtype=torch.float32)[None, :, None]
    tint = torch.tensor([1.0, 0.9, 0.8])
    return ((x + y) / (height + width - 2) * tint)[None].contiguous()


def soft_mask(batch: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(batch, height, width)
    mask[:, height // 2 - 1:height // 2 + 2, width // 2 - 1:width // 2 + 3] = 1.0
    mask[:, height // 2, width // 2] = 0.9
    mask[:, 1, 1] = 0.5
    if batch > 1:
        mask[1, -1, -2] = 0.75
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True)
    args = parser.parse_args()
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, str(args.comfyui))
    torch.set_num_threads(1)
    import comfy.options

    comfy.options.enable_args_parsing()
    server = types.ModuleType("server")
    server.PromptServer = type("PromptServer", (), {"instance": None})
    sys.modules["server"] = server
    # ComfyUI's modules import each other in this order: its nodes first.
    # isort: off
    from safetensors.torch import save_file

    import nodes
    import comfy_extras.nodes_post_processing as post
    import comfy_extras.nodes_images as images
    import comfy_extras.nodes_latent as latents
    import comfy_extras.nodes_mask as masks
    # isort: on

    def value(output):
        # Old-style nodes return a tuple; the newer API an object holding one.
        return output[0] if isinstance(output, tuple) else output.result[0]

    data: dict[str, torch.Tensor] = {}
    picture = grey_ramp(16, 16)
    data["quantize.image"] = picture
    for dither in ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"):
        data[f"quantize.{dither}.out"] = value(post.Quantize.execute(picture, 4, dither))

    data["filter.image"] = ramp_image(2, 9, 11)
    data["blur.out"] = value(post.Blur.execute(data["filter.image"], 2, 0.7))
    data["sharpen.out"] = value(post.Sharpen.execute(data["filter.image"], 2, 0.5, 0.6))

    data["feather.mask"] = torch.ones(1, 6, 8)
    data["feather.out"] = value(masks.FeatherMask.execute(data["feather.mask"], 3, 2, 0, 0))

    data["grow.mask"] = soft_mask(2, 7, 9)
    for expand in (2, -1):
        for tapered in (True, False):
            data[f"grow.{expand}.{tapered}.out"] = value(masks.GrowMask.execute(data["grow.mask"], expand, tapered))

    destination, source = ramp_image(2, 6, 7), 1 - ramp_image(1, 3, 4)
    data.update({"composite.destination": destination, "composite.source": source,
                 "composite.mask": soft_mask(1, 3, 4)})
    data["composite.plain.out"] = value(masks.ImageCompositeMasked.execute(destination, source, 4, 2, False))
    data["composite.masked.out"] = value(masks.ImageCompositeMasked.execute(destination, source, 1, 3, False,
                                                                            data["composite.mask"]))
    data["composite.resized.out"] = value(masks.ImageCompositeMasked.execute(destination, source, 0, 0, True,
                                                                             data["composite.mask"]))

    data["mask_composite.destination"] = torch.linspace(0, 1, 30).reshape(1, 5, 6)
    data["mask_composite.source"] = torch.tensor([[[0.2, 0.9, 0.6], [1.0, 0.4, 0.0], [0.7, 0.3, 0.5]]])
    for operation in ("multiply", "add", "subtract", "and", "or", "xor"):
        data[f"mask_composite.{operation}.out"] = value(masks.MaskComposite.execute(
            data["mask_composite.destination"], data["mask_composite.source"], 4, 3, operation))

    data["batch.image1"], data["batch.image2"] = ramp_image(1, 6, 8), ramp_image(2, 4, 4)
    data["batch.out"] = value(nodes.ImageBatch().batch(data["batch.image1"], data["batch.image2"]))
    data["batch.wide.image2"] = ramp_image(1, 5, 13)
    data["batch.wide.out"] = value(nodes.ImageBatch().batch(data["batch.image1"], data["batch.wide.image2"]))

    data["rotate.out"] = value(images.ImageRotate.execute(data["batch.image1"], "90 degrees"))
    data["flip.out"] = value(images.ImageFlip.execute(data["batch.image1"], "y-axis: horizontally"))

    for megapixels, steps in ((0.01, 1), (0.001, 1), (0.5, 8), (0.05, 64)):
        scaled = value(post.ImageScaleToTotalPixels.execute(torch.zeros(1, 32, 64, 3), "nearest-exact",
                                                            megapixels, steps))
        data[f"total_pixels.{megapixels}.{steps}.size"] = torch.tensor(scaled.shape[1:3])

    first, second = ramp_latent(1, 4, 4, 6), ramp_latent(1, 4, 3, 3, phase=0.5)
    data.update({"latent.first": first, "latent.second": second, "latent.batch2": ramp_latent(2, 4, 5, 5, 1.0)})
    blended = value(nodes.LatentBlend().blend({"samples": first}, {"samples": second}, 0.3))
    data["latent_blend.out"] = blended["samples"]
    data["latent_add.out"] = value(latents.LatentAdd.execute({"samples": data["latent.batch2"]},
                                                             {"samples": first}))["samples"]
    data["latent_subtract.out"] = value(latents.LatentSubtract.execute({"samples": first},
                                                                       {"samples": second}))["samples"]
    batched = value(latents.LatentBatch.execute({"samples": first}, {"samples": data["latent.batch2"]}))
    data["latent_batch.out"] = batched["samples"]
    data["latent_batch.batch_index"] = torch.tensor(batched["batch_index"])
    data["latent_rotate.out"] = value(nodes.LatentRotate().rotate({"samples": first}, "90 degrees"))["samples"]
    data["latent_flip.out"] = value(nodes.LatentFlip().flip({"samples": first}, "x-axis: vertically"))["samples"]
    data["latent_crop.input"] = ramp_latent(1, 4, 12, 10)
    data["latent_crop.out"] = value(nodes.LatentCrop().crop({"samples": data["latent_crop.input"]},
                                                            64, 72, 40, 24))["samples"]

    to_embedding, to_pooled = ramp_latent(1, 1, 5, 8)[:, 0], ramp_latent(1, 1, 1, 3)[:, 0]
    from_embedding, from_pooled = ramp_latent(1, 1, 3, 8, 2.0)[:, 0], ramp_latent(1, 1, 1, 3, 2.0)[:, 0]
    data.update({"cond.to": to_embedding, "cond.to_pooled": to_pooled, "cond.from": from_embedding,
                 "cond.from_pooled": from_pooled})
    to = [[to_embedding, {"pooled_output": to_pooled}]]
    from_ = [[from_embedding, {"pooled_output": from_pooled}]]
    [(averaged, extras)] = value(nodes.ConditioningAverage().addWeighted(to, from_, 0.25))
    data["cond_average.out"], data["cond_average.pooled"] = averaged, extras["pooled_output"]
    [(averaged, _)] = value(nodes.ConditioningAverage().addWeighted(from_, to, 0.25))
    data["cond_average.cut.out"] = averaged
    [(joined, _)] = value(nodes.ConditioningConcat().concat(to, from_))
    data["cond_concat.out"] = joined

    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensor.contiguous() for key, tensor in data.items()}, str(OUT))
    print(f"wrote {len(data)} tensors to {OUT}")


if __name__ == "__main__":
    main()
