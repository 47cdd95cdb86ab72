"""Sampling: the four parts every sampler node is made of, and KSampler built from them.

* **sigmas** — the noise levels to walk (:mod:`studio.runtime.schedules`);
* **sampler** — the algorithm that walks them (:mod:`studio.runtime.samplers`);
* **noise** — the starting noise, drawn on the CPU from the seed as ComfyUI draws it, so the
  same seed gives the same picture on any device (:func:`initial_noise`);
* **guider** — the model with its conditioning: a denoiser ``D(x, σ) → x̂₀`` with
  classifier-free guidance as ComfyUI computes it, on clean-latent estimates (:class:`CFGGuider`).

:func:`sample_latent` runs one sampler over one σ list (what ``SamplerCustom`` does);
:func:`sample` is KSampler/KSamplerAdvanced: it makes the σ list from steps, scheduler,
denoise and step range as ComfyUI does, and calls it. Inpainting keeps the unmasked area on
the original's noise path at every model call; previews show the current clean estimate; the
progress callback also checks for cancellation at every step.

Between nodes LATENT and CONDITIONING keep ComfyUI's dict and list shapes; :func:`sample` and
:func:`sample_seed_batch` (which take a node's :class:`SamplingJob`) convert them once, and
everything below works on :class:`~studio.runtime.socket_values.Latent` and
:class:`~studio.runtime.socket_values.ConditioningEntry`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from studio.runtime.checkpoints import DiffusionModel
from studio.runtime.clip_vision import EmbeddingNoiseAugmentor, unclip_embedding
from studio.runtime.controlnet import control_residuals
from studio.runtime.families import SEED_BATCH_FAMILIES, SIZE_CONDITIONED, TRANSFORMER_FAMILIES, ModelFamily
from studio.runtime.gligen import gligen_applied, gligen_per_entry
from studio.runtime.hypernetwork import hypernetworks_applied
from studio.runtime.images import as_mask_batch
from studio.runtime.samplers import SAMPLERS, Denoiser, SamplerContext, SamplerSpec
from studio.runtime.schedules import DiscreteModelSampling, ModelSampling, scheduler_sigmas
from studio.runtime.socket_values import Conditioning, ConditioningEntry, Latent, conditioning_from_node

# Linear maps from latent channels to RGB, for previews without the VAE (ComfyUI's figures).
PREVIEW_FACTORS = {
    ModelFamily.SD15: ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
              [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0]),
    ModelFamily.SDXL: ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
              [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
}
# FLUX's and SD3's 16-channel latents (ComfyUI's figures).
PREVIEW_FACTORS[ModelFamily.FLUX] = (
    [[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433], [-0.0174, 0.0160, 0.0617],
     [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115], [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259],
     [-0.0245, 0.0250, 0.1180], [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
     [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499], [-0.1262, -0.0982, -0.0778]],
    [-0.0329, -0.0718, -0.0851])
PREVIEW_FACTORS[ModelFamily.SD3] = (
    [[-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458], [0.0856, 0.0339, 0.0902],
     [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309], [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358],
     [-0.0194, 0.0020, 0.0669], [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
     [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293], [-0.1448, -0.1463, -0.1189]],
    [0.2394, 0.2135, 0.1925])
PREVIEW_FACTORS[ModelFamily.SD2] = PREVIEW_FACTORS[ModelFamily.SD2_UNCLIP] = PREVIEW_FACTORS[ModelFamily.SD15]
PREVIEW_FACTORS[ModelFamily.SDXL_REFINER] = PREVIEW_FACTORS[ModelFamily.SDXL]

ProgressCallback = Callable[[int, int, Any], None]


def model_sampling(model: DiffusionModel) -> ModelSampling:
    """How ``model`` relates noise level and timestep (from its scheduler config)."""
    if getattr(model, "sampling", None) is not None:
        return model.sampling
    return DiscreteModelSampling.from_scheduler_config(model.scheduler_config)


def initial_noise(shape: tuple[int, ...], seed: int, batch_index: Sequence[int] | None = None) -> torch.Tensor:
    """Noise for a whole latent batch, drawn on the CPU from the seed (as ComfyUI does). With
    ``batch_index`` (a latent taken from a larger batch), entry k gets the noise entry
    ``batch_index[k]`` had in that batch."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if batch_index is None:
        return torch.randn(shape, generator=generator, dtype=torch.float32)
    wanted = sorted(set(int(i) for i in batch_index))
    drawn: dict[int, torch.Tensor] = {}
    for index in range(wanted[-1] + 1):
        noise = torch.randn((1, *shape[1:]), generator=generator, dtype=torch.float32)
        if index in wanted:
            drawn[index] = noise
    return torch.cat([drawn[int(i)] for i in batch_index])


def latent_preview(latent: torch.Tensor, family: ModelFamily, vae: Any = None) -> torch.Tensor:
    """A quick RGB look at a latent (1 × h × w × 3, 0..1) for progress displays: through the
    map fitted to the model's own VAE when there is one (studio.runtime.preview), else the
    family's fixed factors."""
    if vae is not None:
        try:
            from studio.runtime.preview import vae_preview

            return vae_preview(latent, vae)
        except Exception:  # noqa: BLE001  (a preview must never stop a render: fall back)
            pass
    factors, bias = PREVIEW_FACTORS.get(family, PREVIEW_FACTORS[ModelFamily.SD15])
    matrix = torch.tensor(factors, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent[0].float().cpu(), matrix) + torch.tensor(bias)
    return ((rgb + 1) / 2).clamp(0, 1)[None]


