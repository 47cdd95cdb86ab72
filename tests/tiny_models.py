"""Tiny Stable Diffusion models with random weights, in the real file layouts.

SD1-shaped and SDXL-shaped pipelines small enough to build in a second and render 64×64 in a
fraction of one, saved with ``save_pretrained`` as diffusers folders; the loading code under
test reads them exactly as it reads full-size models.
"""

from __future__ import annotations

from pathlib import Path

import torch

from studio.runtime.checkpoints import make_tokenizer

SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
             "steps_offset": 1, "timestep_spacing": "leading", "prediction_type": "epsilon"}


def _text_config(**changes):
    from transformers import CLIPTextConfig

    base = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                max_position_embeddings=77, vocab_size=49408, bos_token_id=49406, eos_token_id=49407,
                pad_token_id=49407, projection_dim=32, hidden_act="quick_gelu")
    base.update(changes)
    return CLIPTextConfig(**base)


def _vae(scaling_factor: float | None = None):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=8,
                        latent_channels=4, sample_size=64)
    if scaling_factor is not None:
        vae.register_to_config(scaling_factor=scaling_factor)
    return vae


def _sdxl_unet(cross_attention_dim: int, time_ids: int, **config):
    """A tiny SDXL-style UNet: size conditioning from a 48-wide pooled text embedding and
    ``time_ids`` ids of 8 each (6 for the base, 5 for the refiner)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1,
                                cross_attention_dim=cross_attention_dim, norm_num_groups=8, attention_head_dim=4,
                                sample_size=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                addition_embed_type="text_time", addition_time_embed_dim=8,
                                projection_class_embeddings_input_dim=48 + time_ids * 8, use_linear_projection=True,
                                **config)


def build_sd15(folder: Path, seed: int = 0) -> Path:
    """A tiny SD1.x-shaped diffusers folder."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                                norm_num_groups=8, attention_head_dim=4, sample_size=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=_vae(), text_encoder=CLIPTextModel(_text_config()), tokenizer=make_tokenizer(),
        scheduler=EulerDiscreteScheduler(**SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return folder


def build_sdxl(folder: Path, seed: int = 0) -> Path:
    """A tiny SDXL-shaped diffusers folder (two text encoders, size conditioning)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    # The second encoder is wider than the first, as in SDXL (768 and 1280): files are told
    # apart by those widths, and the UNet attends to both side by side (32 + 48).
    unet = _sdxl_unet(80, 6, transformer_layers_per_block=(1, 2))
    vae = _vae(scaling_factor=0.13025)
    pipeline = StableDiffusionXLPipeline(
        unet=unet, vae=vae, text_encoder=CLIPTextModel(_text_config()),
        # Ten layers: SDXL files are recognised by a key of the second encoder's tenth layer.
        text_encoder_2=CLIPTextModelWithProjection(_text_config(hidden_act="gelu", num_hidden_layers=10,
                                                                hidden_size=48, projection_dim=48)),
        tokenizer=make_tokenizer(), tokenizer_2=make_tokenizer("!"),
        scheduler=EulerDiscreteScheduler(**SCHEDULER), force_zeros_for_empty_prompt=True)
    pipeline.save_pretrained(folder)
    return folder


def build_sd2(folder: Path, seed: int = 0) -> Path:
    """A tiny SD2.x-shaped diffusers folder: an OpenCLIP-width (1024) text encoder, linear
    attention projections and v-prediction. SD2 files are recognised by that 1024 width, so
    it cannot shrink; one layer and fp16 storage keep it to about 100 MB."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=2, cross_attention_dim=1024,
                                norm_num_groups=8, attention_head_dim=4, sample_size=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), use_linear_projection=True,
                                upcast_attention=True)
    text = CLIPTextModel(_text_config(hidden_size=1024, intermediate_size=64, num_attention_heads=16,
                                      num_hidden_layers=1, hidden_act="gelu")).half()
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=_vae(), text_encoder=text, tokenizer=make_tokenizer("!"),
        scheduler=EulerDiscreteScheduler(**{**SCHEDULER, "prediction_type": "v_prediction"}),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return folder


