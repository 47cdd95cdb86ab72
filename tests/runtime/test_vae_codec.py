"""The GPU's VAE traps, on the CPU: a VAE never computes in fp16 unless asked (SDXL's
overflows there), a 16-bit decode that overflows is done again in fp32, a decode that runs
out of GPU memory is done again in tiles after the manager frees what it holds, and an
out-of-memory error in any node leaves the engine usable."""

from __future__ import annotations

import torch

from studio.node_api import Services
from studio.runtime import vae_codec
from studio.runtime.device import DevicePolicy
from studio.runtime.model_manager import ModelManager
from studio.runtime.models import ModelFolders


def tiny_vae(dtype: torch.dtype, gain: float = 1.0):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4).eval()
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(gain)
    return vae.to(dtype)


def manager(dtype: torch.dtype, **options) -> ModelManager:
    return ModelManager(DevicePolicy(torch.device("cpu"), dtype, **options), ModelFolders())


def test_a_vae_computes_in_fp32_under_an_fp16_policy_and_in_bf16_under_a_bf16_one():
    latent = torch.randn(1, 4, 8, 8)
    fp16 = tiny_vae(torch.float16)
    notes: list[str] = []
    image = vae_codec.decode(manager(torch.float16), fp16, latent, notes.append)
    assert fp16.dtype == torch.float32 and torch.isfinite(image).all() and notes == []
    bf16 = tiny_vae(torch.bfloat16)
    vae_codec.decode(manager(torch.bfloat16), bf16, latent)
    assert bf16.dtype == torch.bfloat16
    assert vae_codec.vae_dtype(DevicePolicy(torch.device("cpu"), torch.float16, fp16_vae=True)) == torch.float16


def test_a_16_bit_decode_that_overflows_is_done_again_in_fp32_and_stays_there():
    latent = torch.randn(1, 4, 8, 8) * 4
    vae = tiny_vae(torch.float16, gain=3e5)  # past fp16's 65504, as SDXL's VAE goes
    with torch.no_grad():
        assert not torch.isfinite(vae.decode(latent.half()).sample).all()
    notes: list[str] = []
    image = vae_codec.decode(manager(torch.float16, fp16_vae=True), vae, latent, notes.append)
    assert torch.isfinite(image).all() and vae.dtype == torch.float32
    assert notes == ["the VAE decode overflowed in float16 (NaN); it was done again in fp32, as will every later one"]


def test_out_of_memory_in_the_vae_frees_the_manager_and_retries_once_in_tiles(monkeypatch):
    vae = tiny_vae(torch.float32)
    latent = torch.randn(1, 4, 8, 8)
    expected = vae_codec.decode(manager(torch.float32), vae, latent)
    models = manager(torch.float32)
    freed = []
    monkeypatch.setattr(models, "free_memory", lambda: freed.append(True))
    original = vae.decode
    calls = []

    def decode_needing_tiles(*args, **kwargs):
        calls.append(vae.use_tiling)
        if not vae.use_tiling:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(*args, **kwargs)

    vae.decode = decode_needing_tiles
    notes: list[str] = []
    image = vae_codec.decode(models, vae, latent, notes.append)
    assert calls == [False, True] and freed == [True] and not vae.use_tiling
    assert notes == ["the GPU ran out of memory for the VAE decode; it was done again in tiles"]
    assert torch.allclose(image, expected, atol=1e-5)  # 8×8 latents fit one tile


def test_out_of_memory_in_a_node_leaves_the_engine_usable(registry, model_settings, monkeypatch):
    from nodes.sampling import KSampler
    from studio.engine import Engine
    from studio.runtime.services import create_services
    from tests.nodes.test_diffusion import txt2img

    services = create_services(model_settings, DevicePolicy(torch.device("cpu"), torch.float32))
    engine = Engine(registry, model_settings, services=services)
    freed = []
    free_memory = services.models.free_memory
    monkeypatch.setattr(services.models, "free_memory", lambda: freed.append(True) or free_memory())
    original = KSampler.run
    failures = iter([True])

    def run_once_out_of_memory(self, ctx, **inputs):
        if next(failures, False):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, ctx, **inputs)

    monkeypatch.setattr(KSampler, "run", run_once_out_of_memory)
    workflow, ids = txt2img(steps=2)
    report = engine.run(workflow, [ids["decode"]])
    assert report.status == "failed" and freed == [True]
    [error] = report.errors
    assert error.node_id == ids["sampler"] and error.message.startswith("ran out of GPU memory; lower the resolution")
    again = engine.run(workflow, [ids["decode"]])
    assert again.ok and torch.isfinite(again.results[ids["decode"]][0]).all()


def test_out_of_memory_in_the_upscaler_frees_the_other_models_and_retries_in_smaller_tiles(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from safetensors.torch import save_file

    import nodes.upscale
    import studio.runtime.upscale
    from studio.runtime.upscale import load_upscale_model
    from tests.nodes.test_upscale import tiny_compact

    save_file(tiny_compact(), str(tmp_path / "compact.safetensors"))
    models = manager(torch.float32)
    upscaler = load_upscale_model(tmp_path / "compact.safetensors", models.policy, "key")
    other = torch.nn.Linear(2, 2)
    with models.use(other):
        pass
    original = studio.runtime.upscale.upscale_tiled
    tiles = []

    def tiled_needing_small_tiles(model, image, tile, overlap, progress):
        tiles.append(tile)
        if tile > nodes.upscale.TILE_SIZE // 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        assert id(other) not in models._on_device and id(upscaler.descriptor.model) in models._on_device
        return original(model, image, tile, overlap, progress)

    monkeypatch.setattr(studio.runtime.upscale, "upscale_tiled", tiled_needing_small_tiles)
    ctx = SimpleNamespace(services=Services(models=models), progress=lambda done, total: None)
    (image,) = nodes.upscale.ImageUpscaleWithModel().run(ctx, upscaler, torch.rand(1, 16, 24, 3))
    assert tiles == [nodes.upscale.TILE_SIZE, nodes.upscale.TILE_SIZE // 2] and image.shape == (1, 32, 48, 3)
