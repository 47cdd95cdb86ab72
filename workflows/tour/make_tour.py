"""Writes the tour workflows (and workflows/default.json) for the embedded demo models.
Run from the project root: python workflows/tour/make_tour.py

Every workflow renders 64×64 pictures with the demo base model ``seed-shapes``; each adds one
demo model or technique. Node ids are stable, so scripts and tests can address them
(``--set 2.text=...``): 1 checkpoint, 2 prompt, 3 negative prompt, 4 sampler, 5 decode,
6 save, 7 empty latent.
"""

from __future__ import annotations

from pathlib import Path

from studio.graph import Workflow
from studio.graph.format import save

TOUR = Path(__file__).resolve().parent
CHECKPOINT = "seed-shapes"
SAMPLER = {"seed": 7, "steps": 20, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}


def base(name: str, description: str, prompt: str, negative: str = "", prefix: str = "tour",
         empty_latent: bool = True) -> Workflow:
    workflow = Workflow()
    workflow.meta.update({"name": name, "description": description})
    workflow.add_node("CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}, title="Demo model", position=(0, 150),
                      node_id="1")
    workflow.add_node("CLIPTextEncode", {"text": prompt}, title="Prompt", position=(340, 0), node_id="2")
    workflow.add_node("CLIPTextEncode", {"text": negative}, title="Negative prompt", position=(340, 300),
                      node_id="3")
    workflow.add_node("KSampler", dict(SAMPLER), position=(760, 100), node_id="4")
    workflow.add_node("VAEDecode", {}, position=(1120, 100), node_id="5")
    workflow.add_node("SaveImage", {"filename_prefix": prefix}, position=(1360, 100), node_id="6")
    wire(workflow, [
        ("1", "CLIP", "2", "clip"), ("1", "CLIP", "3", "clip"), ("1", "MODEL", "4", "model"),
        ("2", "CONDITIONING", "4", "positive"), ("3", "CONDITIONING", "4", "negative"),
        ("4", "LATENT", "5", "samples"), ("1", "VAE", "5", "vae"), ("5", "IMAGE", "6", "images")])
    if empty_latent:
        workflow.add_node("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}, position=(340, 560),
                          node_id="7")
        workflow.connect("7", "LATENT", "4", "latent_image")
    return workflow


def default() -> Workflow:
    return base("Seed Studio demo: text to image",
                "The embedded demo model draws what the prompt says: a shape (circle, square, triangle), its "
                "colour and size, where it sits (left, right, top, bottom, centre) and the background colour. "
                "Edit the prompt and press Run.",
                "a large orange circle in the centre, purple background", prefix="demo/txt2img")


def wire(workflow: Workflow, links: list[tuple[str, str, str, str]]) -> None:
    """Connect each (source node, output, target node, input) of ``links``, in order."""
    for source, output, target, input_name in links:
        workflow.connect(source, output, target, input_name)


def start_from_picture(workflow: Workflow, image: str, encoder: str, values: dict) -> None:
    """The sampler (node 4) starts from an input picture: loaded (node 8) and encoded by
    ``encoder`` (node 9) with the checkpoint's VAE, instead of from an empty latent."""
    workflow.add_node("LoadImage", {"image": image}, position=(0, 450), node_id="8")
    workflow.add_node(encoder, values, position=(340, 560), node_id="9")
    workflow.connect("8", "IMAGE", "9", "pixels")
    workflow.connect("1", "VAE", "9", "vae")
    workflow.connect("9", "LATENT", "4", "latent_image")


def img2img() -> Workflow:
    workflow = base("Tour: image to image", "Repaints the input picture as the prompt says; denoise sets how "
                    "much may change (0 keeps the picture, 1 ignores it).",
                    "a large yellow circle on the left, blue background", prefix="tour/img2img", empty_latent=False)
    workflow.node("4").values["denoise"] = 0.75
    start_from_picture(workflow, "shapes_scene.png", "VAEEncode", {})
    return workflow


