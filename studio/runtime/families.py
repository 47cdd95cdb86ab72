"""The model families Seed Studio loads, and the sets of them that behave alike.

A family names an architecture with its text encoders and latent space: what a MODEL or CLIP
socket's value was made for. ``ModelFamily`` is a ``StrEnum`` so a member equals the plain
string used before (``ModelFamily.SDXL == "sdxl"``), formats as it (reports, JSON, error
messages, the ``resources/configs/<family>`` folders) and can be looked up from one.

Torch-free: nodes import it at module level.
"""

from __future__ import annotations

import enum


class ModelFamily(enum.StrEnum):
    SD15 = "sd15"
    SD2 = "sd2"
    SD2_UNCLIP = "sd2_unclip"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl_refiner"
    FLUX = "flux"
    SD3 = "sd3"


# What the user reads for each family (error messages, reports).
FAMILY_NAMES: dict[ModelFamily, str] = {
    ModelFamily.SD15: "SD 1.x", ModelFamily.SD2: "SD 2.x", ModelFamily.SDXL: "SDXL",
    ModelFamily.SDXL_REFINER: "SDXL refiner", ModelFamily.SD2_UNCLIP: "SD 2.1 unCLIP",
    ModelFamily.FLUX: "FLUX.1", ModelFamily.SD3: "SD3.5"}

# The UNet families, loaded through diffusers' UNet2DConditionModel.
UNET_FAMILIES = frozenset({ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SD2_UNCLIP,
                           ModelFamily.SDXL, ModelFamily.SDXL_REFINER})
# The transformer (flow-matching) families, by the name the user reads.
TRANSFORMER_FAMILIES: dict[ModelFamily, str] = {ModelFamily.FLUX: FAMILY_NAMES[ModelFamily.FLUX],
                                                ModelFamily.SD3: FAMILY_NAMES[ModelFamily.SD3]}
# SDXL's UNets read the picture's size (and the refiner an aesthetic score) as time ids.
SIZE_CONDITIONED = frozenset({ModelFamily.SDXL, ModelFamily.SDXL_REFINER})
# The families whose batched pictures are checked against their pictures alone
# (tests/runtime/test_seed_batches.py); the others' jobs are sampled one at a time.
SEED_BATCH_FAMILIES = frozenset({ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SDXL,
                                 ModelFamily.SDXL_REFINER, ModelFamily.FLUX, ModelFamily.SD3})
# Families with more than one text encoder: LoRA files name theirs te1, te2 (, te3).
MULTI_ENCODER_FAMILIES = frozenset({ModelFamily.SDXL, ModelFamily.FLUX, ModelFamily.SD3})
# The families a checkpoint file can be written back for (LDM layout, ldm_export).
LDM_EXPORT_FAMILIES = frozenset({ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SDXL,
                                 ModelFamily.SDXL_REFINER})
