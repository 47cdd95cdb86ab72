"""How close Seed Studio's samplers come to ComfyUI's, and how fast they run.

For every sampler × scheduler × (txt2img, img2img) that ComfyUI produced a reference for
(``tests/data/comfy_reference``, made by ``bench/comfy_reference.py`` with real ComfyUI on a
tiny SD1.5 checkpoint), renders the same latent with Seed Studio's sampler core and prints:
the largest latent difference relative to the latent's range, the PSNR of the decoded
8-bit picture against ComfyUI's own picture (where one is stored), and the time per step of
both cores on this CPU (ComfyUI's as recorded in meta.json, one thread; ours measured here).

    .venv/bin/python bench/parity_bench.py                 # every case
    .venv/bin/python bench/parity_bench.py --sampler euler --sampler uni_pc_bh2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", action="append", help="only these samplers (repeatable)")
    parser.add_argument("--scheduler", action="append", help="only these schedulers (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (ComfyUI's figures used 1)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from tests.runtime import test_comfy_parity as parity

    torch.set_num_threads(args.threads)
    per_sampler = parity.META.get("per_sampler", {})
    rows = []
    print(f"ComfyUI {parity.META['comfyui']['commit'][:10]} vs Seed Studio; "
          f"{parity.META['settings']['steps']} steps, cfg {parity.META['settings']['cfg']}")
    print(f"{'mode':8} {'sampler':32} {'scheduler':17} {'latent Δ':>9} {'PSNR dB':>8} {'ms/step ours':>13} "
          f"{'ms/step Comfy':>14}")
    parity._checkpoint()
    for mode, sampler, scheduler in parity.CASES:
        if args.sampler and sampler not in args.sampler or args.scheduler and scheduler not in args.scheduler:
            continue
        if sampler not in parity.SAMPLERS:
            rows.append({"mode": mode, "sampler": sampler, "scheduler": scheduler, "missing": True})
            print(f"{mode:8} {sampler:32} {scheduler:17} {'(not implemented)':>9}")
            continue
        expected = parity.LATENTS[f"{mode}/{sampler}/{scheduler}"]
        start = time.perf_counter()
        ours = parity._render(mode, sampler, scheduler)
        seconds = time.perf_counter() - start
        steps = parity.META["settings"]["steps"]
        difference = float((ours - expected).abs().max() / expected.abs().max())
        png = parity.DATA / "png" / f"{mode}-{sampler}-{scheduler}.png"
        psnr = None
        if png.is_file():
            psnr = parity.psnr(parity._picture(ours), np.asarray(Image.open(png).convert("RGB")))
        comfy = per_sampler.get(sampler, {}).get("seconds_per_step_median")
        row = {"mode": mode, "sampler": sampler, "scheduler": scheduler, "latent_relative_difference": difference,
               "psnr_db": psnr, "ms_per_step": 1000 * seconds / steps,
               "comfyui_ms_per_step": None if comfy is None else 1000 * comfy}
        rows.append(row)
        shown = "—" if psnr is None else ("inf" if psnr == float("inf") else f"{psnr:.1f}")
        comfy_shown = "—" if comfy is None else f"{1000 * comfy:.1f}"
        print(f"{mode:8} {sampler:32} {scheduler:17} {difference:9.2e} {shown:>8} {row['ms_per_step']:13.1f} "
              f"{comfy_shown:>14}")
    measured = [row for row in rows if not row.get("missing")]
    pictures = [row["psnr_db"] for row in measured if row["psnr_db"] is not None]
    if measured:
        worst_latent = max(row["latent_relative_difference"] for row in measured)
        summary = f"\n{len(measured)} cases; worst latent difference {worst_latent:.2e}"
        # The PSNR part only when some case decoded pictures (the latent line is printed either way).
        if pictures:
            summary += f"; worst PSNR {min(pictures):.1f} dB over {len(pictures)} pictures"
        print(summary)
    missing = sorted({row["sampler"] for row in rows if row.get("missing")})
    if missing:
        print("not implemented:", ", ".join(missing))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
