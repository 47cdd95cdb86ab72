"""Batch rendering: one saved graph, many jobs, crash-safe.

Jobs come from a params file (CSV columns or JSONL keys ``NODE.INPUT``), sweeps, ``--set``
and a folder of input images. They are ordered so that jobs differing only late in the graph
run one after another (the engine's cache then reuses everything upstream), each finished job
is appended to ``manifest.jsonl`` and flushed to disk before the next starts, and every image
a job saves carries the job's id in its name. After a crash or Ctrl+C, ``--resume`` skips the
finished jobs; a job the crash cut off may have left some of its images, which are removed
before it runs again (same seed, same images), so every job ends with exactly one set.

A batch holds its output folder for its whole life (:class:`OutputFolderLock`), so a second
batch, or a ``--resume`` started while the first still runs, cannot render the same jobs or
remove the images the first has just written. Worker processes die with the batch that
started them. A full disk stops the batch instead of letting every later job sample and then
fail at its save.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from studio.engine import Engine
from studio.graph import Workflow
from studio.graph.format import WorkflowFormatError, check_json_values
from studio.graph.model import NodeMode
from studio.overrides import Override, OverrideError, parse_scalar, resolve_target, split_assignment
from studio.registry import Registry

MANIFEST = "manifest.jsonl"
# Beside the manifest while a batch runs: the process id of the batch that holds the folder.
LOCK_FILE = "batch.lock"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Errors after which every later job would fail the same way, at its save.
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class BatchStopped(Exception):
    """The batch cannot go on (its output folder is in use, or the disk is full); the
    message says why and what to do."""


@dataclass(frozen=True)
class Job:
    """One render: the overrides it applies, and an id that names it across runs."""

    overrides: tuple[Override, ...]

    @property
    def key(self) -> str:
        material = json.dumps([[o.node_id, o.input, o.value] for o in self.overrides], sort_keys=True, default=str)
        return hashlib.sha1(material.encode()).hexdigest()[:12]

    def labels(self) -> dict[str, Any]:
        return {override.label: override.value for override in self.overrides}


def read_params(path: Path) -> list[dict[str, Any]]:
    """Rows of ``{"NODE.INPUT": value}`` from a CSV (text cells) or JSONL (typed values) file.
    A byte-order mark (Excel's "CSV UTF-8") is skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise OverrideError(f"{path}: cannot read the params file ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise OverrideError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as "
                            "UTF-8 (Excel: CSV UTF-8)") from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                # A value no PNG could carry (1e999, a lone surrogate) is refused here, not
                # after every job has sampled and fails at save.
                check_json_values(row)
            except WorkflowFormatError as error:
                raise OverrideError(f"{path.name} line {number}, {error.path}: {error.message}") from None
            except (ValueError, RecursionError) as error:
                raise OverrideError(f"{path.name} line {number}: not JSON ({error})") from None
            if not isinstance(row, dict):
                raise OverrideError(f"{path.name} line {number}: expected an object of NODE.INPUT keys")
            rows.append(row)
        return rows
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def _override(workflow: Workflow, registry: Registry, label: str, value: Any, where: str) -> Override:
    node_reference, input_name, _ = split_assignment(f"{label}=", where)
    node_id, input_type = resolve_target(workflow, registry, node_reference, input_name, where)
    if isinstance(value, str):
        value = parse_scalar(value, input_type, where)
    return Override(node_id, input_name, value, label)


def image_node(workflow: Workflow) -> str:
    loaders = [node.id for node in workflow.nodes.values() if node.type == "LoadImage" and node.mode is NodeMode.NORMAL]
    if len(loaders) != 1:
        raise OverrideError(f"--images needs exactly one LoadImage node to feed; this workflow has {len(loaders)}")
    return loaders[0]


