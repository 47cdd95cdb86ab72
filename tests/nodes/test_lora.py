"""LoRA files in kohya, LDM-named kohya (SDXL) and PEFT layouts on the tiny models."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from studio.engine import Engine
from studio.runtime.ldm_names import unet_layout, unet_ldm_name
from studio.runtime.lora import read_patches
from studio.runtime.services import create_services
from tests.nodes.test_diffusion import CPU, render, txt2img

SD1_UNET = ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
            "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_v",
            "down_blocks.0.resnets.0.conv1"]  # a convolution: LoCon
SD1_TEXT = "text_model.encoder.layers.0.self_attn.q_proj"


@pytest.fixture
def engine(registry, model_settings):
    return Engine(registry, model_settings, services=create_services(model_settings, CPU))


def low_rank(module: torch.nn.Module, rank: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weight = module.weight
    if weight.ndim == 4:
        down = torch.randn(rank, weight.shape[1], *weight.shape[2:], generator=generator) * 0.3
        up = torch.randn(weight.shape[0], rank, 1, 1, generator=generator) * 0.3
    else:
        down = torch.randn(rank, weight.shape[1], generator=generator) * 0.3
        up = torch.randn(weight.shape[0], rank, generator=generator) * 0.3
    return down, up


def write_kohya_sd1(engine, path, seed=0, extra=None):
    checkpoint = engine.services.models.load_checkpoint("tiny-sd15")
    unet, text = checkpoint.model.unet, checkpoint.clip.encoders[0]
    state = {}
    for index, name in enumerate(SD1_UNET):
        down, up = low_rank(unet.get_submodule(name), seed=seed + index)
        key = "lora_unet_" + name.replace(".", "_")
        state.update({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(2.0)})
    down, up = low_rank(text.get_submodule(SD1_TEXT.removeprefix("text_model.")), seed=seed + 9)
    key = "lora_te_" + SD1_TEXT.replace(".", "_")
    state.update({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up})
    state.update(extra or {})
    save_file(state, str(path))
    return state


def with_lora(workflow, ids, name, strength_model=1.0, strength_clip=1.0, source=None):
    """Insert a LoraLoader between the checkpoint and its users."""
    model_from, clip_from = source or (ids["loader"], ids["loader"])
    lora = workflow.add_node("LoraLoader", {"lora_name": name, "strength_model": strength_model,
                                            "strength_clip": strength_clip}).id
    workflow.connect(model_from, "MODEL", lora, "model")
    workflow.connect(clip_from, "CLIP", lora, "clip")
    workflow.connect(lora, "MODEL", ids["sampler"], "model")
    workflow.connect(lora, "CLIP", ids["positive"], "clip")
    workflow.connect(lora, "CLIP", ids["negative"], "clip")
    return lora


def test_strength_zero_is_the_base_model_bit_for_bit_and_the_base_stays_unchanged(engine, model_root):
    (model_root / "loras").mkdir(exist_ok=True)
    write_kohya_sd1(engine, model_root / "loras" / "style.safetensors")
    unet = engine.services.models.load_checkpoint("tiny-sd15").model.unet
    snapshot = {key: value.clone() for key, value in unet.state_dict().items()}
    base = render(engine, *txt2img())

    workflow, ids = txt2img()
    with_lora(workflow, ids, "style.safetensors", 0.0, 0.0)
    assert torch.equal(render(engine, workflow, ids), base)

    workflow, ids = txt2img()
    with_lora(workflow, ids, "style.safetensors", 1.0, 1.0)
    styled = render(engine, workflow, ids)
    assert (styled - base).abs().mean() > 1e-3

    engine.cache.clear()
    assert torch.equal(render(engine, *txt2img()), base)
    assert all(torch.equal(value, snapshot[key]) for key, value in unet.state_dict().items())


def test_the_merged_weight_is_w_plus_strength_times_up_down_alpha_over_rank(engine, model_root):
    state = write_kohya_sd1(engine, model_root / "loras" / "check.safetensors")
    checkpoint = engine.services.models.load_checkpoint("tiny-sd15")
    unet = checkpoint.model.unet
    patches, report = read_patches(state, unet, checkpoint.clip.encoders, "sd15", 0.7, 1.0)
    assert report.matched == 4 and report.ignored == []
    name = SD1_UNET[0]
    key = "lora_unet_" + name.replace(".", "_")
    weight = unet.get_submodule(name).weight
    before = weight.detach().clone()
    expected = before + 0.7 * (state[f"{key}.lora_up.weight"] @ state[f"{key}.lora_down.weight"]) * 2.0 / 4
    conv = unet.get_submodule(SD1_UNET[2]).weight  # the LoCon layer
    conv_before = conv.detach().clone()
    manager = engine.services.models
    with manager.use(unet, patches=[(unet, patch) for patch in patches if patch.target == "unet"]):
        assert torch.allclose(weight, expected, atol=1e-6)
        assert (conv - conv_before).abs().max() > 1e-3
    assert torch.equal(weight, before) and torch.equal(conv, conv_before)


def test_unused_keys_are_reported_and_a_foreign_file_is_refused(engine, model_root):
    write_kohya_sd1(engine, model_root / "loras" / "noisy.safetensors", extra={
        "lora_unet_not_a_layer.lora_down.weight": torch.zeros(4, 4),
        "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.zeros(4, 4)})
    workflow, ids = txt2img()
    lora = with_lora(workflow, ids, "noisy.safetensors")
    report = engine.run(workflow, [ids["decode"]])
    assert report.ok
    [(node, message)] = report.notes
    assert node == lora and "4 layers patched; 2 keys not used" in message
    save_file({"lora_unet_foo.lora_down.weight": torch.zeros(2, 2)}, str(model_root / "loras" / "other.safetensors"))
    workflow, ids = txt2img()
    with_lora(workflow, ids, "other.safetensors")
    report = engine.run(workflow, [ids["decode"]])
    assert report.status == "failed"
    assert "none of its 1 keys matches this sd15 model" in report.errors[0].message


def test_loras_stack_and_the_clip_strength_acts_on_the_prompt(engine, model_root):
    write_kohya_sd1(engine, model_root / "loras" / "a.safetensors", seed=1)
    write_kohya_sd1(engine, model_root / "loras" / "b.safetensors", seed=2)
    base = render(engine, *txt2img())
    singles = []
    for name in ("a.safetensors", "b.safetensors"):
        workflow, ids = txt2img()
        with_lora(workflow, ids, name)
        singles.append(render(engine, workflow, ids))
    workflow, ids = txt2img()
    first = with_lora(workflow, ids, "a.safetensors")
    with_lora(workflow, ids, "b.safetensors", source=(first, first))
    both = render(engine, workflow, ids)
    assert all((both - single).abs().mean() > 1e-4 for single in singles)
    workflow, ids = txt2img()
    with_lora(workflow, ids, "a.safetensors", strength_model=0.0, strength_clip=1.0)
    clip_only = render(engine, workflow, ids)
    assert (clip_only - base).abs().mean() > 1e-4


def test_sdxl_loras_in_peft_and_ldm_named_kohya_layouts_patch_the_same_layers(engine, model_root):
    checkpoint = engine.services.models.load_checkpoint("tiny-sdxl")
    unet, encoders = checkpoint.model.unet, checkpoint.clip.encoders
    layers, with_attention = unet_layout(unet)
    name = "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k"
    down, up = low_rank(unet.get_submodule(name))
    text_down, text_up = low_rank(encoders[1].get_submodule("text_model.encoder.layers.9.mlp.fc1"))
    peft = {f"unet.{name}.lora_A.weight": down, f"unet.{name}.lora_B.weight": up,
            "text_encoder_2.text_model.encoder.layers.9.mlp.fc1.lora_A.weight": text_down,
            "text_encoder_2.text_model.encoder.layers.9.mlp.fc1.lora_B.weight": text_up}
    ldm = "lora_unet_" + unet_ldm_name(name, layers, with_attention).replace(".", "_")
    assert ldm.startswith("lora_unet_input_blocks_")
    kohya = {f"{ldm}.lora_down.weight": down, f"{ldm}.lora_up.weight": up, f"{ldm}.alpha": torch.tensor(4.0),
             "lora_te2_text_model_encoder_layers_9_mlp_fc1.lora_down.weight": text_down,
             "lora_te2_text_model_encoder_layers_9_mlp_fc1.lora_up.weight": text_up}
    found = {}
    for label, state in (("peft", peft), ("kohya", kohya)):
        patches, report = read_patches(state, unet, encoders, "sdxl", 1.0, 1.0)
        assert report.matched == 2 and not report.ignored
        found[label] = sorted((patch.target, patch.module) for patch in patches)
    assert found["peft"] == found["kohya"] == [("clip1", "text_model.encoder.layers.9.mlp.fc1"), ("unet", name)]
    save_file(kohya, str(model_root / "loras" / "xl.safetensors"))
    base = render(engine, *txt2img("tiny-sdxl"))
    workflow, ids = txt2img("tiny-sdxl")
    with_lora(workflow, ids, "xl.safetensors")
    assert (render(engine, workflow, ids) - base).abs().mean() > 1e-4


def test_sd1_peft_keys_patch_what_the_kohya_keys_patch(engine, model_root):
    state = write_kohya_sd1(engine, model_root / "loras" / "kohya.safetensors")
    peft = {}
    for name in SD1_UNET:
        key = "lora_unet_" + name.replace(".", "_")
        peft[f"unet.{name}.lora_A.weight"] = state[f"{key}.lora_down.weight"]
        peft[f"unet.{name}.lora_B.weight"] = state[f"{key}.lora_up.weight"]
        peft[f"unet.{name}.alpha"] = state[f"{key}.alpha"]
    key = "lora_te_" + SD1_TEXT.replace(".", "_")
    peft[f"text_encoder.{SD1_TEXT}.lora_A.weight"] = state[f"{key}.lora_down.weight"]
    peft[f"text_encoder.{SD1_TEXT}.lora_B.weight"] = state[f"{key}.lora_up.weight"]
    save_file(peft, str(model_root / "loras" / "peft.safetensors"))
    checkpoint = engine.services.models.load_checkpoint("tiny-sd15")
    arguments = (checkpoint.model.unet, checkpoint.clip.encoders, "sd15", 1.0, 1.0)
    from_kohya, _ = read_patches(state, *arguments)
    from_peft, report = read_patches(peft, *arguments)
    assert report.matched == 4 and not report.ignored
    assert [(p.target, p.module, p.alpha) for p in from_peft] == [(p.target, p.module, p.alpha) for p in from_kohya]
    images = []
    for name in ("kohya.safetensors", "peft.safetensors"):
        workflow, ids = txt2img()
        with_lora(workflow, ids, name)
        images.append(render(engine, workflow, ids))
    assert torch.equal(images[0], images[1])


UNET_KEY = "lora_unet_" + SD1_UNET[0].replace(".", "_")


@pytest.mark.parametrize(("change", "message"), [
    ({f"{UNET_KEY}.alpha": torch.tensor(float("nan"))}, "its alpha is nan, not a usable number"),
    ({f"{UNET_KEY}.lora_up.weight": torch.full((32, 4), float("inf"))}, "its up weights hold NaN or infinite"),
    ({f"{UNET_KEY}.lora_down.weight": torch.zeros(4, 48)},
     "its down (4×48) and up (32×4) weights do not fit the model's weight (32×32)"),
])
def test_a_lora_with_values_or_shapes_that_cannot_apply_is_refused_naming_file_and_layer(engine, model_root,
                                                                                        change, message):
    (model_root / "loras").mkdir(exist_ok=True)
    write_kohya_sd1(engine, model_root / "loras" / "damaged.safetensors", extra=change)
    workflow, ids = txt2img()
    lora = with_lora(workflow, ids, "damaged.safetensors")
    report = engine.run(workflow, [ids["decode"]])
    assert report.status == "failed"
    [error] = report.errors
    assert error.node_id == lora
    assert error.message.startswith(f"damaged.safetensors: layer {SD1_UNET[0]}: ")
    assert message in error.message
    assert ids["sampler"] in report.skipped  # refused before anything sampled
