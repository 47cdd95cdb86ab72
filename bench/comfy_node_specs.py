"""ComfyUI's node declarations, for the test that Seed Studio's nodes take the same inputs.

Run with ComfyUI's own venv (see DEVELOPERS.md, "ComfyUI as a reference"); it loads ComfyUI's
built-in nodes headless (``nodes.init_extra_nodes``) and writes, for every node type, its
inputs in declaration order (required, then optional: name, type or the list of choices,
and the widget options default/min/max/step) and its outputs (name, type), to
``tests/data/comfy_reference/node_specs.json`` with the ComfyUI commit. The test
(tests/test_comfy_node_specs.py) never needs ComfyUI.

    cd /tmp/ComfyUI && HF_HUB_OFFLINE=1 /tmp/comfy-venv/bin/python /path/to/seed-studio/bench/comfy_node_specs.py

(spandrel and kornia installed into that venv with ``--no-deps`` so the upscaler and Canny
nodes load too.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "comfy_reference" / "node_specs.json"
COMMIT = "618b803d314a525faca8f8163d85eaa9ebc1d774"


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def describe(cls) -> dict:
    declared = cls.INPUT_TYPES()
    inputs = []
    for group in ("required", "optional"):
        for name, spec in (declared.get(group) or {}).items():
            kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
            options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
            entry = {"name": name, "group": group}
            if isinstance(kind, (list, tuple)):
                entry["choices"] = _plain(kind)
            else:
                entry["type"] = str(kind)
            for key in ("default", "min", "max", "step", "multiline"):
                if key in options:
                    entry[key] = _plain(options[key])
            if options.get("control_after_generate"):
                entry["control_after_generate"] = True
            inputs.append(entry)
    names = getattr(cls, "RETURN_NAMES", None) or getattr(cls, "RETURN_TYPES", ())
    outputs = [{"name": str(n), "type": str(t)} for n, t in zip(names, getattr(cls, "RETURN_TYPES", ()), strict=True)]
    return {"inputs": inputs, "outputs": outputs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, default=Path("/tmp/ComfyUI"))
    options = parser.parse_args()
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, str(options.comfyui.resolve()))
    # ComfyUI's top-level `utils` package first: a module it imports later puts comfy/ on the
    # path, after which `utils` would resolve to comfy/utils.py and the server's imports fail.
    import utils.install_util  # noqa: F401

    # isort: split
    import comfy.options

    comfy.options.enable_args_parsing()
    import nodes

    result = nodes.init_extra_nodes(init_custom_nodes=False)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    specs, failed = {}, {}
    for type_name, cls in sorted(nodes.NODE_CLASS_MAPPINGS.items()):
        try:
            specs[type_name] = describe(cls)
        except Exception as error:  # noqa: BLE001 - recorded
            failed[type_name] = f"{type(error).__name__}: {error}"
    OUT.write_text(json.dumps({"comfyui_commit": COMMIT, "failed": failed, "nodes": specs}, indent=0,
                              sort_keys=True) + "\n")
    print(f"{len(specs)} node types written to {OUT} ({len(failed)} could not describe themselves)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
