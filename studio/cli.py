"""The ``studio`` command: render, validate and list nodes headless.

Exit codes: 0 done, 1 a node failed or a workflow has problems, 2 the command or a file
could not be used, 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from studio.engine import Engine, NodeFailed, NodeFinished, NodeProgress, NodeStarted, RunReport, RunStarted, RunStatus
from studio.engine.events import Event
from studio.engine.plan import default_targets
from studio.engine.validate import graded, no_output_problem
from studio.fileio import atomic_write_text, output_folder_problem
from studio.graph import Workflow, WorkflowFormatError, dumps
from studio.graph.comfy import to_comfy_api, to_comfy_ui
from studio.graph.files import MAX_WORKFLOW_BYTES, open_workflow, workflow_from_bytes
from studio.graph.png import workflow_texts
from studio.node_api import Services
from studio.overrides import Override, OverrideError, parse_set, parse_sweep
from studio.registry import Registry, build_registry
from studio.runtime.models import ModelFolders, ModelPathsError, missing_models
from studio.settings import SPEEDS, Settings, SettingsError
from studio.startup import RuntimeImport, keep_working_folder_off_path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# The most jobs one render or batch enumerates (sweeps multiplied by params rows and images);
# a larger product is refused with a sentence before any job is built.
MAX_JOBS = 100_000


class CommandError(Exception):
    """A problem with what was asked on the command line; printed without a traceback."""


class ProgressPrinter:
    """Engine events as progress on stderr: a redrawn bar on a terminal, lines otherwise."""

    def __init__(self, stream: TextIO, run_label: str) -> None:
        self.stream = stream
        self.run_label = run_label
        self.terminal = stream.isatty()
        self.total = 0
        self.done = 0
        self.current = ""

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.total, self.done = len(event.planned), 0
        elif isinstance(event, NodeStarted):
            self.current = f"#{event.node_id} {event.node_type}"
            self._draw("")
        elif isinstance(event, NodeProgress):
            self._draw(f" {event.step}/{event.total}")
        elif isinstance(event, NodeFinished):
            self.done += 1
            self.current = f"#{event.node_id} {event.node_type}"
            if self.terminal:
                self._draw("")
            else:
                how = "cached" if event.cached else f"{event.seconds:.2f}s"
                self.stream.write(f"{self.run_label} {self.done}/{self.total} {self.current} ({how})\n")
        elif isinstance(event, NodeFailed):
            self._end_line()
            self.stream.write(f"{self.run_label} node #{event.node_id} ({event.node_type}) failed: {event.message}\n")

    def _draw(self, detail: str) -> None:
        if not self.terminal:
            return
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "█" * filled + "░" * (width - filled)
        self.stream.write(f"\r{self.run_label} {bar} {self.done}/{self.total} {self.current}{detail}\x1b[K")
        self.stream.flush()

    def _end_line(self) -> None:
        if self.terminal:
            self.stream.write("\n")

    def finish(self) -> None:
        self._end_line()
        self.stream.flush()


def _load_settings(args: argparse.Namespace) -> Settings:
    try:
        settings = Settings.load(args.config)
    except SettingsError as error:
        raise CommandError(str(error)) from None
    if getattr(args, "out", None):
        settings = settings.replace(output_dir=Path(args.out).expanduser())
    if getattr(args, "speed", None):
        settings = settings.replace(speed=args.speed)
    return settings


def read_workflow(path: str | os.PathLike[str], registry: Registry) -> tuple[Workflow, Any]:
    """:func:`open_workflow`, also for what is not a regular file (a pipe, ``/dev/stdin``,
    ``/dev/zero``): read at most one byte more than a workflow may have, never forever."""
    file_path = Path(path)
    try:
        regular = file_path.is_file() or not file_path.exists()
    except OSError:
        regular = True
    if regular:
        return open_workflow(file_path, registry.spec)
    if file_path.is_dir():
        raise WorkflowFormatError("$", "this is a folder, not a workflow file", str(file_path))
    try:
        with open(file_path, "rb") as stream:
            raw = stream.read(MAX_WORKFLOW_BYTES + 1)
    except OSError as error:
        raise WorkflowFormatError("$", f"cannot read the file ({error.strerror or error})", str(file_path)) from None
    return workflow_from_bytes(raw, registry.spec, str(file_path))


def count_jobs(*factors: int) -> int:
    """The number of jobs a product of sweeps (and params rows, images) makes, refused above
    :data:`MAX_JOBS` before any is built."""
    total = math.prod(max(1, factor) for factor in factors)
    if total > MAX_JOBS:
        sizes = " × ".join(str(max(1, factor)) for factor in factors if factor > 1)
        raise CommandError(f"{sizes} = {total:,} jobs is more than the {MAX_JOBS:,} one command renders; "
                           "split the sweeps over several commands")
    return total


def check_output_folder(folder: Path) -> None:
    """An output folder that cannot take the images (no permission, a file in its place, a
    full disk) is found before anything is sampled."""
    problem = output_folder_problem(folder)
    if problem is not None:
        raise CommandError(problem)


def _saves_files(workflow: Workflow, registry: Registry) -> bool:
    for node in workflow.nodes.values():
        cls = registry.get(node.type)
        if cls is not None and cls.spec().input("filename_prefix") is not None:
            return True
    return False


def _load_workflow(path: str, registry: Registry, stderr: TextIO) -> Workflow:
    try:
        workflow, report = read_workflow(path, registry)
    except WorkflowFormatError as error:
        raise CommandError(str(error)) from None
    for warning in report.warnings:
        stderr.write(f"{path}: {warning}\n")
    return workflow


def _registry(settings: Settings, stderr: TextIO) -> Registry:
    registry = build_registry(settings.plugin_dirs)
    for problem in registry.problems:
        stderr.write(f"warning: node plugin not loaded: {problem}\n")
    return registry


def _rendering_services(settings: Settings, runtime: RuntimeImport | None, seed_batch: int | None) -> Services:
    """The services a rendering engine hands its nodes, once torch and the model libraries
    are imported; with the seed batcher that lets jobs differing only in their sampler's seed
    share one sampler call (``--seed-batch``: None chooses the size, 1 turns it off)."""
    if runtime is not None:
        runtime.wait()
    from studio.runtime.seed_batches import SeedBatcher
    from studio.runtime.services import create_services

    # The libraries just imported (torch above all) leave hundreds of thousands of objects
    # that live as long as the process; moving them out of the collector's sight makes every
    # later garbage collection during a render cheap (measured: large graphs 20-40% faster).
    gc.freeze()
    services = create_services(settings)
    services.seed_batches = SeedBatcher(seed_batch)
    return services


def run_summary(report: RunReport, overrides: Sequence[Override]) -> dict[str, Any]:
    data = report.to_dict()
    data["overrides"] = {override.label: override.value for override in overrides}
    return data


def command_render(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from studio.batch import seed_batch_plans

    # torch and the model libraries import on their own thread while the file is read and
    # its overrides checked (imports: see studio.startup.RuntimeImport).
    runtime = RuntimeImport()
    settings = _load_settings(args)
    registry = _registry(settings, stderr)
    workflow = _load_workflow(args.workflow, registry, stderr)
    fixed = [parse_set(workflow, registry, text) for text in args.set or []]
    sweeps = [parse_sweep(workflow, registry, text) for text in args.sweep or []]
    count_jobs(*(len(sweep) for sweep in sweeps))
    combinations = list(itertools.product(*sweeps)) if sweeps else [()]
    if _saves_files(workflow, registry):
        check_output_folder(settings.output_dir)
    jobs = [[*fixed, *combination] for combination in combinations]
    # Combinations that differ only in a sampler's seed are sampled as one batch.
    plans = seed_batch_plans(workflow, registry, jobs)

    services = _rendering_services(settings, runtime, args.seed_batch)
    engine = Engine(registry, settings, services=services, image_metadata=workflow_texts)
    runs: list[dict[str, Any]] = []
    warned: set[str] = set()
    status = EXIT_OK
    for index, (overrides, plan) in enumerate(zip(jobs, plans, strict=True), start=1):
        job = workflow.copy()
        for override in overrides:
            override.apply(job)
        label = f"[{index}/{len(combinations)}]"
        printer = ProgressPrinter(stderr, label)
        services.seed_batches.expect(plan)
        report = engine.run(job, on_event=printer)
        printer.finish()
        runs.append(run_summary(report, overrides))
        for warning in map(str, report.warnings):
            if warning not in warned:  # once, not once per combination
                warned.add(warning)
                stderr.write(f"{args.workflow}: warning: {warning}\n")
        if report.status is RunStatus.INVALID:
            stderr.write(f"{args.workflow} is not valid:\n")
            for problem in report.problems:
                stderr.write(f"  {problem}\n")
            status = EXIT_FAILED
            break
        for node_id, message in report.notes:
            stderr.write(f"{label} #{node_id}: {message}\n")
        if not report.ok:
            status = EXIT_FAILED
            for error in report.errors:
                stderr.write(f"{label} {error}\n")
        elif not args.json:
            for _node, path in report.files:
                stdout.write(f"{path}\n")
    if args.json:
        json.dump({"workflow": str(args.workflow), "runs": runs,
                   "status": "ok" if status == EXIT_OK else "failed",
                   # how long torch and the model libraries took to import, and how much of
                   # that the render waited for after reading its file
                   "runtime_import": {"seconds": round(runtime.seconds, 3), "waited": round(runtime.waited, 3)}},
                  stdout, indent=2)
        stdout.write("\n")
    return status


def command_validate(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = _load_settings(args)
    registry = _registry(settings, stderr)
    engine = Engine(registry, settings, cache_bytes=0)
    results = []
    status = EXIT_OK
    for path in args.workflows:
        try:
            workflow, import_report = read_workflow(path, registry)
        except WorkflowFormatError as error:
            results.append({"workflow": path, "valid": False, "error": str(error), "problems": []})
            status = EXIT_FAILED
            if not args.json:
                stdout.write(f"{path}: cannot be read: {error}\n")
            continue
        # Registered loader nodes check their own files; this covers placeholder node types.
        found = engine.validate(workflow) + graded(
            missing_models(workflow, ModelFolders.from_settings(settings), skip_types=set(registry.types())),
            workflow, registry)
        problems = [problem for problem in found if problem.is_error]
        warnings = [problem for problem in found if not problem.is_error]
        results.append({"workflow": path, "format": import_report.source_format, "valid": not problems,
                        "notes": import_report.warnings, "problems": [p.to_dict() for p in problems],
                        "warnings": [w.to_dict() for w in warnings]})
        if problems:
            status = EXIT_FAILED
        if not args.json:
            for note in import_report.warnings:
                stdout.write(f"{path}: note: {note}\n")
            if problems:
                noun = "problem" if len(problems) == 1 else "problems"
                stdout.write(f"{path}: {len(problems)} {noun}\n")
                for problem in problems:
                    stdout.write(f"  {problem}\n")
            else:
                counted = f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''}" if warnings else ""
                stdout.write(f"{path}: valid ({len(workflow.nodes)} nodes{counted})\n")
            for warning in warnings:
                stdout.write(f"  warning: {warning}\n")
    if args.json:
        json.dump(results, stdout, indent=2)
        stdout.write("\n")
    return status


def command_nodes(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = _load_settings(args)
    registry = _registry(settings, stderr)
    descriptions = [cls.describe() for cls in registry]
    if args.json:
        json.dump(descriptions, stdout, indent=2, default=str)
        stdout.write("\n")
        return EXIT_OK
    for category, group in itertools.groupby(sorted(descriptions, key=lambda d: (d["category"], d["type"])),
                                              key=lambda d: d["category"]):
        stdout.write(f"{category}\n")
        for description in group:
            stdout.write(f"  {description['type']}  ({description['title']})\n")
            summary = description["description"].split("\n\n")[0].replace("\n", " ")
            stdout.write(f"      {summary}\n")
            for spec in description["inputs"]:
                details = [spec["type"]]
                if "default" in spec and spec["default"] not in (None, ""):
                    details.append(f"default {spec['default']!r}")
                if "min" in spec or "max" in spec:
                    details.append(f"{spec.get('min', '')}..{spec.get('max', '')}")
                if "choices" in spec:
                    details.append("one of " + ", ".join(map(str, spec["choices"])))
                if spec.get("optional"):
                    details.append("optional")
                stdout.write(f"      in  {spec['name']}: {'; '.join(details)}\n")
            for spec in description["outputs"]:
                stdout.write(f"      out {spec['name']}: {spec['type']}\n")
    return EXIT_OK


def _batch_line(progress: Any) -> str:
    eta = progress.eta_seconds()
    eta_text = f"ETA {int(eta // 60)}:{int(eta % 60):02d}" if eta is not None else "ETA –"
    return (f"{progress.done + progress.skipped}/{progress.total} jobs ({progress.failed} failed, "
            f"{progress.skipped} already done), {progress.per_minute():.1f} images/min, {eta_text}")


def command_batch(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from studio.batch import IMAGE_SUFFIXES, BatchStopped, OutputFolderLock, build_jobs, order_jobs, read_params

    # Rendered in this process: torch imports while the jobs are read (workers import their own).
    runtime = RuntimeImport() if args.workers <= 1 and not args.ray else None
    settings = _load_settings(args)
    registry = _registry(settings, stderr)
    workflow = _load_workflow(args.workflow, registry, stderr)
    if not default_targets(workflow, registry):
        # Every job would "succeed" without an image: refuse the batch, not each job.
        stderr.write(f"{args.workflow} is not valid:\n  {no_output_problem(workflow, registry)}\n")
        return EXIT_FAILED
    rows = read_params(Path(args.params)) if args.params else []
    if args.params and not rows:
        stderr.write(f"studio batch: {args.params} has no rows (a header only?): no jobs, nothing rendered\n")
        return EXIT_FAILED
    images: list[Path] = []
    if args.images:
        folder = Path(args.images)
        if not folder.is_dir():
            raise CommandError(f"--images {folder}: not a folder")
        images = [path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise CommandError(f"--images {folder}: no image files in it")
        # LoadImage reads only inside the input folders: this batch's folder becomes one.
        settings = settings.replace(input_dirs=(folder.resolve(), *settings.input_dirs))
    sweeps = [parse_sweep(workflow, registry, text) for text in args.sweep or []]
    count_jobs(len(rows), len(images), *(len(sweep) for sweep in sweeps))
    jobs = order_jobs(workflow, build_jobs(
        workflow, registry, rows, [parse_set(workflow, registry, text) for text in args.set or []],
        sweeps, images, Path(args.params).name if args.params else "params"))
    output = settings.output_dir
    check_output_folder(output)
    lock = OutputFolderLock(output)
    try:
        lock.acquire()
    except BatchStopped as error:
        raise CommandError(str(error)) from None
    try:
        return _run_batch(args, settings, registry, workflow, jobs, stdout, stderr, runtime)
    except BatchStopped as error:
        stderr.write(("\n" if stderr.isatty() else "") + f"studio batch: {error}\n")
        return EXIT_FAILED
    finally:
        lock.release()


def _run_batch(args: argparse.Namespace, settings: Settings, registry: Registry, workflow: Workflow,
               jobs: list[Any], stdout: TextIO, stderr: TextIO, runtime: RuntimeImport | None = None) -> int:
    """The batch itself, while its output folder is held."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from studio.batch import (
        BatchProgress,
        Manifest,
        images_of_jobs,
        pending_jobs,
        render_in_worker,
        render_job,
        seed_batch_plans,
        start_worker,
        stop_if_disk_full,
    )

    output = settings.output_dir
    manifest = Manifest(output)
    if manifest.path.exists() and not args.resume:
        raise CommandError(f"{manifest.path} exists: pass --resume to continue that batch, or choose another --out")
    if not args.resume:
        # A batch of the same jobs stopped before its first record: starting afresh would give
        # those jobs a second image each.
        found = images_of_jobs(output, {job.key for job in jobs})
        if found:
            raise CommandError(f"{output} already holds {len(found)} image(s) of this batch's jobs (e.g. "
                               f"{found[0].name}) from a batch stopped before it recorded them: pass --resume to "
                               "continue it, or choose another --out")
    todo = pending_jobs(jobs, manifest, output, args.resume)
    progress = BatchProgress(total=len(jobs), skipped=len(jobs) - len(todo), began=time.perf_counter())

    def finished(record: dict[str, Any]) -> None:
        manifest.append(record)
        progress.done += 1
        progress.rendered += len(record["outputs"])
        if record["status"] != "ok":
            progress.failed += 1
            stderr.write(f"job {record['job']} {record['overrides']}: {record.get('error', record['status'])}\n")
        if args.json:
            stdout.write(json.dumps(record, default=str) + "\n")
            stdout.flush()
        stderr.write(("\r" if stderr.isatty() else "") + _batch_line(progress) + ("" if stderr.isatty() else "\n"))
        stderr.flush()
        stop_if_disk_full(record, output)

    if args.ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise CommandError("Ray is not installed; install it with: pip install '.[ray]'") from None
        from studio.batch import run_on_ray

        run_on_ray(args.ray, dumps(workflow), settings, todo, finished,
                   actors=args.workers if args.workers > 1 else None)
    elif args.workers > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")
        counter = context.Value("i", 0)
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=context, initializer=start_worker,
                                 initargs=(dumps(workflow), settings, counter, args.workers, os.getpid())) as pool:
            futures = [pool.submit(render_in_worker, job) for job in todo]
            try:
                for future in as_completed(futures):
                    finished(future.result())
            except BaseException:
                # Stopped (a full disk, Ctrl+C): the jobs running finish, no new one starts.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    else:
        engine = Engine(registry, settings, services=_rendering_services(settings, runtime, args.seed_batch),
                        image_metadata=workflow_texts)
        # Jobs that differ only in a sampler's seed are sampled as one batch; each is still
        # rendered, saved and recorded on its own.
        plans = seed_batch_plans(workflow, registry, [job.overrides for job in todo])
        for job, plan in zip(todo, plans, strict=True):
            finished(render_job(engine, workflow, registry, job, plan))
    if stderr.isatty():
        stderr.write("\n")
    summary = {"jobs": len(jobs), "rendered": progress.done, "already_done": progress.skipped,
               "failed": progress.failed, "manifest": str(manifest.path)}
    if args.json:
        stdout.write(json.dumps({"summary": summary}) + "\n")
    else:
        stdout.write(f"{progress.done} jobs rendered, {progress.skipped} already done, {progress.failed} failed; "
                     f"manifest: {manifest.path}\n")
    return EXIT_FAILED if progress.failed else EXIT_OK


