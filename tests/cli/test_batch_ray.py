"""studio batch on Ray, in local mode: same images as one process, survives a dead actor."""

from __future__ import annotations

import json
import sys

import pytest
import ray

from studio.batch import build_jobs, order_jobs, render_job, run_on_ray
from studio.engine import Engine
from studio.graph import dumps, load
from studio.graph.png import workflow_texts
from studio.overrides import parse_set, parse_sweep
from tests.cli.test_batch import DEFAULT, digest, manifest
from tests.cli.test_cli import studio


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def allow_local_sockets(monkeypatch):
    """Ray's driver talks to its own local processes over loopback sockets."""
    import socket

    monkeypatch.undo()  # lift the suite's no-network guard for this test only …
    original = socket.socket.connect

    def loopback_only(self, address, *args, **kwargs):  # … but keep refusing anything not local
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or "/" in host):
            raise AssertionError(f"a test tried to connect to {address!r}")
        return original(self, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


def jobs_for(workflow, registry):
    fixed = [parse_set(workflow, registry, "Enlarge.scale_by=0.25")]
    sweeps = [parse_sweep(workflow, registry, "Film grain.seed=1..4")]
    return order_jobs(workflow, build_jobs(workflow, registry, fixed=fixed, sweeps=sweeps))


def single_process(registry, settings, workflow, jobs):
    engine = Engine(registry, settings, image_metadata=workflow_texts)  # as a batch's own workers
    return {job.key: digest(render_job(engine, workflow, registry, job)["outputs"][0]) for job in jobs}


def test_ray_actors_render_bit_for_bit_what_one_process_renders(allow_local_sockets, local_ray, registry, settings,
                                                                 tmp_path):
    workflow = load(DEFAULT)
    jobs = jobs_for(workflow, registry)
    expected = single_process(registry, settings.replace(output_dir=tmp_path / "single"), workflow, jobs)
    records = []
    run_on_ray(None, dumps(workflow), settings.replace(output_dir=tmp_path / "ray"), jobs, records.append, actors=2)
    assert {r["job"]: digest(r["outputs"][0]) for r in records} == expected
    assert all(str(tmp_path / "ray") in r["outputs"][0] for r in records)


def test_a_batch_survives_an_actor_killed_mid_batch(allow_local_sockets, local_ray, registry, settings, tmp_path):
    workflow = load(DEFAULT)
    jobs = jobs_for(workflow, registry)
    records = []

    def finished(record):
        records.append(record)
        if len(records) == 1:
            ray.kill(ray.get_actor("seed-studio-render-0"))

    run_on_ray(None, dumps(workflow), settings.replace(output_dir=tmp_path), jobs, finished, actors=2)
    assert sorted(r["job"] for r in records) == sorted(job.key for job in jobs)
    assert all(r["status"] == "ok" for r in records)
    assert len(list(tmp_path.rglob("*.png"))) == len(jobs)


def test_the_cli_runs_a_batch_on_ray(allow_local_sockets, local_ray, tmp_path):
    code, out, err = studio("batch", DEFAULT, "--ray", "local", "--out", str(tmp_path), "--json",
                            "--set", "Enlarge.scale_by=0.25", "--sweep", "Film grain.seed=1,2")
    assert code == 0, err
    assert [r["status"] for r in manifest(tmp_path)] == ["ok", "ok"]
    assert json.loads(out.splitlines()[-1])["summary"]["rendered"] == 2


def test_without_ray_the_cli_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = studio("batch", DEFAULT, "--ray", "auto", "--out", str(tmp_path), "--sweep", "Film grain.seed=1,2")
    assert code == 2 and "pip install '.[ray]'" in err
