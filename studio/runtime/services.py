"""The services an engine hands to nodes (``ctx.services``), built from the settings."""

from __future__ import annotations

from studio.node_api import Services
from studio.runtime.device import DevicePolicy
from studio.runtime.model_manager import ModelManager
from studio.runtime.models import ModelFolders
from studio.settings import Settings


def create_services(settings: Settings, policy: DevicePolicy | None = None) -> Services:
    """The model manager for the device this machine has (or ``policy``'s), with the
    settings' speed option; no seed batcher (``studio render`` and ``studio batch`` add theirs)."""
    import dataclasses

    policy = policy or DevicePolicy.detect(low_vram=settings.low_vram)
    if settings.speed != "default":
        policy = dataclasses.replace(policy, speed=settings.speed)
    return Services(models=ModelManager(policy, ModelFolders.from_settings(settings)))


def model_manager(services: Services) -> ModelManager:
    """The model manager a node was given, or a clear error when a caller forgot it."""
    manager = services.models
    if manager is None:
        raise RuntimeError("this run was started without a model manager, so no model can be loaded")
    return manager
