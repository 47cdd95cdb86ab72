"""T5-XXL in FLUX/SD3 runs: how long its token sequence is (ComfyUI's rule, the same for
dev and schnell), that it leaves the GPU once prompts are encoded and is group-offloaded
when larger than the budget (computing the same), and that CheckpointLoaderSimple warns of
a full-size all-in-one FLUX/SD3 file on a CPU-only machine as UNETLoader does."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from studio.node_api import Services
from studio.runtime.checkpoints import Checkpoint, DiffusionModel
from studio.runtime.device import DevicePolicy

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


def _t5_clip(family: str):
    from studio.runtime.text_encoders import text_encoder_for
    from tests.flux_models import tiny_clip, tiny_t5

    return text_encoder_for(family, {"clip_l": tiny_clip(1), "t5xxl": tiny_t5(2)}, "key")


def test_flux_t5_pads_to_256_tokens_and_never_truncates_as_comfyui_does():
    # ComfyUI's FluxTokenizer: T5 with min_length=256 and no maximum (max_length=99999999),
    # the same for dev and schnell (the tokenizer does not know which model will read it);
    # BFL's 512/256 caps are diffusers' max_sequence_length, which ComfyUI does not apply.
    from studio.runtime.text_encoders import encode_t5

    clip = _t5_clip("flux")
    tokenizer, t5 = clip.encoder("t5xxl")
    assert clip.t5_min_length == 256 and clip.with_family("sd3").t5_min_length == 77
    assert encode_t5(tokenizer, t5, "a red circle", clip.t5_min_length).shape[1] == 256
    long_prompt = " ".join(["a red circle on a blue square"] * 60)
    expected = len(tokenizer(long_prompt).input_ids)  # the text's tokens and </s>
    assert expected > 512
    assert encode_t5(tokenizer, t5, long_prompt, clip.t5_min_length).shape[1] == expected


def test_t5_leaves_the_device_once_prompts_are_encoded(tmp_path):
    from studio.runtime.model_manager import ModelManager
    from studio.runtime.models import ModelFolders

    manager = ModelManager(CPU, ModelFolders())
    clip = _t5_clip("flux")
    clip_l, t5 = clip.encoders
    moves = []
    original_to = t5.to
    t5.to = lambda *args, **kwargs: moves.append(args) or original_to(*args, **kwargs)
    clip.encode_text(manager, "a red circle")
    # CLIP-L (small, used again by the next prompt) stays; T5 went back to system memory.
    assert id(clip_l) in manager._on_device and id(t5) not in manager._on_device
    assert moves[-1] == ("cpu",)


def test_a_t5_larger_than_the_budget_is_group_offloaded_and_computes_the_same():
    from studio.runtime.model_manager import ModelManager
    from studio.runtime.models import ModelFolders
    from studio.runtime.text_encoders import encode_t5
    from studio.runtime.weight_storage import GROUP_OFFLOADED

    clip = _t5_clip("flux")
    tokenizer, t5 = clip.encoder("t5xxl")
    expected = encode_t5(tokenizer, t5, "a (red:1.3) circle", 256)
    # A budget smaller than the encoder, as on a GPU smaller than T5-XXL (on the CPU the
    # onload device is the CPU itself, so the hooks' moves are what is tested).
    manager = ModelManager(DevicePolicy(torch.device("cpu"), torch.float32, budget_bytes=1000), ModelFolders())
    with manager.use(*clip.encoders):
        assert getattr(t5, GROUP_OFFLOADED) == torch.device("cpu") and id(t5) not in manager._on_device
        got = encode_t5(tokenizer, t5, "a (red:1.3) circle", 256)
    assert torch.allclose(got, expected, atol=1e-6)


def test_checkpoint_loader_tells_a_full_size_flux_file_on_the_cpu_takes_minutes_per_step():
    from nodes.loaders import CheckpointLoaderSimple

    big = torch.nn.Module()
    big.weight = torch.nn.Parameter(torch.empty(12_000_000_000, device="meta"))
    for family, name in (("flux", "FLUX.1"), ("sd3", "SD3.5")):
        checkpoint = Checkpoint(DiffusionModel(big, family, {}, "key"), None, None)
        manager = SimpleNamespace(policy=CPU, load_checkpoint=lambda name, checkpoint=checkpoint: checkpoint)
        ctx = SimpleNamespace(services=Services(models=manager), notes=[])
        ctx.note = ctx.notes.append
        CheckpointLoaderSimple().run(ctx, "all_in_one.safetensors")
        assert len(ctx.notes) == 1 and f"{name} (12.0 billion weights) runs on the CPU" in ctx.notes[0]
        assert "minutes per step" in ctx.notes[0]
    # An SDXL checkpoint (2.6 billion weights in its UNet) is not a transformer: no such note.
    checkpoint = Checkpoint(DiffusionModel(big, "sdxl", {}, "key"), None, None)
    manager = SimpleNamespace(policy=CPU, load_checkpoint=lambda name: checkpoint)
    ctx = SimpleNamespace(services=Services(models=manager), notes=[])
    ctx.note = ctx.notes.append
    CheckpointLoaderSimple().run(ctx, "sdxl.safetensors")
    assert ctx.notes == []
