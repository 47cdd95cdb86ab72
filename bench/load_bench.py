"""Model loading: the demo model (a 15 MB diffusers folder) and a full-size SD 1.5 single file
(LDM layout, fp16, 2.1 GB: the real 860M-param UNet, VAE and CLIP with placeholder weights),
each loaded by Seed Studio's loader and compared with the time to just read the same weights
(safetensors.torch.load_file with every tensor read into memory: its tensors are memory mapped,
so without reading them it measures nothing). Imports are done before timing.

Goals (issue 24): the demo model ≤ 0.3 s; the SD 1.5 file ≤ 1.5 × load_file of it.

    .venv/bin/python bench/load_bench.py [--repeat 3] [--skip-sd15] [--models DIR]

The SD 1.5 file is written once into --models (default: a folder in the temporary directory)
and reused by later runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio.startup import RuntimeImport  # noqa: E402

RuntimeImport().wait()

import torch  # noqa: E402

from studio.runtime.checkpoints import CONFIGS_DIR, load_diffusers_folder, load_single_file  # noqa: E402
from studio.runtime.device import DevicePolicy  # noqa: E402
from studio.settings import DEMO_MODELS_DIR  # noqa: E402


def timed(function, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        gc.collect()
        began = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - began)
        del result
    return times


def write_sd15(target: Path) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.runtime.ldm_export import checkpoint_to_ldm
    from studio.runtime.meta_loading import build_empty, read_config

    config = CONFIGS_DIR / "sd15"
    parts = [build_empty(UNet2DConditionModel.from_config, read_config(config / "unet")),
             build_empty(AutoencoderKL.from_config, read_config(config / "vae")),
             build_empty(CLIPTextModel, CLIPTextConfig.from_dict(read_config(config / "text_encoder")),
                         transformers=True)]
    generator = torch.Generator().manual_seed(0)
    for part in parts:
        part.to_empty(device="cpu")
        with torch.no_grad():
            for parameter in part.parameters():  # placeholder values: loading does not read them
                parameter.copy_(torch.rand(parameter.shape[-1:], generator=generator).expand_as(parameter))
    unet, vae, encoder = (part.half() for part in parts)
    state = checkpoint_to_ldm("sd15", unet, vae, [encoder])
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-sd15", action="store_true", help="only the demo model")
    parser.add_argument("--models", default=str(Path(tempfile.gettempdir()) / "seed-studio-load-bench"))
    args = parser.parse_args()
    policy = DevicePolicy(torch.device("cpu"), torch.float32)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
          f"{os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")

    demo = DEMO_MODELS_DIR / "checkpoints" / "seed-shapes"
    times = timed(lambda: load_diffusers_folder(demo, policy, "bench"), args.repeat)
    print(f"demo model (diffusers folder, {sum(p.stat().st_size for p in demo.rglob('*')) / 1e6:.0f} MB): "
          f"first {times[0]:.3f} s, best {min(times):.3f} s  (goal ≤ 0.3 s)")

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    def with_from_pretrained():
        options = {"local_files_only": True, "torch_dtype": policy.dtype}
        return (UNet2DConditionModel.from_pretrained(demo, subfolder="unet", **options),
                AutoencoderKL.from_pretrained(demo, subfolder="vae", **options),
                CLIPTextModel.from_pretrained(demo / "text_encoder", **options))
    reference = timed(with_from_pretrained, args.repeat)
    print(f"  the same three models by from_pretrained: best {min(reference):.3f} s")

    if args.skip_sd15:
        return
    single = Path(args.models) / "sd15-placeholder.safetensors"
    if not single.is_file():
        began = time.perf_counter()
        write_sd15(single)
        print(f"wrote {single} ({single.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - began:.0f} s")
    from safetensors.torch import load_file

    half = DevicePolicy(torch.device("cpu"), torch.float16)
    copied = timed(lambda: {name: tensor.clone() for name, tensor in load_file(str(single)).items()}, args.repeat)
    converted = timed(lambda: {name: tensor.float() for name, tensor in load_file(str(single)).items()},
                      args.repeat)
    as_stored = timed(lambda: load_single_file(single, half, "bench"), args.repeat)

    def load_and_read():  # the memory-mapped weights then read once, as the first render reads them
        checkpoint = load_single_file(single, half, "bench")
        for module in (checkpoint.model.unet, checkpoint.vae.vae, *checkpoint.clip.encoders):
            for tensor in module.state_dict().values():
                tensor.clone()
        return checkpoint
    read_too = timed(load_and_read, args.repeat)
    loading = timed(lambda: load_single_file(single, policy, "bench"), args.repeat)
    print(f"SD 1.5 single file ({single.stat().st_size / 1e9:.2f} GB, fp16), best of {args.repeat}:")
    print(f"  safetensors.torch.load_file, every tensor read into memory: {min(copied):.2f} s")
    print(f"  Seed Studio's loader in fp16 (the file's dtype, as on a GPU; detect, convert names, build, assign): "
          f"{min(as_stored):.2f} s = {min(as_stored) / min(copied):.2f} × load_file  (goal ≤ 1.5 ×)")
    print(f"  the same, then every weight read into memory: {min(read_too):.2f} s = "
          f"{min(read_too) / min(copied):.2f} × load_file")
    print(f"  load_file with every tensor converted to fp32 (what the CPU's fp32 needs): {min(converted):.2f} s")
    print(f"  Seed Studio's loader in fp32: {min(loading):.2f} s = {min(loading) / min(converted):.2f} × that")


if __name__ == "__main__":
    main()
