"""Hostile inputs and hard stops at the command line (issue 22, items 3 and 12): each input is
built here, and each answer is a sentence and an exit code, never a traceback or a hang."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

import studio.cli as cli_module
import studio.fileio as fileio_module
from studio.batch import read_params
from studio.engine.execute import describe_exception, is_out_of_memory
from studio.settings import WORKFLOWS_DIR
from tests.cli.test_cli import studio
from tests.hostile import run_with_memory_limit

FILM_GRAIN = str(WORKFLOWS_DIR / "film_grain.json")
DEFAULT = str(WORKFLOWS_DIR / "default.json")


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def film_grain_batch(tmp_path: Path, *seeds: int) -> tuple[tuple[str, ...], Path]:
    """A batch of the film-grain workflow (enlarged by 0.25 only, so it is quick), one job a
    seed, run once successfully: its arguments, to run it again, and its output folder."""
    params = tmp_path / "jobs.csv"
    params.write_text("Film grain.seed\n" + "".join(f"{seed}\n" for seed in seeds))
    out = tmp_path / "out"
    arguments = ("batch", FILM_GRAIN, "--params", str(params), "--out", str(out), "--set", "Enlarge.scale_by=0.25")
    code, _, err = studio(*arguments)
    assert code == 0, err
    return arguments, out


# -- item 3: a sampler's memory is estimated before anything big is allocated -------------------
HUGE_LATENT = """
import json
from studio.cli import main
huge = main(["render", {workflow!r}, "--out", {out!r}, "--set", "7.width=16384", "--set", "7.height=16384",
             "--set", "4.steps=1"])
small = main(["render", {workflow!r}, "--out", {out!r}, "--set", "4.steps=2"])
# 4096 latents of 2048²: 256 GB asked of the allocator in EmptyLatentImage itself
allocation = main(["render", {workflow!r}, "--out", {out!r}, "--set", "7.width=16384", "--set", "7.height=16384",
                   "--set", "7.batch_size=4096"])
