"""Typed forms of the two socket values ComfyUI passes as bare dicts and lists: LATENT and
CONDITIONING.

Between nodes they keep ComfyUI's shapes (a LATENT is ``{"samples": …, "noise_mask": …,
"batch_index": …}``, a CONDITIONING a list of ``[embedding, extras]`` pairs), so workflows
and nodes ported from ComfyUI read and write them as they always did. The sampler core works
on these types instead: a node converts once at its boundary (``from_node`` / ``to_node``)
and the code in between reads fields by name, not string keys.

Torch is only named in annotations: importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Latent:
    """A LATENT: latent pictures (B×C×h×w, in the VAE's space) with what travels beside them."""

    samples: torch.Tensor
    # Where sampling may change the picture (1) and where it keeps it (0): B×1×H×W or H×W,
    # at any size (the sampler resizes it to the latent's).
    noise_mask: torch.Tensor | None = None
    # For a latent taken out of a larger batch: each row's index in that batch, so it gets
    # the noise it would have had there.
    batch_index: Sequence[int] | None = None
    # Keys Seed Studio does not read (written by ported nodes), carried through unchanged.
    other: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_node(cls, value: Mapping[str, Any]) -> Latent:
        other = {key: item for key, item in value.items() if key not in ("samples", "noise_mask", "batch_index")}
        return cls(value["samples"], value.get("noise_mask"), value.get("batch_index"), other)

    def to_node(self) -> dict[str, Any]:
        value: dict[str, Any] = {"samples": self.samples}
        if self.noise_mask is not None:
            value["noise_mask"] = self.noise_mask
        if self.batch_index is not None:
            value["batch_index"] = self.batch_index
        return {**value, **self.other}

    def with_samples(self, samples: torch.Tensor) -> Latent:
        """The same latent (mask, batch indices, other keys) holding ``samples``."""
        return replace(self, samples=samples)


class ConditioningEntry(NamedTuple):
    """One entry of a CONDITIONING: the prompt's embedding (B×tokens×width) and what
    modifies it, in ComfyUI's keys: ``pooled_output``, ``area``, ``mask``, ``strength``,
    ``start_percent``/``end_percent``, ``control``, ``gligen``, ``guidance``,
    ``unclip_conditioning``, ``concat_latent_image``, …

    A named tuple, so it still unpacks as ComfyUI's pair (``embedding, extras = entry``)
    wherever runtime helpers take pairs."""

    embedding: torch.Tensor
    extras: Mapping[str, Any]

    @classmethod
    def from_node(cls, pair: Sequence[Any]) -> ConditioningEntry:
        embedding, extras = pair
        return cls(embedding, extras)

    def to_node(self) -> list[Any]:
        return [self.embedding, dict(self.extras)]


Conditioning = list[ConditioningEntry]


def conditioning_from_node(value: Iterable[Sequence[Any]] | None) -> Conditioning:
    """A CONDITIONING socket's list of pairs (None: no conditioning) as entries."""
    return [ConditioningEntry.from_node(pair) for pair in value or ()]


def conditioning_to_node(entries: Iterable[ConditioningEntry]) -> list[list[Any]]:
    return [entry.to_node() for entry in entries]
