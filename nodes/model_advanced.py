"""Switches on how a model is sampled, with ComfyUI's names (its ``nodes_model_advanced``):
the prediction type and noise grid (v-prediction, LCM, zero terminal SNR, continuous EDM), and
rescaled guidance. They return a copy of the MODEL that carries the change; the loaded model
is shared and never altered."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from studio.graph.sockets import BOOLEAN, FLOAT, MODEL, STRING
from studio.node_api import Input, NodeBase, Output
from studio.runtime.names import Prediction

if TYPE_CHECKING:
    from studio.node_api import NodeContext
    from studio.runtime.checkpoints import DiffusionModel

DISCRETE_SAMPLING = {"eps": Prediction.EPSILON, "v_prediction": Prediction.V, "lcm": Prediction.LCM,
                     "x0": Prediction.SAMPLE, "img_to_img": Prediction.IMG_TO_IMG}
# ComfyUI's options; cosmos_rflow (Cosmos video models) is not offered: no such model loads here.
CONTINUOUS_SAMPLING = {"v_prediction": (Prediction.V, 1.0), "edm": (Prediction.EDM, 0.5),
                       "edm_playground_v2.5": (Prediction.EDM, 0.5), "eps": (Prediction.EPSILON, 1.0)}


class ModelSamplingDiscrete(NodeBase):
    """Says what the model predicts and on which noise grid: `eps` (SD 1.x/XL), `v_prediction`
    (SD 2.x 768, v-models shared as eps files), `lcm` (LCM and LCM-LoRA: 50 distilled steps
    with the consistency boundary condition), `x0`, `img_to_img`; `zsnr` rescales the grid to
    zero terminal SNR (models trained that way reach pure noise)."""

    type_name = "ModelSamplingDiscrete"
    category = "advanced/model"
    title = "ModelSamplingDiscrete"
    inputs = (Input("model", MODEL), Input("sampling", STRING, default="eps", choices=tuple(DISCRETE_SAMPLING)),
              Input("zsnr", BOOLEAN, default=False))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx: NodeContext, model: DiffusionModel, sampling: str, zsnr: bool) -> tuple:
        from studio.runtime.schedules import DiscreteModelSampling, DistilledModelSampling

        config = model.scheduler_config
        kind = DistilledModelSampling if sampling == "lcm" else DiscreteModelSampling
        grid = kind(prediction=DISCRETE_SAMPLING[sampling], beta_start=float(config.get("beta_start", 0.00085)),
                    beta_end=float(config.get("beta_end", 0.012)),
                    timesteps=int(config.get("num_train_timesteps", 1000)), zero_terminal_snr=bool(zsnr))
        return (replace(model, sampling=grid),)


class ModelSamplingContinuousEDM(NodeBase):
    """For models trained on continuous noise levels between `sigma_min` and `sigma_max`
    (Playground v2.5, CosXL, EDM models): their prediction type and range."""

    type_name = "ModelSamplingContinuousEDM"
    category = "advanced/model"
    title = "ModelSamplingContinuousEDM"
    inputs = (Input("model", MODEL),
              Input("sampling", STRING, default="v_prediction", choices=tuple(CONTINUOUS_SAMPLING)),
              Input("sigma_max", FLOAT, default=120.0, min=0.0, max=1000.0, step=0.001),
              Input("sigma_min", FLOAT, default=0.002, min=0.0, max=1000.0, step=0.001))
    outputs = (Output("MODEL", MODEL),)

    @classmethod
    def check(cls, values, settings):
        low, high = values.get("sigma_min"), values.get("sigma_max")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and not 0 < low < high:
            return [("sigma_min", f"needs 0 < sigma_min < sigma_max (got {low} and {high})")]
        return []

    def run(self, ctx: NodeContext, model: DiffusionModel, sampling: str, sigma_max: float, sigma_min: float) -> tuple:
        from studio.runtime.schedules import ContinuousEDMModelSampling

        prediction, sigma_data = CONTINUOUS_SAMPLING[sampling]
        grid = ContinuousEDMModelSampling(prediction=prediction, sigma_min=sigma_min, sigma_max=sigma_max,
                                          sigma_data=sigma_data)
        return (replace(model, sampling=grid),)


class RescaleCFG(NodeBase):
    """Keeps high guidance from over-exposing: the guided prediction's spread is brought back
    towards the prompt-only prediction's by `multiplier` (Lin et al. 2023; for v-prediction
    and zero-terminal-SNR models above all)."""

    type_name = "RescaleCFG"
    category = "advanced/model"
    title = "RescaleCFG"
    inputs = (Input("model", MODEL), Input("multiplier", FLOAT, default=0.7, min=0.0, max=1.0, step=0.01))
    outputs = (Output("MODEL", MODEL),)

    def run(self, ctx: NodeContext, model: DiffusionModel, multiplier: float) -> tuple:
        return (replace(model, cfg_rescale=float(multiplier)),)