print(json.dumps([huge, small, allocation]))
"""


def test_a_16384_square_latent_is_refused_before_sampling_under_a_memory_cap(tmp_path):
    # 3 GB of address space: torch and the demo model fit, a 16384² render (a 2048² latent)
    # would not; the refusal must come before the allocations, naming the node and the sizes.
    result = run_with_memory_limit(HUGE_LATENT.format(workflow=DEFAULT, out=str(tmp_path)), 3072, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    # refused; a small render still works; the allocator's refusal gets the out-of-memory advice
    assert json.loads(result.stdout.splitlines()[-1]) == [1, 0, 1]
    assert "node #4 (KSampler)" in result.stderr
    assert "sampling a 2048×2048 latent (16384×16384 pixels) × batch 1 needs about" in result.stderr
    assert "lower the width, height or batch size" in result.stderr
    assert "node #7 (EmptyLatentImage) failed: ran out of memory; lower the resolution or batch size" in result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr


def test_the_estimate_counts_latent_size_batch_and_model_and_leaves_ordinary_renders_alone():
    from studio.runtime.memory_estimate import MemoryEstimateError, check_sampler_memory, estimate_sampler

    class Config:
        block_out_channels = (320, 640, 1280, 1280)

    class Unet:  # an SD 1.5 UNet's shape, as the estimate reads it
        config = Config()
        dtype = "torch.float16"

    ordinary = estimate_sampler(Unet(), (1, 4, 64, 64))
    assert ordinary.total < 256 * 2**20
    batch_of_four = estimate_sampler(Unet(), (4, 4, 64, 64))
    assert batch_of_four.denoiser == 4 * ordinary.denoiser
    assert estimate_sampler(Unet(), (1, 4, 128, 128)).denoiser == 4 * ordinary.denoiser
    check_sampler_memory("KSampler", Unet(), (1, 4, 64, 64), device="cpu")
    with pytest.raises(MemoryEstimateError, match=r"^KSampler: sampling a 2048×2048 latent \(16384×16384 pixels\)"):
        check_sampler_memory("KSampler", Unet(), (1, 4, 2048, 2048), device="cpu")


@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to "
                 "allocate 68719476736 bytes."),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes"),
])
def test_running_out_of_memory_on_the_cpu_gets_the_advice_a_gpu_gets(error):
    assert is_out_of_memory(error)
    gpu = describe_exception(RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    cpu = describe_exception(error)
    assert gpu.startswith("ran out of GPU memory; lower the resolution or batch size")
    assert cpu.startswith("ran out of memory; lower the resolution or batch size")
    assert not is_out_of_memory(ValueError("a value out of range"))


# -- item 12: params files -------------------------------------------------------------------
def test_excel_utf8_csv_with_a_byte_order_mark_is_read(tmp_path):
    params = tmp_path / "excel.csv"
    params.write_bytes("\ufeffFilm grain.seed,Enlarge.scale_by\r\n3,0.25\r\n".encode())
    assert read_params(params) == [{"Film grain.seed": "3", "Enlarge.scale_by": "0.25"}]
    code, _, err = studio("batch", FILM_GRAIN, "--params", str(params), "--out", str(tmp_path / "out"))
    assert code == 0, err
    [record] = manifest(tmp_path / "out")
    assert record["status"] == "ok" and record["overrides"] == {"Film grain.seed": 3, "Enlarge.scale_by": 0.25}


def test_a_header_only_csv_renders_nothing_and_says_so(tmp_path):
    params = tmp_path / "empty.csv"
    params.write_text("Film grain.seed,Enlarge.scale_by\n")
    code, out, err = studio("batch", FILM_GRAIN, "--params", str(params), "--out", str(tmp_path / "out"))
    assert code == 1 and "has no rows" in err and "nothing rendered" in err
    assert not list(tmp_path.rglob("*.png")) and not (tmp_path / "out" / "manifest.jsonl").exists()


def test_a_million_value_sweep_product_is_refused_with_a_sentence_before_jobs_are_built(tmp_path):
    for command in ("render", "batch"):
        began = time.perf_counter()
        code, _, err = studio(command, FILM_GRAIN, "--out", str(tmp_path / command),
                              "--sweep", "Film grain.seed=1..1000", "--sweep", "Enlarge.scale_by=" +
                              ",".join(str(0.25 + i / 1000) for i in range(1000)))
        assert code == 2 and "Traceback" not in err
        assert "1000 × 1000 = 1,000,000 jobs is more than the 100,000 one command renders" in err
        assert time.perf_counter() - began < 20
    assert not list(tmp_path.rglob("*.png"))


# -- item 12: files that are not what they seem ------------------------------------------------
def test_dev_zero_as_a_workflow_is_refused_not_read_forever(tmp_path):
    for command in (["validate", "/dev/zero"], ["render", "/dev/zero", "--out", str(tmp_path)],
                    ["convert", "/dev/zero", str(tmp_path / "x.json")]):
        code, out, err = studio(*command)
        assert code in (1, 2) and "too large to be a workflow" in out + err and "Traceback" not in err


def test_convert_onto_a_folder_is_a_sentence(tmp_path):
    for extra in ((), ("--force",)):
        code, _, err = studio("convert", FILM_GRAIN, str(tmp_path), *extra)
        assert code == 2 and f"{tmp_path} is a folder" in err and "Traceback" not in err


def test_an_unreadable_extra_model_paths_file_is_a_sentence_and_exit_2(tmp_path):
    broken = tmp_path / "extra_model_paths.yaml"
    broken.write_text("comfyui:\n  checkpoints: [unclosed\n")
    folder = tmp_path / "a-folder.yaml"
    folder.mkdir()
    for target in (broken, folder):
        config = tmp_path / "settings.json"
        config.write_text(json.dumps({"extra_model_paths": [str(target)]}))
        code, _, err = studio("--config", str(config), "validate", DEFAULT)
        assert code == 2 and "Traceback" not in err
        assert f"{target}: cannot read model paths" in err and len(err.strip().splitlines()) == 1


# -- item 12: output folders checked before anything is sampled ------------------------------
@pytest.fixture
def no_sampling(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("rendering started although the output folder cannot take the images")

    monkeypatch.setattr(cli_module, "_rendering_services", forbidden)


def test_an_output_folder_with_a_file_in_its_place_is_found_before_sampling(tmp_path, no_sampling):
    in_the_way = tmp_path / "out"
    in_the_way.write_text("a file")
    for command in (["render", DEFAULT, "--out", str(in_the_way)],
                    ["batch", DEFAULT, "--out", str(in_the_way), "--sweep", "4.seed=1,2"],
                    ["batch", DEFAULT, "--out", str(in_the_way / "below"), "--sweep", "4.seed=1,2"]):
        code, _, err = studio(*command)
        assert code == 2 and "Traceback" not in err, err
        assert f"{in_the_way} is a file, not a folder" in err
    assert in_the_way.read_text() == "a file"


def test_an_output_folder_without_write_permission_is_found_before_sampling(tmp_path, no_sampling, monkeypatch):
    # The tests may run as root, whom permissions do not stop: the refusal is simulated where
    # the check writes its probe file.
    real = fileio_module.tempfile.mkstemp
    read_only = tmp_path / "read-only"
    read_only.mkdir()

    def denied(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == read_only:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(fileio_module.tempfile, "mkstemp", denied)
    for command in (["render", DEFAULT, "--out", str(read_only)],
                    ["batch", DEFAULT, "--out", str(read_only), "--sweep", "4.seed=1,2"]):
        code, _, err = studio(*command)
        assert code == 2 and "Traceback" not in err
        assert f"cannot write in the output folder {read_only} (Permission denied)" in err
    assert list(read_only.iterdir()) == []


def test_a_full_disk_under_the_output_folder_is_found_before_sampling(tmp_path, no_sampling, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 4096))
    for command in (["render", DEFAULT, "--out", str(tmp_path / "a")],
                    ["batch", DEFAULT, "--out", str(tmp_path / "b"), "--sweep", "4.seed=1,2"]):
        code, _, err = studio(*command)
        assert code == 2 and "Traceback" not in err
        assert "is full (0 MB free)" in err
    assert not list(tmp_path.rglob("*.png"))


# -- item 12: temporary files, previews, names, seeds ---------------------------------------
def test_resume_removes_the_hidden_temporary_file_of_a_save_cut_off_by_a_kill(tmp_path):
    arguments, out = film_grain_batch(tmp_path, 1, 2)
    first, second = manifest(out)
    # As kill -9 leaves it in the middle of the second job's save: its image only as the hidden
    # temporary file, no manifest line. Another job's temporary-looking name is not touched.
    image = Path(second["outputs"][0])
    temporary = image.with_name(f".{image.name}.k9x2ab.tmp")
    image.rename(temporary)
    unrelated = out / ".notes.txt.tmp"
    unrelated.write_text("not a job's")
    (out / "manifest.jsonl").write_text(json.dumps(first) + "\n")
    code, text, err = studio(*arguments, "--resume")
    assert code == 0, err
    assert "1 jobs rendered, 1 already done" in text
    assert not temporary.exists() and unrelated.exists()
    assert sorted(p.name for p in out.rglob("*.tmp")) == [".notes.txt.tmp"]
    assert len(list(out.rglob("*.png"))) == 2


def test_preview_files_do_not_pile_up_in_the_temporary_folder(tmp_path):
    from nodes.io import MAX_PREVIEW_FILES, prune_previews

    temp = tmp_path / "temp"
    temp.mkdir()
    now = time.time()
    for index in range(MAX_PREVIEW_FILES + 50):
        path = temp / f"preview_{index:08x}_00001_.png"
        path.write_bytes(b"png")
        os.utime(path, (now - 3600 + index, now - 3600 + index))
    stale = temp / "preview_stale_00001_.png"
    stale.write_bytes(b"png")
    os.utime(stale, (now - 3 * 86400, now - 3 * 86400))
    other = temp / "not-a-preview.png"
    other.write_bytes(b"png")
    assert prune_previews(temp) == 51
    left = sorted(p.name for p in temp.glob("preview_*.png"))
    assert len(left) == MAX_PREVIEW_FILES and left[0] == "preview_00000032_00001_.png" and other.exists()

    # A render with a PreviewImage node keeps the folder bounded too.
    graph = json.loads(Path(FILM_GRAIN).read_text())
    graph["nodes"]["4"]["type"] = "PreviewImage"
    graph["nodes"]["4"]["values"] = {}
    workflow = tmp_path / "preview.json"
    workflow.write_text(json.dumps(graph))
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"temp_dir": str(temp), "output_dir": str(tmp_path / "out")}))
    code, _, err = studio("--config", str(config), "render", str(workflow), "--set", "Enlarge.scale_by=0.25")
    assert code == 0, err
    assert len(list(temp.glob("preview_*.png"))) == MAX_PREVIEW_FILES


def test_bidirectional_controls_are_removed_from_output_file_names(tmp_path):
    from nodes.io import safe_output_folder

    hostile = "in\u202avoice\u202b\u202c\u202d_\u202egnp\u2066\u2067\u2068\u2069.exe"
    folder, stem = safe_output_folder(tmp_path, f"sub\u202e/{hostile}")
    assert stem == "invoice_gnp.exe" and folder == (tmp_path / "sub").resolve()
    code, out, err = studio("render", FILM_GRAIN, "--out", str(tmp_path / "out"), "--set", "Enlarge.scale_by=0.25",
                            "--set", f"Save.filename_prefix={hostile}")
    assert code == 0, err
    [path] = [Path(line) for line in out.splitlines()]
    assert path.name == "invoice_gnp.exe_00001_.png"
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in str(path))


def test_studio_nodes_shows_the_seed_maximum_in_full():
    code, out, _ = studio("nodes")
    assert code == 0
    seeds = [line for line in out.splitlines() if line.strip().startswith("in  seed: INT")]
    assert seeds and all("0..18446744073709551615" in line for line in seeds)
    assert "e+19" not in out
    code, out, _ = studio("nodes", "--json")
    ksampler = next(node for node in json.loads(out) if node["type"] == "KSampler")
    assert next(i for i in ksampler["inputs"] if i["name"] == "seed")["max"] == 2**64 - 1


def test_images_are_readable_after_all_of_this(tmp_path):
    """A plain batch still works end to end (guards the checks above against refusing it)."""
    _, out = film_grain_batch(tmp_path, 1)
    [record] = manifest(out)
    Image.open(record["outputs"][0]).verify()


def test_a_fresh_batch_over_images_of_its_own_jobs_asks_for_resume_instead_of_doubling_them(tmp_path):
    # Killed before its first manifest line, a batch leaves an image and no manifest: started
    # again without --resume it would give that job a second image.
    arguments, out = film_grain_batch(tmp_path, 1, 2)
    first, _second = manifest(out)
    (out / "manifest.jsonl").unlink()
    Path(_second["outputs"][0]).unlink()
    code, _, err = studio(*arguments)
    assert code == 2 and "image(s) of this batch's jobs" in err and "--resume" in err
    code, text, err = studio(*arguments, "--resume")
    assert code == 0, err
    assert len(list(out.rglob("*.png"))) == 2 and len(manifest(out)) == 2
