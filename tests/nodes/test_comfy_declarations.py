"""The declarations of the nodes ported from ComfyUI against ComfyUI's own: widget order
(which positional ``widgets_values`` in ComfyUI files depend on), wired inputs, defaults,
ranges, choices and output types.

The table was read from ComfyUI's ``INPUT_TYPES`` / ``define_schema`` at commit 618b803
(nodes.py; comfy_extras/nodes_images.py, nodes_mask.py, nodes_post_processing.py,
nodes_latent.py, nodes_string.py, nodes_preview_any.py). It extends the 40-type widget-order
check in tests/graph/test_comfy.py, which reads studio/graph/comfy/definitions.py; types
listed there are checked there too.
"""

from __future__ import annotations

import pytest

from studio.graph.sockets import ANY

M = 16384  # ComfyUI's MAX_RESOLUTION
ROTATIONS = ["none", "90 degrees", "180 degrees", "270 degrees"]
FLIPS = ["x-axis: vertically", "y-axis: horizontally"]
RESIZE = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]

# type: (inputs in declared order, output types). An input is (name, type) for a wired one,
# with "?" after the type when optional, or (name, type, default, min, max, step) for a
# number widget, (name, [choices]) for a drop-down (its default is the first choice),
# (name, type, default) for other widgets. "FILE" is a drop-down of files in ComfyUI, text here.
COMFY: dict[str, tuple[list[tuple], list[str]]] = {
    "GetImageSize": ([("image", "IMAGE")], ["INT", "INT", "INT"]),
    "ImageScaleToTotalPixels": ([("image", "IMAGE"), ("upscale_method", RESIZE),
                                 ("megapixels", "FLOAT", 1.0, 0.01, 16.0, 0.01),
                                 ("resolution_steps", "INT", 1, 1, 256, None)], ["IMAGE"]),
    "ImageCompositeMasked": ([("destination", "IMAGE"), ("source", "IMAGE"), ("x", "INT", 0, 0, M, 1),
                              ("y", "INT", 0, 0, M, 1), ("resize_source", "BOOLEAN", False), ("mask", "MASK?")],
                             ["IMAGE"]),
    "ImageBatch": ([("image1", "IMAGE"), ("image2", "IMAGE")], ["IMAGE"]),
    "RepeatImageBatch": ([("image", "IMAGE"), ("amount", "INT", 1, 1, 4096, None)], ["IMAGE"]),
    "ImageFromBatch": ([("image", "IMAGE"), ("batch_index", "INT", 0, 0, 4095, None),
                        ("length", "INT", 1, 1, 4096, None)], ["IMAGE"]),
    "ImageFlip": ([("image", "IMAGE"), ("flip_method", FLIPS)], ["IMAGE"]),
    "ImageRotate": ([("image", "IMAGE"), ("rotation", ROTATIONS)], ["IMAGE"]),
    "ImageSharpen": ([("image", "IMAGE"), ("sharpen_radius", "INT", 1, 1, 31, 1),
                      ("sigma", "FLOAT", 1.0, 0.1, 10.0, 0.01), ("alpha", "FLOAT", 1.0, 0.0, 5.0, 0.01)], ["IMAGE"]),
    "ImageBlur": ([("image", "IMAGE"), ("blur_radius", "INT", 1, 1, 31, 1), ("sigma", "FLOAT", 1.0, 0.1, 10.0, 0.1)],
                  ["IMAGE"]),
    "ImageQuantize": ([("image", "IMAGE"), ("colors", "INT", 256, 1, 256, 1),
                       ("dither", ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"])],
                      ["IMAGE"]),
    "SolidMask": ([("value", "FLOAT", 1.0, 0.0, 1.0, 0.01), ("width", "INT", 512, 1, M, 1),
                   ("height", "INT", 512, 1, M, 1)], ["MASK"]),
    "MaskComposite": ([("destination", "MASK"), ("source", "MASK"), ("x", "INT", 0, 0, M, 1),
                       ("y", "INT", 0, 0, M, 1), ("operation", ["multiply", "add", "subtract", "and", "or", "xor"])],
                      ["MASK"]),
    "CropMask": ([("mask", "MASK"), ("x", "INT", 0, 0, M, 1), ("y", "INT", 0, 0, M, 1), ("width", "INT", 512, 1, M, 1),
                  ("height", "INT", 512, 1, M, 1)], ["MASK"]),
    "FeatherMask": ([("mask", "MASK"), ("left", "INT", 0, 0, M, 1), ("top", "INT", 0, 0, M, 1),
                     ("right", "INT", 0, 0, M, 1), ("bottom", "INT", 0, 0, M, 1)], ["MASK"]),
    "GrowMask": ([("mask", "MASK"), ("expand", "INT", 0, -M, M, 1), ("tapered_corners", "BOOLEAN", True)], ["MASK"]),
    "LoadImageMask": ([("image", "FILE"), ("channel", ["alpha", "red", "green", "blue"])], ["MASK"]),
    "LatentBlend": ([("samples1", "LATENT"), ("samples2", "LATENT"), ("blend_factor", "FLOAT", 0.5, 0, 1, 0.01)],
                    ["LATENT"]),
    "LatentRotate": ([("samples", "LATENT"), ("rotation", ROTATIONS)], ["LATENT"]),
    "LatentFlip": ([("samples", "LATENT"), ("flip_method", FLIPS)], ["LATENT"]),
    "LatentCrop": ([("samples", "LATENT"), ("width", "INT", 512, 64, M, 8), ("height", "INT", 512, 64, M, 8),
                    ("x", "INT", 0, 0, M, 8), ("y", "INT", 0, 0, M, 8)], ["LATENT"]),
    "LatentBatch": ([("samples1", "LATENT"), ("samples2", "LATENT")], ["LATENT"]),
    "LatentAdd": ([("samples1", "LATENT"), ("samples2", "LATENT")], ["LATENT"]),
    "LatentSubtract": ([("samples1", "LATENT"), ("samples2", "LATENT")], ["LATENT"]),
    "LatentMultiply": ([("samples", "LATENT"), ("multiplier", "FLOAT", 1.0, -10.0, 10.0, 0.01)], ["LATENT"]),
    "ConditioningConcat": ([("conditioning_to", "CONDITIONING"), ("conditioning_from", "CONDITIONING")],
                           ["CONDITIONING"]),
    "ConditioningAverage": ([("conditioning_to", "CONDITIONING"), ("conditioning_from", "CONDITIONING"),
                             ("conditioning_to_strength", "FLOAT", 1.0, 0.0, 1.0, 0.01)], ["CONDITIONING"]),
    "ConditioningSetMask": ([("conditioning", "CONDITIONING"), ("mask", "MASK"),
                             ("strength", "FLOAT", 1.0, 0.0, 10.0, 0.01),
                             ("set_cond_area", ["default", "mask bounds"])], ["CONDITIONING"]),
    "ConditioningSetTimestepRange": ([("conditioning", "CONDITIONING"), ("start", "FLOAT", 0.0, 0.0, 1.0, 0.001),
                                      ("end", "FLOAT", 1.0, 0.0, 1.0, 0.001)], ["CONDITIONING"]),
    "ConditioningSetAreaPercentage": ([("conditioning", "CONDITIONING"), ("width", "FLOAT", 1.0, 0, 1.0, 0.01),
                                       ("height", "FLOAT", 1.0, 0, 1.0, 0.01), ("x", "FLOAT", 0, 0, 1.0, 0.01),
                                       ("y", "FLOAT", 0, 0, 1.0, 0.01), ("strength", "FLOAT", 1.0, 0.0, 10.0, 0.01)],
                                      ["CONDITIONING"]),
    # ComfyUI gives the two texts no default; its front end starts them empty.
    "StringConcatenate": ([("string_a", "STRING", ""), ("string_b", "STRING", ""), ("delimiter", "STRING", "")],
                          ["STRING"]),
    "PreviewAny": ([("source", ANY)], []),
}


@pytest.mark.parametrize("type_name", sorted(COMFY))
def test_declaration_matches_comfyuis(registry, type_name):
    cls = registry.get(type_name)
    assert cls is not None, f"{type_name} is not registered"
    expected_inputs, expected_outputs = COMFY[type_name]
    assert [spec.name for spec in cls.inputs] == [entry[0] for entry in expected_inputs]
    for spec, entry in zip(cls.inputs, expected_inputs, strict=True):
        kind = entry[1]
        if isinstance(kind, list):
            assert (spec.type, spec.choice_list(), spec.default) == ("STRING", kind, kind[0]), spec.name
        elif kind == "FILE":
            assert spec.type == "STRING" and spec.has_widget, spec.name
        elif len(entry) == 6:
            assert (spec.type, spec.default, spec.min, spec.max) == entry[1:5], spec.name
            assert entry[5] is None or spec.step == entry[5], spec.name
        elif len(entry) == 3:
            assert (spec.type, spec.default) == entry[1:], spec.name
        else:
            optional = kind.endswith("?")
            assert (spec.type, spec.optional, spec.has_widget) == (kind.rstrip("?"), optional, False), spec.name
    assert [output.type for output in cls.outputs] == expected_outputs


def test_the_table_agrees_with_the_importers_definitions_where_both_list_a_type():
    from studio.graph.comfy.definitions import COMFY_NODES, CONTROL, UPLOAD

    for type_name, (inputs, outputs) in COMFY.items():
        definition = COMFY_NODES.get(type_name)
        if definition is None:
            continue
        widgets = [entry[0] for entry in inputs if isinstance(entry[1], list) or entry[1] == "FILE" or len(entry) > 2]
        assert [name for name in definition.widgets if name not in (CONTROL, UPLOAD)] == widgets, type_name
        assert [kind for _, kind in definition.outputs] == outputs, type_name


def test_a_comfyui_file_using_the_ported_nodes_opens_with_named_values(registry):
    import json

    from studio.graph.files import workflow_from_bytes

    document = {"nodes": [
        {"id": 1, "type": "GrowMask", "widgets_values": [5, False]},
        {"id": 2, "type": "ImageQuantize", "widgets_values": [16, "bayer-4"]},
        {"id": 3, "type": "ConditioningSetMask", "widgets_values": [0.8, "mask bounds"]},
        {"id": 4, "type": "LoadImageMask", "widgets_values": ["layer.png", "green", "image"]},
        {"id": 5, "type": "ImageScaleToTotalPixels", "widgets_values": ["lanczos", 2.0, 64]},
    ], "links": []}
    workflow, _ = workflow_from_bytes(json.dumps(document).encode(), registry.spec, "ported.json")
    assert workflow.nodes["1"].values == {"expand": 5, "tapered_corners": False}
    assert workflow.nodes["2"].values == {"colors": 16, "dither": "bayer-4"}
    assert workflow.nodes["3"].values == {"strength": 0.8, "set_cond_area": "mask bounds"}
    assert workflow.nodes["4"].values == {"image": "layer.png", "channel": "green"}
    assert workflow.nodes["5"].values == {"upscale_method": "lanczos", "megapixels": 2.0, "resolution_steps": 64}
