"""The model-merging nodes on two different tiny SD 1.5 models: ComfyUI's arithmetic, merged
only while in use, and saved checkpoints and VAEs that load back to the same weights."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from nodes.merging import (
    CLIPMergeAdd,
    CLIPMergeSimple,
    CLIPMergeSubtract,
    ModelMergeAdd,
    ModelMergeBlocks,
    ModelMergeSimple,
    ModelMergeSubtract,
)
from studio.engine import Engine
from studio.graph import Workflow
from studio.graph.png import workflow_texts
from studio.node_api import Services
from studio.runtime.merging import block_strengths
from studio.runtime.services import create_services
from studio.settings import WORKFLOWS_DIR
from tests.nodes.test_diffusion import CPU, render, txt2img
from tests.nodes.test_lora import write_kohya_sd1


@pytest.fixture(scope="module")
def second_root(tmp_path_factory) -> Path:
    """A model folder with a second tiny SD 1.5 model, of other random weights."""
    from tests.tiny_models import build_sd15

    root = tmp_path_factory.mktemp("second-models")
    build_sd15(root / "checkpoints" / "tiny-sd15-b", seed=1)
    return root


@pytest.fixture
def merge_settings(model_settings, second_root):
    # The output folder is a model folder too, so what CheckpointSave writes to
    # output/checkpoints/ loads by name.
    return model_settings.replace(model_roots=(*model_settings.model_roots, second_root,
                                               model_settings.output_dir))


@pytest.fixture
def engine(registry, merge_settings):
    return Engine(registry, merge_settings, services=create_services(merge_settings, CPU),
                  image_metadata=workflow_texts)


@pytest.fixture
def manager(engine):
    return engine.services.models


@pytest.fixture
def pair(manager):
    """The two tiny SD 1.5 checkpoints, as loaded (shared) by the manager."""
    return manager.load_checkpoint("tiny-sd15"), manager.load_checkpoint("tiny-sd15-b")


def context():
    return SimpleNamespace(note=[].append)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.state_dict().items()}


def weights_while_sampling(manager, model) -> dict[str, torch.Tensor]:
    """The UNet's weights as the sampler sees them (as nodes/sampling.py asks for them)."""
    with manager.use(model.unet, patches=[(model.unet, patch) for patch in model.patches]):
        return snapshot(model.unet)


def weights_while_encoding(manager, clip) -> list[dict[str, torch.Tensor]]:
    with manager.use(*clip.encoders, patches=clip.patched_modules()):
        return [snapshot(encoder) for encoder in clip.encoders]


def merge_graph(merge_type: str, values: dict, second: str = "tiny-sd15-b", clip_merge: str | None = None,
                clip_values: dict | None = None):
    """txt2img on the tiny model with ``merge_type`` merging ``second`` into its MODEL (and
    ``clip_merge`` into its CLIP)."""
    workflow, ids = txt2img()
    ids["second"] = workflow.add_node("CheckpointLoaderSimple", {"ckpt_name": second}).id
    ids["merge"] = workflow.add_node(merge_type, values).id
    workflow.connect(ids["loader"], "MODEL", ids["merge"], "model1")
    workflow.connect(ids["second"], "MODEL", ids["merge"], "model2")
    workflow.connect(ids["merge"], "MODEL", ids["sampler"], "model")
    if clip_merge is not None:
        ids["clip_merge"] = workflow.add_node(clip_merge, clip_values or {}).id
        workflow.connect(ids["loader"], "CLIP", ids["clip_merge"], "clip1")
        workflow.connect(ids["second"], "CLIP", ids["clip_merge"], "clip2")
        for encode in ("positive", "negative"):
            workflow.connect(ids["clip_merge"], "CLIP", ids[encode], "clip")
    return workflow, ids


def latent(engine, workflow, ids) -> torch.Tensor:
    report = engine.run(workflow, [ids["sampler"]])
    assert report.ok, report.problems or [error.traceback for error in report.errors]
    return report.results[ids["sampler"]][0]["samples"]


