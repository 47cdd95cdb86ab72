"""Seed batches through the commands: `studio render --sweep` and `studio batch` sample jobs
that differ only in a sampler's seed together, and every job still gets the picture, name,
manifest line and id it gets alone — also when a batch is killed in the middle of a seed
batch and resumed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from studio.batch import build_jobs, order_jobs, seed_batch_plans
from studio.graph import load
from studio.overrides import parse_set, parse_sweep
from studio.settings import PROJECT_ROOT, WORKFLOWS_DIR
from tests.cli.test_cli import studio

DEFAULT = str(WORKFLOWS_DIR / "default.json")
QUICK = ("--set", "4.steps=4")


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def by_job(folder: Path) -> dict[str, np.ndarray]:
    return {record["job"]: pixels(record["outputs"][0]) for record in manifest(folder)}


def test_jobs_that_differ_only_in_the_sampler_seed_are_planned_together(registry):
    workflow = load(DEFAULT)
    jobs = order_jobs(workflow, build_jobs(
        workflow, registry, rows=[{"Prompt.text": "a red square"}, {"Prompt.text": "a blue circle"}],
        fixed=[parse_set(workflow, registry, "4.steps=4")], sweeps=[parse_sweep(workflow, registry, "4.seed=1..3")]))
    plans = seed_batch_plans(workflow, registry, [job.overrides for job in jobs])
    seeds = [{o.label: o.value for o in job.overrides}["4.seed"] for job in jobs]
    assert seeds == [1, 2, 3, 1, 2, 3]
    # each prompt's three seeds form one seed batch; the plan names the seeds still to come
    assert plans == [{"4": [1, 2, 3]}, {"4": [2, 3]}, {"4": [3]}, {"4": [1, 2, 3]}, {"4": [2, 3]}, {"4": [3]}]
    # a sweep of something that is not a sampler's seed plans nothing
    steps = build_jobs(workflow, registry, sweeps=[parse_sweep(workflow, registry, "4.steps=2,3")])
    assert seed_batch_plans(workflow, registry, [job.overrides for job in steps]) == [{}, {}]


def test_a_render_sweep_gives_the_same_pictures_batched_and_one_by_one(tmp_path):
    results = {}
    for size in ("1", "3"):
        code, out, err = studio("render", DEFAULT, "--out", str(tmp_path / size), "--sweep", "4.seed=5..9",
                                "--seed-batch", size, *QUICK)
        assert code == 0, err
        paths = out.split()
        assert len(paths) == 5
        results[size] = [pixels(path) for path in paths]
    for alone, batched in zip(results["1"], results["3"], strict=True):
        assert np.abs(alone - batched).max() < 1.5 / 255  # one 8-bit level at most (1e-4 at a step)
    assert np.abs(results["1"][0] - results["1"][1]).max() > 0.05  # seeds do differ


def test_a_batch_records_every_job_as_alone_with_seed_batches_on(tmp_path):
    params = tmp_path / "jobs.csv"
    params.write_text("4.seed\n" + "\n".join(str(seed) for seed in (3, 1, 4, 1, 5)) + "\n")
    outputs = {}
    for size in ("1", "4"):
        out = tmp_path / f"out{size}"
        code, text, err = studio("batch", DEFAULT, "--params", str(params), "--out", str(out), "--seed-batch", size,
                                 *QUICK)
        assert code == 0, err
        records = manifest(out)
        assert [r["status"] for r in records] == ["ok"] * len(records)
        outputs[size] = by_job(out)
    assert outputs["1"].keys() == outputs["4"].keys()  # the same job ids (seed 1 twice is one job)
    for key, image in outputs["1"].items():
        assert np.abs(image - outputs["4"][key]).max() < 1.5 / 255


def test_kill_9_in_the_middle_of_a_seed_batch_then_resume_loses_and_doubles_nothing(tmp_path):
    count = 12
    params = tmp_path / "jobs.csv"
    params.write_text("4.seed\n" + "\n".join(str(seed) for seed in range(100, 100 + count)) + "\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "studio", "batch", DEFAULT, "--params", str(params), "--out", str(out),
               "--seed-batch", "6", *QUICK]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    lines = 0
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "manifest.jsonl").is_file():
            lines = len((out / "manifest.jsonl").read_text().splitlines())
            if lines >= 2:
                break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = manifest(out)
    assert 2 <= len(before) < count, "the batch was not stopped part-way"
    finished = {r["job"]: hashlib.sha256(Path(r["outputs"][0]).read_bytes()).hexdigest() for r in before}

    code, text, err = studio("batch", DEFAULT, "--params", str(params), "--out", str(out), "--seed-batch", "6",
                             "--resume", *QUICK)
    assert code == 0, err
    records = manifest(out)
    keys = [r["job"] for r in records]
    assert len(keys) == len(set(keys)) == count  # every job once
    for key, digest in finished.items():  # finished images kept, not rendered again
        record = next(r for r in records if r["job"] == key)
        assert hashlib.sha256(Path(record["outputs"][0]).read_bytes()).hexdigest() == digest
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == count and {p.name.split("-")[-1].split("_")[0] for p in pngs} == set(keys)

    # and each picture is the one its job renders alone
    reference = tmp_path / "alone"
    code, _, err = studio("batch", DEFAULT, "--params", str(params), "--out", str(reference), "--seed-batch", "1",
                          *QUICK)
    assert code == 0, err
    alone, resumed = by_job(reference), by_job(out)
    assert alone.keys() == resumed.keys()
    for key in alone:
        assert np.abs(alone[key] - resumed[key]).max() < 1.5 / 255
