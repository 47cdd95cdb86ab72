from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli import main
from studio.graph import Workflow, dumps, load, save
from studio.graph.files import open_workflow
from studio.graph.model import NodeMode
from studio.graph.png import WORKFLOW_TEXT_KEY, read_png_text
from studio.settings import PROJECT_ROOT, WORKFLOWS_DIR

DEFAULT = str(WORKFLOWS_DIR / "film_grain.json")


def studio(*args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_render_writes_a_png_that_carries_the_workflow(tmp_path, registry):
    code, out, err = studio("render", DEFAULT, "--out", str(tmp_path))
    assert code == 0, err
    [path] = [Path(line) for line in out.splitlines()]
    assert path.is_file() and tmp_path in path.parents
    texts = read_png_text(path.read_bytes())
    assert dumps(load(DEFAULT)) == texts[WORKFLOW_TEXT_KEY]
    # Opening the PNG restores the graph that made it.
    assert dumps(open_workflow(path, registry.spec)[0]) == dumps(load(DEFAULT))


def test_render_json_lists_executed_and_cached_nodes_and_timings(tmp_path):
    code, out, _ = studio("render", DEFAULT, "--out", str(tmp_path), "--json")
    assert code == 0
    report = json.loads(out)
    [run] = report["runs"]
    assert run["status"] == "ok"
    assert run["executed"] == ["1", "2", "3", "4"] and run["cached"] == []
    assert set(run["seconds"]) == {"1", "2", "3", "4"}
    assert Path(run["outputs"][0]["path"]).is_file()


def test_a_seed_sweep_runs_upstream_once_and_the_late_node_three_times(tmp_path, registry):
    code, out, _ = studio("render", DEFAULT, "--out", str(tmp_path), "--json",
                          "--sweep", "Film grain.seed=1,2,3")
    assert code == 0
    runs = json.loads(out)["runs"]
    assert [run["overrides"] for run in runs] == [{"Film grain.seed": v} for v in (1, 2, 3)]
    executed = [node for run in runs for node in run["executed"]]
    assert executed.count("1") == 1 and executed.count("2") == 1
    assert executed.count("3") == 3 and executed.count("4") == 3
    assert all(run["cached"] == ["1", "2"] for run in runs[1:])
    files = sorted((tmp_path / "film_grain").iterdir())
    assert len(files) == 3 and len({f.read_bytes() for f in files}) == 3
    # Each PNG carries the workflow with its own seed.
    seeds = sorted(open_workflow(f, registry.spec)[0].nodes["3"].values["seed"] for f in files)
    assert seeds == [1, 2, 3]


def test_sweeps_multiply_and_ranges_expand(tmp_path):
    code, out, _ = studio("render", DEFAULT, "--out", str(tmp_path), "--json",
                          "--sweep", "3.seed=5..6", "--sweep", "Enlarge.scale_by=0.25,0.5")
    assert code == 0
    runs = json.loads(out)["runs"]
    assert [run["overrides"] for run in runs] == [
        {"3.seed": 5, "Enlarge.scale_by": 0.25}, {"3.seed": 5, "Enlarge.scale_by": 0.5},
        {"3.seed": 6, "Enlarge.scale_by": 0.25}, {"3.seed": 6, "Enlarge.scale_by": 0.5}]
    assert runs[2]["cached"] == ["1", "2"]  # scale 0.25 again: only the grain re-runs


def test_a_save_prefix_that_climbs_out_still_writes_inside_the_output_folder(tmp_path):
    out_dir = tmp_path / "deep" / "out"
    code, out, err = studio("render", DEFAULT, "--out", str(out_dir), "--set", "Save.filename_prefix=../../x")
    assert code == 0, err
    [path] = [Path(line) for line in out.splitlines()]
    assert out_dir.resolve() in path.resolve().parents
    assert not (tmp_path / "x_00001_.png").exists()


def broken_workflow(path: Path) -> None:
    workflow = Workflow()
    workflow.add_node("EmptyImage", {"width": 999999}, title="Huge")          # 1: out of range
    workflow.add_node("DreamMachine", {})                                      # 2: unknown type
    workflow.add_node("LoadImage", {"image": "seed_sample.png"})               # 3
    workflow.add_node("ImageInvert")                                           # 4: gets a MASK
    workflow.add_node("ImageInvert")                                           # 5 ┐ loop
    workflow.add_node("ImageInvert")                                           # 6 ┘
    workflow.add_node("SaveImage")                                             # 7
    workflow.connect("3", "MASK", "4", "image")
    workflow.connect("5", "IMAGE", "6", "image")
    workflow.connect("6", "IMAGE", "5", "image")
    workflow.connect("1", "IMAGE", "7", "images")
    save(workflow, path)


def test_validate_reports_every_problem_naming_nodes_and_exits_non_zero(tmp_path):
    path = tmp_path / "broken.json"
    broken_workflow(path)
    code, out, _ = studio("validate", str(path))
    assert code == 1
    # Only the image the save node needs is an error; the rest leads to no output (warnings).
    assert "1 problem\n  node #1 (EmptyImage), input 'width': 999999 is above the maximum 16384" in out
    assert "warning: node #2 (DreamMachine): there is no node type 'DreamMachine'" in out
    assert "warning: node #4 (ImageInvert), input 'image'" in out and "MASK, but image needs IMAGE" in out
    assert "warning: node #5 (ImageInvert): nodes #5 → #6 feed each other in a loop" in out

    code, out, _ = studio("validate", "--json", str(path), DEFAULT)
    results = json.loads(out)
    assert code == 1
    assert [p["kind"] for p in results[0]["problems"]] == ["bad_value"]
    assert sorted(w["kind"] for w in results[0]["warnings"]) == ["cycle", "type_mismatch", "unknown_type"]
    assert results[1]["valid"] is True and results[1]["warnings"] == []


def test_validate_of_an_unreadable_file_says_where(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "seed-studio-workflow", "version": 1, "nodes": {"1": {"type": 3}}}')
    code, out, _ = studio("validate", str(path))
    assert code == 1
    assert '$.nodes["1"].type: expected a string' in out


def test_render_of_an_invalid_workflow_lists_the_problems_and_renders_nothing(tmp_path):
    path = tmp_path / "broken.json"
    broken_workflow(path)
    code, _, err = studio("render", str(path), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "is not valid" in err and "999999" in err
    assert not (tmp_path / "out").exists()


def test_a_failing_node_gives_a_clear_message_and_exit_code(tmp_path):
    workflow = load(DEFAULT)
    workflow.set_value("2", "scale_by", 8.0)
    extra = workflow.add_node("ImageScaleBy", {"upscale_method": "nearest-exact", "scale_by": 8.0})
    workflow.connect("2", "IMAGE", extra.id, "image")
    workflow.connect(extra.id, "IMAGE", "3", "image")
    path = tmp_path / "too-big.json"
    save(workflow, path)
    code, _, err = studio("render", str(path), "--out", str(tmp_path))
    assert code == 1
    assert f"node #{extra.id} (ImageScaleBy): scaling by 8.0 gives" in err


@pytest.mark.parametrize(("argument", "message"), [
    ("Nobody.seed=1", "no node has the id or title 'Nobody'"),
    ("3.colour=1", "has no field 'colour' (its fields: seed, strength)"),
    ("3.seed=abc", "expected a whole number"),
    ("3.image=x", "has no field 'image'"),
    ("seed=1", "expected NODE.INPUT=VALUE"),
])
def test_bad_overrides_are_refused_with_a_sentence(tmp_path, argument, message):
    code, _, err = studio("render", DEFAULT, "--out", str(tmp_path), "--set", argument)
    assert code == 2
    assert message in err


def test_an_out_of_range_override_is_a_validation_problem(tmp_path):
    code, _, err = studio("render", DEFAULT, "--out", str(tmp_path), "--set", "Film grain.strength=2")
    assert code == 1 and "above the maximum 1" in err


def test_nodes_lists_every_type_with_inputs_and_docs(registry):
    code, out, _ = studio("nodes", "--json")
    assert code == 0
    described = {entry["type"]: entry for entry in json.loads(out)}
    assert set(described) == {cls.type_name for cls in registry}
    scale = described["ImageScale"]
    width = next(spec for spec in scale["inputs"] if spec["name"] == "width")
    assert (width["type"], width["default"], width["min"], width["max"]) == ("INT", 512, 0, 16384)
    assert "lanczos" in next(s for s in scale["inputs"] if s["name"] == "upscale_method")["choices"]
    code, text, _ = studio("nodes")
    assert "ImageBlend  (Image Blend)" in text and "in  blend_factor: FLOAT; default 0.5; 0.0..1.0" in text


def test_studio_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exited:
        studio("--help")
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("render", "validate", "batch", "convert", "nodes", "--screenshot"))


def test_the_module_entry_point_renders_in_a_real_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "studio", "render", DEFAULT, "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_file()
    assert "4/4 #4 SaveImage" in result.stderr  # progress goes to stderr, paths to stdout


def write_header_file(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A safetensors file with these keys and shapes (zeros): all the header check reads."""
    import torch
    from safetensors.torch import save_file

    save_file({key: torch.zeros(shape, dtype=torch.float16) for key, shape in shapes.items()}, str(path))


def test_validate_warns_of_a_checkpoint_file_the_loader_would_refuse(tmp_path):
    checkpoints = tmp_path / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # A LoRA put in the checkpoints folder, and a file with an SD 1.5 checkpoint's UNet input.
    write_header_file(checkpoints / "ink-style.safetensors", {"lora_unet_down_blocks_0.lora_down.weight": (4, 4)})
    write_header_file(checkpoints / "sd15.safetensors",
                      {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)})
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"model_roots": [str(tmp_path / "models")]}))
    workflow = load(WORKFLOWS_DIR / "default.json")
    path = tmp_path / "checkpoint.json"

    workflow.set_value("1", "ckpt_name", "ink-style.safetensors")
    save(workflow, path)
    code, out, _ = studio("--config", str(config), "validate", str(path))
    assert code == 0, out  # a warning: the run is not stopped before it starts
    assert out.splitlines() == [
        f"{path}: valid (7 nodes, 1 warning)",
        "  warning: node #1 (CheckpointLoaderSimple), input 'ckpt_name': ink-style.safetensors: is not a Stable "
        "Diffusion checkpoint (it has no model.diffusion_model weights; a LoRA, VAE or ControlNet goes in its own "
        "folder); loading it would fail"]

    workflow.set_value("1", "ckpt_name", "sd15.safetensors")
    save(workflow, path)
    code, out, _ = studio("--config", str(config), "validate", str(path))
    assert (code, out) == (0, f"{path}: valid (7 nodes)\n")


def test_validate_warns_of_a_checkpoint_in_the_loras_folder(tmp_path):
    loras = tmp_path / "models" / "loras"
    loras.mkdir(parents=True)
    write_header_file(loras / "not-a-lora.safetensors",
                      {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)})
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"model_roots": [str(tmp_path / "models")]}))
    workflow = load(WORKFLOWS_DIR / "lora.json")
    (lora,) = [node for node in workflow.nodes.values() if node.type == "LoraLoader"]
    workflow.set_value(lora.id, "lora_name", "not-a-lora.safetensors")
    path = tmp_path / "lora.json"
    save(workflow, path)
    code, out, _ = studio("--config", str(config), "validate", str(path))
    assert ("input 'lora_name': not-a-lora.safetensors: holds no LoRA weights (no *.lora_down / lora_A / LoHa / "
            "LoKr tensors); it looks like a Stable Diffusion checkpoint (it belongs in the checkpoints folder); "
            "loading it would fail") in out


def test_the_checkpoint_header_is_read_once_per_version_of_the_file(tmp_path, monkeypatch):
    import nodes.loaders as loaders
    from studio.settings import Settings

    (tmp_path / "checkpoints").mkdir()
    checkpoint = tmp_path / "checkpoints" / "model.safetensors"
    write_header_file(checkpoint, {"lora_unet_down_blocks_0.lora_down.weight": (4, 4)})
    reads, inspect = [], loaders.inspect_model_header
    monkeypatch.setattr(loaders, "inspect_model_header", lambda kind, path: reads.append(path) or inspect(kind, path))
    settings = Settings(model_roots=(tmp_path,))
    values = {"ckpt_name": "model.safetensors"}
    first = loaders.CheckpointLoaderSimple.advise(values, settings)
    assert loaders.CheckpointLoaderSimple.advise(values, settings) == first and len(reads) == 1
    [(input_name, message)] = first
    assert input_name == "ckpt_name" and "is not a Stable Diffusion checkpoint" in message
    # Replaced under the same name: read again.
    write_header_file(checkpoint, {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)})
    assert loaders.CheckpointLoaderSimple.advise(values, settings) == [] and len(reads) == 2
    assert loaders.CheckpointLoaderSimple.advise({"ckpt_name": "gone.safetensors"}, settings) == []


def test_a_missing_embedding_is_a_warning_and_the_render_goes_on_without_it(tmp_path):
    from PIL import Image

    models = tmp_path / "models"
    (models / "embeddings").mkdir(parents=True)
    (models / "embeddings" / "inkwash.safetensors").write_bytes(b"")
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"model_roots": [str(models)]}))
    workflow = load(WORKFLOWS_DIR / "default.json")
    workflow.set_value("2", "text", "a large orange circle embedding:nope embedding:inkwash")
    path = tmp_path / "embeddings.json"
    save(workflow, path)
    code, out, _ = studio("--config", str(config), "validate", str(path))
    assert code == 0, out
    assert ("warning: node #2 (CLIPTextEncode), input 'text': embedding 'nope' is not in the embeddings folders "
            f"({models / 'embeddings'}") in out
    assert "inkwash" not in out  # that one is there

    # As in ComfyUI, the prompt is encoded without the missing embedding: the same picture.
    code, out, err = studio("--config", str(config), "render", str(path), "--out", str(tmp_path / "out"), "--json",
                            "--set", "4.steps=1",
                            "--sweep", "Prompt.text=a large orange circle embedding:nope,a large orange circle")
    assert code == 0, err
    with_missing, without = json.loads(out)["runs"]
    assert [note["node"] for note in with_missing["notes"]] == ["2"]
    assert "embedding 'nope' is not in the embeddings folders" in with_missing["notes"][0]["message"]
    assert "left out of the prompt" in with_missing["notes"][0]["message"]
    assert without["notes"] == []
    [first], [second] = ([Image.open(output["path"]) for output in run["outputs"]] for run in (with_missing, without))
    assert first.tobytes() == second.tobytes()


def only_an_unknown_output(path: Path) -> None:
    """A graph whose one output is a node type Seed Studio lacks (a plugin's save node)."""
    path.write_text(json.dumps({"format": "seed-studio-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadImage", "values": {"image": "seed_sample.png"}},
        "2": {"type": "Image Save", "links": {"images": {"node": "1", "output": "IMAGE"}}}}}))


def test_a_workflow_with_no_output_that_would_run_is_a_problem_not_a_success(tmp_path):
    path = tmp_path / "plugin-save.json"
    only_an_unknown_output(path)
    code, out, err = studio("render", str(path), "--out", str(tmp_path / "out"))
    assert code == 1 and out == ""
    assert "nothing would run" in err and "'Image Save' (#2)" in err
    assert not (tmp_path / "out").exists()

    code, out, _ = studio("validate", str(path))
    assert code == 1 and "nothing would run" in out and "'Image Save' (#2)" in out

    params = tmp_path / "jobs.csv"
    params.write_text("1.image\nseed_sample.png\nseed_sample.png\n")
    code, _, err = studio("batch", str(path), "--params", str(params), "--out", str(tmp_path / "out"))
    assert code == 1 and "nothing would run" in err
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_a_muted_save_node_is_named_when_nothing_would_run(tmp_path):
    workflow = load(DEFAULT)
    workflow.nodes["4"].mode = NodeMode.MUTE
    path = tmp_path / "muted.json"
    save(workflow, path)
    code, _, err = studio("render", str(path), "--out", str(tmp_path / "out"))
    assert code == 1 and "switched off: #4 SaveImage (mute)" in err


@pytest.mark.parametrize(("value", "message"), [
    ("1e999", "inf is not a number a workflow can hold"),
    ('"\\ud800"', "half of a UTF-16 surrogate pair"),
    ("[" * 600 + "]" * 600, "nested more than 100 levels deep"),
])
def test_a_value_that_could_never_be_saved_stops_render_and_convert_before_anything_runs(tmp_path, value, message):
    document = load(DEFAULT)
    path = tmp_path / "hostile.json"
    path.write_text(dumps(document).replace('"format": "seed-studio-workflow"',
                                            f'"format": "seed-studio-workflow", "kept": {value}'))
    code, out, err = studio("render", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and out == "" and message in err and "hostile.json: $.kept" in err
    assert not (tmp_path / "out").exists()
    code, _, err = studio("convert", str(path), str(tmp_path / "converted.json"))
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "converted.json").exists()


def test_a_params_line_that_no_png_could_carry_is_refused_before_the_batch(tmp_path):
    params = tmp_path / "jobs.jsonl"
    params.write_text('{"Film grain.seed": 1}\n{"Film grain.strength": 1e999}\n')
    code, _, err = studio("batch", DEFAULT, "--params", str(params), "--out", str(tmp_path / "out"))
    assert code == 2 and 'jobs.jsonl line 2, $["Film grain.strength"]: inf is not a number' in err
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