# -- the arithmetic ------------------------------------------------------------------------
def test_a_half_merge_samples_with_the_average_of_both_unets_and_leaves_both_unchanged(engine, manager, pair):
    first, second = pair
    before = snapshot(first.model.unet), snapshot(second.model.unet)
    merged, = ModelMergeSimple().run(context(), first.model, second.model, 0.5)
    # Lazy: the MODEL refers to the other UNet's weights; it copies none.
    assert merged.unet is first.model.unet
    assert all(patch.source is second.model.unet for patch in merged.patches)
    during = weights_while_sampling(manager, merged)
    for name, value in during.items():  # every weight, biases and norms included
        assert torch.equal(value, before[0][name] * 0.5 + 0.5 * before[1][name]), name
    # Every weight is patched, norms and biases too (the random models' norms are all 1 still).
    assert {patch.parameter for patch in merged.patches} == set(before[0])
    assert not torch.equal(during["conv_out.bias"], before[0]["conv_out.bias"])
    assert all(torch.equal(value, before[0][name]) for name, value in first.model.unet.state_dict().items())
    assert all(torch.equal(value, before[1][name]) for name, value in second.model.unet.state_dict().items())

    # The same inside a real run: what the UNet holds when the sampler calls it.
    seen = {}

    def record(module, args):
        seen.setdefault("bias", module.conv_out.bias.detach().clone())

    hook = first.model.unet.register_forward_pre_hook(record)
    try:
        merged_render = render(engine, *merge_graph("ModelMergeSimple", {"ratio": 0.5}))
    finally:
        hook.remove()
    assert torch.equal(seen["bias"], before[0]["conv_out.bias"] * 0.5 + 0.5 * before[1]["conv_out.bias"])
    engine.cache.clear()
    base = render(engine, *txt2img())
    assert (merged_render - base).abs().mean() > 1e-3
    assert all(torch.equal(value, before[0][name]) for name, value in first.model.unet.state_dict().items())


def test_ratio_one_renders_model1_bit_for_bit_and_ratio_zero_samples_with_model2(engine, manager, pair):
    base = render(engine, *txt2img())
    assert torch.equal(render(engine, *merge_graph("ModelMergeSimple", {"ratio": 1.0})), base)
    first, second = pair
    model2, = ModelMergeSimple().run(context(), first.model, second.model, 0.0)
    during = weights_while_sampling(manager, model2)
    assert all(torch.equal(value, second.model.unet.state_dict()[name]) for name, value in during.items())


def test_a_block_merge_of_input_1_middle_0_out_1_changes_only_the_middle_block(manager, pair):
    first, second = pair
    merged, = ModelMergeBlocks().run(context(), first.model, second.model, 1.0, 0.0, 1.0)
    during = weights_while_sampling(manager, merged)
    model1, model2 = first.model.unet.state_dict(), second.model.unet.state_dict()
    assert any(name.startswith("mid_block.") for name in during)
    for name, value in during.items():
        assert torch.equal(value, model2[name] if name.startswith("mid_block.") else model1[name]), name


def test_block_ratios_follow_comfyuis_ldm_prefixes(pair):
    # input_blocks.* (conv_in too) → input, middle_block.* → middle, output_blocks.* and the
    # final out.0/out.2 → out; the time embedding, in no group, takes the first ratio (input).
    strengths = block_strengths(pair[0].model.unet, 0.25, 0.5, 0.75)
    expected = {"conv_in.weight": 0.25, "time_embedding.linear_1.weight": 0.25,
                "down_blocks.1.resnets.0.conv1.weight": 0.25, "down_blocks.0.downsamplers.0.conv.bias": 0.25,
                "mid_block.attentions.0.proj_in.weight": 0.5, "mid_block.resnets.1.norm2.bias": 0.5,
                "up_blocks.0.resnets.0.conv1.weight": 0.75, "up_blocks.0.upsamplers.0.conv.weight": 0.75,
                "conv_norm_out.weight": 0.75, "conv_out.bias": 0.75}
    assert {name: strengths(name) for name in expected} == {name: (1 - r, r) for name, r in expected.items()}


