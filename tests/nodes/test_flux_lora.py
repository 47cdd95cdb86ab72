"""FLUX LoRAs through the existing LoraLoader, in the layouts they are shared in: kohya's
(sd-scripts: BFL layer names with underscores, ``lora_down``/``lora_up``/``alpha``, fused
q/k/v and single-block projections, ``lora_te1_`` for CLIP-L), diffusers'/PEFT's
(``transformer.<diffusers layer>.lora_A``/``lora_B``, ``text_encoder.…``; PEFT's bare
``base_model.model.…``) and ai-toolkit's (the diffusers names, as it saves them, with ranks
differing per layer). Each patches exactly the layers it names, by exactly its product."""

from __future__ import annotations

import pytest
import torch

from studio.engine import CancelToken, NodeContext
from studio.runtime.device import DevicePolicy
from studio.runtime.services import create_services

CPU = DevicePolicy(torch.device("cpu"), torch.float32)
RANK = 2


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    from studio.settings import Settings
    from tests.flux_models import flux_files_once

    files = flux_files_once(tmp_path_factory)
    folder = tmp_path_factory.mktemp("flux-lora")
    settings = Settings(output_dir=folder / "output", input_dirs=(), temp_dir=folder / "temp",
                        autosave_dir=folder / "autosave", cache_bytes=256 * 1024**2, model_roots=(files.root,))
    return settings, create_services(settings, CPU)


def context(settings, services):
    return NodeContext("1", "", settings, services, CancelToken(), lambda *args: None, lambda: {})


def pair(rows, columns, seed):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(RANK, columns, generator=generator) * 0.1, torch.randn(rows, RANK, generator=generator) * 0.1)


