"""The torch-free names node declarations offer are the implementations' own."""

from __future__ import annotations

from studio.runtime import images, names, prompts, samplers, schedules


def test_declared_names_are_the_implemented_ones_in_their_order():
    assert tuple(samplers.SAMPLERS) == names.SAMPLER_NAMES
    assert tuple(schedules.SCHEDULERS) == names.SCHEDULER_NAMES
    assert images.RESIZE_METHODS is names.RESIZE_METHODS and images.QUANTIZE_DITHERS is names.QUANTIZE_DITHERS
    assert schedules.Prediction is names.Prediction and prompts.EMBEDDING is names.EMBEDDING
