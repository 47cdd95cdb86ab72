"""Running FLUX/SD3 in less memory than the model: group offloading keeps the transformer's
weights in system memory and brings them block by block (the result unchanged), the model
manager's moves leave an offloaded model alone, and a CPU-only machine says honestly how
long a full-size model would take."""

from __future__ import annotations

import torch

from studio.runtime.checkpoints import DiffusionModel
from studio.runtime.device import DevicePolicy

CPU = DevicePolicy(torch.device("cpu"), torch.float32)


def test_a_group_offloaded_transformer_computes_the_same_and_is_not_moved_whole():
    from studio.runtime.flux import FluxDenoiser
    from studio.runtime.weight_storage import offload_if_too_big
    from tests.flux_models import tiny_flux

    transformer = tiny_flux(True, 3)
    inputs = dict(encoder_hidden_states=torch.randn(1, 16, 32), pooled_projections=torch.randn(1, 32),
                  guidance=torch.tensor([3.5]))
    latent, timestep = torch.randn(1, 16, 6, 6), torch.tensor([0.6])
    with torch.no_grad():
        expected = FluxDenoiser(transformer)(latent, timestep, **inputs)[0]
        # Not needed on the CPU (no budget), unless forced, as on a GPU smaller than the model.
        assert offload_if_too_big(transformer, CPU) is None
        device = offload_if_too_big(transformer, CPU, force=True)
        denoiser = FluxDenoiser(transformer, device)
        assert denoiser.to("meta") is denoiser and denoiser.device == torch.device("cpu")
        got = denoiser(latent, timestep, **inputs)[0]
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_full_size_transformer_on_the_cpu_is_told_in_hours():
    from studio.runtime.transformer_models import cpu_warning

    big = torch.nn.Module()
    big.weight = torch.nn.Parameter(torch.empty(12_000_000_000, device="meta"))
    model = DiffusionModel(big, "flux", {}, "key")
    sentence = cpu_warning(model, CPU)
    assert "FLUX.1 (12.0 billion weights) runs on the CPU" in sentence and "hours" in sentence
    assert cpu_warning(model, DevicePolicy(torch.device("cuda"), torch.bfloat16)) is None
    small = DiffusionModel(torch.nn.Linear(4, 4), "flux", {}, "key")
    assert cpu_warning(small, CPU) is None


def test_a_missing_t5_tokenizer_is_one_sentence_and_no_download(monkeypatch, tmp_path):
    import pytest

    from studio.runtime import text_encoders
    from studio.runtime.model_errors import ModelLoadError

    monkeypatch.setattr(text_encoders, "T5_TOKENIZER_FILE", tmp_path / "tokenizer.json")
    text_encoders.make_t5_tokenizer.cache_clear()
    try:
        with pytest.raises(ModelLoadError, match="T5's tokenizer is missing from this installation"):
            text_encoders.make_t5_tokenizer()
    finally:
        text_encoders.make_t5_tokenizer.cache_clear()


def test_the_shipped_t5_tokenizer_gives_t5s_ids():
    from studio.runtime.text_encoders import make_t5_tokenizer

    assert make_t5_tokenizer()("a photo of a cat").input_ids == [3, 9, 1202, 13, 3, 9, 1712, 1]