def build_jobs(workflow: Workflow, registry: Registry, rows: Iterable[dict[str, Any]] = (),
               fixed: Iterable[Override] = (), sweeps: Iterable[list[Override]] = (),
               images: Iterable[Path] = (), source: str = "params") -> list[Job]:
    """Every combination of a params row, one value of each sweep and an input image."""
    row_overrides = [[_override(workflow, registry, label, value, f"{source} row {index + 1}, {label}")
                      for label, value in row.items() if value not in (None, "")]
                     for index, row in enumerate(rows)] or [[]]
    image_list = sorted(Path(p) for p in images)
    image_overrides = [[]]
    if image_list:
        node_id = image_node(workflow)
        image_overrides = [[Override(node_id, "image", str(path.resolve()), f"{node_id}.image")]
                           for path in image_list]
    jobs = []
    for row, image, combination in itertools.product(row_overrides, image_overrides, itertools.product(*sweeps)):
        jobs.append(Job((*fixed, *row, *image, *combination)))
    return jobs


def order_jobs(workflow: Workflow, jobs: list[Job]) -> list[Job]:
    """Jobs sharing their upstream values next to each other, so the cache serves them."""
    graph = nx.DiGraph()
    graph.add_nodes_from(workflow.nodes)
    graph.add_edges_from((link.source, link.target) for link in workflow.links() if link.source in workflow.nodes)
    try:
        rank = {node_id: index for index, node_id in enumerate(nx.topological_sort(graph))}
    except nx.NetworkXUnfeasible:
        return jobs

    def sort_key(job: Job) -> list[tuple[int, str, str]]:
        return sorted((rank.get(o.node_id, 0), o.input, json.dumps(o.value, default=str)) for o in job.overrides)

    return sorted(jobs, key=sort_key)


def batch_seed_input(registry: Registry, workflow: Workflow, node_id: str) -> str | None:
    """The input of a node whose values only choose the sampler's noise (KSampler's ``seed``),
    so jobs differing only there can share one sampler call; None for other nodes."""
    node = workflow.nodes.get(node_id)
    cls = registry.get(node.type) if node is not None else None
    return getattr(cls, "batch_seed_input", None) if cls is not None else None


def seed_batch_plans(workflow: Workflow, registry: Registry,
                     jobs: Sequence[Sequence[Override]]) -> list[dict[str, list[int]]]:
    """For each job (its overrides, in the order the jobs run), the seeds each sampler node
    will be run with in it and in the jobs right after it that differ from it only in the
    seeds of sampler nodes: what :class:`studio.runtime.seed_batches.SeedBatcher` is told
    before the job runs (the last job of a seed batch plans its own seed only, and so is
    served what the first sampled for it). A job that sets no sampler's seed plans nothing."""
    split = []
    for overrides in jobs:
        seeds: dict[str, Any] = {}
        rest: dict[tuple[str, str], str] = {}
        for override in overrides:  # the last override of an input wins, as when applied
            key = (override.node_id, override.input)
            is_seed = batch_seed_input(registry, workflow, override.node_id) == override.input
            if is_seed and isinstance(override.value, int) and not isinstance(override.value, bool):
                seeds[override.node_id] = override.value
                rest.pop(key, None)
            else:
                if is_seed:
                    seeds.pop(override.node_id, None)
                rest[key] = json.dumps(override.value, sort_keys=True, default=str)
        split.append((seeds, tuple(sorted(rest.items())), tuple(sorted(seeds))))
    plans: list[dict[str, list[int]]] = []
    for index, (seeds, rest, targets) in enumerate(split):
        following = [seeds]
        for later_seeds, later_rest, later_targets in split[index + 1:]:
            if later_rest != rest or later_targets != targets:
                break
            following.append(later_seeds)
        plans.append({node_id: [item[node_id] for item in following] for node_id in targets})
    return plans


