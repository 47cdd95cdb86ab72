from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.graph.files import open_workflow, workflow_from_bytes
from studio.graph.png import read_png_text
from studio.runtime.models import ModelFolders
from studio.settings import DEMO_MODELS_DIR
from tests.cli.test_cli import studio
from tests.graph.test_comfy import png_carrying

FILES = Path(__file__).resolve().parent.parent / "graph" / "comfy_files"


def test_a_comfyui_workflow_renders_and_its_png_opens_in_comfyui_too(tmp_path, registry):
    code, out, err = studio("render", str(FILES / "subgraph_ui.json"), "--out", str(tmp_path))
    assert code == 0, err
    [path] = [Path(line) for line in out.splitlines()]
    texts = read_png_text(path.read_bytes())
    assert {"seed-studio-workflow", "prompt", "workflow"} <= set(texts)
    prompt = json.loads(texts["prompt"])
    assert {node["class_type"] for node in prompt.values()} == {"LoadImage", "ImageInvert", "ImageBlend", "SaveImage"}
    ui = json.loads(texts["workflow"])
    # the subgraph comes back as its instance node and its definition
    assert len(ui["nodes"]) == 3 and len(ui["links"]) == 2 and len(ui["definitions"]["subgraphs"]) == 1
    # ComfyUI's chunks alone bring the same graph back.
    ours, _ = open_workflow(path, registry.spec)
    theirs, _ = workflow_from_bytes(png_carrying({"workflow": texts["workflow"]}), registry.spec, "x.png")
    from_prompt, _ = workflow_from_bytes(png_carrying({"prompt": texts["prompt"]}), registry.spec, "y.png")
    def shape(workflow):
        # Expanded subgraph ids ("12:1") become plain numbers in ComfyUI's files.
        return sorted((node.type, tuple(sorted(node.values.items())), tuple(sorted(node.links)))
                      for node in workflow.nodes.values())
    assert shape(theirs) == shape(ours) == shape(from_prompt)


def test_validate_names_missing_node_types_and_missing_models_with_their_folder(tmp_path):
    models = tmp_path / "models"
    (models / "checkpoints" / "SD15").mkdir(parents=True)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"model_roots": [str(models)]}))
    # The placeholder feeds only a muted preview and the loader feeds nothing: as in ComfyUI,
    # what leads to no output is named but does not make the file invalid.
    code, out, _ = studio("--config", str(config), "validate", str(FILES / "features_ui.json"))
    assert code == 0
    assert "valid (9 nodes, 2 warnings)" in out  # the primitive is kept as a PrimitiveInt
    assert "warning: node #8 (UltimateSDUpscale): there is no node type 'UltimateSDUpscale'" in out
    folders = f"{models / 'checkpoints'}, {DEMO_MODELS_DIR / 'checkpoints'}"
    assert (f"warning: node #11 (CheckpointLoaderSimple), input 'ckpt_name': model file "
            f"'SD15\\\\dreamshaper_8.safetensors' is not in the checkpoints folder ({folders})") in out
    assert "note: 2 reroute node(s) became reroute points on the wires" in out

    # Unmuted, the preview makes the placeholder something a run needs: an error.
    document = json.loads((FILES / "features_ui.json").read_text())
    next(node for node in document["nodes"] if node["id"] == 9)["mode"] = 0
    unmuted = tmp_path / "unmuted.json"
    unmuted.write_text(json.dumps(document))
    (models / "checkpoints" / "SD15" / "dreamshaper_8.safetensors").write_bytes(b"")
    code, out, _ = studio("--config", str(config), "validate", "--json", str(unmuted))
    assert code == 1
    [result] = json.loads(out)
    assert result["valid"] is False
    assert [(p["kind"], p["severity"], p["node_type"]) for p in result["problems"]] == [
        ("unknown_type", "error", "UltimateSDUpscale")]
    # The file is there now, so it is no longer missing; being empty, it is no checkpoint either.
    assert [(w["kind"], w["node_id"], w["input"]) for w in result["warnings"]] == [("advice", "11", "ckpt_name")]
    assert "dreamshaper_8.safetensors: damaged or not a safetensors file" in result["warnings"][0]["message"]
    assert "2 reroute node(s) became reroute points on the wires" in result["notes"]


def test_convert_between_all_formats(tmp_path, registry):
    native = tmp_path / "graph.json"
    comfy = tmp_path / "comfy.json"
    api = tmp_path / "api.json"
    assert studio("convert", str(FILES / "txt2img_ui.json"), str(native))[0] == 0
    assert studio("convert", str(native), str(comfy), "--to", "comfy")[0] == 0
    code, out, err = studio("convert", str(native), str(api), "--to", "comfy-api")
    assert code == 0 and "placeholders" not in err  # every node of this file is known
    assert json.loads(native.read_text())["format"] == "seed-studio-workflow"
    assert len(json.loads(comfy.read_text())["nodes"]) == 7
    assert json.loads(api.read_text())["3"]["inputs"]["seed"] == 156680208700286
    code, _, err = studio("convert", str(native), str(api), "--to", "comfy-api")
    assert code == 2 and "--force" in err
    original = api.read_text()
    assert studio("convert", str(native), str(api), "--to", "comfy-api", "--force")[0] == 0
    assert api.read_text() == original


def test_extra_model_paths_yaml_is_read_as_comfyui_reads_it(tmp_path):
    install = tmp_path / "ComfyUI"
    (install / "models" / "loras" / "styles").mkdir(parents=True)
    (install / "models" / "loras" / "styles" / "ink.safetensors").write_bytes(b"")
    (tmp_path / "more-loras").mkdir()
    (tmp_path / "more-loras" / "film.safetensors").write_bytes(b"")
    (tmp_path / "more-loras" / "notes.txt").write_text("not a model")
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text("comfyui:\n  base_path: ComfyUI/\n  is_default: true\n  loras: |\n    models/loras\n"
                         "    ../more-loras\n  unet: models/unet/\n")
    folders = ModelFolders.from_roots([], [yaml_file])
    assert folders.list("loras") == ["film.safetensors", "styles/ink.safetensors"]
    assert folders.find("loras", "styles\\ink.safetensors") is not None
    assert folders.find("loras", "../more-loras/film.safetensors") is None
    assert folders.folders_for("diffusion_models") == [install / "models" / "unet"]


@pytest.mark.parametrize("name", ["txt2img_ui.json", "features_ui.json", "subgraph_ui.json", "primitives_ui.json",
                                  "txt2img_api.json"])
@pytest.mark.parametrize("to", ["comfy", "comfy-api"])
def test_converting_a_converted_file_again_gives_the_same_bytes(tmp_path, name, to):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert studio("convert", str(FILES / name), str(first), "--to", to)[0] == 0
    assert studio("convert", str(first), str(second), "--to", to)[0] == 0
    assert second.read_bytes() == first.read_bytes()


def test_convert_says_which_subgraph_it_had_to_write_flat(tmp_path, registry):
    from studio.graph.format import save

    workflow, _ = open_workflow(FILES / "subgraph_ui.json", registry.spec)
    workflow.remove_node("12:1")
    save(workflow, tmp_path / "edited.json")
    code, out, err = studio("convert", str(tmp_path / "edited.json"), str(tmp_path / "back.json"), "--to", "comfy")
    assert code == 0, err
    assert "subgraph 'Half negative' (node 12) was written as plain nodes: its node 1 (ImageInvert) was deleted" in err
