"""The services an engine hands to nodes (``ctx.services``), built from the settings."""

from __future__ import annotations

from typing import Any

from studio.runtime.device import DevicePolicy
from studio.runtime.model_manager import ModelManager
from studio.runtime.models import ModelFolders
from studio.settings import Settings


def create_services(settings: Settings, policy: DevicePolicy | None = None) -> dict[str, Any]:
    """``{"models": ModelManager}`` for the device this machine has (or ``policy``'s), with
    the settings' speed option."""
    import dataclasses

    policy = policy or DevicePolicy.detect(low_vram=settings.low_vram)
    if settings.speed != "default":
        policy = dataclasses.replace(policy, speed=settings.speed)
    return {"models": ModelManager(policy, ModelFolders.from_settings(settings))}


def model_manager(services: Any) -> ModelManager:
    """The model manager a node was given, or a clear error when a caller forgot it."""
    manager = services.get("models") if hasattr(services, "get") else None
    if manager is None:
        raise RuntimeError("this run was started without a model manager, so no model can be loaded")
    return manager
