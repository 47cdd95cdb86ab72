"""Conditioning transforms that need no text encoder, as ComfyUI's nodes.py defines them
(ConditioningConcat, ConditioningAverage, ConditioningSetMask, ConditioningSetTimestepRange,
ConditioningSetAreaPercentage): the extras keys are ComfyUI's, which the sampler reads."""

from __future__ import annotations

import pytest
import torch

from nodes.conditioning import (
    ConditioningAverage,
    ConditioningConcat,
    ConditioningSetAreaPercentage,
    ConditioningSetMask,
    ConditioningSetTimestepRange,
)


def conditioning(tokens: int, fill: float, pooled: float | None = None) -> list:
    extras = {"pooled_output": torch.full((1, 3), pooled)} if pooled is not None else {}
    return [(torch.full((1, tokens, 8), fill), extras)]


def test_concat_appends_the_first_from_entrys_tokens_to_each_to_entry(ctx):
    to = conditioning(5, 1.0, pooled=0.5) + conditioning(3, 2.0)
    from_ = conditioning(4, 7.0) + conditioning(2, 9.0)
    (out,) = ConditioningConcat().run(ctx, conditioning_to=to, conditioning_from=from_)
    assert [embedding.shape[1] for embedding, _ in out] == [9, 7]
    assert torch.all(out[0][0][:, 5:] == 7.0) and torch.all(out[1][0][:, :3] == 2.0)
    assert out[0][1]["pooled_output"] is to[0][1]["pooled_output"] and out[0][1] is not to[0][1]
    assert "only the first" in ctx.notes[0]  # the ignored second entry is mentioned, as ComfyUI warns


def test_average_pads_the_shorter_prompt_with_zeros_and_mixes_pooled_outputs(ctx):
    to, from_ = conditioning(4, 1.0, pooled=1.0), conditioning(2, 3.0, pooled=3.0)
    ([(embedding, extras)],) = ConditioningAverage().run(ctx, conditioning_to=to, conditioning_from=from_,
                                                         conditioning_to_strength=0.75)
    assert torch.allclose(embedding[0, :2], torch.full((2, 8), 1.5))  # 0.75·1 + 0.25·3
    assert torch.allclose(embedding[0, 2:], torch.full((2, 8), 0.75))  # 0.75·1 + 0.25·0
    assert torch.allclose(extras["pooled_output"], torch.full((1, 3), 1.5))
    # An entry without a pooled output takes conditioning_from's whole.
    ([(_, extras)],) = ConditioningAverage().run(ctx, conditioning_to=conditioning(4, 1.0), conditioning_from=from_,
                                                 conditioning_to_strength=0.75)
    assert torch.equal(extras["pooled_output"], torch.full((1, 3), 3.0))
    with pytest.raises(ValueError, match="different text encoders"):
        ConditioningAverage().run(ctx, conditioning_to=to, conditioning_from=[(torch.zeros(1, 2, 16), {})],
                                  conditioning_to_strength=0.5)


def test_set_mask_stores_comfyuis_keys(ctx):
    base = conditioning(2, 1.0, pooled=0.0)
    mask = torch.ones(4, 4)
    ([(_, extras)],) = ConditioningSetMask().run(ctx, conditioning=base, mask=mask, strength=0.6,
                                                 set_cond_area="mask bounds")
    assert extras["mask"].shape == (1, 4, 4) and extras["mask_strength"] == 0.6
    assert extras["set_area_to_bounds"] is True and "pooled_output" in extras
    ([(_, extras)],) = ConditioningSetMask().run(ctx, conditioning=base, mask=mask[None], strength=1.0,
                                                 set_cond_area="default")
    assert extras["set_area_to_bounds"] is False
    assert "mask" not in base[0][1]  # the input's extras are not changed


def test_timestep_range_and_percentage_area_store_comfyuis_keys(ctx):
    ([(_, extras)],) = ConditioningSetTimestepRange().run(ctx, conditioning=conditioning(2, 1.0), start=0.2, end=0.7)
    assert (extras["start_percent"], extras["end_percent"]) == (0.2, 0.7)
    ([(_, extras)],) = ConditioningSetAreaPercentage().run(ctx, conditioning=conditioning(2, 1.0), width=0.5,
                                                           height=0.25, x=0.1, y=0.6, strength=2.0)
    # ComfyUI's form: ("percentage", height, width, y, x), for the sampler to scale.
    assert extras["area"] == ("percentage", 0.25, 0.5, 0.6, 0.1)
    assert extras["strength"] == 2.0 and extras["set_area_to_bounds"] is False
