"""The typed LATENT and CONDITIONING of the sampler core convert to and from ComfyUI's shapes
without losing anything."""

from __future__ import annotations

import torch

from studio.runtime.socket_values import ConditioningEntry, Latent, conditioning_from_node, conditioning_to_node


def test_a_latent_round_trips_with_its_mask_batch_indices_and_unknown_keys():
    samples, mask = torch.zeros(2, 4, 8, 8), torch.ones(2, 1, 64, 64)
    node = {"samples": samples, "noise_mask": mask, "batch_index": [3, 5], "downscale_ratio_spacial": 8}
    latent = Latent.from_node(node)
    assert latent.samples is samples and latent.noise_mask is mask and list(latent.batch_index) == [3, 5]
    assert latent.to_node() == node
    bigger = torch.ones(2, 4, 8, 8)
    assert latent.with_samples(bigger).to_node() == {**node, "samples": bigger}
    assert Latent.from_node({"samples": samples}).to_node() == {"samples": samples}


def test_conditioning_entries_unpack_as_comfyuis_pairs_and_convert_back():
    embedding = torch.zeros(1, 77, 8)
    node = [[embedding, {"strength": 0.5}]]
    entries = conditioning_from_node(node)
    assert entries == [ConditioningEntry(embedding, {"strength": 0.5})]
    embedded, extras = entries[0]
    assert embedded is entries[0].embedding is embedding and extras["strength"] == 0.5
    assert conditioning_to_node(entries) == node
    assert conditioning_from_node(None) == []
