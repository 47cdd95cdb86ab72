"""Hypernetworks in AUTOMATIC1111's layout through HypernetworkLoader, on the tiny SD 1.5
model (ComfyUI parity of the result: tests/runtime/test_comfy_parity.py, case "hypernetwork")."""

from __future__ import annotations

import pickle

import pytest
import torch

from studio.engine import Engine
from studio.runtime.checkpoints import ModelLoadError
from studio.runtime.hypernetwork import hypernetworks_applied, read_hypernetwork
from studio.runtime.services import create_services
from tests.nodes.test_diffusion import CPU, txt2img
from tests.parity_model import write_parity_hypernetwork


@pytest.fixture
def engine(registry, model_settings, model_root):
    (model_root / "hypernetworks").mkdir(exist_ok=True)
    write_parity_hypernetwork(model_root / "hypernetworks" / "tiny-hn.pt")
    return Engine(registry, model_settings, services=create_services(model_settings, CPU))


def latent_with(engine, strength):
    workflow, ids = txt2img(steps=3)
    if strength is not None:
        node = workflow.add_node("HypernetworkLoader", {"hypernetwork_name": "tiny-hn.pt", "strength": strength}).id
        workflow.connect(ids["loader"], "MODEL", node, "model")
        workflow.connect(node, "MODEL", ids["sampler"], "model")
    report = engine.run(workflow, [ids["sampler"]])
    assert report.ok, report.problems or [e.traceback for e in report.errors]
    return report.results[ids["sampler"]][0]["samples"]


def test_strength_zero_is_the_model_itself_and_the_base_model_is_left_unchanged(engine):
    plain = latent_with(engine, None)
    assert torch.equal(latent_with(engine, 0.0), plain)
    changed = latent_with(engine, 1.0)
    assert (changed - plain).abs().max() > 1e-3 * plain.abs().max()
    engine.cache.clear()
    assert torch.equal(latent_with(engine, None), plain)


def test_keys_and_values_get_their_own_network_in_every_attention_layer(tmp_path):
    from diffusers import UNet2DConditionModel

    from tests.tiny_models import build_sd15

    unet = UNet2DConditionModel.from_pretrained(build_sd15(tmp_path / "sd15"), subfolder="unet").eval()
    hypernetwork = read_hypernetwork(write_parity_hypernetwork(tmp_path / "hn.pt"), 0.5)
    attention = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    seen = {}
    attention.to_k.register_forward_hook(lambda m, args, out: seen.__setitem__("k", args[0]))
    attention.to_v.register_forward_hook(lambda m, args, out: seen.__setitem__("v", args[0]))
    context = torch.randn(1, 77, 32)
    with torch.no_grad():
        with hypernetworks_applied(unet, [hypernetwork]):
            unet(torch.randn(1, 4, 8, 8), 10, encoder_hidden_states=context)
        net_k, net_v = hypernetwork.networks[32]
        assert torch.allclose(seen["k"], context + 0.5 * net_k(context), atol=1e-6)
        assert torch.allclose(seen["v"], context + 0.5 * net_v(context), atol=1e-6)
        unet(torch.randn(1, 4, 8, 8), 10, encoder_hidden_states=context)
    assert torch.equal(seen["k"], context)  # the hooks are gone afterwards


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_files_that_are_not_plain_hypernetworks_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({320: Payload()}))
    with pytest.raises(ModelLoadError, match="never loaded"):
        read_hypernetwork(path, 1.0)
    odd = tmp_path / "odd.pt"
    torch.save({"activation_func": "gelu-ish", 32: [{}, {}]}, str(odd))
    with pytest.raises(ModelLoadError, match="activation 'gelu-ish'"):
        read_hypernetwork(odd, 1.0)
    empty = tmp_path / "empty.pt"
    torch.save({"activation_func": "relu"}, str(empty))
    with pytest.raises(ModelLoadError, match="no layer stacks"):
        read_hypernetwork(empty, 1.0)