# --- σ lists as KSampler makes them --------------------------------------------------------

def ksampler_sigmas(ms: ModelSampling, sampler: str, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """KSampler's σ list: ``steps`` steps of the scheduler, or with ``denoise`` < 1 the last
    ``steps`` of a longer schedule (img2img starts part-way down)."""
    spec = _spec(sampler)

    def full(count: int) -> torch.Tensor:
        if spec.discard_penultimate_sigma:
            sigmas = scheduler_sigmas(ms, scheduler, count + 1)
            return torch.cat([sigmas[:-2], sigmas[-1:]])
        return scheduler_sigmas(ms, scheduler, count)

    if denoise is None or denoise > 0.9999:
        return full(steps)
    if denoise <= 0.0:
        return torch.zeros(0)
    return full(int(steps / denoise))[-(steps + 1):]


def step_range(sigmas: torch.Tensor, start_step: int | None, last_step: int | None,
               force_full_denoise: bool) -> torch.Tensor | None:
    """KSamplerAdvanced's slice of a σ list; None when nothing is left to do."""
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[:last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        else:
            return None
    return sigmas


def _spec(sampler: str) -> SamplerSpec:
    try:
        return SAMPLERS[sampler]
    except KeyError:
        raise ValueError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}") from None


@dataclass(frozen=True)
class SamplerChoice:
    """What flows through a SAMPLER socket: a sampler by name, with options for its
    algorithm (eta, s_noise, solver_type, r, order …)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def spec(self) -> SamplerSpec:
        return _spec(self.name)

    def with_options(self, **options: Any) -> SamplerChoice:
        return SamplerChoice(self.name, tuple(sorted({**dict(self.options), **options}.items())))


# --- The guider ----------------------------------------------------------------------------

def _sdxl_time_ids(extras: Mapping[str, Any], height: int, width: int, family: ModelFamily,
                   negative: bool) -> list[float]:
    size = [extras.get("height", height), extras.get("width", width), extras.get("crop_h", 0), extras.get("crop_w", 0)]
    if family == ModelFamily.SDXL_REFINER:
        # The refiner is conditioned on an aesthetic score instead of a target size; ComfyUI
        # asks for 6 on the positive side and 2.5 on the negative unless the prompt says.
        return size + [extras.get("aesthetic_score", 2.5 if negative else 6.0)]
    return size + [extras.get("target_height", height), extras.get("target_width", width)]


def _pad_to_same_length(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Prompts of different lengths (77 vs 154 tokens) still batch: repeat the shorter's
    # chunks, as ComfyUI does, which leaves its meaning unchanged.
    if a.shape[1] == b.shape[1]:
        return a, b
    length = max(a.shape[1], b.shape[1])

    def stretch(t: torch.Tensor) -> torch.Tensor:
        repeats = -(-length // t.shape[1])
        return t.repeat(1, repeats, 1)[:, :length]
    return stretch(a), stretch(b)


class CFGGuider:
    """The model and its conditioning as a denoiser: for a latent x at noise level σ, the
    clean-latent estimate ``uncond + cfg·(cond − uncond)`` (ComfyUI's formula, on clean
    estimates). Several conditioning entries on one side are averaged by their strength and
    area; ControlNet hints act in their share of the schedule. With cfg 1 the negative side
    is not evaluated, unless the sampler asks for it (CFG++).

    The conditioning comes as the CONDITIONING sockets carry it (lists of ``[embedding,
    extras]`` pairs) and is kept as :class:`ConditioningEntry` objects."""

    def __init__(self, model: DiffusionModel, positive: list, negative: list | None, cfg: float):
        self.model = model
        self.positive: Conditioning = conditioning_from_node(positive)
        self.negative: Conditioning = conditioning_from_node(negative)
        self.cfg = float(cfg)
        self.ms = model_sampling(model)
        self.need_unconditional = False
        self.last_unconditional: torch.Tensor | None = None
        # Set by the sampling run: the clean latent (scaled) and its noise mask, which an
        # inpainting model (9 input channels) also sees beside the noisy latent.
        self.latent_image: torch.Tensor | None = None
        self.denoise_mask: torch.Tensor | None = None
        # Set by the sampling run too: its seed, from which unCLIP's image embeddings are
        # noised (ComfyUI's seed − 10).
        self.seed: int | None = None
        self._prepared_for: tuple | None = None

    def start_run(self, latent_image: torch.Tensor, denoise_mask: torch.Tensor | None, seed: int | None,
                  need_unconditional: bool) -> None:
        """What a sampling run tells the guider before its first step: the clean latent (in
        the model's space) and its mask, the seed, and whether the sampler reads the unguided
        estimate (CFG++) so that it is computed even at cfg 1."""
        self.latent_image, self.denoise_mask = latent_image, denoise_mask
        self.seed = seed
        self.need_unconditional = need_unconditional

    def unconditional_estimate(self) -> torch.Tensor | None:
        """The unguided clean estimate of the last call (None when it was not computed)."""
        return self.last_unconditional

    # ---- preparation for one latent shape
    def _prepare(self, x: torch.Tensor) -> None:
        key = tuple(x.shape)
        if self._prepared_for == key:
            return
        unet = self.model.unet
        self.device, self.dtype = unet.device, unet.dtype
        batch, _, height, width = x.shape
        self.batch, self.height, self.width = batch, height, width
        self.pos = self._resolved(self._batched(self.positive))
        self.neg = self._resolved(self._batched(self.negative))
        _add_opposite_areas(self.pos, self.neg)
        sides = [self.pos] + ([self.neg] if self.neg else [])
        # The usual case, one plain prompt each side: one UNet call on a batch of two, as
        # diffusers' pipelines do (on a GPU that is nearly twice as fast as two calls).
        self.plain = (len(self.pos) == 1 and len(self.neg) == 1
                      and all(self._is_plain(side[0].extras) for side in sides))
        if self.plain:
            self.both = torch.cat(_pad_to_same_length(self.neg[0].embedding, self.pos[0].embedding))
            self.both_extras: dict[str, Any] = _batched_added(
                [self._added(side[0].extras, negative) for side, negative in ((self.neg, True), (self.pos, False))])
        self._prepared_for = key

    @staticmethod
    def _is_plain(extras: Mapping[str, Any]) -> bool:
        return (not any(key in extras for key in ("area", "mask", "sigma_start", "sigma_end", "gligen"))
                and not extras.get("control") and float(extras.get("strength", 1.0)) == 1.0)

    def _resolved(self, conditioning: Conditioning) -> Conditioning:
        """Each entry's area in latent cells (percentages and mask bounds resolved), its mask
        at the latent's size, and its share of the schedule as a σ range, once per run."""
        out = []
        for embedding, extras in conditioning:
            extras = dict(extras)
            area = extras.get("area")
            if area is not None and area[0] == "percentage":
                _, height, width, top, left = area
                extras["area"] = (max(1, round(height * self.height)), max(1, round(width * self.width)),
                                  round(top * self.height), round(left * self.width))
            mask = extras.get("mask")
            if mask is not None:
                mask = mask.float().to(self.device)
                mask = as_mask_batch(mask)
                if tuple(mask.shape[-2:]) != (self.height, self.width):
                    mask = F.interpolate(mask[:, None], size=(self.height, self.width), mode="bilinear")[:, 0]
                extras["mask"] = mask
                if extras.get("set_area_to_bounds"):
                    extras["area"] = _mask_bounds(mask)
            if "start_percent" in extras:
                extras["sigma_start"] = self.ms.percent_to_sigma(float(extras["start_percent"]))
            if "end_percent" in extras:
                extras["sigma_end"] = self.ms.percent_to_sigma(float(extras["end_percent"]))
            out.append(ConditioningEntry(embedding, extras))
        return out

    def _batched(self, conditioning: Conditioning) -> Conditioning:
        out = []
        for embedding, extras in conditioning:
            embedding = embedding.to(self.device, self.dtype)
            if embedding.shape[0] != self.batch:
                embedding = embedding[:1].expand(self.batch, -1, -1)
            out.append(ConditioningEntry(embedding, extras))
        return out

    def _added(self, extras: Mapping[str, Any], negative: bool) -> dict[str, Any]:
        """The UNet's inputs besides the latent and the prompt for one entry: SDXL's pooled
        prompt and size ids, or unCLIP's image embedding as its class input."""
        if self.model.family == ModelFamily.SD2_UNCLIP:
            return {"class_labels": self._unclip_class_labels(extras)}
        inputs = getattr(self.model.unet, "conditioning_inputs", None)
        if inputs is not None:  # transformer models (FLUX, SD3): their pooled prompt, guidance…
            return inputs(extras, self.batch, self.device, self.dtype)
        if self.model.family not in SIZE_CONDITIONED:
            return {}
        pooled = extras.get("pooled_output")
        width = self._pooled_width()
        if extras.get("unclip_conditioning"):
            # SDXL "revision": the noised image embedding (CLIP-G's: as wide as the pooled
            # prompt, 1280) takes the pooled prompt's place, as ComfyUI's sdxl_pooled does.
            augmentor = self.model.noise_augmentor or EmbeddingNoiseAugmentor(width)
            pooled = unclip_embedding(extras["unclip_conditioning"], augmentor, self._unclip_seed())[:, :width]
        pooled = (pooled if pooled is not None else torch.zeros(1, width)).to(self.device, self.dtype)
        time_ids = torch.tensor([_sdxl_time_ids(extras, self.height * 8, self.width * 8, self.model.family, negative)],
                                device=self.device, dtype=self.dtype)
        return {"added_cond_kwargs": {"text_embeds": pooled[:1].expand(self.batch, -1),
                                      "time_ids": time_ids.expand(self.batch, -1)}}

    def _pooled_width(self) -> int:
        """How wide the pooled prompt is that the UNet reads beside its size ids (1280 for
        SDXL and its refiner): the added embedding's input less the ids' embeddings."""
        config = getattr(self.model.unet, "config", None)
        total = getattr(config, "projection_class_embeddings_input_dim", None)
        per_id = getattr(config, "addition_time_embed_dim", None)
        if not isinstance(total, int) or not isinstance(per_id, int):
            return 1280
        return total - (5 if self.model.family == ModelFamily.SDXL_REFINER else 6) * per_id

    def _unclip_seed(self) -> int:
        return (self.seed or 0) - 10

    def _unclip_class_labels(self, extras: Mapping[str, Any]) -> torch.Tensor:
        """unCLIP's class input for one entry (ComfyUI's unclip_adm): its pictures' noised
        embeddings; zeros where the entry has none (a text-only prompt, the negative)."""
        unet = self.model.unet
        width = int(unet.config.projection_class_embeddings_input_dim)
        conditioning = extras.get("unclip_conditioning")
        if conditioning:
            # Several pictures are noised once more, together, at 5% (ComfyUI's default).
            labels = unclip_embedding(conditioning, self.model.noise_augmentor, self._unclip_seed(),
                                      merge_augmentation=0.05)
            if labels.shape[1] != width:
                raise ValueError(f"the image embedding gives {labels.shape[1]} class inputs and this unCLIP model "
                                 f"reads {width}: the CLIP vision model does not belong to this model")
        else:
            labels = torch.zeros(1, width)
        return labels.to(self.device, self.dtype).expand(self.batch, -1)

    def _region(self, extras: Mapping[str, Any], x: torch.Tensor) -> tuple[tuple[int, int, int, int] | None,
                                                                          torch.Tensor]:
        """Where an entry acts (an area, clipped to the latent, or None for all of it) and its
        weight there: its mask times the mask's strength, or its strength with the area's
        inner edges feathered over up to 8 cells (ComfyUI's weights, so overlapping areas
        blend as they do there)."""
        strength = float(extras.get("strength", 1.0))
        area = extras.get("area")
        if area is not None:
            height, width, top, left = (int(value) for value in area)
            height, width = min(self.height - top, height), min(self.width - left, width)
            area = (height, width, top, left)
        mask = extras.get("mask")
        if mask is not None:
            mask = mask[:x.shape[0]]
            if area is not None:
                mask = mask[:, area[2]:area[2] + area[0], area[3]:area[3] + area[1]]
            mask = mask * float(extras.get("mask_strength", 1.0))
            weight = mask[:, None].repeat(x.shape[0] // mask.shape[0], x.shape[1], 1, 1)
            return area, weight * strength
        shape = (x.shape[0], x.shape[1], area[0], area[1]) if area is not None else x.shape
        weight = torch.full(shape, strength, device=x.device)
        if area is not None:
            spans = ((area[0], area[2], self.height), (area[1], area[3], self.width))
            for axis, (size, start, full) in enumerate(spans):
                fuzz = min(8, weight.shape[2 + axis] // 4)
                for step in range(fuzz):
                    if start != 0:
                        weight.narrow(2 + axis, step, 1).mul_((step + 1) / fuzz)
                    if size + start < full:
                        weight.narrow(2 + axis, size - 1 - step, 1).mul_((step + 1) / fuzz)
        return area, weight

    def _concat(self, extras: Mapping[str, Any], like: torch.Tensor) -> torch.Tensor | None:
        """The extra input channels some models read beside the noisy latent: an
        InstructPix2Pix model the source picture's latent (zeros when none is given); an
        inpainting model the mask (rounded) and the masked picture's latent, or with no mask
        "change everything" over a blank picture (ComfyUI's figures for a black picture's
        latent)."""
        in_channels = getattr(getattr(self.model.unet, "config", None), "in_channels", like.shape[1])
        batch, _, height, width = like.shape
        if in_channels == like.shape[1] * 2:
            source = extras.get("concat_latent_image")
            if source is None:
                return torch.zeros_like(like)
            source = source.float().to(like.device) * self.model.latent_scale
            if source.shape[-2:] != (height, width):
                source = F.interpolate(source, size=(height, width), mode="bilinear")
            return _to_batch(source, batch)
        if in_channels != like.shape[1] + 5:
            return None
        mask = extras.get("concat_mask", self.denoise_mask)
        picture = extras.get("concat_latent_image")
        picture = (picture.float().to(like.device) * self.model.latent_scale if picture is not None
                   else self.latent_image)
        if mask is None:
            blank = torch.tensor([0.8223, -0.6876, 0.6364, 0.1380], device=like.device).view(1, 4, 1, 1)
            return torch.cat([torch.ones_like(like[:, :1]), blank.expand(batch, -1, height, width)], dim=1)
        mask = mask.float().to(like.device)
        mask = mask[:, :1] if mask.ndim == 4 else mask
        mask = as_mask_batch(mask)[:, None]
        if mask.shape[-2:] != (height, width):
            mask = F.interpolate(mask, size=(height, width), mode="bilinear")
        mask = _to_batch(mask.round(), batch)
        if picture.shape[-2:] != (height, width):
            picture = F.interpolate(picture, size=(height, width), mode="bilinear")
        return torch.cat([mask, _to_batch(picture, batch)], dim=1)

    # ---- evaluation
    def _unet(self, model_input: torch.Tensor, t: torch.Tensor, embedding: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.model.unet(model_input.to(self.dtype), t, encoder_hidden_states=embedding, return_dict=False,
                               **kwargs)[0].float()

    def _side(self, entries: Conditioning, x: torch.Tensor, sigma: torch.Tensor, model_input: torch.Tensor,
              t: torch.Tensor, percent: float) -> torch.Tensor:
        """One side's clean estimate: each entry active at this σ runs on its area and adds
        its estimate by its weight; the sum is divided by the weights. Where no entry acts the
        estimate is 0, as in ComfyUI."""
        total = torch.zeros_like(x)
        counts = torch.full_like(x, 1e-37)
        current = float(sigma.reshape(-1)[0])
        gligen_values = gligen_per_entry(self.pos, entries)
        for index, (embedding, extras) in enumerate(entries):
            if "sigma_start" in extras and current > extras["sigma_start"]:
                continue
            if "sigma_end" in extras and current < extras["sigma_end"]:
                continue
            area, weight = self._region(extras, x)
            crop = (slice(None), slice(None)) + ((slice(area[2], area[2] + area[0]), slice(area[3], area[3] + area[1]))
                                                 if area is not None else (slice(None), slice(None)))
            x_part, input_part = x[crop], model_input[crop]
            kwargs = self._added(extras, negative=entries is self.neg)
            if extras.get("control"):
                kwargs.update(control_residuals(extras["control"], percent, input_part.to(self.dtype), t, embedding,
                                                kwargs))
            concat = self._concat(extras, x)
            unet_input = input_part if concat is None else torch.cat([input_part, concat[crop]], dim=1)
            with gligen_applied(self.model.unet, gligen_values[index], x_part.shape):
                denoised = self.ms.denoised(sigma, self._unet(unet_input, t, embedding, **kwargs), x_part)
            total[crop] += denoised * weight
            counts[crop] += weight
        return total / counts

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self._prepare(x)
        model_input = self.ms.model_input(sigma, x)
        t = self.ms.timestep(sigma).float().to(self.device)
        percent = self.ms.sigma_to_percent(float(sigma.reshape(-1)[0]))
        guided = not math.isclose(self.cfg, 1.0) or self.need_unconditional
        if guided and self.plain:
            inputs = []
            for side in (self.neg, self.pos):
                concat = self._concat(side[0].extras, x)
                inputs.append(model_input if concat is None else torch.cat([model_input, concat], dim=1))
            both = self._unet(torch.cat(inputs), torch.cat([t, t]), self.both, **self.both_extras)
            unconditional, conditional = self.ms.denoised(
                torch.cat([sigma, sigma]) if sigma.ndim else sigma, both, torch.cat([x, x])).chunk(2)
        else:
            conditional = self._side(self.pos, x, sigma, model_input, t, percent)
            unconditional = (self._side(self.neg, x, sigma, model_input, t, percent)
                             if guided and self.neg else None)
        self.last_unconditional = unconditional
        if unconditional is None:
            return conditional
        if getattr(self.model, "cfg_rescale", None) is not None:
            return rescaled_cfg(x, sigma, conditional, unconditional, self.cfg, self.model.cfg_rescale)
        return unconditional + (conditional - unconditional) * self.cfg

    def estimate(self, entries: Conditioning, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The clean estimate for one side's (already batched) entries."""
        model_input = self.ms.model_input(sigma, x)
        t = self.ms.timestep(sigma).float().to(self.device)
        percent = self.ms.sigma_to_percent(float(sigma.reshape(-1)[0]))
        return self._side(entries, x, sigma, model_input, t, percent)


def rescaled_cfg(x: torch.Tensor, sigma: torch.Tensor, conditional: torch.Tensor, unconditional: torch.Tensor,
                 cfg: float, multiplier: float) -> torch.Tensor:
    """Guidance rescaled as Lin et al. 2023 (§3.4) propose: computed on v-predictions, the
    guided result's standard deviation brought back to the conditional one's by
    ``multiplier`` (ComfyUI's RescaleCFG), against the over-exposure of high cfg."""
    sigma = sigma.reshape(sigma.shape[:1] + (1,) * (x.ndim - 1)) if sigma.ndim else sigma
    x_vp = x / (sigma * sigma + 1.0)
    v_cond = (x_vp - conditional) * (sigma ** 2 + 1.0) ** 0.5 / sigma
    v_uncond = (x_vp - unconditional) * (sigma ** 2 + 1.0) ** 0.5 / sigma
    v_cfg = v_uncond + cfg * (v_cond - v_uncond)
    dims = tuple(range(1, x.ndim))
    rescaled = v_cfg * (v_cond.std(dim=dims, keepdim=True) / v_cfg.std(dim=dims, keepdim=True))
    v_final = multiplier * rescaled + (1.0 - multiplier) * v_cfg
    return x_vp - v_final * sigma / (sigma * sigma + 1.0) ** 0.5


class DualCFGGuider(CFGGuider):
    """Two prompts and a negative (ComfyUI's DualCFGGuider): ``regular`` guides cond2 away
    from the negative by cfg_cond2_negative and adds cfg_conds·(cond1 − cond2); ``nested``
    guides cond1 from cond2 first, then the result from the negative."""

    def __init__(self, model: DiffusionModel, cond1: list, cond2: list, negative: list,
                 cfg_conds: float, cfg_cond2_negative: float, nested: bool = False):
        super().__init__(model, cond1, negative, cfg_conds)
        self.middle = conditioning_from_node(cond2)
        self.cfg2 = float(cfg_cond2_negative)
        self.nested = nested

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self._prepare(x)
        middle = self._resolved(self._batched(self.middle))
        positive = self.estimate(self.pos, x, sigma)
        skip_negative = not self.nested and math.isclose(self.cfg2, 1.0)
        skip_middle = skip_negative and math.isclose(self.cfg, 1.0)
        negative = None if skip_negative or not self.neg else self.estimate(self.neg, x, sigma)
        between = positive if skip_middle else self.estimate(middle, x, sigma)
        if self.nested:
            text = between + (positive - between) * self.cfg
            return text if negative is None else negative + self.cfg2 * (text - negative)
        guided = between if negative is None else negative + (between - negative) * self.cfg2
        return guided + (positive - between) * self.cfg


def _mask_bounds(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """The area (height, width, top, left) around a mask's non-zero cells, at least 8×8."""
    cells = mask.abs().amax(dim=0).nonzero()
    if len(cells) == 0:
        return (8, 8, 0, 0)
    top, left = (int(v) for v in cells.min(dim=0).values)
    bottom, right = (int(v) for v in cells.max(dim=0).values)
    return (max(8, bottom - top + 1), max(8, right - left + 1), top, left)


def _area_inside(inner: tuple, outer: tuple) -> bool:
    return (inner[2] >= outer[2] and inner[3] >= outer[3]
            and inner[0] + inner[2] <= outer[0] + outer[2] and inner[1] + inner[3] <= outer[1] + outer[3])


def _add_opposite_areas(positive: Conditioning, negative: Conditioning) -> None:
    """Give every area on one side a twin on the other (ComfyUI does this so both sides of the
    guidance cover the same cells): the twin has the area's settings and the embedding of the
    smallest entry on the other side that covers that area."""
    for side, other in ((positive, negative), (negative, positive)):
        for _, extras in list(side):
            area = extras.get("area")
            if area is None:
                continue
            smallest = None
            for candidate in other:
                candidate_area = candidate.extras.get("area")
                if candidate_area is None:
                    smallest = smallest or candidate
                elif _area_inside(area, candidate_area) and (
                        smallest is None or "area" not in smallest.extras
                        or math.prod(smallest.extras["area"][:2]) > math.prod(candidate_area[:2])):
                    smallest = candidate
            if smallest is None or smallest.extras.get("area") == area:
                continue
            twin = {**extras}
            for key in ("pooled_output",):
                if key in smallest.extras:
                    twin[key] = smallest.extras[key]
                else:
                    twin.pop(key, None)
            other.append(ConditioningEntry(smallest.embedding, twin))


def _batched_added(sides: list[dict[str, Any]]) -> dict[str, Any]:
    """The negative's and the positive's extra UNet inputs as one batch (nested dicts of
    tensors, concatenated key by key)."""
    out: dict[str, Any] = {}
    for key, value in sides[0].items():
        if isinstance(value, dict):
            out[key] = _batched_added([side[key] for side in sides])
        else:
            out[key] = torch.cat([side[key] for side in sides])
    return out


def _to_batch(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    if tensor.shape[0] == batch:
        return tensor
    return tensor.repeat(-(-batch // tensor.shape[0]), *([1] * (tensor.ndim - 1)))[:batch]


# --- Running a sampler ---------------------------------------------------------------------

@dataclass(frozen=True)
class LatentSpace:
    """How a model's latents relate to the VAE's: ``(vae_latent − shift) × scale`` (only FLUX's
    and SD3's latent formats shift; ComfyUI's process_in and process_out)."""

    scale: float
    shift: float = 0.0

    @classmethod
    def of(cls, model: DiffusionModel) -> LatentSpace:
        return cls(model.latent_scale, float(getattr(model, "latent_shift", 0.0)))

    def to_model(self, samples: torch.Tensor, device: torch.device) -> torch.Tensor:
        # An empty latent (all zeros) stays zeros: the sampler starts from pure noise.
        if torch.count_nonzero(samples) > 0:
            return (samples.to(device) - self.shift) * self.scale
        return samples.to(device)

    def to_vae(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.scale + self.shift


def _mask_for(noise_mask: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor | None:
    """A LATENT's noise mask at the latent's size, channels and batch (None: no mask)."""
    if noise_mask is None:
        return None
    mask = as_mask_batch(noise_mask.float())[:, None]
    mask = F.interpolate(mask, size=tuple(shape[2:]), mode="bilinear")
    if mask.shape[1] < shape[1]:
        mask = mask.repeat(1, shape[1], 1, 1)[:, :shape[1]]
    if mask.shape[0] < shape[0]:
        mask = mask.repeat(-(-shape[0] // mask.shape[0]), 1, 1, 1)
    return mask[:shape[0]].to(device)


def _inpaint_noise(like: torch.Tensor, seed: int | None, seed_rows: Sequence[tuple[int | None, int]],
                   device: torch.device) -> torch.Tensor:
    """The noise path the unmasked area follows for samplers that draw it anew (ComfyUI's:
    from the seed + 1, 42 without one), per job of a seed batch."""
    parts = []
    for row_seed, rows in seed_rows or ((seed, like.shape[0]),):
        generator = torch.Generator(device="cpu").manual_seed((41 if row_seed is None else row_seed) + 1)
        parts.append(torch.randn((rows, *like.shape[1:]), generator=generator))
    return torch.cat(parts).to(device)


class InpaintingDenoiser:
    """The guider with the area outside the mask held on the original latent's own noise
    path at every model call, and its estimate there the original."""

    def __init__(self, guider: Denoiser, ms: ModelSampling, clean: torch.Tensor, mask: torch.Tensor,
                 noise: torch.Tensor) -> None:
        self.guider, self.ms, self.clean, self.mask, self.noise = guider, ms, clean, mask, noise

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        kept = self.ms.noise_scaling(sigma.reshape([sigma.shape[0]] + [1] * (x.ndim - 1)), self.noise, self.clean)
        x = x * self.mask + kept * (1 - self.mask)
        return self.guider(x, sigma) * self.mask + self.clean * (1 - self.mask)


class StepReporter:
    """The sampler's per-step callback: progress with a preview of the current clean estimate
    (which also checks for cancellation), and the last estimate kept for SamplerCustom's
    denoised output."""

    def __init__(self, progress: ProgressCallback, total: int, space: LatentSpace, model: DiffusionModel) -> None:
        self.progress, self.total, self.space = progress, total, space
        self.family, self.preview_vae = model.family, getattr(model, "preview_vae", None)
        self.last_denoised: torch.Tensor | None = None

    def __call__(self, index: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        self.last_denoised = denoised
        self.progress(min(index + 1, self.total), self.total,
                      latent_preview(self.space.to_vae(denoised), self.family, self.preview_vae))


def _no_unconditional() -> None:
    return None


@dataclass(frozen=True)
class SamplingResult:
    """What a sampler run gives: the sampled latent and the last step's clean estimate (the
    sampled latent itself when no step ran)."""

    latent: Latent
    denoised: Latent


def sample_latent(model: DiffusionModel, guider: Denoiser, sampler: str | SamplerChoice, sigmas: torch.Tensor,
                  noise: torch.Tensor, latent: Latent, seed: int | None, progress: ProgressCallback,
                  seed_rows: Sequence[tuple[int | None, int]] = ()) -> SamplingResult:
    """Run ``sampler`` down ``sigmas`` from ``latent`` noised with ``noise`` (unit Gaussian, or
    zeros for none). The results are in the VAE's latent space, as VAEDecode expects. With
    ``seed_rows`` the latent is a seed batch, ``(seed, rows)`` per job in order, and each
    job's rows take their per-step noise from that job's seed."""
    if len(sigmas) == 0:
        return SamplingResult(latent, latent)
    choice = sampler if isinstance(sampler, SamplerChoice) else SamplerChoice(sampler)
    spec = choice.spec
    ms = getattr(guider, "ms", None) or model_sampling(model)
    device = model.unet.device
    space = LatentSpace.of(model)

    # 1. The σ list, and whether it starts at the model's full noise (the latent is then
    #    scaled as pure noise is).
    sigmas = sigmas.float().to(device)
    first = float(sigmas[0])
    max_denoise = math.isclose(float(ms.sigma_max), first, rel_tol=1e-05) or first > float(ms.sigma_max)
    # 2. The starting latent in the model's space, and the noise.
    clean = space.to_model(latent.samples.float(), device)
    noise = noise.float().to(device)
    # 3. Inpainting: the mask at the latent's size, and the noise path the kept area follows.
    mask = _mask_for(latent.noise_mask, clean.shape, device)
    inpaint_noise = noise
    if mask is not None and spec.inpaint_random_noise:
        inpaint_noise = _inpaint_noise(noise, seed, seed_rows, device)
    # 4. The denoiser: the guider, told about this run, and held to the mask.
    if isinstance(guider, CFGGuider):
        guider.start_run(clean, mask, seed, need_unconditional=spec.cfg_pp)
    denoiser = guider if mask is None else InpaintingDenoiser(guider, ms, clean, mask, inpaint_noise)
    # 5. What the algorithm may use besides it: per-step reports, its noise's seeds, and
    #    (CFG++) the last unguided estimate.
    reporter = StepReporter(progress, len(sigmas) - 1, space, model)
    context = SamplerContext(ms, seed=seed, on_step=reporter,
                             unconditional=getattr(guider, "unconditional_estimate", _no_unconditional),
                             seed_rows=tuple(seed_rows))
    # 6. Noise the latent to the first σ and walk the σ list.
    x = ms.noise_scaling(sigmas[0], noise, clean, max_denoise)
    with torch.no_grad(), hypernetworks_applied(model.unet, getattr(model, "hypernetworks", ())):
        x = spec.function(denoiser, x, sigmas, context, **dict(choice.options))
    x = ms.inverse_noise_scaling(sigmas[-1], x)
    # 7. Back to the VAE's space.
    sampled = latent.with_samples(space.to_vae(x.float()).cpu())
    if reporter.last_denoised is None:
        return SamplingResult(sampled, sampled)
    return SamplingResult(sampled, latent.with_samples(space.to_vae(reporter.last_denoised.float()).cpu()))


@dataclass
class SamplingJob:
    """Everything one KSampler run needs besides the model, as the node receives it: the
    conditioning and the LATENT in ComfyUI's shapes (the seed batcher compares them by
    identity with the next job's)."""

    positive: list
    negative: list
    latent: dict[str, Any]
    seed: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    denoise: float = 1.0
    start_step: int | None = None
    end_step: int | None = None
    add_noise: bool = True
    leftover_noise: bool = False


def _job_sigmas(model: DiffusionModel, job: SamplingJob) -> torch.Tensor | None:
    """The σ list KSampler walks for ``job``; None (or empty) when there is nothing to do."""
    ms = model_sampling(model)
    advanced = job.start_step is not None or job.end_step is not None
    sigmas = ksampler_sigmas(ms, job.sampler, job.scheduler, job.steps, 1.0 if advanced else job.denoise)
    if advanced:
        sigmas = step_range(sigmas, job.start_step, job.end_step, force_full_denoise=not job.leftover_noise)
    return sigmas


def _job_noise(job: SamplingJob, latent: Latent, seed: int) -> torch.Tensor:
    shape = tuple(latent.samples.shape)
    if job.add_noise:
        return initial_noise(shape, seed, latent.batch_index)
    return torch.zeros(shape)


def sample(model: DiffusionModel, job: SamplingJob, progress: ProgressCallback) -> dict[str, Any]:
    """KSampler (and KSamplerAdvanced, with a step range): denoise ``job.latent`` and return
    the new LATENT."""
    # 1. The σ list from steps, scheduler, denoise and step range.
    sigmas = _job_sigmas(model, job)
    if sigmas is None or len(sigmas) == 0:
        return {**job.latent}
    # 2. The starting noise, from the seed.
    latent = Latent.from_node(job.latent)
    noise = _job_noise(job, latent, job.seed)
    # 3. The guider: the model with its prompts.
    guider = CFGGuider(model, job.positive, job.negative, job.cfg)
    # 4. The sampler.
    return sample_latent(model, guider, job.sampler, sigmas, noise, latent, job.seed, progress).latent.to_node()


# --- Seed batches: jobs that differ only in their seed, sampled as one latent batch ----------

def seed_batchable(model: DiffusionModel, job: SamplingJob) -> bool:
    """Whether ``job`` gives, for every seed, the same picture inside a seed batch as alone.

    Every row of a latent batch is denoised on its own (the UNet, guidance and the sampler's
    updates work row by row) except where something reads the batch as a whole or draws from
    the seed outside the sampler's noise: a sampler whose step sizes follow the whole batch's
    error (dpm_adaptive), unCLIP's image-embedding noise (drawn from the seed, once per call;
    its family is left out of SEED_BATCH_FAMILIES),
    conditioning with more than one row (expanded to the batch by its first), ControlNet hints
    and GLIGEN boxes (given per call). Those jobs are sampled one at a time.
    """
    spec = SAMPLERS.get(job.sampler)
    if spec is None or not spec.seed_batchable:
        return False
    if model.family not in SEED_BATCH_FAMILIES or getattr(model, "noise_augmentor", None) is not None:
        return False
    for entry in conditioning_from_node(job.positive) + conditioning_from_node(job.negative):
        if getattr(entry.embedding, "shape", (1,))[0] != 1:
            return False
        if any(entry.extras.get(key) for key in ("control", "gligen", "unclip_conditioning")):
            return False
        mask = entry.extras.get("mask")
        if mask is not None and mask.ndim == 3 and mask.shape[0] != 1:
            return False
    return True


def _repeat_rows(tensor: torch.Tensor, rows: int, copies: int) -> torch.Tensor:
    """``tensor``'s first dimension brought to ``rows`` as the sampler brings it (repeating its
    rows), then ``copies`` of that one after another."""
    return torch.cat([_to_batch(tensor, rows)] * copies)


def sample_seed_batch(model: DiffusionModel, job: SamplingJob, seeds: Sequence[int],
                      progress: ProgressCallback) -> list[dict[str, Any]]:
    """``job`` once for each of ``seeds`` in one sampler call over a latent batch: each job's
    latent rows start from its seed's noise and take their per-step noise (ancestral steps,
    SDE Brownian trees, inpainting's own noise) from generators of its own, so each returned
    LATENT is the one :func:`sample` gives for that seed alone (to float rounding of a
    batched UNet call). Only for jobs :func:`seed_batchable` accepts."""
    seeds = list(seeds)
    if len(seeds) == 1:
        return [sample(model, replace(job, seed=seeds[0]), progress)]
    # 1. The σ list, the same for every job.
    sigmas = _job_sigmas(model, job)
    if sigmas is None or len(sigmas) == 0:
        return [{**job.latent} for _ in seeds]
    # 2. One latent holding every job's rows, its mask's rows matched to each job's as the
    #    sampler matches them to one job's latent; each job's rows start from its seed's noise.
    latent = Latent.from_node(job.latent)
    rows = latent.samples.shape[0]
    mask = latent.noise_mask
    if mask is not None:
        mask = _repeat_rows(as_mask_batch(mask.float())[:, None], rows, len(seeds))
    batched = replace(latent, samples=_repeat_rows(latent.samples, rows, len(seeds)), noise_mask=mask,
                      batch_index=None)
    noise = torch.cat([_job_noise(job, latent, seed) for seed in seeds])
    # 3. The guider, as for one job.
    guider = CFGGuider(model, job.positive, job.negative, job.cfg)
    # 4. The sampler, once, with each job's rows seeded by its own seed.
    result = sample_latent(model, guider, job.sampler, sigmas, noise, batched, seeds[0], progress,
                           seed_rows=[(seed, rows) for seed in seeds])
    return [latent.with_samples(part).to_node() for part in result.latent.samples.split(rows)]


def seed_batch_size(model: DiffusionModel, latent_shape: Sequence[int], limit: int = 16) -> int:
    """How many jobs of this latent size one sampler call should take, from the memory the
    model's device has free: a UNet call holds activations of about a few hundred values per
    latent cell and feature channel for each row of its (guided: doubled) batch, plus
    attention maps of (latent cells)² per head at the top level. Half the free memory is
    used, and never more than ``limit`` jobs (beyond that a call is no faster per picture)."""
    rows, _channels, height, width = (list(latent_shape) + [1, 1, 1, 1])[:4]
    cells = max(1, int(height) * int(width))
    config = getattr(model.unet, "config", None)
    itemsize = torch.empty((), dtype=getattr(model.unet, "dtype", torch.float32)).element_size()
    if model.family in TRANSFORMER_FAMILIES:
        # FLUX and SD3 see 2×2 latent patches as tokens; each block holds a few dozen values
        # per token and hidden channel (attention inputs, the MLP's 4× widening) and, on
        # devices without fused attention, one attention map per head.
        tokens = max(1, cells // 4)
        heads = int(getattr(config, "num_attention_heads", 24) or 24)
        hidden = heads * int(getattr(config, "attention_head_dim", 128) or 128)
        per_row = 2 * itemsize * (tokens * hidden * 48 + tokens * tokens * heads)
    else:
        widths = getattr(config, "block_out_channels", None) or (320,)
        heads = getattr(config, "attention_head_dim", 8)
        heads = max(heads) if isinstance(heads, (list, tuple)) else int(heads or 8)
        per_row = 2 * itemsize * (cells * int(widths[0]) * 256 + cells * cells * heads * 2)
    free = free_memory_bytes(getattr(model.unet, "device", torch.device("cpu")))
    fits = int(free * 0.5 // max(1, per_row * max(1, int(rows))))
    return max(1, min(limit, fits))


def free_memory_bytes(device: torch.device) -> int:
    """Bytes free on ``device``: the GPU's own figure, or the machine's available memory."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30
