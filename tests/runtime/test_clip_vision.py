"""CLIP vision encoders, unCLIP checkpoints and their image-embedding conditioning, and T2I
style adapters, on tiny random-weight models written in the real file layouts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from studio.runtime.checkpoints import ModelLoadError, inspect_checkpoint_header, load_single_file
from studio.runtime.clip_vision import (
    ClipVision,
    ClipVisionOutput,
    EmbeddingNoiseAugmentor,
    clip_preprocess,
    encode_image,
    load_clip_vision_file,
    load_style_model_file,
    unclip_embedding,
    vision_config,
)
from studio.runtime.device import DevicePolicy
from studio.runtime.sampling import CFGGuider
from tests.unclip_models import CHECKPOINT, STYLE, STYLE_TOKENS, VISION_HF, VISION_OPEN_CLIP, unclip_model_root

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def unclip_root(tmp_path_factory):
    return unclip_model_root(tmp_path_factory.getbasetemp() / "unclip-models")


@pytest.fixture(scope="session")
def unclip_checkpoint(unclip_root):
    return load_single_file(unclip_root / "checkpoints" / CHECKPOINT, CPU, "unclip")


def picture(height=90, width=130, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, height, width, 3, generator=generator)


def reference_tower(unclip_root):
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(unclip_root / "source" / "tiny-unclip" / "image_encoder")
    return ClipVision(model.eval(), "reference")


# --- CLIP vision models -----------------------------------------------------------------------

@pytest.mark.parametrize("name", [VISION_HF, VISION_OPEN_CLIP])
def test_both_file_layouts_load_the_tower_transformers_saved(unclip_root, name):
    loaded = load_clip_vision_file(unclip_root / "clip_vision" / name, CPU, name)
    ours, theirs = encode_image(loaded, picture()), encode_image(reference_tower(unclip_root), picture())
    for field in ("image_embeds", "last_hidden_state", "penultimate_hidden_states"):
        assert torch.allclose(getattr(ours, field), getattr(theirs, field), atol=1e-5), field
    assert ours.image_embeds.shape == (1, 16) and ours.last_hidden_state.shape == (1, 50, 32)
    assert not torch.equal(ours.last_hidden_state, ours.penultimate_hidden_states)


@pytest.mark.parametrize(("width", "layers", "projection", "positions", "expected"), [
    (1024, 24, 768, 257, ("quick_gelu", 224, 768)),   # OpenAI ViT-L/14 (unCLIP L, the style adapter)
    (1024, 24, 768, 577, ("quick_gelu", 336, 768)),   # ViT-L/14 at 336 pixels
    (1280, 32, 1024, 257, ("gelu", 224, 1024)),       # OpenCLIP ViT-H/14 (unCLIP H, IP-Adapter)
    (1664, 48, 1280, 257, ("gelu", 224, 1280)),       # OpenCLIP ViT-bigG/14 (SDXL revision)
])
def test_published_towers_are_recognised_from_their_width_and_depth(tmp_path, width, layers, projection, positions,
                                                                    expected):
    shapes = {"vision_model.embeddings.patch_embedding.weight": torch.empty(width, 3, 14, 14, device="meta"),
              "vision_model.embeddings.position_embedding.weight": torch.empty(positions, width, device="meta"),
              "visual_projection.weight": torch.empty(projection, width, device="meta")}
    shapes.update({f"vision_model.encoder.layers.{i}.layer_norm1.weight": torch.empty(width, device="meta")
                   for i in range(layers)})
    config = vision_config(tmp_path / "clip_vision_x.safetensors", shapes)
    assert (config.hidden_act, config.image_size, config.projection_dim) == expected
    assert (config.hidden_size, config.num_hidden_layers) == (width, layers)


def test_an_unknown_tower_without_a_config_says_where_to_put_one(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "odd.safetensors"
    save_file({"vision_model.embeddings.patch_embedding.weight": torch.zeros(48, 3, 14, 14),
               "vision_model.embeddings.position_embedding.weight": torch.zeros(257, 48),
               "vision_model.encoder.layers.0.layer_norm1.weight": torch.zeros(48)}, str(path))
    with pytest.raises(ModelLoadError, match=r"odd.safetensors: .*48 wide with 1 layers.*folder named 'odd'"):
        load_clip_vision_file(path, CPU, "odd")


def test_a_file_that_is_no_vision_model_is_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelLoadError, match="lora.safetensors: is not a CLIP vision model"):
        load_clip_vision_file(path, CPU, "lora")


def test_preprocessing_cuts_the_centre_of_the_shorter_side_or_squeezes_the_whole_picture():
    # A picture twice as wide as high, left half black and right half white.
    image = torch.zeros(1, 112, 224, 3)
    image[:, :, 112:] = 1.0
    mean, std = torch.tensor([0.48145466, 0.4578275, 0.40821073]), torch.tensor([0.26862954, 0.26130258, 0.27577711])
    cropped = clip_preprocess(image, crop=True)
    squeezed = clip_preprocess(image, crop=False)
    assert cropped.shape == squeezed.shape == (1, 3, 224, 224)
    pixels = cropped * std.view(3, 1, 1) + mean.view(3, 1, 1)
    # Enlarged to 224×448 and cut to its middle 224 columns, or squeezed to 224×224: either
    # way the left half is black and the right half white (bicubic blurs the seam only).
    assert pixels[0, :, :, :100].max() < 0.01 and pixels[0, :, :, 124:].min() > 0.99
    squeezed_pixels = squeezed * std.view(3, 1, 1) + mean.view(3, 1, 1)
    assert squeezed_pixels[0, :, :, :100].max() < 0.01 and squeezed_pixels[0, :, :, 124:].min() > 0.99
    # Already 224×224: only rounded to 8 bits and normalised.
    exact = torch.rand(1, 224, 224, 3)
    expected = ((exact * 255).round() / 255).movedim(-1, 1)
    assert torch.allclose(clip_preprocess(exact) * std.view(3, 1, 1) + mean.view(3, 1, 1), expected, atol=1e-6)


# --- unCLIP checkpoints ---------------------------------------------------------------------

def test_an_unclip_file_loads_with_its_image_encoder_and_noise_augmentor(unclip_root, unclip_checkpoint):
    assert inspect_checkpoint_header(unclip_root / "checkpoints" / CHECKPOINT) is None
    model = unclip_checkpoint.model
    assert model.family == "sd2_unclip" and model.prediction_type == "v_prediction"
    assert model.unet.config.class_embed_type == "projection"
    assert model.unet.config.projection_class_embeddings_input_dim == 32
    assert model.noise_augmentor.dim == 16
    assert unclip_checkpoint.clip.family == "sd2"  # SD 2's text encoder
    ours = encode_image(unclip_checkpoint.clip_vision, picture())
    theirs = encode_image(reference_tower(unclip_root), picture())
    assert torch.allclose(ours.image_embeds, theirs.image_embeds, atol=1e-5)


def test_the_shipped_unclip_configs_are_chosen_by_the_class_input_width(tmp_path):
    from studio.runtime.checkpoints import CONFIGS_DIR, _config_folder

    for inputs, folder in ((1536, "sd21_unclip_l"), (2048, "sd21_unclip_h")):
        state = {"model.diffusion_model.label_emb.0.0.weight": torch.empty(1280, inputs, device="meta")}
        assert _config_folder(tmp_path / "x.safetensors", "sd2_unclip", state) == CONFIGS_DIR / folder
    state = {"model.diffusion_model.label_emb.0.0.weight": torch.empty(1280, 100, device="meta")}
    with pytest.raises(ModelLoadError, match="reads 100 image values.*1536.*2048"):
        _config_folder(tmp_path / "x.safetensors", "sd2_unclip", state)


# --- The noise-augmented image embedding ------------------------------------------------------

def embeds(*rows):
    return ClipVisionOutput(torch.tensor(rows, dtype=torch.float32), torch.zeros(1), torch.zeros(1))


def test_the_noise_level_follows_noise_augmentation_and_the_noise_the_seed():
    augmentor = EmbeddingNoiseAugmentor(4)
    output = embeds([1.0, -2.0, 0.5, 3.0])
    clean = unclip_embedding([{"clip_vision_output": output, "strength": 1.0, "noise_augmentation": 0.0}], augmentor, 5)
    # Level 0 of the cosine schedule barely noises; its embedding is cos(0) = 1, sin(0) = 0.
    assert torch.allclose(clean[0, :4], output.image_embeds[0], atol=0.02)
    assert torch.equal(clean[0, 4:], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    noisy = [unclip_embedding([{"clip_vision_output": output, "strength": 1.0, "noise_augmentation": 0.5}],
                              augmentor, seed) for seed in (5, 5, 6)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])
    assert augmentor.level(0.5) == 500 and augmentor.level(1.0) == 999
    # Half way down the schedule the embedding keeps about sqrt(ᾱ) of itself.
    assert 0.6 < float(augmentor.sqrt_alphas_cumprod[500]) < 0.75


def test_strength_scales_the_whole_input_and_several_pictures_add_up_then_noise_again():
    augmentor = EmbeddingNoiseAugmentor(4)
    first, second = embeds([1.0, 0.0, 0.0, 0.0]), embeds([0.0, 1.0, 0.0, 0.0])
    one = unclip_embedding([{"clip_vision_output": first, "strength": 1.0, "noise_augmentation": 0.1}], augmentor, 0)
    double = unclip_embedding([{"clip_vision_output": first, "strength": 2.0, "noise_augmentation": 0.1}], augmentor, 0)
    assert torch.allclose(double, 2 * one)
    both = unclip_embedding([{"clip_vision_output": first, "strength": 1.0, "noise_augmentation": 0.0},
                             {"clip_vision_output": second, "strength": 1.0, "noise_augmentation": 0.0}],
                            augmentor, 0, merge_augmentation=0.05)
    # Re-noised at the merge level (50 of 1000): its level embedding is the merge level's.
    level_50 = EmbeddingNoiseAugmentor(4)(torch.zeros(1, 4), 50, torch.zeros(1, 4))[1]
    assert torch.equal(both[:, 4:], level_50)
    assert both[0, 0] > 0.5 and both[0, 1] > 0.5


def test_an_embedding_of_the_wrong_width_names_the_mismatch():
    with pytest.raises(ValueError, match="has 3 values.*expects 4"):
        unclip_embedding([{"clip_vision_output": embeds([1.0, 2.0, 3.0]), "strength": 1.0,
                           "noise_augmentation": 0.0}], EmbeddingNoiseAugmentor(4), 0)


def stub_guider(family, **config):
    unet = SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32, config=SimpleNamespace(**config))
    scheduler = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                 "num_train_timesteps": 1000, "prediction_type": "epsilon"}
    model = SimpleNamespace(unet=unet, family=family, scheduler_config=scheduler, sampling=None,
                            noise_augmentor=EmbeddingNoiseAugmentor(16) if family == "sd2_unclip" else None)
    guider = CFGGuider(model, [], [], 5.0)
    guider.device, guider.dtype, guider.batch, guider.height, guider.width = torch.device("cpu"), torch.float32, 2, 8, 8
    guider.seed = 42
    return guider


def test_the_unclip_class_input_is_zeros_without_pictures_and_uses_the_seed_minus_ten():
    guider = stub_guider("sd2_unclip", projection_class_embeddings_input_dim=32)
    assert torch.equal(guider._added({}, negative=True)["class_labels"], torch.zeros(2, 32))
    pictures = [{"clip_vision_output": embeds([0.5] * 16), "strength": 0.8, "noise_augmentation": 0.3}]
    labels = guider._added({"unclip_conditioning": pictures}, negative=False)["class_labels"]
    expected = unclip_embedding(pictures, guider.model.noise_augmentor, 32, merge_augmentation=0.05)
    assert labels.shape == (2, 32) and torch.equal(labels, expected.expand(2, -1))


def test_sdxl_revision_replaces_the_pooled_prompt_with_the_noised_picture():
    guider = stub_guider("sdxl")
    pooled = torch.randn(1, 1280)
    plain = guider._added({"pooled_output": pooled}, negative=False)["added_cond_kwargs"]["text_embeds"]
    assert torch.equal(plain, pooled.expand(2, -1))
    pictures = [{"clip_vision_output": embeds(torch.randn(1280).tolist()), "strength": 1.0, "noise_augmentation": 0.2}]
    revision = guider._added({"pooled_output": pooled, "unclip_conditioning": pictures},
                             negative=False)["added_cond_kwargs"]["text_embeds"]
    expected = unclip_embedding(pictures, EmbeddingNoiseAugmentor(1280), 32)[:, :1280]
    assert torch.equal(revision, expected.expand(2, -1))


# --- Style models -----------------------------------------------------------------------------

def test_a_style_adapter_file_loads_with_its_shape_read_from_the_weights(unclip_root):
    style = load_style_model_file(unclip_root / "style_models" / STYLE, "style")
    tokens = style.tokens(encode_image(reference_tower(unclip_root), picture()))
    assert tokens.shape == (1, STYLE_TOKENS, 32) and torch.isfinite(tokens).all()


def test_a_file_without_a_style_embedding_is_refused_and_redux_is_named(tmp_path):
    from safetensors.torch import save_file

    save_file({"redux_down.weight": torch.zeros(2, 2)}, str(tmp_path / "redux.safetensors"))
    with pytest.raises(ModelLoadError, match="redux.safetensors: is a FLUX Redux"):
        load_style_model_file(tmp_path / "redux.safetensors", "r")


@pytest.mark.parametrize(("folder", "tower_width", "embedding"), [("sd21_unclip_l", 1024, 768),
                                                                  ("sd21_unclip_h", 1280, 1024)])
def test_the_shipped_unclip_configs_pair_the_unet_with_its_image_encoder(folder, tower_width, embedding):
    import json

    from transformers import CLIPVisionConfig

    from studio.runtime.checkpoints import CONFIGS_DIR

    unet = json.loads((CONFIGS_DIR / folder / "unet" / "config.json").read_text())
    vision = CLIPVisionConfig.from_json_file(str(CONFIGS_DIR / folder / "image_encoder" / "config.json"))
    assert unet["class_embed_type"] == "projection"
    assert unet["projection_class_embeddings_input_dim"] == 2 * embedding == 2 * vision.projection_dim
    assert unet["cross_attention_dim"] == 1024 and vision.hidden_size == tower_width
    scheduler = json.loads((CONFIGS_DIR / folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
