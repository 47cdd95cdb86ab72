"""Tiled model upscaling of a 1024² image to 4096² (×4): time, tiles, and peak memory.

Uses a small random-weight Real-ESRGAN-compact (SRVGG) ×4 network, so the figures show the
tiling machinery, not a real model's speed.

    .venv/bin/python bench/upscale_bench.py [--size 1024] [--tile 512]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from studio.runtime.upscale import UpscaleModel, import_spandrel, upscale_tiled  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=512)
    args = parser.parse_args()
    spandrel = import_spandrel()
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact

    torch.manual_seed(0)
    descriptor = spandrel.ModelLoader().load_from_state_dict(
        SRVGGNetCompact(num_feat=16, num_conv=4, upscale=4).state_dict())
    model = UpscaleModel(descriptor.eval(), "bench")
    image = torch.rand(1, args.size, args.size, 3)
    tiles = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    result = upscale_tiled(model, image, args.tile, 32, lambda done, total: tiles.append(total))
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{args.size}² → {result.shape[2]}×{result.shape[1]} in {tiles[-1]} tiles of {args.tile}²: "
          f"{seconds:.1f} s; output {result.numel() * 4 / 2**20:.0f} MiB; "
          f"process peak {peak / 1024:.0f} MiB (was {before / 1024:.0f} MiB before the upscale)")


if __name__ == "__main__":
    main()
