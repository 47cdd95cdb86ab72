"""The model manager: loads each model file once, shares it with every node and run that
uses it, and keeps what fits the GPU budget on the GPU, moving the least recently used
modules back to system memory when something else needs the room."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from studio.fileinfo import file_identity
from studio.runtime.checkpoints import (
    Checkpoint,
    Vae,
    load_diffusers_folder,
    load_single_file,
    load_vae_file,
    read_state_dict,
)
from studio.runtime.controlnet import ControlNet, load_controlnet
from studio.runtime.device import DevicePolicy
from studio.runtime.embeddings import EmbeddingLibrary
from studio.runtime.merging import ParameterPatch, parameter_tensor, patch_chains, patched_state_dict, patched_value
from studio.runtime.models import ModelFolders
from studio.runtime.upscale import UpscaleModel, load_upscale_model
from studio.runtime.weight_storage import GROUP_OFFLOADED, TRANSIENT, offload_blocks


def _module_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers())


def file_key(path: Path) -> str:
    """A model cache key: the file's identity (:func:`studio.fileinfo.file_identity`) as text."""
    return "|".join(map(str, file_identity(path)))


class ModelManager:
    """Loaded models by file, and their placement between GPU and system memory."""

    def __init__(self, policy: DevicePolicy, folders: ModelFolders, max_loaded_files: int = 3) -> None:
        self.policy = policy
        self.folders = folders
        self.max_loaded_files = max_loaded_files
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._on_device: OrderedDict[int, torch.nn.Module] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0  # how many files were actually read (for tests and benchmarks)
        self.embeddings = EmbeddingLibrary(folders)

    # -- files -----------------------------------------------------------------------------
    def resolve(self, kind: str, name: str) -> Path:
        from studio.runtime.checkpoints import ModelLoadError

        path = Path(name).expanduser()
        if path.is_absolute():
            if path.exists():
                return path
        else:
            found = self.folders.find(kind, name)
            if found is not None:
                return found
        folders = ", ".join(str(f) for f in self.folders.folders_for(kind)) or "no model folders are set up"
        raise ModelLoadError(path, f"not found in the {kind} folder ({folders})")

    def _cached(self, key: str, load: Any) -> Any:
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            value = load()
            self.loads += 1
            self._loaded[key] = value
            while len(self._loaded) > self.max_loaded_files:
                self._loaded.popitem(last=False)
            return value

    def load_checkpoint(self, name: str) -> Checkpoint:
        """A checkpoint from the checkpoints folders (a file or a diffusers folder)."""
        path = self.resolve("checkpoints", name)
        key = file_key(path / "model_index.json" if path.is_dir() else path)
        loader = load_diffusers_folder if path.is_dir() else load_single_file
        return self._cached("checkpoint:" + key, lambda: loader(path, self.policy, key))

    def load_vae(self, name: str) -> Vae:
        path = self.resolve("vae", name)
        key = file_key(path / "config.json" if path.is_dir() else path)
        return self._cached("vae:" + key, lambda: load_vae_file(path, self.policy, key))

    # -- placement -------------------------------------------------------------------------
    def load_controlnet(self, name: str, base_unet: torch.nn.Module | None = None, base_key: str = "") -> ControlNet:
        """A ControlNet or T2I-Adapter; with ``base_unet``, a "diff" ControlNet made whole."""
        path = self.resolve("controlnet", name)
        key = file_key(path / "config.json" if path.is_dir() else path)
        cache_key = f"controlnet:{key}:{base_key}" if base_unet is not None else f"controlnet:{key}"
        return self._cached(cache_key, lambda: load_controlnet(path, self.policy, key, base_unet))

    def load_upscale_model(self, name: str) -> UpscaleModel:
        path = self.resolve("upscale_models", name)
        return self._cached("upscale:" + file_key(path), lambda: load_upscale_model(path, self.policy, file_key(path)))

    def load_lora(self, name: str) -> dict[str, torch.Tensor]:
        path = self.resolve("loras", name)
        return self._cached("lora:" + file_key(path), lambda: read_state_dict(path))

    @contextmanager
    def use(self, *modules: torch.nn.Module,
            patches: Sequence[tuple[torch.nn.Module, ParameterPatch]] = ()) -> Iterator[None]:
        """Have ``modules`` on the compute device while the block runs, with ``patches``
        (LoRAs, merges: each paired with the module it patches) merged into their weights for
        that time only.

        Each weight's patches apply in order on a float32 copy, cast back once (as ComfyUI
        does). Patched weights are restored from exact copies afterwards, and the block runs
        under the manager's lock so nothing else sees the patched model.
        """
        chains = patch_chains(patches)
        if not chains:
            with self._lock:
                for module in modules:
                    self._to_device(module)
            try:
                yield
            finally:
                self._release_transient(modules)
            return
        with self._lock:
            for module in modules:
                self._to_device(module)
            originals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
            try:
                with torch.no_grad():
                    for root, name, chain in chains:
                        tensor = parameter_tensor(root, name)
                        # Computed before this weight is written: a merge may read this very
                        # tensor (a model merged with itself plus a LoRA). A merge reads only
                        # its own weight's name, so writing weight by weight is safe.
                        value = patched_value(tensor, chain).to(tensor.dtype)
                        if id(tensor) not in originals:
                            # Kept in system memory, as ComfyUI keeps its backups: a merge patches
                            # every weight, and a second copy of the model need not fit the GPU.
                            originals[id(tensor)] = (tensor, tensor.data.to("cpu", copy=True))
                        tensor.data.copy_(value)
                yield
            finally:
                with torch.no_grad():
                    for tensor, original in originals.values():
                        tensor.data.copy_(original)
                self._release_transient(modules)

    def patched_weights(self, module: torch.nn.Module, patches: Sequence[ParameterPatch]) -> dict[str, torch.Tensor]:
        """The state dict ``module`` has while :meth:`use` merges ``patches`` into it, bit for
        bit, on the CPU (what a save writes). Computed under the lock, so from the shared
        weights as loaded, never as another run has patched them for its own use; weights
        without patches are the module's own tensors when it is on the CPU (not copies)."""
        with self._lock, torch.no_grad():
            return patched_state_dict(module, patches)

    def _release_transient(self, modules: Sequence[torch.nn.Module]) -> None:
        """Send modules used once per prompt (T5-XXL: ~9 GB in 16 bits, needed only to encode)
        back to system memory as soon as their block ends, so the denoiser has the room."""
        with self._lock:
            for module in modules:
                if getattr(module, TRANSIENT, False) and id(module) in self._on_device:
                    del self._on_device[id(module)]
                    module.to("cpu")

    def _to_device(self, module: torch.nn.Module) -> None:
        identity = id(module)
        if getattr(module, GROUP_OFFLOADED, None) is not None:
            return  # its weights stay in system memory; hooks bring each block while it runs
        if identity in self._on_device:
            self._on_device.move_to_end(identity)
            return
        budget = self.policy.memory_budget()
        if budget is not None and getattr(module, TRANSIENT, False) and _module_bytes(module) > budget:
            offload_blocks(module, self.policy.device)
            return
        if budget is not None:
            needed = _module_bytes(module)
            held = sum(_module_bytes(m) for m in self._on_device.values())
            while self._on_device and (held + needed > budget or self.policy.low_vram):
                _, evicted = self._on_device.popitem(last=False)
                held -= _module_bytes(evicted)
                evicted.to("cpu")
        module.to(self.policy.device)
        self._on_device[identity] = module
        if self.policy.speed == "fast":
            from studio.runtime.speed import accelerate

            accelerate(module, self.policy)

    def free_memory(self, keep: Sequence[torch.nn.Module] = ()) -> None:
        """Move every model off the GPU (but those in ``keep``, which a node is using) and drop
        cached allocations (after out-of-memory)."""
        kept = {id(module) for module in keep}
        with self._lock:
            for identity, module in list(self._on_device.items()):
                if identity in kept:
                    continue
                if self.policy.is_gpu:
                    module.to("cpu")
                del self._on_device[identity]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
