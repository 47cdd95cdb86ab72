"""The names node declarations offer as choices, without importing torch.

Listing, validating and converting workflows reads every node's declaration; the sampler,
scheduler, resize and prediction names are declared here so that none of that imports the
torch modules which implement them. Each implementing module checks its own table against
these names (tests/runtime/test_names.py).
"""

from __future__ import annotations

import re

# ComfyUI's sampler names, in its order (the first is the default): studio.runtime.samplers.SAMPLERS.
SAMPLER_NAMES = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "exp_heun_2_x0",
    "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm",
    "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)
# ComfyUI's scheduler names, in its order: studio.runtime.schedules.SCHEDULERS.
SCHEDULER_NAMES = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                   "linear_quadratic", "kl_optimal")
# Image resizing (studio.runtime.images.resize_image) and palette dithering (quantize_image).
RESIZE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
QUANTIZE_DITHERS = ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16")


class Prediction:
    """What a network's output means; names as in diffusers' ``prediction_type``."""

    EPSILON = "epsilon"
    V = "v_prediction"
    SAMPLE = "sample"  # x0: the network predicts the clean latent itself
    FLOW = "flow"  # rectified flow (SD3, FLUX): the network predicts noise minus clean
    LCM = "lcm"  # latent consistency: ε with the consistency boundary condition
    EDM = "edm"  # Karras et al.'s preconditioning (σ_data 0.5; Playground v2.5, …)
    IMG_TO_IMG = "img_to_img"  # x0 from the unscaled latent


# ``embedding:NAME`` in a prompt (studio.runtime.prompts; validation looks for the files).
EMBEDDING = re.compile(r"embedding:([^\s,()]+)")
