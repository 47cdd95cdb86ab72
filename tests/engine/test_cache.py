from __future__ import annotations

import numpy as np

from studio.engine import Engine, ResultCache
from studio.engine.cache import estimate_bytes

from tests.engine.conftest import build


def test_sizes_are_estimated_from_arrays_inside_outputs():
    outputs = (np.zeros(1000, dtype=np.float32), {"samples": np.zeros(250, dtype=np.float64)}, "text")
    assert 4000 + 2000 <= estimate_bytes(outputs) < 4000 + 2000 + 512


def test_least_recently_used_entries_are_evicted_to_stay_under_the_budget():
    cache = ResultCache(max_bytes=10_000)
    for key in "abc":
        cache.put(key, (np.zeros(3000, dtype=np.uint8),))
    cache.get("a")  # a is now the most recently used
    cache.put("d", (np.zeros(3000, dtype=np.uint8),))
    assert "b" not in cache
    assert all(key in cache for key in "acd")
    assert cache.bytes <= 10_000


def test_an_entry_larger_than_the_whole_budget_is_not_kept():
    cache = ResultCache(max_bytes=1000)
    cache.put("small", (np.zeros(100, dtype=np.uint8),))
    cache.put("huge", (np.zeros(5000, dtype=np.uint8),))
    assert "huge" not in cache and "small" in cache


def test_a_zero_budget_engine_still_runs_correctly_but_caches_nothing(int_registry, settings, collected):
    engine = Engine(int_registry, settings, services={"collected": collected}, cache_bytes=0)
    workflow = build({"1": ("Number", {"value": 4}), "2": ("Add", {"b": 1}), "3": ("Collect", {})},
                     [("1", "INT", "2", "a"), ("2", "INT", "3", "value")])
    assert engine.run(workflow).ok
    again = engine.run(workflow)
    assert again.executed == ["1", "2", "3"] and again.cached == []
    assert collected == [("3", 5), ("3", 5)]
