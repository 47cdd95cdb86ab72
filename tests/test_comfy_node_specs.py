"""Every core node type that ComfyUI also has takes the same inputs in the same order (so a
shared file's widget values land in the right fields), with ComfyUI's defaults, ranges and
choices, and gives the same output types. The reference is ComfyUI's own declarations,
dumped by ``bench/comfy_node_specs.py`` (commit recorded in the file); CI never needs ComfyUI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCE = json.loads((Path(__file__).parent / "data" / "comfy_reference" / "node_specs.json").read_text())
COMFY = REFERENCE["nodes"]

# Deliberate differences, each with its reason.
KNOWN = {
    ("SaveImage", "filename_prefix", "default"): "files are named after the app that made them",
    ("ModelSamplingContinuousEDM", "sampling", "choices"): "cosmos_rflow is for Cosmos video models, which "
                                                           "Seed Studio does not load",
}
# Outputs Seed Studio adds: SaveImage and PreviewImage pass their images on (the fidelity issue
# asks for it; later ComfyUI versions have it), so graphs can go on from a saved stage.
EXTRA_OUTPUTS = {"SaveImage": ["IMAGE"], "PreviewImage": ["IMAGE"]}


def core_types(registry):
    return [name for name in registry.types() if name in COMFY and registry.origin(name).startswith("nodes.")]


def test_the_reference_is_comfyuis_and_most_core_types_are_in_it(registry):
    assert len(REFERENCE["comfyui_commit"]) == 40
    shared = core_types(registry)
    assert len(shared) >= 100
    assert {"KSampler", "SamplerCustomAdvanced", "CheckpointLoaderSimple", "VAEDecode"} <= set(shared)


def test_inputs_are_comfyuis_in_order(registry):
    wrong = {}
    for name in core_types(registry):
        ours = [spec.name for spec in registry.get(name).inputs]
        theirs = [entry["name"] for entry in COMFY[name]["inputs"]]
        if ours != theirs:
            wrong[name] = (ours, theirs)
    assert not wrong


def test_output_types_are_comfyuis(registry):
    wrong = {}
    for name in core_types(registry):
        ours = [output.type for output in registry.get(name).outputs]
        theirs = [entry["type"] for entry in COMFY[name]["outputs"]] + EXTRA_OUTPUTS.get(name, [])
        if ours != theirs:
            wrong[name] = (ours, theirs)
    assert not wrong


@pytest.mark.parametrize("key", ["default", "min", "max", "step", "choices"])
def test_widget_defaults_ranges_and_choices_are_comfyuis(registry, key):
    wrong = {}
    for name in core_types(registry):
        theirs = {entry["name"]: entry for entry in COMFY[name]["inputs"]}
        for spec in registry.get(name).inputs:
            reference = theirs[spec.name]
            if key not in reference or (name, spec.name, key) in KNOWN:
                continue
            ours = spec.choices if key == "choices" else getattr(spec, key, None)
            if ours is None or callable(ours):  # file lists are read from the folders
                continue
            expected = reference[key]
            if key == "choices":
                ours, expected = list(ours), list(expected)
            if ours != expected:
                wrong[(name, spec.name)] = (ours, expected)
    assert not wrong
