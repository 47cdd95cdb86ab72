"""Shared fixtures. Everything runs offline, offscreen, and away from the user's settings."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports Qt or the Hugging Face libraries.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["QT_API"] = "pyside6"
os.environ["SEED_STUDIO_CONFIG"] = str(Path(__file__).parent / "no-such-settings.json")

import socket

import pytest

from studio.registry import Registry, build_registry
from studio.settings import Settings


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The built-in node library."""
    built = build_registry()
    assert not built.problems, built.problems
    return built


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose folders are all inside the test's temporary folder."""
    (tmp_path / "input").mkdir()
    return Settings(output_dir=tmp_path / "output", input_dirs=(tmp_path / "input",),
                    temp_dir=tmp_path / "temp", autosave_dir=tmp_path / "autosave", cache_bytes=256 * 1024**2)


@pytest.fixture(scope="session")
def model_root(tmp_path_factory) -> Path:
    """A model folder in ComfyUI's layout holding the tiny test checkpoints."""
    from tests.ldm_layout import write_single_file
    from tests.tiny_models import build_controlnet, build_sd2, build_sd15, build_sdxl

    root = tmp_path_factory.mktemp("models")
    checkpoints = root / "checkpoints"
    for name, build in (("tiny-sd15", build_sd15), ("tiny-sd2", build_sd2), ("tiny-sdxl", build_sdxl)):
        folder = build(checkpoints / name)
        write_single_file(folder, checkpoints / f"{name}-single.safetensors")
    build_controlnet(checkpoints / "tiny-sd15", root / "controlnet" / "tiny-cn", seed=1)
    build_controlnet(checkpoints / "tiny-sd15", root / "controlnet" / "tiny-cn-2", seed=2)
    build_controlnet(checkpoints / "tiny-sdxl", root / "controlnet" / "tiny-cn-xl", seed=3)
    return root


@pytest.fixture
def model_settings(settings, model_root) -> Settings:
    return settings.replace(model_roots=(model_root,))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test that made it: loading models,
    configs and tokenizers must work offline."""

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"a test tried to connect to {address!r}; everything must work offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
