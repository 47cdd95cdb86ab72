"""A pytest plugin for ``bench/gpu_check.py``: every model manager the tests create computes
on ``SEED_STUDIO_FORCE_DEVICE`` (e.g. ``cuda``), keeping the number format each test asked
for, so the node tests and the half-precision tests run on a GPU unchanged.

    SEED_STUDIO_FORCE_DEVICE=cuda python -m pytest -p bench.gpu_check_plugin tests/nodes
"""

from __future__ import annotations

import dataclasses
import os


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest's hook signature
    device = os.environ.get("SEED_STUDIO_FORCE_DEVICE")
    if not device:
        return
    import torch

    from studio.runtime import services
    from studio.runtime.device import DevicePolicy

    original = services.create_services

    def on_forced_device(settings, policy=None):
        policy = policy or DevicePolicy.detect(low_vram=settings.low_vram)
        return original(settings, dataclasses.replace(policy, device=torch.device(device)))

    # Patched before any test module imports it, so every `from … import create_services` gets it.
    services.create_services = on_forced_device