class Manifest:
    """``manifest.jsonl`` in the output folder: one line per finished job, on disk before the
    next job starts."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST
        folder.mkdir(parents=True, exist_ok=True)

    def records(self) -> dict[str, dict[str, Any]]:
        """The last record of each job (a torn last line from a crash is ignored)."""
        found: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("job"), str):
                    found[record["job"]] = record
        return found

    def append(self, record: dict[str, Any]) -> None:
        """Add a record on a line of its own, on disk when this returns; a failure to write
        (a full disk) is a :class:`BatchStopped`."""
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        try:
            with open(self.path, "a+b") as stream:
                # A crash (or a full disk) in the middle of an earlier append leaves a torn
                # last line. Ended here, it stays a line of its own that reading skips;
                # otherwise this record would be glued onto it, unreadable, and a later
                # --resume would render this finished job again.
                if stream.seek(0, os.SEEK_END) > 0:
                    stream.seek(-1, os.SEEK_END)
                    if stream.read(1) != b"\n":
                        line = b"\n" + line
                stream.write(line)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:
            raise BatchStopped(f"cannot write to {self.path} ({error.strerror or error}); the batch stopped. "
                               "Finished jobs are kept: run it again with --resume once this is fixed") from None


def tag_outputs(workflow: Workflow, registry: Registry, key: str) -> None:
    """Give every save node's file names the job id, so a job's images can be found again."""
    for node in workflow.nodes.values():
        cls = registry.get(node.type)
        if cls is not None and cls.spec().input("filename_prefix") is not None:
            prefix = node.values.get("filename_prefix") or cls.spec().input("filename_prefix").default
            workflow.set_value(node.id, "filename_prefix", f"{prefix}-{key}")


def job_outputs(folder: Path, key: str) -> list[Path]:
    """Images a job saved (its id is in their names)."""
    return sorted(folder.rglob(f"*-{key}_*_.png"))


_JOB_IMAGE = re.compile(r"^.*-([0-9a-f]{12})_\d+_\.png$")


def images_of_jobs(folder: Path, keys: set[str]) -> list[Path]:
    """Images in ``folder`` whose names carry one of the job ids ``keys`` (one pass)."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*-*_.png")
                  if (match := _JOB_IMAGE.match(path.name)) and match.group(1) in keys)


# A hidden temporary file of a job's image (studio.fileio: ".NAME.RANDOM.tmp"), left behind
# when the batch was killed in the middle of writing it.
_JOB_TEMPORARY = re.compile(r"^\..*-([0-9a-f]{12})_\d+_\.png\..*\.tmp$")


