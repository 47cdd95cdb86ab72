"""studio batch: params files, sweeps, image folders, failures, resume after kill -9, workers."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.batch import Job, build_jobs, order_jobs
from studio.graph import load
from studio.overrides import Override
from studio.settings import PROJECT_ROOT, WORKFLOWS_DIR
from tests.cli.test_cli import studio

DEFAULT = str(WORKFLOWS_DIR / "film_grain.json")


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_csv_rows_become_jobs_with_their_own_images_and_manifest_lines(tmp_path):
    params = tmp_path / "jobs.csv"
    params.write_text("Film grain.seed,Enlarge.scale_by\n1,0.25\n2,0.5\n3,0.25\n")
    code, out, err = studio("batch", DEFAULT, "--params", str(params), "--out", str(tmp_path / "out"))
    assert code == 0, err
    records = manifest(tmp_path / "out")
    assert [r["status"] for r in records] == ["ok"] * 3
    assert sorted(r["overrides"]["Film grain.seed"] for r in records) == [1, 2, 3]
    for record in records:
        [path] = record["outputs"]
        assert f"-{record['job']}_" in Path(path).name
        width = Image.open(path).size[0]
        assert width == round(512 * record["overrides"]["Enlarge.scale_by"])
    assert "3 jobs rendered" in out


def test_jsonl_rows_times_a_sweep_and_a_failing_row_is_recorded_while_the_rest_finish(tmp_path):
    params = tmp_path / "jobs.jsonl"
    params.write_text('{"Film grain.strength": 0.1}\n{"Film grain.strength": 7}\n\n')
    code, out, _ = studio("batch", DEFAULT, "--params", str(params), "--out", str(tmp_path / "out"), "--json",
                          "--sweep", "Film grain.seed=1,2", "--set", "Enlarge.scale_by=0.25")
    assert code == 1
    records = manifest(tmp_path / "out")
    assert len(records) == 4
    failed = [r for r in records if r["status"] != "ok"]
    assert len(failed) == 2 and all("above the maximum 1" in r["error"] for r in failed)
    assert all(r["overrides"]["Film grain.strength"] == 7 for r in failed)
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["summary"] == {"jobs": 4, "rendered": 4, "already_done": 0, "failed": 2,
                                    "manifest": str(tmp_path / "out" / "manifest.jsonl")}


def test_a_folder_of_images_runs_once_per_image(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.new("RGB", (40, 20), (200, 0, 0)).save(folder / "a.png")
    Image.new("RGB", (30, 30), (0, 200, 0)).save(folder / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    code, _, err = studio("batch", DEFAULT, "--images", str(folder), "--out", str(tmp_path / "out"))
    assert code == 0, err
    sizes = sorted(Image.open(r["outputs"][0]).size for r in manifest(tmp_path / "out"))
    assert sizes == [(45, 45), (60, 30)]


def test_jobs_are_ordered_so_upstream_values_stay_together(registry):
    workflow = load(DEFAULT)
    scale = [Override("2", "scale_by", value, "2.scale_by") for value in (0.5, 0.25)]
    seeds = [Override("3", "seed", value, "3.seed") for value in (1, 2, 3)]
    jobs = order_jobs(workflow, build_jobs(workflow, registry, sweeps=[seeds, scale]))
    assert [job.labels()["2.scale_by"] for job in jobs] == [0.25, 0.25, 0.25, 0.5, 0.5, 0.5]
    assert len({job.key for job in jobs}) == 6
    assert Job((seeds[0], scale[0])).key == Job((seeds[0], scale[0])).key


def test_an_existing_batch_is_not_overwritten_without_resume(tmp_path):
    params = tmp_path / "jobs.csv"
    params.write_text("Film grain.seed\n1\n")
    assert studio("batch", DEFAULT, "--params", str(params), "--out", str(tmp_path / "out"),
                  "--set", "Enlarge.scale_by=0.25")[0] == 0
    code, _, err = studio("batch", DEFAULT, "--params", str(params), "--out", str(tmp_path / "out"))
    assert code == 2 and "--resume" in err


def test_resume_after_kill_9_loses_nothing_and_renders_nothing_twice(tmp_path):
    params = tmp_path / "jobs.csv"
    params.write_text("Film grain.seed\n" + "\n".join(str(seed) for seed in range(12)) + "\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "studio", "batch", DEFAULT, "--params", str(params), "--out", str(out),
               "--set", "Enlarge.scale_by=3.0"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (out / "manifest.jsonl").is_file() and len((out / "manifest.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = manifest(out)
    assert 3 <= len(before) < 12
    finished = {r["job"]: digest(r["outputs"][0]) for r in before}

    code, out_text, err = studio("batch", DEFAULT, "--params", str(params), "--out", str(out),
                                 "--set", "Enlarge.scale_by=3.0", "--resume")
    assert code == 0, err
    records = manifest(out)
    keys = [r["job"] for r in records]
    assert len(keys) == len(set(keys)) == 12  # every job once
    for key, image in finished.items():  # finished images kept as they were, not rendered again
        record = next(r for r in records if r["job"] == key)
        assert digest(record["outputs"][0]) == image
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == 12 and {p.name.split("-")[-1].split("_")[0] for p in pngs} == set(keys)
    assert f"{len(before)} already done" in out_text


def test_two_workers_render_the_same_images_as_one(tmp_path):
    params = tmp_path / "jobs.csv"
    params.write_text("Film grain.seed\n5\n6\n7\n")
    results = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        code, _, err = studio("batch", DEFAULT, "--params", str(params), "--out", str(out), "--workers", workers,
                              "--set", "Enlarge.scale_by=0.25")
        assert code == 0, err
        results[workers] = {r["job"]: digest(r["outputs"][0]) for r in manifest(out)}
    assert results["1"] == results["2"] and len(results["1"]) == 3


def seeds_csv(tmp_path: Path, count: int) -> Path:
    params = tmp_path / "jobs.csv"
    params.write_text("Film grain.seed\n" + "\n".join(str(seed) for seed in range(count)) + "\n")
    return params


def small_batch(params: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return studio("batch", DEFAULT, "--params", str(params), "--out", str(out), "--set", "Enlarge.scale_by=0.25",
                  *extra)


def test_a_torn_last_manifest_line_is_ended_before_the_next_record(tmp_path):
    params, out = seeds_csv(tmp_path, 3), tmp_path / "out"
    assert small_batch(params, out)[0] == 0
    images = {r["job"]: digest(r["outputs"][0]) for r in manifest(out)}
    # The last append was cut off by a crash: half its line, no line end.
    text = (out / "manifest.jsonl").read_text()
    last = text.splitlines()[-1]
    torn = last[:len(last) // 2]
    (out / "manifest.jsonl").write_text(text[:len(text) - len(last) - 1] + torn)

    code, out_text, err = small_batch(params, out, "--resume")
    assert code == 0, err
    assert "1 jobs rendered, 2 already done" in out_text
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 4 and lines[2] == torn and json.loads(lines[3])["job"] == json.loads(last)["job"]

    # The record written after the torn line is read again: nothing is rendered twice.
    code, out_text, err = small_batch(params, out, "--resume")
    assert code == 0, err
    assert "0 jobs rendered, 3 already done" in out_text
    assert {r["job"]: digest(r["outputs"][0]) for r in map(json.loads, lines[:2] + lines[3:])} == images


def test_a_full_disk_at_save_stops_the_batch_instead_of_failing_every_job(tmp_path, monkeypatch):
    import nodes.io

    attempts = []

    def disk_full(path, data):
        attempts.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nodes.io, "write_new_file", disk_full)
    code, _, err = small_batch(seeds_csv(tmp_path, 5), tmp_path / "out")
    assert code == 1 and len(attempts) == 1
    assert "the disk holding" in err and "is full" in err and "--resume" in err and "Traceback" not in err
    [record] = manifest(tmp_path / "out")
    assert record["status"] == "failed"


def test_a_manifest_that_cannot_be_written_stops_the_batch_with_a_sentence(tmp_path, monkeypatch):
    import studio.batch

    def full(path, mode="r", *args, **kwargs):
        if Path(path).name == "manifest.jsonl" and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(studio.batch, "open", full, raising=False)
    code, out_text, err = small_batch(seeds_csv(tmp_path, 4), tmp_path / "out")
    assert code == 1 and "Traceback" not in err
    assert "cannot write to" in err and "manifest.jsonl (No space left on device); the batch stopped" in err
    assert len(list((tmp_path / "out").rglob("*.png"))) == 1  # it stopped after the first job


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from studio.batch import OutputFolderLock
OutputFolderLock(Path(sys.argv[1])).acquire()
print("holding", flush=True)
time.sleep(120)
"""