def inpaint() -> Workflow:
    workflow = base("Tour: inpaint", "Paints only where the input picture is transparent (bottom right); the "
                    "rest of the picture is kept.",
                    "a small white circle at the bottom, green background", prefix="tour/inpaint",
                    empty_latent=False)
    start_from_picture(workflow, "shapes_inpaint.png", "VAEEncodeForInpaint", {"grow_mask_by": 6})
    workflow.connect("8", "MASK", "9", "mask")
    return workflow


def lora() -> Workflow:
    workflow = base("Tour: LoRA", "The demo LoRA paints shapes in horizontal stripes; its strength (0 to 1) "
                    "sets how much. The LoRA changes both the model and the text encoder.",
                    "a large red square in the centre, white background", prefix="tour/lora")
    workflow.add_node("LoraLoader", {"lora_name": "seed-shapes-stripes.safetensors", "strength_model": 1.0,
                                     "strength_clip": 1.0}, position=(340, -250), node_id="8")
    workflow.connect("1", "MODEL", "8", "model")
    workflow.connect("1", "CLIP", "8", "clip")
    wire(workflow, [("8", "MODEL", "4", "model"), ("8", "CLIP", "2", "clip"),
                    ("8", "CLIP", "3", "clip")])
    return workflow


def controlnet() -> Workflow:
    workflow = base("Tour: ControlNet", "The demo ControlNet puts the shape where the hint picture's white blob "
                    "is (bottom right), whatever place the prompt names (here the left). It guides the prompt "
                    "and the negative prompt both (ControlNetApplyAdvanced): with the prompt alone guided, cfg "
                    "pushes the colours off.",
                    "a large red circle on the left, black background", prefix="tour/controlnet")
    workflow.add_node("ControlNetLoader", {"control_net_name": "seed-shapes-blob"}, position=(340, -300),
                      node_id="8")
    workflow.add_node("LoadImage", {"image": "shapes_hint.png"}, position=(0, -300), node_id="9")
    workflow.add_node("ControlNetApplyAdvanced", {"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0},
                      position=(560, -150), node_id="10")
    wire(workflow, [("2", "CONDITIONING", "10", "positive"),
                    ("3", "CONDITIONING", "10", "negative"),
                    ("8", "CONTROL_NET", "10", "control_net"),
                    ("9", "IMAGE", "10", "image"), ("10", "positive", "4", "positive"),
                    ("10", "negative", "4", "negative")])
    return workflow


def hires_fix() -> Workflow:
    workflow = base("Tour: hires fix with the upscaler", "Renders at 64×64, doubles the picture with the demo "
                    "upscaler, and refines it at 128×128 with a light second pass.",
                    "a small green triangle on the right, black background", prefix="tour/hires")
    workflow.add_node("UpscaleModelLoader", {"model_name": "seed-shapes-2x.safetensors"}, position=(1120, 350),
                      node_id="8")
    workflow.add_node("ImageUpscaleWithModel", {}, position=(1360, 350), node_id="9")
    workflow.add_node("VAEEncode", {}, position=(1600, 350), node_id="10")
    workflow.add_node("KSampler", dict(SAMPLER, denoise=0.3, steps=10), title="Refine", position=(1840, 100),
                      node_id="11")
    workflow.add_node("VAEDecode", {}, position=(2200, 100), node_id="12")
    wire(workflow, [
        ("8", "UPSCALE_MODEL", "9", "upscale_model"), ("5", "IMAGE", "9", "image"), ("9", "IMAGE", "10", "pixels"),
        ("1", "VAE", "10", "vae"), ("1", "MODEL", "11", "model"), ("2", "CONDITIONING", "11", "positive"),
        ("3", "CONDITIONING", "11", "negative"), ("10", "LATENT", "11", "latent_image"),
        ("11", "LATENT", "12", "samples"), ("1", "VAE", "12", "vae"), ("12", "IMAGE", "6", "images")])
    workflow.node("6").position = (2440, 100)
    return workflow


def custom_sampling() -> Workflow:
    """KSampler's parts as nodes; node 4 is the sampler that takes them."""
    workflow = base("Tour: custom sampling", "KSampler taken apart: the noise (from a seed), the guider (model, "
                    "prompts and cfg), the sampler algorithm and the σ schedule are nodes of their own; here "
                    "DPM++ 2M on a Karras schedule. Swap any part.",
                    "a large blue triangle at the top, yellow background", prefix="tour/custom_sampling")
    workflow.remove_node("4")
    workflow.add_node("SamplerCustomAdvanced", {}, title="Sampler", position=(980, 100), node_id="4")
    workflow.add_node("RandomNoise", {"noise_seed": 7}, title="Noise", position=(760, -250), node_id="8")
    workflow.add_node("CFGGuider", {"cfg": 5.0}, title="Guider", position=(760, -90), node_id="9")
    workflow.add_node("KSamplerSelect", {"sampler_name": "dpmpp_2m"}, title="Algorithm", position=(760, 400),
                      node_id="10")
    workflow.add_node("BasicScheduler", {"scheduler": "karras", "steps": 20, "denoise": 1.0}, title="Schedule",
                      position=(760, 540), node_id="11")
    wire(workflow, [
        ("1", "MODEL", "9", "model"), ("2", "CONDITIONING", "9", "positive"), ("3", "CONDITIONING", "9", "negative"),
        ("1", "MODEL", "11", "model"), ("8", "NOISE", "4", "noise"), ("9", "GUIDER", "4", "guider"),
        ("10", "SAMPLER", "4", "sampler"), ("11", "SIGMAS", "4", "sigmas"), ("7", "LATENT", "4", "latent_image"),
        ("4", "output", "5", "samples")])
    workflow.node("5").position, workflow.node("6").position = (1300, 100), (1540, 100)
    return workflow


def model_merge() -> Workflow:
    workflow = base("Tour: model merging", "Merges the demo model half and half with itself plus its stripes "
                    "LoRA: the stripes come through at about half strength. Merges are computed while sampling; "
                    "the models on disk are untouched (CheckpointSave would write the merge as a file).",
                    "a large red square in the centre, white background", prefix="tour/merge")
    workflow.add_node("LoraLoader", {"lora_name": "seed-shapes-stripes.safetensors", "strength_model": 1.0,
                                     "strength_clip": 1.0}, position=(340, -300), node_id="8")
    workflow.add_node("ModelMergeSimple", {"ratio": 0.5}, title="Merge", position=(560, -150), node_id="9")
    wire(workflow, [("1", "MODEL", "8", "model"), ("1", "CLIP", "8", "clip"),
                    ("1", "MODEL", "9", "model1"), ("8", "MODEL", "9", "model2"),
                    ("9", "MODEL", "4", "model")])
    return workflow


def tidy(workflow: Workflow) -> Workflow:
    """Move nodes apart where they would overlap or touch on the canvas (pictures included)."""
    from studio.graph.layout import spread_out
    from studio.registry import build_registry

    registry = build_registry([])
    for node_id, (_, after) in spread_out(workflow, lambda t: registry.get(t).spec() if registry.get(t) else None).items():
        workflow.move_node(node_id, after)
    return workflow


def main() -> None:
    save(tidy(default()), TOUR.parent / "default.json")
    for index, build in enumerate((default, img2img, inpaint, lora, controlnet, hires_fix, custom_sampling,
                                   model_merge), 1):
        name = "txt2img" if build is default else build.__name__
        workflow = build()
        if build is default:
            workflow.meta["name"] = "Tour: text to image"
            workflow.node("6").values["filename_prefix"] = "tour/txt2img"
        save(tidy(workflow), TOUR / f"{index}_{name}.json")


if __name__ == "__main__":
    main()