def test_subtract_is_multiplier_times_the_difference_and_add_is_the_sum(manager, pair):
    first, second = pair
    model1, model2 = first.model.unet.state_dict(), second.model.unet.state_dict()
    difference, = ModelMergeSubtract().run(context(), first.model, second.model, 0.7)
    during = weights_while_sampling(manager, difference)
    for name, value in during.items():
        assert torch.equal(value, model1[name] * 0.7 + -0.7 * model2[name]), name
        assert torch.allclose(value, 0.7 * (model1[name] - model2[name]), atol=1e-6)
    total, = ModelMergeAdd().run(context(), first.model, second.model)
    assert all(torch.equal(value, model1[name] + model2[name])
               for name, value in weights_while_sampling(manager, total).items())
    # The usual recipe: (A − B) + B is A again.
    subtracted, = ModelMergeSubtract().run(context(), first.model, second.model, 1.0)
    restored, = ModelMergeAdd().run(context(), subtracted, second.model)
    assert all(torch.allclose(value, model1[name], atol=1e-6)
               for name, value in weights_while_sampling(manager, restored).items())


def test_a_lora_on_model2_is_part_of_what_is_merged(engine, manager, model_root):
    # Merging a model with itself plus a LoRA: half the LoRA (the shipped merge_and_save workflow).
    (model_root / "loras").mkdir(exist_ok=True)
    write_kohya_sd1(engine, model_root / "loras" / "merge-style.safetensors")
    workflow, ids = txt2img()
    lora = workflow.add_node("LoraLoader", {"lora_name": "merge-style.safetensors", "strength_model": 1.0,
                                            "strength_clip": 1.0}).id
    merge = workflow.add_node("ModelMergeSimple", {"ratio": 0.5}).id
    workflow.connect(ids["loader"], "MODEL", lora, "model")
    workflow.connect(ids["loader"], "CLIP", lora, "clip")
    workflow.connect(ids["loader"], "MODEL", merge, "model1")
    workflow.connect(lora, "MODEL", merge, "model2")
    report = engine.run(workflow, [merge, lora])
    assert report.ok, [error.traceback for error in report.errors]
    merged = report.results[merge][0]
    unet = merged.unet
    before = snapshot(unet)
    during = weights_while_sampling(manager, merged)
    changed = [name for name in during if not torch.equal(during[name], before[name])]
    assert sorted(changed) == sorted(p.parameter for p in report.results[lora][0].patches)
    for patch in report.results[lora][0].patches:
        weight = before[patch.parameter]
        assert torch.allclose(during[patch.parameter], weight + 0.5 * patch.delta(weight), atol=1e-6)
    assert all(torch.equal(value, before[name]) for name, value in unet.state_dict().items())


def test_clip_merges_blend_each_encoder_weight_and_leave_position_ids_alone(engine, manager, pair):
    first, second = pair
    clip1, clip2 = first.clip, second.clip
    own, other = snapshot(clip1.encoders[0]), snapshot(clip2.encoders[0])
    for node, arguments, formula in (
            (CLIPMergeSimple(), (0.25,), lambda a, b: a * 0.25 + 0.75 * b),
            (CLIPMergeSubtract(), (2.0,), lambda a, b: a * 2.0 + -2.0 * b),
            (CLIPMergeAdd(), (), lambda a, b: a + b)):
        merged, = node.run(context(), clip1, clip2, *arguments)
        assert not [p for p in merged.patches if p.parameter.endswith((".position_ids", ".logit_scale"))]
        [during] = weights_while_encoding(manager, merged)
        for name, value in during.items():
            expected = own[name] if name.endswith(".position_ids") else formula(own[name], other[name])
            assert torch.equal(value, expected), (node.type_name, name)
    assert all(torch.equal(value, own[name]) for name, value in clip1.encoders[0].state_dict().items())
    base = render(engine, *txt2img())
    blended = render(engine, *merge_graph("ModelMergeSimple", {"ratio": 1.0}, clip_merge="CLIPMergeSimple",
                                          clip_values={"ratio": 0.5}))
    assert (blended - base).abs().mean() > 1e-4


