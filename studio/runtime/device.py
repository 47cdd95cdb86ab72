"""Which device and number format models run in: CUDA, then Apple's MPS, then the CPU;
half precision on a GPU (bf16 where the GPU has it), full precision on the CPU."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DevicePolicy:
    """Where models compute, and in which precision."""

    device: torch.device
    dtype: torch.dtype
    # Keep only the model in use on the GPU; the rest wait in system memory.
    low_vram: bool = False
    # Bytes of model weights the device may hold at once; None works it out from the GPU.
    budget_bytes: int | None = None
    # Let VAEs compute in fp16 (for the fixed fp16 VAEs); by default they use bf16 or fp32,
    # since SDXL's VAE overflows in fp16 (see studio.runtime.vae_codec).
    fp16_vae: bool = False
    # "fast": compile the denoiser's repeated blocks, channels-last, cuDNN autotuning on a GPU
    # (studio.runtime.speed); "default": eager, as is.
    speed: str = "default"

    @classmethod
    def detect(cls, prefer: str | None = None, low_vram: bool = False) -> DevicePolicy:
        """The best device present (or ``prefer``: "cuda", "mps", "cpu")."""
        if prefer:
            device = torch.device(prefer)
        elif torch.cuda.is_available():
            device = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device.type == "mps":
            dtype = torch.float16
        else:
            dtype = torch.float32
        return cls(device, dtype, low_vram)

    @property
    def is_gpu(self) -> bool:
        return self.device.type in ("cuda", "mps")

    def memory_budget(self) -> int | None:
        """Bytes of GPU memory models may hold at once (None on the CPU: no limit)."""
        if self.budget_bytes is not None:
            return self.budget_bytes
        if self.device.type != "cuda":
            return None
        free, total = torch.cuda.mem_get_info(self.device)
        # Leave room for activations: a 1024² SDXL step needs a few GB beyond the weights.
        return int(total * (0.35 if self.low_vram else 0.75))
