from __future__ import annotations

import numpy as np

from studio.engine import Engine, ResultCache
from studio.engine.cache import estimate_bytes
from tests.engine.conftest import Collecting, build


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
    engine = Engine(int_registry, settings, services=Collecting(collected=collected), cache_bytes=0)
    workflow = build({"1": ("Number", {"value": 4}), "2": ("Add", {"b": 1}), "3": ("Collect", {})},
                     [("1", "INT", "2", "a"), ("2", "INT", "3", "value")])
    assert engine.run(workflow).ok
    again = engine.run(workflow)
    assert again.executed == ["1", "2", "3"] and again.cached == []
    assert collected == [("3", 5), ("3", 5)]


def test_the_release_policy_lets_go_of_outputs_after_their_last_reader_but_keeps_targets(int_registry):
    from studio.engine import ReleasePolicy
    from studio.engine.plan import make_plan
    from studio.node_api import Services

    # 1 feeds 2 and 3; 2 feeds 3; 3 is the target.
    workflow = build({"1": ("Number", {"value": 1}), "2": ("Add", {}), "3": ("Add", {})},
                     [("1", "INT", "2", "a"), ("1", "INT", "3", "a"), ("2", "INT", "3", "b")])
    plan = make_plan(workflow, int_registry, ["3"])
    release = ReleasePolicy(plan, ResultCache(1 << 20), Services())
    steps = {step.node.id: step for step in plan.steps}
    assert release.consumed(steps["1"]) == []
    assert release.consumed(steps["2"]) == []  # 3 still reads 1
    assert sorted(release.consumed(steps["3"])) == ["1", "2"]


def test_the_release_policy_empties_the_cache_and_frees_models_on_out_of_memory_only(int_registry):
    from studio.engine import ReleasePolicy
    from studio.engine.plan import make_plan
    from studio.node_api import Services

    class Models:
        freed = 0

        def free_memory(self):
            self.freed += 1

    cache, models = ResultCache(1 << 20), Models()
    cache.put("key", (1,))
    release = ReleasePolicy(make_plan(build({"1": ("Number", {})}, []), int_registry, ["1"]), cache,
                            Services(models=models))
    release.after_failure(ValueError("not memory"))
    assert len(cache) == 1 and models.freed == 0
    release.after_failure(MemoryError())
    assert len(cache) == 0 and models.freed == 1