def command_screenshot(arguments: list[str], stdout: TextIO, stderr: TextIO) -> int:
    parser = argparse.ArgumentParser(prog="studio --screenshot",
                                     description="write a PNG of the main window showing a workflow, then exit")
    parser.add_argument("target", help="PNG file to write")
    parser.add_argument("workflow", nargs="?", help="workflow to show (default: workflows/default.json)")
    parser.add_argument("--scale", type=float, default=1.0, help="device pixel ratio, e.g. 2 for HiDPI")
    parser.add_argument("--size", default=None, help="window size in pixels, e.g. 1100x700 (default 1400x900)")
    args = parser.parse_args(arguments)
    size = None
    if args.size:
        try:
            width, height = (int(part) for part in args.size.lower().split("x"))
        except ValueError:
            stderr.write(f"studio --screenshot: --size takes WIDTHxHEIGHT, e.g. 1100x700, not {args.size!r}\n")
            return EXIT_USAGE
        size = (width, height)
    from studio.app.main import screenshot
    from studio.graph import WorkflowFormatError

    try:
        path = screenshot(Path(args.target), Path(args.workflow) if args.workflow else None, args.scale, size)
    except WorkflowFormatError as error:
        stderr.write(f"studio --screenshot: {error}\n")
        return EXIT_FAILED
    stdout.write(f"{path}\n")
    return EXIT_OK