def test_a_second_batch_in_a_held_folder_is_refused_and_deletes_nothing_then_a_dead_holder_is_taken_over(tmp_path):
    params, out = seeds_csv(tmp_path, 2), tmp_path / "out"
    assert small_batch(params, out)[0] == 0
    assert not (out / "batch.lock").exists()  # let go of when the batch ended
    [first, second] = manifest(out)
    # The first job's record is not there yet, as if the holder were still rendering it.
    (out / "manifest.jsonl").write_text(json.dumps(second) + "\n")
    fresh = Path(first["outputs"][0])
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        code, _, err = small_batch(params, out, "--resume")
        assert code == 2
        assert f"{out} is in use by another batch (process {holder.pid})" in err
        assert fresh.is_file()  # the holder's fresh image was not removed
        code, _, err = small_batch(params, tmp_path / "other")  # another folder is free
        assert code == 0, err
    finally:
        holder.kill()
        holder.wait()
    assert (out / "batch.lock").read_text().strip() == str(holder.pid)  # left behind by kill -9
    code, out_text, err = small_batch(params, out, "--resume")
    assert code == 0, err
    assert "1 jobs rendered, 1 already done" in out_text


def descendants(pid: int) -> list[int]:
    """Process ids of ``pid``'s worker children (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped; only its parent has not collected it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table in /proc")
def test_workers_die_with_a_batch_killed_by_sigkill(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "studio", "batch", DEFAULT, "--params", str(seeds_csv(tmp_path, 400)),
               "--out", str(out), "--set", "Enlarge.scale_by=2.0", "--workers", "2"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if (out / "manifest.jsonl").is_file() and (out / "manifest.jsonl").read_text().count("\n") >= 2:
                break
            time.sleep(0.1)
        workers = descendants(process.pid)
        assert len(workers) == 2
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers)
        images = len(list(out.rglob("*.png")))
        time.sleep(2)
        assert len(list(out.rglob("*.png"))) == images  # nothing renders on
    finally:  # a regression must not leave orphans behind on the test machine
        for pid in [process.pid, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()