def remove_job_temporaries(folder: Path, keys: set[str]) -> list[Path]:
    """Remove the hidden temporary files that the jobs ``keys`` left in ``folder`` when a
    kill cut off their saves; returns them."""
    removed = []
    for path in folder.rglob(".*.tmp"):
        match = _JOB_TEMPORARY.match(path.name)
        if match and match.group(1) in keys:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def render_job(engine: Engine, workflow: Workflow, registry: Registry, job: Job,
               seed_plan: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Run one job; the manifest record of what happened (errors included, never raised).
    ``seed_plan`` (from :func:`seed_batch_plans`) lets its sampler take the coming jobs' seeds
    in the same call."""
    began = time.perf_counter()
    batcher = engine.services.seed_batches
    if batcher is not None:
        batcher.expect(seed_plan or {})
    graph = workflow.copy()
    for override in job.overrides:
        override.apply(graph)
    tag_outputs(graph, registry, job.key)
    report = engine.run(graph)
    record: dict[str, Any] = {"job": job.key, "overrides": job.labels(), "status": str(report.status),
                              "outputs": [str(path) for _, path in report.files],
                              "seconds": round(time.perf_counter() - began, 3)}
    if report.problems:
        record["error"] = "; ".join(str(problem) for problem in report.problems)
    elif report.errors:
        record["error"] = "; ".join(str(error) for error in report.errors)
        if any(error.errno in DISK_FULL for error in report.errors):
            record["disk_full"] = True
    return record


def stop_if_disk_full(record: dict[str, Any], output: Path) -> None:
    """After a job that failed for lack of space, every later job would sample and then fail
    at its save too: stop the batch instead."""
    if record.get("disk_full"):
        raise BatchStopped(f"the disk holding {output} is full ({record.get('error', '')}); the batch stopped. "
                           "Finished jobs are kept: free some space and run it again with --resume")


class OutputFolderLock:
    """One batch at a time in an output folder, for the batch's whole life.

    The lock is the operating system's lock on :data:`LOCK_FILE` (``flock``; a byte-range
    lock on Windows), which the system lets go of when the holder dies however it dies, so
    a lock file left by a killed batch is simply taken over. The file holds the holder's
    process id, for the sentence a second batch is refused with.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Hold the folder, or raise :class:`BatchStopped` naming who holds it."""
        try:
            self._acquire()
        except OSError as error:
            raise BatchStopped(f"cannot use {self.folder} as the output folder ({error.strerror or error})") from None

    def _acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(descriptor):
                holder = _read_pid(descriptor)
                os.close(descriptor)
                who = f"process {holder}" if holder else "another process"
                raise BatchStopped(f"{self.folder} is in use by another batch ({who}); wait for it to finish, "
                                   "or choose another --out")
            # The previous holder may have removed the file between our open and our lock:
            # then we hold a lock on a file no one else can see; open it again.
            try:
                same = os.path.samestat(os.fstat(descriptor), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is None:
            return
        # Removed while still held, so that no one can lock the old file after we let go.
        with contextlib.suppress(OSError):  # Windows does not remove an open file; the next batch takes it over
            self.path.unlink(missing_ok=True)
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self) -> OutputFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _try_lock(descriptor: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: lock a byte far past the process id
        import msvcrt

        os.lseek(descriptor, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(descriptor, 0, os.SEEK_SET)
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _read_pid(descriptor: int) -> int | None:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except (OSError, AttributeError):
        return None
    return int(text) if text.isdigit() else None


@dataclass
class BatchProgress:
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    began: float = 0.0
    rendered: int = 0

    def per_minute(self) -> float:
        elapsed = time.perf_counter() - self.began
        return self.rendered / elapsed * 60 if elapsed > 0 and self.rendered else 0.0

    def eta_seconds(self) -> float | None:
        rate = self.per_minute()
        remaining = self.total - self.done - self.skipped
        return remaining / rate * 60 if rate else None


def pending_jobs(jobs: list[Job], manifest: Manifest, output: Path, resume: bool) -> list[Job]:
    """The jobs still to render. On resume, finished jobs are skipped; an unfinished job's
    leftover images (the crash came between its saves and its manifest line) are removed
    so that running it again does not leave two copies, and so are the hidden temporary files
    of a save that a kill cut off."""
    if not resume:
        return list(jobs)
    records = manifest.records()
    pending = []
    for job in jobs:
        record = records.get(job.key)
        if record is not None and record.get("status") == "ok":
            continue
        for leftover in job_outputs(output, job.key):
            leftover.unlink()
        pending.append(job)
    remove_job_temporaries(output, {job.key for job in pending})
    return pending


# -- worker processes ---------------------------------------------------------------------
_worker: dict[str, Any] = {}


def make_worker(workflow_text: str, settings: Any, policy: Any = None) -> dict[str, Any]:
    """What a worker keeps for all the jobs it is given: its own registry, models and cache."""
    import gc

    from studio.graph import loads
    from studio.graph.png import workflow_texts
    from studio.registry import build_registry
    from studio.runtime.services import create_services

    registry = build_registry(settings.plugin_dirs)
    gc.freeze()
    engine = Engine(registry, settings, services=create_services(settings, policy), image_metadata=workflow_texts)
    return {"workflow": loads(workflow_text), "registry": registry, "engine": engine}


def die_with_parent(parent_pid: int) -> None:
    """Make this worker process end when the batch that started it ends, even by kill -9,
    instead of rendering on into a folder no one records. On Linux the kernel sends the
    signal (PR_SET_PDEATHSIG); everywhere, :func:`render_in_worker` checks between jobs."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # no prctl here: the check between jobs still stops the worker
    if os.getppid() != parent_pid:  # the batch died before the line above took effect
        os._exit(1)