CONVERSIONS = {"native": "Seed Studio JSON", "comfy": "ComfyUI UI-format JSON", "comfy-api": "ComfyUI API prompt"}


def command_convert(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = _load_settings(args)
    registry = _registry(settings, stderr)
    workflow = _load_workflow(args.input, registry, stderr)
    target = Path(args.output)
    if target.is_dir():
        raise CommandError(f"{target} is a folder; name the file to write, e.g. {target / 'workflow.json'}")
    if target.exists() and not args.force:
        raise CommandError(f"{target} exists; pass --force to replace it")
    remarks: list[str] = []
    if args.to == "native":
        text = dumps(workflow)
    else:
        document = (to_comfy_ui(workflow, registry.spec, remarks) if args.to == "comfy"
                    else to_comfy_api(workflow, registry.spec))
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        atomic_write_text(target, text)
    except OSError as error:
        raise CommandError(f"cannot write {target} ({error.strerror or error})") from None
    for remark in remarks:  # subgraphs that had to be written as plain nodes, and why
        stderr.write(f"{remark}\n")
    unknown = sorted({node.type for node in workflow.nodes.values() if node.type not in registry})
    if unknown:
        stderr.write(f"kept as placeholders (Seed Studio has no such node types): {', '.join(unknown)}\n")
    stdout.write(f"{target} ({CONVERSIONS[args.to]}, {len(workflow.nodes)} nodes)\n")
    return EXIT_OK


SEED_BATCH_HELP = ("jobs that differ only in a sampler's seed are sampled together, N at a time (default: as "
                   "many as the device's free memory holds, at most 16); 1 samples each job on its own")


def _seed_batch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a seed batch takes at least 1 job")
    return value


SPEED_HELP = ("fast: compile the denoiser's repeated blocks (cached on disk; the first render of a size pays "
              "the compile), channels-last and cuDNN autotuning on a GPU; default: the settings' (eager)")


def doctor_report(settings: Settings) -> dict:
    """What this machine gives Seed Studio: device, number format, GPU memory, versions, the
    speed option and the model folders with how many files each holds."""
    import platform

    import torch

    from studio.runtime.device import DevicePolicy
    from studio.runtime.models import KINDS, ModelFolders

    policy = DevicePolicy.detect(low_vram=settings.low_vram)
    report: dict = {
        "device": str(policy.device), "dtype": str(policy.dtype).removeprefix("torch."),
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_threads": torch.get_num_threads(), "low_vram": settings.low_vram, "speed": settings.speed,
    }
    if policy.device.type == "cuda":
        free, total = torch.cuda.mem_get_info(policy.device)
        report.update(gpu=torch.cuda.get_device_name(policy.device), vram_total_gb=round(total / 1024**3, 2),
                      vram_free_gb=round(free / 1024**3, 2), bf16=torch.cuda.is_bf16_supported(),
                      model_budget_gb=round(policy.memory_budget() / 1024**3, 2),
                      flash_attention=torch.backends.cuda.flash_sdp_enabled())
    elif torch.version.cuda is None:
        report["note"] = ("this torch is a CPU build; on a machine with an NVIDIA GPU, `make` installs the CUDA build "
                          "(see the README's GPU section)")
    folders = ModelFolders.from_settings(settings)
    report["model_folders"] = {
        kind: [{"folder": str(folder), "files": sum(1 for _ in folder.iterdir()) if folder.is_dir() else None}
               for folder in folders.folders_for(kind)] for kind in KINDS}
    return report


def command_doctor(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    report = doctor_report(_load_settings(args))
    if args.json:
        stdout.write(json.dumps(report, indent=2) + "\n")
        return EXIT_OK
    for key, value in report.items():
        if key != "model_folders":
            stdout.write(f"{key:>16}: {value}\n")
    stdout.write("   model folders:\n")
    for kind, entries in report["model_folders"].items():
        for entry in entries:
            found = "missing" if entry["files"] is None else f"{entry['files']} files"
            stdout.write(f"  {kind:>16}: {entry['folder']} ({found})\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio", description="Seed Studio: node-graph image generation. With no command (or just a "
        "workflow file) the desktop app opens; studio --screenshot FILE.png [WORKFLOW] [--scale 2] writes a "
        "picture of it.")
    parser.add_argument("--config", help="settings file to use instead of the user's settings.json")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    render = commands.add_parser("render", help="run a workflow headless and save its images")
    render.add_argument("workflow", help="workflow file: Seed Studio or ComfyUI JSON, or a PNG that carries one")
    render.add_argument("--out", help="output folder (default: the one in the settings)")
    render.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE",
                        help="change a field for this render; NODE is a node id or a unique title")
    render.add_argument("--sweep", action="append", metavar="NODE.INPUT=V1,V2,…",
                        help="render once per value (A..B for a range of whole numbers); several "
                        "sweeps render every combination, reusing unchanged work")
    render.add_argument("--seed-batch", type=_seed_batch, metavar="N", help=SEED_BATCH_HELP)
    render.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    render.add_argument("--speed", choices=SPEEDS, help=SPEED_HELP)
    render.set_defaults(handler=command_render)

    validate_command = commands.add_parser("validate", help="list every problem in workflow files")
    validate_command.add_argument("workflows", nargs="+", metavar="WORKFLOW")
    validate_command.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    validate_command.set_defaults(handler=command_validate)

    batch = commands.add_parser("batch", help="render a workflow many times from a params file, sweeps or "
                                "a folder of images; resumable")
    batch.add_argument("workflow")
    batch.add_argument("--params", help="CSV (columns) or JSONL (keys) of NODE.INPUT values, one job per row")
    batch.add_argument("--out", help="output folder (holds the images and manifest.jsonl)")
    batch.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE", help="as in studio render")
    batch.add_argument("--sweep", action="append", metavar="NODE.INPUT=V1,V2,…", help="as in studio render")
    batch.add_argument("--images", metavar="DIR", help="one job per image file, fed to the LoadImage node")
    batch.add_argument("--resume", action="store_true", help="continue a batch in --out, skipping finished jobs")
    batch.add_argument("--workers", type=int, default=1, help="local worker processes (each loads models once)")
    batch.add_argument("--ray", metavar="ADDRESS", help="run the jobs on a Ray cluster: 'auto', an address, or "
                       "'local' to start one here (actors keep models loaded, one per GPU)")
    batch.add_argument("--seed-batch", type=_seed_batch, metavar="N", help=SEED_BATCH_HELP + " (one process only)")
    batch.add_argument("--json", action="store_true", help="a JSON line per finished job on stdout")
    batch.add_argument("--speed", choices=SPEEDS, help=SPEED_HELP)
    batch.set_defaults(handler=command_batch)

    convert = commands.add_parser("convert", help="convert between Seed Studio and ComfyUI workflow formats")
    convert.add_argument("input", help="workflow: Seed Studio or ComfyUI JSON, or a PNG that carries one")
    convert.add_argument("output", help="file to write")
    convert.add_argument("--to", choices=sorted(CONVERSIONS), default="native",
                         help="native (default), comfy (ComfyUI UI format) or comfy-api (ComfyUI API prompt)")
    convert.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    convert.set_defaults(handler=command_convert)

    nodes = commands.add_parser("nodes", help="list every node type with its inputs and outputs")
    nodes.add_argument("--json", action="store_true", help="print JSON on stdout")
    nodes.set_defaults(handler=command_nodes)

    doctor = commands.add_parser("doctor", help="print the device, number format, GPU memory, torch/CUDA "
                                 "versions and the model folders found")
    doctor.add_argument("--json", action="store_true", help="print JSON on stdout")
    doctor.set_defaults(handler=command_doctor)
    return parser


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    # Started as ``python -c`` or the console script: the modules imported from here on
    # (the node library, plugins' imports, torch's own) must not come from the working folder.
    keep_working_folder_off_path()
    # Everything loading needs is on disk; keep the Hugging Face libraries from asking the Hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--screenshot"]:
        return command_screenshot(arguments[1:], stdout, stderr)
    parser = build_parser()
    if not arguments or (len(arguments) == 1 and arguments[0].endswith((".json", ".png"))
                         and Path(arguments[0]).is_file()):
        from studio.app.main import run_app

        return run_app(Path(arguments[0]) if arguments else None)
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help(stdout)
        return EXIT_OK
    try:
        return args.handler(args, stdout, stderr)
    except (CommandError, OverrideError) as error:
        stderr.write(f"studio {args.command}: {error}\n")
        return EXIT_USAGE
    except ModelPathsError as error:  # an extra_model_paths file the settings name cannot be read
        stderr.write(f"studio {args.command}: {' '.join(str(error).split())}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stderr.write("\ninterrupted; finished images are kept\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
