"""GLIGEN through GLIGENLoader and GLIGENTextBoxApply on the tiny SD 1.5 model (ComfyUI parity
of the result: tests/runtime/test_comfy_parity.py, case "gligen")."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from studio.engine import Engine
from studio.runtime.checkpoints import ModelLoadError
from studio.runtime.gligen import (
    MAX_OBJECTS,
    fourier_embedding,
    gligen_applied,
    gligen_per_entry,
    read_gligen,
    transformer_layers,
    with_text_box,
)
from studio.runtime.services import create_services
from tests.nodes.test_diffusion import CPU, txt2img
from tests.parity_model import write_parity_gligen

TINY_CLIP_WIDTH = 32  # the tiny SD 1.5 model's text encoder


def write_gates(source, target, value: float):
    tensors = load_file(str(source))
    for name in tensors:
        if name.endswith((".alpha_attn", ".alpha_dense")):
            tensors[name] = torch.tensor(value)
    save_file(tensors, str(target))
    return target


@pytest.fixture(scope="module")
def gligen_files(model_root):
    folder = model_root / "gligen"
    folder.mkdir(exist_ok=True)
    acting = write_parity_gligen(folder / "tiny-gligen.safetensors", phrase_width=TINY_CLIP_WIDTH)
    write_gates(acting, folder / "tiny-gligen-closed.safetensors", 0.0)
    return folder


@pytest.fixture
def engine(registry, model_settings, gligen_files):
    return Engine(registry, model_settings, services=create_services(model_settings, CPU))


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    from diffusers import UNet2DConditionModel

    from tests.tiny_models import build_sd15

    folder = build_sd15(tmp_path_factory.mktemp("gligen-unet") / "sd15")
    return UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()


def with_boxes(workflow, ids, gligen_name, boxes):
    """Put text boxes (text, width, height, x, y) on the positive prompt of a txt2img graph."""
    loader = workflow.add_node("GLIGENLoader", {"gligen_name": gligen_name}).id
    source = ids["positive"]
    for text, width, height, x, y in boxes:
        node = workflow.add_node("GLIGENTextBoxApply", {"text": text, "width": width, "height": height,
                                                        "x": x, "y": y}).id
        workflow.connect(source, "CONDITIONING", node, "conditioning_to")
        workflow.connect(ids["loader"], "CLIP", node, "clip")
        workflow.connect(loader, "GLIGEN", node, "gligen_textbox_model")
        source = node
    workflow.connect(source, "CONDITIONING", ids["sampler"], "positive")
    return source


def run(engine, workflow, node):
    report = engine.run(workflow, [node])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    return report.results[node][0]


def test_text_boxes_are_stored_in_latent_cells_with_the_phrases_unprojected_pooled_embedding(engine):
    workflow, ids = txt2img()
    last = with_boxes(workflow, ids, "tiny-gligen.safetensors",
                      [("a cat", 40, 24, 16, 8), ("a hat", 64, 64, 0, 0)])
    ((embedding, extras),) = run(engine, workflow, last)
    kind, gligen, boxes = extras["gligen"]
    assert kind == "position" and gligen.name == "tiny-gligen.safetensors"
    assert [box[1:] for box in boxes] == [(3, 5, 1, 2), (8, 8, 0, 0)]  # height, width, y, x in cells
    # The phrase's pooled output before any projection: CLIP's final norm at the end token.
    clip = engine.services.models.load_checkpoint("tiny-sd15").clip
    ids_ = clip.tokenizers[0]("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = clip.encoders[0](ids_).pooler_output
    assert boxes[0][0].shape == (1, TINY_CLIP_WIDTH)
    assert torch.allclose(boxes[0][0], expected, atol=1e-5)
    assert not torch.allclose(boxes[1][0], expected)
    # The prompt itself is unchanged, and so is the conditioning the boxes were added to.
    plain = run(engine, workflow, ids["positive"])
    assert torch.equal(embedding, plain[0][0]) and "gligen" not in plain[0][1]


def test_a_box_changes_the_render_and_closed_gates_change_nothing(engine):
    def latent(gligen_name):
        workflow, ids = txt2img(steps=3)
        if gligen_name:
            with_boxes(workflow, ids, gligen_name, [("a red square", 32, 32, 16, 16)])
        return run(engine, workflow, ids["sampler"])["samples"]

    plain = latent(None)
    boxed = latent("tiny-gligen.safetensors")
    assert (boxed - plain).abs().max() > 1e-2 * plain.abs().max()
    # Gates at 0: only the order of the UNet calls differs (two instead of one batch of two).
    assert torch.allclose(latent("tiny-gligen-closed.safetensors"), plain, rtol=0, atol=1e-5 * plain.abs().max())


def test_the_fuser_acts_right_after_self_attention_in_every_transformer_block(unet, gligen_files):
    gligen = read_gligen(gligen_files / "tiny-gligen.safetensors")
    layers = transformer_layers(unet)
    # ComfyUI's order: input blocks, middle block, output blocks.
    assert layers == [unet.down_blocks[0].attentions[0], unet.mid_block.attentions[0],
                      unet.up_blocks[1].attentions[0], unet.up_blocks[1].attentions[1]]
    block = layers[1].transformer_blocks[0]
    seen = {}
    block.register_forward_pre_hook(lambda module, args, kwargs: seen.__setitem__("input", args[0]),
                                    with_kwargs=True)
    block.norm2.register_forward_pre_hook(lambda module, args: seen.__setitem__("after", args[0]))
    latent, context = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    boxes = [(torch.randn(1, TINY_CLIP_WIDTH), 4, 4, 2, 2)]
    with torch.no_grad():
        with gligen_applied(unet, ("position", gligen, boxes), latent.shape):
            unet(latent, 10, encoder_hidden_states=context)
        tokens = gligen.grounding_tokens(boxes, 1, 8, 8, torch.device("cpu"))
        hidden = seen["input"]
        expected = gligen.fusers[1](hidden + block.attn1(block.norm1(hidden)), tokens)
        assert torch.allclose(seen["after"], expected, atol=1e-5)
        unet(latent, 10, encoder_hidden_states=context)
        hidden = seen["input"]  # the layers before the middle block no longer change it either
        assert torch.allclose(seen["after"], hidden + block.attn1(block.norm1(hidden)), atol=1e-6)  # hooks gone


def test_closed_gates_leave_the_unet_output_bit_for_bit(unet, gligen_files):
    gligen = read_gligen(gligen_files / "tiny-gligen-closed.safetensors")
    latent, context = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32)
    with torch.no_grad():
        plain = unet(latent, 10, encoder_hidden_states=context).sample
        with gligen_applied(unet, ("position", gligen, [(torch.randn(1, 32), 8, 8, 0, 0)]), latent.shape):
            closed = unet(latent, 10, encoder_hidden_states=context).sample
    assert torch.equal(closed, plain)


def test_grounding_tokens_hold_box_corners_as_fractions_and_null_features_in_empty_slots(gligen_files):
    gligen = read_gligen(gligen_files / "tiny-gligen.safetensors")
    net = gligen.position_net
    phrase = torch.randn(1, TINY_CLIP_WIDTH)
    # 3 cells high, 5 wide, 1 down, 2 across on a 8 × 16 latent.
    tokens = gligen.grounding_tokens([(phrase, 3, 5, 1, 2)], 2, 8, 16, torch.device("cpu"))
    assert tokens.shape == (2, MAX_OBJECTS, 768)
    corners = torch.tensor([[2 / 16, 1 / 8, 7 / 16, 4 / 8]])
    with torch.no_grad():
        first = net.linears(torch.cat([phrase, fourier_embedding(corners)], dim=-1))
        empty = net.linears(torch.cat([net.null_positive_feature, net.null_position_feature])[None])
    assert torch.allclose(tokens[0, :1], first, atol=1e-5) and torch.equal(tokens[0], tokens[1])
    assert torch.allclose(tokens[0, 1:], empty.expand(MAX_OBJECTS - 1, -1), atol=1e-5)
    assert fourier_embedding(torch.tensor([0.5, 0.25, 1.0, 0.0])).shape == (64,)
    with pytest.raises(ValueError, match="at most 30"):
        gligen.grounding_tokens([(phrase, 1, 1, 0, 0)] * 31, 1, 8, 8, torch.device("cpu"))


def test_the_other_side_gets_the_positive_boxes_as_in_comfyui():
    """ComfyUI's apply_empty_x_to_equal_area: the boxes of positive entries without an area go
    round the other side's entries without an area or boxes, unless one of those has boxes."""
    first, second = ("position", "G1", []), ("position", "G2", [])
    embedding = torch.zeros(1, 77, 32)
    positive = [(embedding, {"gligen": first}), (embedding, {"gligen": second, "area": (8, 8, 0, 0)})]
    negative = [(embedding, {}), (embedding, {"area": (4, 4, 0, 0)}), (embedding, {})]
    assert gligen_per_entry(positive, negative) == [first, None, None]
    assert gligen_per_entry(positive, positive) == [first, second]
    two = [(embedding, {"gligen": first}), (embedding, {"gligen": second})]
    assert gligen_per_entry(two, negative[:1]) == [second]  # the last one handed to an entry wins
    own = [(embedding, {}), (embedding, {"gligen": ("position", "G3", [])})]
    assert gligen_per_entry(positive, own) == [None, ("position", "G3", [])]


