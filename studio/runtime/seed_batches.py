"""Seed batches: the jobs of a batch (or the seeds of a ``--sweep``) that differ only in a
sampler's seed, sampled together as one latent batch.

The batch runner knows which jobs come next; the sampler node does not. Before each job the
runner tells the :class:`SeedBatcher` (a service, ``ctx.services.seed_batches``) which seeds
each sampler node will be run with in this job and the jobs right after it that differ from
it only in those seeds. When the node runs with the first of those seeds, it samples up to
:attr:`SeedBatcher.size` of them in one call (each with its own seed's noise, so each picture
is the one its job gives alone) and leaves the others' latents here; the next jobs' sampler
runs then find theirs ready, if nothing else they depend on has changed. Every job still runs
its own graph, decodes and saves its own pictures and is recorded on its own: a batch killed
in the middle of a seed batch loses only latents held in memory, and ``--resume`` renders the
unrecorded jobs again (their pictures do not depend on which jobs they were batched with).

No torch here: the sampling itself is handed in by the node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# What a sampler node hands over to be compared with a held result: objects (the model, the
# conditioning, the latent) compared by identity, everything else by value.
Signature = tuple[tuple[Any, ...], tuple[Any, ...]]


@dataclass
class _Held:
    signature: Signature
    results: dict[int, Any] = field(default_factory=dict)


def _same(a: Signature, b: Signature) -> bool:
    objects_a, values_a = a
    objects_b, values_b = b
    return (len(objects_a) == len(objects_b) and all(x is y for x, y in zip(objects_a, objects_b, strict=True))
            and values_a == values_b)


class SeedBatcher:
    """Holds the plan of coming seeds per sampler node and the latents sampled ahead.

    ``size`` is the most jobs one sampler call takes: None chooses it from the free memory of
    the model's device (the node's ``auto_size``), 1 turns seed batching off.
    """

    def __init__(self, size: int | None = None) -> None:
        if size is not None and size < 1:
            raise ValueError("a seed batch takes at least one job")
        self.size = size
        self._coming: dict[str, list[int]] = {}
        self._held: dict[str, _Held] = {}
        # Nodes whose inputs changed between the jobs of their seed batch: sampled one job at a
        # time for the rest of it (sampling ahead again at every job would repeat the work).
        self._alone: set[str] = set()
        # What happened, for reports and tests: seeds per sampler call, and results served.
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        self.served = 0

    @property
    def enabled(self) -> bool:
        return self.size != 1

    def expect(self, coming: Mapping[str, Sequence[int]]) -> None:
        """Before a job: for each sampler node, the seeds it will be run with in this job and
        the following jobs of its seed batch (this job's first). Nodes not named hold nothing
        more (what they held is dropped)."""
        previous = self._coming
        self._coming = {node_id: [int(seed) for seed in seeds] for node_id, seeds in coming.items() if seeds}
        for node_id in list(self._held):
            if node_id not in self._coming:
                del self._held[node_id]
        # A node's seed batch goes on while its plan is the previous one less its first seed.
        self._alone = {node_id for node_id in self._alone
                       if node_id in self._coming and previous.get(node_id, [])[1:] == self._coming[node_id]}

    def clear(self) -> None:
        self._coming.clear()
        self._held.clear()
        self._alone.clear()

    def sample(self, node_id: str, seed: int, signature: Signature, sample_many: Callable[[list[int]], list[Any]],
               auto_size: Callable[[], int] | None = None) -> Any:
        """The sampler node's result for ``seed``: held from an earlier call of the same seed
        batch, or sampled now together with the coming seeds of this node."""
        seed = int(seed)
        held = self._held.get(node_id)
        if held is not None:
            if _same(held.signature, signature) and seed in held.results:
                self.served += 1
                return held.results.pop(seed)
            del self._held[node_id]  # something upstream changed: those latents are not this job's
            self._alone.add(node_id)
        coming = self._coming.get(node_id, [])
        seeds = [seed]
        if self.enabled and coming[:1] == [seed] and node_id not in self._alone:
            limit = self.size if self.size is not None else (auto_size() if auto_size is not None else 1)
            for candidate in coming[1:]:
                if len(seeds) >= max(1, limit):
                    break
                if candidate not in seeds:
                    seeds.append(candidate)
        results = sample_many(seeds)
        self.calls.append((node_id, tuple(seeds)))
        if len(seeds) > 1:
            self._held[node_id] = _Held(signature, dict(zip(seeds[1:], results[1:], strict=True)))
        return results[0]