def kohya_lora(hidden, clip_width):
    """Fused BFL layers (img_attn.qkv, single linear1), a plain one, and a CLIP-L layer."""
    out = {}
    for name, rows, columns in (("double_blocks_0_img_attn_qkv", 3 * hidden, hidden),
                                ("single_blocks_0_linear1", 7 * hidden, hidden),
                                ("double_blocks_0_txt_mlp_2", hidden, 4 * hidden)):
        down, up = pair(rows, columns, len(out))
        out[f"lora_unet_{name}.lora_down.weight"], out[f"lora_unet_{name}.lora_up.weight"] = down, up
        out[f"lora_unet_{name}.alpha"] = torch.tensor(1.0)
    down, up = pair(clip_width, clip_width, 9)
    out["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = down
    out["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = up
    return out


def diffusers_lora(layers, clip_width, prefix="transformer.", text=True, ranks=(RANK,)):
    out = {}
    for index, (name, rows, columns) in enumerate(layers):
        rank = ranks[index % len(ranks)]
        generator = torch.Generator().manual_seed(index)
        out[f"{prefix}{name}.lora_A.weight"] = torch.randn(rank, columns, generator=generator) * 0.1
        out[f"{prefix}{name}.lora_B.weight"] = torch.randn(rows, rank, generator=generator) * 0.1
    if text:
        down, up = pair(clip_width, clip_width, 9)
        out["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = down
        out["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = up
    return out


def patched(manager, module, patches):
    with manager.use(module, patches=[(module, patch) for patch in patches]):
        return {name: value.detach().clone() for name, value in module.state_dict().items()}


def load_and_apply(settings, services, lora, name):
    from safetensors.torch import save_file

    from nodes.flux import DualCLIPLoader, UNETLoader
    from nodes.lora import LoraLoader
    from studio.runtime.services import model_manager

    root = settings.model_roots[0]
    save_file(lora, str(root / "loras" / name))
    ctx = context(settings, services)
    (model,) = UNETLoader().run(ctx, "tiny-flux1-dev.safetensors", "default")
    (clip,) = DualCLIPLoader().run(ctx, "tiny-clip_l.safetensors", "tiny-t5xxl_fp16.safetensors", "flux")
    patched_model, patched_clip = LoraLoader().run(ctx, model, clip, name, 0.8, 0.5)
    return model_manager(services), model, clip, patched_model, patched_clip


def test_a_kohya_flux_lora_patches_the_bfl_layers_it_names_as_diffusers_layers(services):
    from studio.runtime.flux import diffusers_flux_weights
    from tests.flux_models import flux_to_bfl

    settings, services = services
    hidden = 32
    lora = kohya_lora(hidden, 32)
    manager, model, clip, patched_model, patched_clip = load_and_apply(settings, services, lora, "kohya.safetensors")
    transformer = model.unet.transformer
    # The LoRA applied in BFL's own space, then converted, is what the graph's patched model holds.
    bfl = flux_to_bfl(transformer)
    for base in ("double_blocks_0_img_attn_qkv", "single_blocks_0_linear1", "double_blocks_0_txt_mlp_2"):
        down, up = lora[f"lora_unet_{base}.lora_down.weight"], lora[f"lora_unet_{base}.lora_up.weight"]
        name = base.replace("double_blocks_0_", "double_blocks.0.").replace("single_blocks_0_", "single_blocks.0.")
        name = name.replace("img_attn_qkv", "img_attn.qkv").replace("txt_mlp_2", "txt_mlp.2")
        bfl[name + ".weight"] = bfl[name + ".weight"] + 0.8 * (1.0 / RANK) * (up @ down)
    expected = diffusers_flux_weights(bfl, hidden)
    got = patched(manager, model.unet, patched_model.patches)
    changed = [name for name, value in transformer.state_dict().items()
               if not torch.equal(value, got["transformer." + name])]
    assert sorted(changed) == sorted([
        "transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.attn.to_k.weight",
        "transformer_blocks.0.attn.to_v.weight", "transformer_blocks.0.ff_context.net.2.weight",
        "single_transformer_blocks.0.attn.to_q.weight", "single_transformer_blocks.0.attn.to_k.weight",
        "single_transformer_blocks.0.attn.to_v.weight", "single_transformer_blocks.0.proj_mlp.weight"])
    for name in changed:
        assert torch.allclose(got["transformer." + name], expected[name], atol=1e-6), name
    # CLIP-L's layer, by lora_te1_.
    encoder = clip.encoders[0]
    text = patched(manager, encoder, [patch for _, patch in patched_clip.patched_modules()])
    [q_name] = [name for name in text if name.endswith("layers.0.self_attn.q_proj.weight")]
    delta = 0.5 * lora["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] @ \
        lora["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"]
    assert torch.allclose(text[q_name], encoder.state_dict()[q_name] + delta, atol=1e-6)


LAYERS = [("transformer_blocks.0.attn.to_q", 32, 32), ("transformer_blocks.0.attn.add_k_proj", 32, 32),
          ("single_transformer_blocks.0.proj_mlp", 128, 32), ("single_transformer_blocks.0.norm.linear", 96, 32)]


@pytest.mark.parametrize(("layout", "prefix", "text", "ranks"), [
    ("diffusers", "transformer.", True, (RANK,)),
    ("peft", "base_model.model.", False, (RANK,)),
    ("ai-toolkit", "transformer.", False, (4, 2)),
])
def test_diffusers_peft_and_ai_toolkit_flux_loras_patch_the_layers_they_name(services, layout, prefix, text, ranks):
    settings, services = services
    lora = diffusers_lora(LAYERS, 32, prefix, text, ranks)
    manager, model, clip, patched_model, patched_clip = load_and_apply(settings, services, lora,
                                                                       f"{layout}.safetensors")
    transformer = model.unet.transformer
    got = patched(manager, model.unet, patched_model.patches)
    original = transformer.state_dict()
    changed = sorted(name for name, value in original.items() if not torch.equal(value, got["transformer." + name]))
    assert changed == sorted(name + ".weight" for name, _, _ in LAYERS)
    for name, _, _ in LAYERS:
        down, up = lora[f"{prefix}{name}.lora_A.weight"], lora[f"{prefix}{name}.lora_B.weight"]
        assert torch.allclose(got[f"transformer.{name}.weight"], original[name + ".weight"] + 0.8 * up @ down,
                              atol=1e-6)
    assert len(patched_clip.patches) == (1 if text else 0)
    # Nothing stays patched once the sampler is done.
    assert all(torch.equal(value, transformer.state_dict()[name]) for name, value in original.items())