def start_worker(workflow_text: str, settings: Any, counter: Any = None, workers: int = 1,
                 parent_pid: int | None = None) -> None:
    """Runs once in each local worker process: worker i takes GPU i (when there are several)
    and its share of the CPU threads, so workers do not fight over one device."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
        _worker["parent_pid"] = parent_pid
    import torch

    from studio.runtime.device import DevicePolicy

    index = 0
    if counter is not None:
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    policy = None
    if torch.cuda.device_count() > 1:
        policy = DevicePolicy.detect(prefer=f"cuda:{index % torch.cuda.device_count()}", low_vram=settings.low_vram)
    _worker.update(make_worker(workflow_text, settings, policy))


def render_in_worker(job: Job) -> dict[str, Any]:
    parent_pid = _worker.get("parent_pid")
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the batch is gone: no one would record this job
    return render_job(_worker["engine"], _worker["workflow"], _worker["registry"], job)


# -- Ray ----------------------------------------------------------------------------------
def render_and_collect(engine: Engine, workflow: Workflow, registry: Registry, job: Job,
                       scratch: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Render a job into a scratch folder and hand back the images' bytes, so a driver on
    another machine can write them (no shared disk needed)."""
    record = render_job(engine, workflow, registry, job)
    images: dict[str, bytes] = {}
    for name in record["outputs"]:
        path = Path(name)
        images[path.relative_to(scratch).as_posix()] = path.read_bytes()
        path.unlink()
    return record, images


def store_images(record: dict[str, Any], images: dict[str, bytes], output: Path) -> dict[str, Any]:
    """Write a remote job's images into the output folder (never over an existing file)."""
    from studio.fileio import write_new_file

    written = []
    for relative, data in sorted(images.items()):
        target = output / relative
        stem, counter = target.stem.rsplit("_", 2)[0], 1
        while not write_new_file(target, data):  # a name taken by another job's image
            counter += 1
            target = target.with_name(f"{stem}_{counter:05d}_.png")
        written.append(str(target))
    return {**record, "outputs": written}


def run_on_ray(address: str | None, workflow_text: str, settings: Any, jobs: list[Job],
               finished: Any, actors: int | None = None) -> None:
    """Render ``jobs`` on Ray actors that each keep their models loaded (one per GPU where
    the cluster has GPUs). A job whose actor dies is given to another, new actor; results
    reach ``finished`` in the order they complete."""
    import ray

    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = actors or gpus or 1
    resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}

    @ray.remote(max_restarts=0, **resources)
    class RenderActor:
        def __init__(self, text: str, actor_settings: Any) -> None:
            import tempfile

            self.scratch = Path(tempfile.mkdtemp(prefix="seed-studio-ray-"))
            self.worker = make_worker(text, actor_settings.replace(output_dir=self.scratch))

        def render(self, job: Job) -> tuple[dict[str, Any], dict[str, bytes]]:
            worker = self.worker
            return render_and_collect(worker["engine"], worker["workflow"], worker["registry"], job, self.scratch)

    created = itertools.count()

    def new_actor() -> Any:
        return RenderActor.options(name=f"seed-studio-render-{next(created)}").remote(workflow_text, settings)

    queue = list(reversed(jobs))
    idle = [new_actor() for _ in range(min(count, len(jobs)))]
    running: dict[Any, tuple[Any, Job]] = {}
    try:
        while queue or running:
            while queue and idle:
                actor = idle.pop()
                job = queue.pop()
                running[actor.render.remote(job)] = (actor, job)
            done, _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(done[0])
            try:
                record, images = ray.get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                queue.append(job)  # the actor died with it: the job goes to a fresh one
                idle.append(new_actor())
                continue
            idle.append(actor)
            finished(store_images(record, images, settings.output_dir))
    finally:
        # Also when the batch stops early (a full disk, Ctrl+C): no actor renders on.
        for actor in [*idle, *(actor for actor, _ in running.values())]:
            ray.kill(actor)