def test_models_of_different_families_are_refused_naming_both_inputs(engine, manager):
    workflow, ids = merge_graph("ModelMergeSimple", {"ratio": 0.5}, second="tiny-sdxl")
    report = engine.run(workflow, [ids["decode"]])
    assert report.status == "failed"
    message = report.errors[0].message
    assert "model2 is SDXL and model1 is SD 1.x: only models of the same family merge" in message
    sd15, sdxl = manager.load_checkpoint("tiny-sd15").clip, manager.load_checkpoint("tiny-sdxl").clip
    with pytest.raises(ValueError, match="clip2 is SDXL and clip1 is SD 1.x: only text encoders of the same"):
        CLIPMergeSimple().run(context(), sd15, sdxl, 0.5)
    # SDXL's two encoders merge each with its counterpart.
    merged, = CLIPMergeAdd().run(context(), sdxl, sdxl)
    assert {patch.target for patch in merged.patches} == {"clip0", "clip1"}
    assert all(patch.source is sdxl.encoders[int(patch.target[4:])] for patch in merged.patches)


# -- saving --------------------------------------------------------------------------------
def save_graph(prefix: str = "checkpoints/merged", ratio: float = 0.5):
    workflow, ids = merge_graph("ModelMergeSimple", {"ratio": ratio}, clip_merge="CLIPMergeSimple",
                                clip_values={"ratio": ratio})
    ids["save"] = workflow.add_node("CheckpointSave", {"filename_prefix": prefix}).id
    workflow.connect(ids["merge"], "MODEL", ids["save"], "model")
    workflow.connect(ids["clip_merge"], "CLIP", ids["save"], "clip")
    workflow.connect(ids["loader"], "VAE", ids["save"], "vae")
    return workflow, ids


def saved_files(engine, workflow, ids) -> list[Path]:
    report = engine.run(workflow, [ids["save"]])
    assert report.ok, report.problems or [error.traceback for error in report.errors]
    return [path for node, path in report.files if node == ids["save"]]


