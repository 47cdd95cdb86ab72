from __future__ import annotations

import torch

from studio.runtime.device import DevicePolicy
from studio.runtime.model_manager import ModelManager
from studio.runtime.models import ModelFolders


def module_of(megabytes: int) -> torch.nn.Module:
    return torch.nn.Linear(megabytes * 1024 * 256 // 1024, 1024, bias=False)  # 4 bytes per weight


def held(manager: ModelManager) -> list[torch.nn.Module]:
    return list(manager._on_device.values())


def test_modules_beyond_the_budget_push_out_the_least_recently_used():
    a, b, c = module_of(1), module_of(1), module_of(1)
    policy = DevicePolicy(torch.device("cpu"), torch.float32, budget_bytes=int(2.5 * 1024**2))
    manager = ModelManager(policy, ModelFolders())
    with manager.use(a):
        pass
    with manager.use(b):
        pass
    with manager.use(a):  # a is now the most recently used
        pass
    with manager.use(c):
        pass
    assert held(manager) == [a, c]


def test_low_vram_keeps_only_the_module_in_use():
    a, b = module_of(1), module_of(1)
    policy = DevicePolicy(torch.device("cpu"), torch.float32, low_vram=True, budget_bytes=10 * 1024**2)
    manager = ModelManager(policy, ModelFolders())
    with manager.use(a):
        pass
    with manager.use(b):
        pass
    assert held(manager) == [b]
    manager.free_memory()
    assert held(manager) == []


def test_the_cpu_has_no_budget_and_the_best_device_is_found():
    assert DevicePolicy(torch.device("cpu"), torch.float32).memory_budget() is None
    detected = DevicePolicy.detect()
    expected_device = "cuda" if torch.cuda.is_available() else detected.device.type
    assert detected.device.type == expected_device
    if detected.device.type == "cpu":
        assert detected.dtype == torch.float32
    else:
        assert detected.dtype in (torch.float16, torch.bfloat16)
    assert DevicePolicy.detect(prefer="cpu").dtype == torch.float32
