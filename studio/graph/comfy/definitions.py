"""What Seed Studio knows of ComfyUI's core node definitions, as needed to read its files.

A ComfyUI UI-format file stores field values as a positional list (``widgets_values``) in the
order the node's ``INPUT_TYPES`` declares its widget inputs, with extra entries the front end
adds: ``control_after_generate`` after seed inputs ("fixed", "increment", "decrement",
"randomize") and the upload button's value after LoadImage's file name. The API format names
inputs and refers to outputs by index. So reading either needs, per node type, the widget
order and the outputs; those are listed here for ComfyUI's core nodes (taken from the
``INPUT_TYPES`` / ``RETURN_TYPES`` of ComfyUI's ``nodes.py`` and ``comfy_extras/`` and from
files its front end writes). Node types Seed Studio registers itself are read from their own
declarations when they are not listed here.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROL = "control_after_generate"
UPLOAD = "upload"
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


@dataclass(frozen=True)
class ComfyNodeDef:
    """The parts of a ComfyUI node definition that its files depend on."""

    widgets: tuple[str, ...]  # widget inputs in declared order, with CONTROL / UPLOAD slots
    inputs: tuple[tuple[str, str], ...] = ()  # wired-only inputs: (name, type)
    outputs: tuple[tuple[str, str], ...] = ()  # (name, type) in slot order


def _d(widgets: str = "", inputs: str = "", outputs: str = "") -> ComfyNodeDef:
    def pairs(text: str) -> tuple[tuple[str, str], ...]:
        return tuple(tuple(item.split(":")) for item in text.split())  # type: ignore[misc]
    return ComfyNodeDef(tuple(widgets.split()), pairs(inputs), pairs(outputs))


_SAMPLER_LINKS = "model:MODEL positive:CONDITIONING negative:CONDITIONING latent_image:LATENT"
_TILED = "tile_size overlap temporal_size temporal_overlap"

COMFY_NODES: dict[str, ComfyNodeDef] = {
    "KSampler": _d(f"seed {CONTROL} steps cfg sampler_name scheduler denoise", _SAMPLER_LINKS, "LATENT:LATENT"),
    "KSamplerAdvanced": _d(f"add_noise noise_seed {CONTROL} steps cfg sampler_name scheduler start_at_step "
                           "end_at_step return_with_leftover_noise", _SAMPLER_LINKS, "LATENT:LATENT"),
    "CheckpointLoaderSimple": _d("ckpt_name", "", "MODEL:MODEL CLIP:CLIP VAE:VAE"),
    "CheckpointLoader": _d("config_name ckpt_name", "", "MODEL:MODEL CLIP:CLIP VAE:VAE"),
    "VAELoader": _d("vae_name", "", "VAE:VAE"),
    "CLIPTextEncode": _d("text", "clip:CLIP", "CONDITIONING:CONDITIONING"),
    "CLIPTextEncodeSDXL": _d("width height crop_w crop_h target_width target_height text_g text_l",
                             "clip:CLIP", "CONDITIONING:CONDITIONING"),
    "CLIPTextEncodeSDXLRefiner": _d("ascore width height text", "clip:CLIP", "CONDITIONING:CONDITIONING"),
    "CLIPSetLastLayer": _d("stop_at_clip_layer", "clip:CLIP", "CLIP:CLIP"),
    "ConditioningCombine": _d("", "conditioning_1:CONDITIONING conditioning_2:CONDITIONING",
                              "CONDITIONING:CONDITIONING"),
    "ConditioningSetArea": _d("width height x y strength", "conditioning:CONDITIONING", "CONDITIONING:CONDITIONING"),
    "ConditioningZeroOut": _d("", "conditioning:CONDITIONING", "CONDITIONING:CONDITIONING"),
    "EmptyLatentImage": _d("width height batch_size", "", "LATENT:LATENT"),
    "VAEDecode": _d("", "samples:LATENT vae:VAE", "IMAGE:IMAGE"),
    "VAEEncode": _d("", "pixels:IMAGE vae:VAE", "LATENT:LATENT"),
    "VAEDecodeTiled": _d(_TILED, "samples:LATENT vae:VAE", "IMAGE:IMAGE"),
    "VAEEncodeTiled": _d(_TILED, "pixels:IMAGE vae:VAE", "LATENT:LATENT"),
    "VAEEncodeForInpaint": _d("grow_mask_by", "pixels:IMAGE vae:VAE mask:MASK", "LATENT:LATENT"),
    "SetLatentNoiseMask": _d("", "samples:LATENT mask:MASK", "LATENT:LATENT"),
    "LatentUpscale": _d("upscale_method width height crop", "samples:LATENT", "LATENT:LATENT"),
    "LatentUpscaleBy": _d("upscale_method scale_by", "samples:LATENT", "LATENT:LATENT"),
    "LatentFromBatch": _d("batch_index length", "samples:LATENT", "LATENT:LATENT"),
    "RepeatLatentBatch": _d("amount", "samples:LATENT", "LATENT:LATENT"),
    "LatentComposite": _d("x y feather", "samples_to:LATENT samples_from:LATENT", "LATENT:LATENT"),
    "LatentCompositeMasked": _d("x y resize_source", "destination:LATENT source:LATENT mask:MASK", "LATENT:LATENT"),
    "ImagePadForOutpaint": _d("left top right bottom feathering", "image:IMAGE", "IMAGE:IMAGE MASK:MASK"),
    "LoraLoader": _d("lora_name strength_model strength_clip", "model:MODEL clip:CLIP", "MODEL:MODEL CLIP:CLIP"),
    "LoraLoaderModelOnly": _d("lora_name strength_model", "model:MODEL", "MODEL:MODEL"),
    "ControlNetLoader": _d("control_net_name", "", "CONTROL_NET:CONTROL_NET"),
    "DiffControlNetLoader": _d("control_net_name", "model:MODEL", "CONTROL_NET:CONTROL_NET"),
    "ControlNetApply": _d("strength", "conditioning:CONDITIONING control_net:CONTROL_NET image:IMAGE",
                          "CONDITIONING:CONDITIONING"),
    "ControlNetApplyAdvanced": _d("strength start_percent end_percent",
                                  "positive:CONDITIONING negative:CONDITIONING control_net:CONTROL_NET "
                                  "image:IMAGE vae:VAE", "positive:CONDITIONING negative:CONDITIONING"),
    "UpscaleModelLoader": _d("model_name", "", "UPSCALE_MODEL:UPSCALE_MODEL"),
    "ImageUpscaleWithModel": _d("", "upscale_model:UPSCALE_MODEL image:IMAGE", "IMAGE:IMAGE"),
    "LoadImage": _d(f"image {UPLOAD}", "", "IMAGE:IMAGE MASK:MASK"),
    "LoadImageMask": _d(f"image channel {UPLOAD}", "", "MASK:MASK"),
    "SaveImage": _d("filename_prefix", "images:IMAGE"),
    "PreviewImage": _d("", "images:IMAGE"),
    "ImageScale": _d("upscale_method width height crop", "image:IMAGE", "IMAGE:IMAGE"),
    "ImageScaleBy": _d("upscale_method scale_by", "image:IMAGE", "IMAGE:IMAGE"),
    "ImageInvert": _d("", "image:IMAGE", "IMAGE:IMAGE"),
    "ImageBlend": _d("blend_factor blend_mode", "image1:IMAGE image2:IMAGE", "IMAGE:IMAGE"),
    "ImageCrop": _d("width height x y", "image:IMAGE", "IMAGE:IMAGE"),
    "EmptyImage": _d("width height batch_size color", "", "IMAGE:IMAGE"),
    "ImageToMask": _d("channel", "image:IMAGE", "MASK:MASK"),
    "MaskToImage": _d("", "mask:MASK", "IMAGE:IMAGE"),
    "ThresholdMask": _d("value", "mask:MASK", "MASK:MASK"),
    "InvertMask": _d("", "mask:MASK", "MASK:MASK"),
    "Canny": _d("low_threshold high_threshold", "image:IMAGE", "IMAGE:IMAGE"),
    "PrimitiveInt": _d(f"value {CONTROL}", "", "INT:INT"),
    "PrimitiveFloat": _d("value", "", "FLOAT:FLOAT"),
    "PrimitiveString": _d("value", "", "STRING:STRING"),
    "PrimitiveStringMultiline": _d("value", "", "STRING:STRING"),
    "PrimitiveBoolean": _d("value", "", "BOOLEAN:BOOLEAN"),
    "Note": _d("text"),
    "MarkdownNote": _d("text"),
}

# Inputs that name a model file, and the ComfyUI models sub-folder it is looked up in.
MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("GLIGENLoader", "gligen_name"): "gligen",
}

# Inputs that are drop-downs in ComfyUI (its type "COMBO") though Seed Studio declares them as
# plain text, since their choices are the files in a folder: no typed primitive can feed them.
FILE_CHOICE_INPUTS: frozenset[tuple[str, str]] = frozenset(MODEL_INPUTS) | {
    ("LoadImage", "image"), ("LoadImageMask", "image")}
COMBO = "COMBO"

# Front-end-only helpers that carry no computation; the importer resolves reroutes away.
REROUTE_TYPES = frozenset({"Reroute"})
# The front end's untyped primitive: a value for the widget inputs its output is wired to.
PRIMITIVE_WIDGET_TYPE = "PrimitiveNode"
# ComfyUI's typed primitive nodes (comfy_extras/nodes_primitive.py), which a PrimitiveNode
# becomes, by the type of the inputs it feeds; STRING has a multiline variant.
TYPED_PRIMITIVES: dict[str, str] = {"INT": "PrimitiveInt", "FLOAT": "PrimitiveFloat", "STRING": "PrimitiveString",
                                    "BOOLEAN": "PrimitiveBoolean"}
MULTILINE_STRING_PRIMITIVE = "PrimitiveStringMultiline"
TYPED_PRIMITIVE_TYPES = frozenset({*TYPED_PRIMITIVES.values(), MULTILINE_STRING_PRIMITIVE})