def test_text_box_apply_keeps_earlier_boxes_and_copies_the_entries(gligen_files):
    gligen = read_gligen(gligen_files / "tiny-gligen.safetensors")
    phrase = torch.ones(1, TINY_CLIP_WIDTH)
    original = [(torch.zeros(1, 77, 32), {"strength": 0.5})]
    once = with_text_box(original, gligen, phrase, 64, 64, 0, 0)
    twice = with_text_box(once, gligen, phrase, 16, 8, 24, 40)
    assert original[0][1] == {"strength": 0.5} and len(once[0][1]["gligen"][2]) == 1
    assert [box[1:] for box in twice[0][1]["gligen"][2]] == [(8, 8, 0, 0), (1, 2, 5, 3)]
    assert twice[0][1]["strength"] == 0.5
    full = original
    for _ in range(MAX_OBJECTS):
        full = with_text_box(full, gligen, phrase, 8, 8, 0, 0)
    with pytest.raises(ValueError, match="already holds 30 GLIGEN text boxes"):
        with_text_box(full, gligen, phrase, 8, 8, 0, 0)


def test_files_that_are_not_gligen_or_do_not_fit_the_model_are_refused(tmp_path, unet, gligen_files):
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelLoadError, match="not a GLIGEN model"):
        read_gligen(tmp_path / "other.safetensors")
    # Without SD 1.x's 768-wide grounding tokens ComfyUI's fusers have 64-wide heads.
    tensors = load_file(str(gligen_files / "tiny-gligen.safetensors"))
    narrow = {name: value[:, :64].contiguous() if name.endswith("fuser.linear.weight") else value
              for name, value in tensors.items()}
    narrow["position_net.linears.4.weight"] = tensors["position_net.linears.4.weight"][:64].contiguous()
    narrow["position_net.linears.4.bias"] = tensors["position_net.linears.4.bias"][:64].contiguous()
    save_file(narrow, str(tmp_path / "narrow.safetensors"))
    with pytest.raises(ModelLoadError, match="64-wide heads"):
        read_gligen(tmp_path / "narrow.safetensors")
    # A file for another UNet (here: one transformer layer too few).
    fewer = {name: value for name, value in tensors.items() if not name.startswith("output_blocks.3.")}
    save_file(fewer, str(tmp_path / "fewer.safetensors"))
    gligen = read_gligen(tmp_path / "fewer.safetensors")
    with (pytest.raises(ValueError, match="3 fusers but the model has 4 transformer layers"),
          gligen_applied(unet, ("position", gligen, []), (1, 4, 8, 8))):
        pass
