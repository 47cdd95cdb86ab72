"""The speed option (``speed: fast`` in the settings, ``studio --speed fast``): what makes a
denoiser step faster on a GPU without changing the model.

- **Regional compilation**: ``torch.compile`` of the denoiser's repeated blocks only
  (diffusers' ``compile_repeated_blocks``: the UNet's transformer blocks, FLUX's double and
  single blocks; and here also the UNet's ResNet blocks and SD3's joint blocks), so compiling
  takes seconds, not the minute a whole-model compile takes. Each block class compiles once and
  every instance reuses it.
- **Compile cache on disk**: inductor's FX-graph and AOTAutograd caches in the user cache
  folder (``TORCHINDUCTOR_CACHE_DIR``), keyed by graph, shapes and dtypes, so a model at a size
  already seen compiles from the cache in the next session.
- **Channels-last** memory for convolutional denoisers (the UNet), which cuDNN's fp16/bf16
  kernels prefer; **cuDNN autotuning** (``cudnn.benchmark``) and TF32 matmuls.
- **Attention**: diffusers' attention already calls ``scaled_dot_product_attention``, which
  picks flash or memory-efficient kernels where the GPU has them; nothing more to switch on.

Applied by the model manager when a denoiser first goes to the GPU. On the CPU the option
changes nothing: inductor's C++ compile there costs more than a few steps save (measured by
``bench/gpu_check.py``).
"""

from __future__ import annotations

import os

import torch

from studio.runtime.device import DevicePolicy

# Block classes compiled per denoiser class, beyond diffusers' own ``_repeated_blocks``.
EXTRA_BLOCKS = {"UNet2DConditionModel": ("ResnetBlock2D",), "SD3Transformer2DModel": ("JointTransformerBlock",)}
ACCELERATED = "studio_accelerated"


def denoiser_core(module: torch.nn.Module) -> torch.nn.Module | None:
    """The diffusers model inside a denoiser (the module itself, or a FLUX/SD3 wrapper's
    transformer), when it has blocks to compile."""
    for candidate in (module, getattr(module, "transformer", None)):
        if candidate is not None and repeated_block_names(candidate):
            return candidate
    return None


def repeated_block_names(model: torch.nn.Module) -> tuple[str, ...]:
    names = tuple(getattr(model, "_repeated_blocks", None) or ())
    return names + EXTRA_BLOCKS.get(type(model).__name__, ())


def use_disk_cache(folder: os.PathLike[str] | str | None = None) -> str:
    """Inductor's caches in ``folder`` (default: the user cache folder's ``compile``)."""
    import platformdirs

    path = os.fspath(folder) if folder else os.path.join(platformdirs.user_cache_dir("seed-studio"), "compile")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", path)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def accelerate(module: torch.nn.Module, policy: DevicePolicy, compile_on_cpu: bool = False,
               backend: str = "inductor") -> bool:
    """Apply the speed option to a denoiser once (in place: the module stays the same object,
    so the model manager's moves and LoRA patches keep working). True when it compiled."""
    if policy.speed != "fast" or getattr(module, ACCELERATED, False):
        return False
    core = denoiser_core(module)
    if core is None:
        return False
    setattr(module, ACCELERATED, True)
    if policy.device.type != "cuda" and not compile_on_cpu:
        return False
    if policy.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if any(isinstance(layer, torch.nn.Conv2d) for layer in core.modules()):
        core.to(memory_format=torch.channels_last)
    use_disk_cache()
    names = set(repeated_block_names(core))
    for block in core.modules():
        if type(block).__name__ in names:
            block.compile(fullgraph=False, dynamic=False, backend=backend)
    return True