def build_controlnet(checkpoint_folder: Path, folder: Path, seed: int = 0) -> Path:
    """A ControlNet for a tiny model, made from its UNet as ControlNet training starts, with
    the zero convolutions given random weights so the hint visibly acts."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(checkpoint_folder, subfolder="unet")
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0, 0.3)
            module.bias.normal_(0, 0.1)
    net.save_pretrained(folder)
    return folder


def build_inpainting(base_folder: Path, folder: Path, seed: int = 0, in_channels: int = 9) -> Path:
    """An inpainting version of a tiny diffusers folder: the same model with a UNet of 9
    input channels (latent, mask, masked picture's latent; 8 for InstructPix2Pix: latent and
    source picture's latent) and fresh random weights. The other components' files are
    hard-linked where possible (SD2's text encoder is about 100 MB)."""
    import os
    import shutil

    from diffusers import UNet2DConditionModel

    def link_or_copy(source, destination):
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    shutil.copytree(base_folder, folder, ignore=shutil.ignore_patterns("unet"), copy_function=link_or_copy)
    torch.manual_seed(seed)
    config = dict(UNet2DConditionModel.load_config(base_folder / "unet"), in_channels=in_channels)
    UNet2DConditionModel.from_config(config).save_pretrained(folder / "unet")
    return folder


def build_sdxl_refiner(folder: Path, seed: int = 0) -> Path:
    """A tiny SDXL-refiner-shaped diffusers folder: one OpenCLIP-style encoder with projection
    (SDXL's second, as text_encoder_2), and a UNet conditioned on its pooled output and 5 time
    ids (height, width, crop top, crop left, aesthetic score)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = _sdxl_unet(48, 5)
    vae = _vae(scaling_factor=0.13025)
    pipeline = StableDiffusionXLImg2ImgPipeline(
        unet=unet, vae=vae, text_encoder=None, tokenizer=None,
        # Ten layers: refiner files are recognised by a key of their encoder's tenth layer.
        text_encoder_2=CLIPTextModelWithProjection(_text_config(hidden_act="gelu", num_hidden_layers=10,
                                                                hidden_size=48, projection_dim=48)),
        tokenizer_2=make_tokenizer("!"), scheduler=EulerDiscreteScheduler(**SCHEDULER),
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    pipeline.save_pretrained(folder)
    return folder


def tiny_vision_config(**changes):
    """A tiny CLIP vision tower: 224-pixel input in 32-pixel patches (49 tokens and the class
    token), 32 wide, 3 layers (so the layer before last is a real one), projection to 16."""
    from transformers import CLIPVisionConfig

    base = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3, image_size=224,
                patch_size=32, projection_dim=16, hidden_act="gelu")
    base.update(changes)
    return CLIPVisionConfig(**base)


def build_unclip(folder: Path, seed: int = 0) -> Path:
    """A tiny SD 2.1 unCLIP-shaped model as a diffusers folder (the layout of Stability's
    stable-diffusion-2-1-unclip): an SD2-style UNet (linear projections, v-prediction) with a
    class input for a 16-value image embedding and its noise level's embedding (32), a
    narrow OpenCLIP-style text encoder, and the CLIP vision tower in ``image_encoder``."""
    import json

    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    vision = CLIPVisionModelWithProjection(tiny_vision_config())
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                                norm_num_groups=8, attention_head_dim=4, sample_size=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), use_linear_projection=True,
                                class_embed_type="projection",
                                projection_class_embeddings_input_dim=2 * vision.config.projection_dim)
    with torch.no_grad():
        # Random class-input weights large enough that the picture visibly steers the result.
        unet.class_embedding.linear_1.weight.normal_(0, 1.0)
    text = CLIPTextModel(_text_config(hidden_act="gelu"))
    for name, module in (("unet", unet), ("vae", _vae()), ("text_encoder", text), ("image_encoder", vision)):
        module.save_pretrained(folder / name)
    EulerDiscreteScheduler(**{**SCHEDULER, "prediction_type": "v_prediction"}).save_pretrained(folder / "scheduler")
    make_tokenizer("!").save_pretrained(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableUnCLIPImg2ImgPipeline",
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    return folder
