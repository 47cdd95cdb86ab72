"""Reference data from real ComfyUI for image prompts (CI never needs ComfyUI): what its CLIP
vision encoder and its unCLIP conditioning make of fixed inputs, which
``tests/runtime/test_clip_vision_parity.py`` compares Seed Studio's with.

Writes ``tests/data/comfy_reference/unclip.safetensors``:

* ``tower.*``: a tiny CLIP vision tower (random weights, 32 wide, 3 layers, 16-pixel
  patches, projection to 16) in OpenCLIP's layout (``visual.*``), and ``tower_config`` in
  the file's metadata (a transformers ``CLIPVisionConfig``; ComfyUI only *detects* the
  published towers, so it is given the config explicitly, as ``ClipVisionModel`` takes one).
  ComfyUI runs with ``--fp32-text-enc``: by default it stores CLIP vision weights in fp16
  even on the CPU, which moves the outputs by ~5e-4; Seed Studio keeps float32 there.
* ``picture``: a 1×90×130×3 test picture; ``encode.{center|none}.{image_embeds|
  last_hidden_state|penultimate_hidden_states}``: ``ClipVisionModel.encode_image`` of it, the
  tower converted by ComfyUI's own ``convert_to_transformers``.
* ``adm.<case>``: ``comfy.model_base.unclip_adm`` for the cases of :data:`ADM_CASES`, with a
  ``CLIPEmbeddingNoiseAugmentation`` configured as ``SD21UnclipL/H`` configure theirs (and,
  for ``sdxl_revision``, as ``model_base.SDXL`` does, cut to 1280 as ``sdxl_pooled`` cuts
  it); ``adm.<case>.embeds.<i>`` the image embeddings each entry held.

Run it with ComfyUI's venv (DEVELOPERS.md, "ComfyUI as a reference"), from the repository
root; under a second::

    HF_HUB_OFFLINE=1 /tmp/comfy-venv/bin/python bench/comfy_unclip_reference.py --comfyui /tmp/ComfyUI
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "comfy_reference" / "unclip.safetensors"
TOWER = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3, image_size=224,
             patch_size=16, projection_dim=16, hidden_act="gelu", layer_norm_eps=1e-5, num_channels=3,
             model_type="clip_vision_model")
# name: (embedding width, [(pictures, strength, noise_augmentation), …], sampler seed, merge level)
ADM_CASES = {
    "one_picture": (16, [(1, 0.7, 0.3)], 42, 0.05),
    "clean_picture": (16, [(1, 1.0, 0.0)], 3, 0.05),
    "two_entries": (16, [(1, 1.0, 0.0), (1, 0.5, 0.6)], 1234, 0.05),
    "batch_of_two": (16, [(2, 1.2, 0.1)], 5, 0.05),
    "sdxl_revision": (1280, [(1, 1.0, 0.2)], 42, 0.0),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, default=Path("/tmp/ComfyUI"), help="ComfyUI source tree")
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()

    # ComfyUI keeps CLIP vision weights in fp16 even on the CPU (computing in float32); in
    # float32, as Seed Studio keeps them on the CPU, the comparison is of the computation alone.
    sys.argv = [sys.argv[0], "--cpu", "--fp32-text-enc"]
    sys.path.insert(0, str(options.comfyui.resolve()))
    import comfy.options

    comfy.options.enable_args_parsing()
    import tempfile

    import comfy.clip_vision
    import comfy.model_base
    import torch
    from comfy.ldm.modules.encoders.noise_aug_modules import CLIPEmbeddingNoiseAugmentation
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    config = CLIPVisionConfig(**TOWER)
    source = CLIPVisionModelWithProjection(config)
    state = source.state_dict()
    # The OpenCLIP layout, written out by hand (ComfyUI converts it back).
    tower = {"visual.class_embedding": state["vision_model.embeddings.class_embedding"],
             "visual.conv1.weight": state["vision_model.embeddings.patch_embedding.weight"],
             "visual.positional_embedding": state["vision_model.embeddings.position_embedding.weight"],
             "visual.ln_pre.weight": state["vision_model.pre_layrnorm.weight"],
             "visual.ln_pre.bias": state["vision_model.pre_layrnorm.bias"],
             "visual.ln_post.weight": state["vision_model.post_layernorm.weight"],
             "visual.ln_post.bias": state["vision_model.post_layernorm.bias"],
             "visual.proj": state["visual_projection.weight"].T}
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for index in range(TOWER["num_hidden_layers"]):
        source_prefix, target = f"vision_model.encoder.layers.{index}.", f"visual.transformer.resblocks.{index}."
        for kind in ("weight", "bias"):
            tower[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{source_prefix}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for theirs, ours in names.items():
                tower[f"{target}{theirs}.{kind}"] = state[f"{source_prefix}{ours}.{kind}"]
    out = {f"tower.{key}": value.contiguous().clone() for key, value in tower.items()}

    with tempfile.TemporaryDirectory() as temp:
        config_path = Path(temp) / "config.json"
        config_path.write_text(json.dumps(TOWER))
        comfy_tower = comfy.clip_vision.ClipVisionModel(str(config_path))
        converted = comfy.clip_vision.convert_to_transformers(dict(tower), "visual.")
        missing, _ = comfy_tower.load_sd(converted)
        if missing:
            raise SystemExit(f"ComfyUI's tower misses {missing}")
    y = torch.arange(90, dtype=torch.float32)[:, None, None]
    x = torch.arange(130, dtype=torch.float32)[None, :, None]
    c = torch.arange(3, dtype=torch.float32)[None, None, :]
    picture = (torch.sin(0.11 * x + 0.07 * y + 2.1 * c) * 0.5 + 0.5)[None].contiguous()
    out["picture"] = picture
    for crop in ("center", "none"):
        encoded = comfy_tower.encode_image(picture, crop=crop == "center")
        for field in ("image_embeds", "last_hidden_state", "penultimate_hidden_states"):
            out[f"encode.{crop}.{field}"] = encoded[field].float().contiguous()

    class Output:  # what unclip_adm reads of a CLIP vision output
        def __init__(self, image_embeds):
            self.image_embeds = image_embeds

    generator = torch.Generator().manual_seed(7)
    for name, (width, entries, seed, merge) in ADM_CASES.items():
        augmentor = CLIPEmbeddingNoiseAugmentation(
            noise_schedule_config={"timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}, timestep_dim=width)
        conditioning = []
        for index, (pictures, strength, noise_augmentation) in enumerate(entries):
            embeds = torch.randn(pictures, width, generator=generator)
            out[f"adm.{name}.embeds.{index}"] = embeds
            conditioning.append({"clip_vision_output": Output(embeds), "strength": strength,
                                 "noise_augmentation": noise_augmentation})
        # As SD21UNCLIP.encode_adm and sdxl_pooled call it: the sampler's seed − 10.
        adm = comfy.model_base.unclip_adm(conditioning, torch.device("cpu"), augmentor, merge, seed - 10)
        out[f"adm.{name}"] = (adm[:, :1280] if name == "sdxl_revision" else adm).contiguous()

    metadata = {"tower_config": json.dumps(TOWER), "adm_cases": json.dumps(ADM_CASES),
                "torch": torch.__version__,
                "comfyui": "618b803d314a525faca8f8163d85eaa9ebc1d774 (pollockjj/ComfyUI, ComfyUI 0.8.0)"}
    options.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(options.out), metadata=metadata)
    print(f"wrote {options.out} ({len(out)} tensors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
