"""ModelFamily: one enum for the model families, equal to the strings it replaced."""

from __future__ import annotations

import json

import pytest
import torch

from studio.runtime.checkpoints import DiffusionModel, TextEncoder
from studio.runtime.families import FAMILY_NAMES, SEED_BATCH_FAMILIES, TRANSFORMER_FAMILIES, ModelFamily


def test_a_family_is_its_old_string_in_comparisons_formatting_and_json():
    assert ModelFamily.SDXL_REFINER == "sdxl_refiner" and ModelFamily("sd15") is ModelFamily.SD15
    assert f"{ModelFamily.FLUX}" == str(ModelFamily.FLUX) == "flux"
    assert json.dumps({"family": ModelFamily.SD3}) == '{"family": "sd3"}'
    assert "sd2" in SEED_BATCH_FAMILIES and "flux" in TRANSFORMER_FAMILIES
    assert set(FAMILY_NAMES) == set(ModelFamily)


def test_models_and_text_encoders_take_a_family_string_and_refuse_an_unknown_one():
    model = DiffusionModel(torch.nn.Linear(1, 1), "sdxl", {}, "key")
    assert model.family is ModelFamily.SDXL
    assert TextEncoder("sd15", [], [], "key").family is ModelFamily.SD15
    with pytest.raises(ValueError):
        DiffusionModel(torch.nn.Linear(1, 1), "sd9", {}, "key")