def test_a_saved_merge_loads_back_with_the_same_weights_and_renders_the_same_latent(engine, manager,
                                                                                   merge_settings):
    workflow, ids = save_graph()
    [path] = saved_files(engine, workflow, ids)
    output = merge_settings.output_dir.resolve()
    assert path == output / "checkpoints" / "merged_00001_.safetensors"
    # The tiny architecture is not one Seed Studio ships configs for: they go beside the file.
    assert (path.with_suffix("") / "model_index.json").is_file()
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        assert "seed-studio-workflow" in handle.metadata()
    assert any(k.startswith("model.diffusion_model.middle_block.") for k in keys)
    assert any(k.startswith("first_stage_model.decoder.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)

    report = engine.run(workflow, [ids["merge"], ids["clip_merge"], ids["loader"]])
    merged_model, merged_clip = report.results[ids["merge"]][0], report.results[ids["clip_merge"]][0]
    loaded = manager.load_checkpoint(path.name)
    expected_unet = weights_while_sampling(manager, merged_model)
    assert loaded.model.unet.state_dict().keys() == expected_unet.keys()
    assert all(torch.equal(value, expected_unet[name]) for name, value in loaded.model.unet.state_dict().items())
    [expected_text] = weights_while_encoding(manager, merged_clip)
    assert all(torch.equal(value, expected_text[name])
               for name, value in loaded.clip.encoders[0].state_dict().items())
    vae = report.results[ids["loader"]][2].vae.state_dict()
    assert all(torch.equal(value, vae[name]) for name, value in loaded.vae.vae.state_dict().items())

    merged_latent = latent(engine, *merge_graph("ModelMergeSimple", {"ratio": 0.5}, clip_merge="CLIPMergeSimple",
                                                clip_values={"ratio": 0.5}))
    assert torch.equal(latent(engine, *txt2img(path.name)), merged_latent)


def test_saves_stay_in_the_output_folder_and_never_overwrite(engine, merge_settings):
    output = merge_settings.output_dir.resolve()
    (output / "checkpoints").mkdir(parents=True)
    taken = output / "checkpoints" / "mine_00001_.safetensors"
    taken.write_bytes(b"an artist's file")
    workflow, ids = save_graph("checkpoints/mine")
    [first] = saved_files(engine, workflow, ids)
    engine.cache.clear()
    [second] = saved_files(engine, workflow, ids)
    assert (first.name, second.name) == ("mine_00002_.safetensors", "mine_00003_.safetensors")
    assert taken.read_bytes() == b"an artist's file"
    for prefix in ("../../escaped/x", "/tmp/escaped/x"):
        engine.cache.clear()
        [path] = saved_files(engine, *save_graph(prefix))
        assert output in path.parents and path.name == "x_00001_.safetensors"
    assert not list(output.parent.glob("escaped*"))


def test_a_checkpoint_of_another_family_than_its_text_encoder_is_refused(engine):
    workflow, ids = save_graph()
    sdxl = workflow.add_node("CheckpointLoaderSimple", {"ckpt_name": "tiny-sdxl"}).id
    workflow.connect(sdxl, "CLIP", ids["save"], "clip")
    report = engine.run(workflow, [ids["save"]])
    assert report.status == "failed"
    assert "clip is the text encoder of SDXL and model is SD 1.x" in report.errors[0].message


def test_a_saved_vae_loads_back_with_the_same_weights(engine, manager, merge_settings):
    workflow, ids = txt2img()
    save = workflow.add_node("VAESave", {"filename_prefix": "vae/tiny"}).id
    workflow.connect(ids["loader"], "VAE", save, "vae")
    report = engine.run(workflow, [save])
    assert report.ok, [error.traceback for error in report.errors]
    [(node, path)] = report.files
    assert path == merge_settings.output_dir.resolve() / "vae" / "tiny_00001_.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        assert all(key.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")) for key in handle.keys())  # noqa: SIM118
    original = manager.load_checkpoint("tiny-sd15").vae.vae.state_dict()
    loaded = manager.load_vae(path.name).vae.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(value, original[name]) for name, value in loaded.items())


def test_an_sd2_v_prediction_checkpoint_saves_and_loads_back(engine, manager):
    workflow = Workflow()
    loader = workflow.add_node("CheckpointLoaderSimple", {"ckpt_name": "tiny-sd2-single.safetensors"}).id
    save = workflow.add_node("CheckpointSave", {"filename_prefix": "checkpoints/sd2"}).id
    for output, name in (("MODEL", "model"), ("CLIP", "clip"), ("VAE", "vae")):
        workflow.connect(loader, output, save, name)
    report = engine.run(workflow, [save, loader])
    assert report.ok, [error.traceback for error in report.errors]
    [(_, path)] = report.files
    with safe_open(str(path), framework="pt") as handle:
        assert "v_pred" in handle.keys()  # noqa: SIM118 - a safe_open handle, not a dict
        assert handle.metadata()["modelspec.predict_key"] == "v"
    original, loaded = report.results[loader][0], manager.load_checkpoint(path.name)
    assert loaded.model.family == "sd2" and loaded.model.prediction_type == "v_prediction"
    assert all(torch.equal(value, original.unet.state_dict()[name])
               for name, value in loaded.model.unet.state_dict().items())
    text = report.results[loader][1].encoders[0].state_dict()
    assert all(torch.equal(value, text[name]) for name, value in loaded.clip.encoders[0].state_dict().items())


# -- declarations --------------------------------------------------------------------------
# ComfyUI's INPUT_TYPES of each node (comfy_extras/nodes_model_merging.py, ComfyUI 0.8.0):
# wired inputs, then widgets in order with (default, min, max, step).
RATIO = (1.0, 0.0, 1.0, 0.01)
MULTIPLIER = (1.0, -10.0, 10.0, 0.01)
COMFY_MERGING_NODES = {
    "ModelMergeSimple": (["model1", "model2"], [("ratio", RATIO)], ["MODEL"]),
    "ModelMergeBlocks": (["model1", "model2"], [("input", RATIO), ("middle", RATIO), ("out", RATIO)], ["MODEL"]),
    "ModelMergeSubtract": (["model1", "model2"], [("multiplier", MULTIPLIER)], ["MODEL"]),
    "ModelMergeAdd": (["model1", "model2"], [], ["MODEL"]),
    "CLIPMergeSimple": (["clip1", "clip2"], [("ratio", RATIO)], ["CLIP"]),
    "CLIPMergeSubtract": (["clip1", "clip2"], [("multiplier", MULTIPLIER)], ["CLIP"]),
    "CLIPMergeAdd": (["clip1", "clip2"], [], ["CLIP"]),
    "CheckpointSave": (["model", "clip", "vae"], [("filename_prefix", "checkpoints/ComfyUI")], []),
    "VAESave": (["vae"], [("filename_prefix", "vae/ComfyUI_vae")], []),
}


@pytest.mark.parametrize("type_name", sorted(COMFY_MERGING_NODES))
def test_merging_nodes_have_comfyuis_inputs_widget_order_and_defaults(registry, type_name):
    wired, widgets, outputs = COMFY_MERGING_NODES[type_name]
    cls = registry.get(type_name)
    assert [spec.name for spec in cls.inputs if not spec.has_widget] == wired
    assert [spec.name for spec in cls.inputs if spec.has_widget] == [name for name, _ in widgets]
    for name, expected in widgets:
        spec = next(spec for spec in cls.inputs if spec.name == name)
        if isinstance(expected, tuple):
            assert (spec.default, spec.min, spec.max, spec.step) == expected, name
        else:
            assert spec.default == expected
    assert [output.type for output in cls.outputs] == outputs
    assert cls.is_output == (not outputs)
    assert cls.category == "advanced/model_merging"


# -- the shipped workflow ------------------------------------------------------------------
def test_the_merge_and_save_workflow_saves_a_checkpoint_that_loads(tmp_path, model_root, manager):
    import json

    from tests.cli.test_cli import studio

    (model_root / "loras").mkdir(exist_ok=True)
    lora = model_root / "loras" / "tiny-stripes.safetensors"
    write_kohya_sd1(SimpleNamespace(services=Services(models=manager)), lora, seed=3)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"model_roots": [str(model_root)], "input_dirs": [str(tmp_path / "input")],
                                  "temp_dir": str(tmp_path / "temp")}))
    code, out, err = studio("--config", str(config), "render", str(WORKFLOWS_DIR / "merge_and_save.json"),
                            "--out", str(tmp_path / "out"), "--set", "Model.ckpt_name=tiny-sd15",
                            "--set", "LoRA.lora_name=tiny-stripes.safetensors", "--set", "Sampler.steps=2",
                            "--set", "Size.width=64", "--set", "Size.height=64")
    assert code == 0, err
    written = [Path(line) for line in out.splitlines()]
    [checkpoint] = [path for path in written if path.suffix == ".safetensors"]
    assert (tmp_path / "out").resolve() in checkpoint.parents and checkpoint.parent.name == "checkpoints"
    assert [path for path in written if path.suffix == ".png"]
    loaded = manager.load_checkpoint(str(checkpoint))
    base = manager.load_checkpoint("tiny-sd15")
    changed = [name for name, value in loaded.model.unet.state_dict().items()
               if not torch.equal(value, base.model.unet.state_dict()[name])]
    assert changed and len(changed) < 10  # the LoRA's layers, at half strength; the rest is the base
