"""Opening any workflow file an artist may have: Seed Studio's own JSON, ComfyUI's UI or API
JSON, or a PNG carrying any of them in its text chunks (ours first, then ComfyUI's
``workflow``, then its ``prompt``). A ComfyUI ``workflow`` chunk is checked against the
``prompt`` chunk beside it, whose values win where they differ."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from studio.graph.comfy.importer import (
    ImportReport,
    check_against_prompt,
    import_api,
    import_ui,
    looks_like_api,
    looks_like_ui,
)
from studio.graph.connect import SpecLookup
from studio.graph.format import FORMAT_NAME, WorkflowFormatError, parse_json, workflow_from_data
from studio.graph.model import Workflow
from studio.graph.png import PNG_SIGNATURE, WORKFLOW_TEXT_KEYS, PngTextError, read_png_text

# A workflow file larger than this is not one; refusing it early bounds memory and time.
MAX_WORKFLOW_BYTES = 256 * 1024 * 1024


def workflow_from_document(data: Any, spec_of: SpecLookup, source: str = "") -> tuple[Workflow, ImportReport]:
    """Whichever format ``data`` (parsed JSON) is in, as a native workflow."""
    try:
        if isinstance(data, dict) and "format" in data:
            if data.get("format") != FORMAT_NAME:
                raise WorkflowFormatError("$.format", f"unknown workflow format {data.get('format')!r:.60}", source)
            return workflow_from_data(data, source), ImportReport("native")
        if looks_like_ui(data):
            return import_ui(data, spec_of, source)
        if looks_like_api(data):
            return import_api(data, spec_of, source)
    except RecursionError:
        raise WorkflowFormatError("$", "nested too deeply to be a workflow", source) from None
    raise WorkflowFormatError("$", "not a workflow: expected Seed Studio's format, or a ComfyUI workflow "
                              "(UI format with 'nodes' and 'links', or an API prompt)", source)


def _check_prompt_chunk(workflow: Workflow, text: str, spec_of: SpecLookup, report: ImportReport, where: str) -> None:
    try:
        prompt = parse_json(text, where)
    except WorkflowFormatError as error:
        report.warnings.append(f"the PNG's prompt chunk cannot be read ({error}); the workflow chunk was not "
                               "checked against it")
        return
    check_against_prompt(workflow, prompt, spec_of, report)


def workflow_from_bytes(raw: bytes, spec_of: SpecLookup, source: str = "") -> tuple[Workflow, ImportReport]:
    """Whichever format ``raw`` (a file's bytes) is in, as a native workflow; every failure,
    running out of memory on a hostile file included, is a :class:`WorkflowFormatError`."""
    if len(raw) > MAX_WORKFLOW_BYTES:
        raise WorkflowFormatError("$", f"{len(raw) // 2**20} MB is too large to be a workflow", source)
    try:
        if raw.startswith(PNG_SIGNATURE):
            return _workflow_from_png(raw, spec_of, source)
        return workflow_from_document(parse_json(raw, source), spec_of, source)
    except MemoryError:
        raise WorkflowFormatError("$", "not enough memory to open it; it is far larger than a workflow",
                                  source) from None


def _workflow_from_png(raw: bytes, spec_of: SpecLookup, source: str) -> tuple[Workflow, ImportReport]:
    try:
        # Only the chunks a workflow can come from are inflated.
        texts = read_png_text(raw, WORKFLOW_TEXT_KEYS)
    except PngTextError as error:
        raise WorkflowFormatError("$", str(error), source) from None
    for key in WORKFLOW_TEXT_KEYS:
        if key in texts:
            where = f"{source} [{key}]"
            workflow, report = workflow_from_document(parse_json(texts[key], where), spec_of, where)
            if report.source_format == "comfy-ui" and "prompt" in texts:
                _check_prompt_chunk(workflow, texts["prompt"], spec_of, report, f"{source} [prompt]")
            report.source_format = f"png:{report.source_format}"
            return workflow, report
    raise WorkflowFormatError("$", "this PNG carries no workflow (no Seed Studio or ComfyUI text chunk)", source)


def open_workflow(path: str | os.PathLike[str], spec_of: SpecLookup) -> tuple[Workflow, ImportReport]:
    """Read any supported workflow file; every failure is a :class:`WorkflowFormatError`."""
    file_path = Path(path)
    try:
        size = file_path.stat().st_size
        if size > MAX_WORKFLOW_BYTES:
            raise WorkflowFormatError("$", f"{size // 2**20} MB is too large to be a workflow", str(file_path))
        # A device or a pipe reports size 0 and may never end (/dev/zero): read one byte past
        # the limit at most.
        with open(file_path, "rb") as stream:
            raw = stream.read(MAX_WORKFLOW_BYTES + 1)
    except OSError as error:
        raise WorkflowFormatError("$", f"cannot read the file ({error.strerror or error})", str(file_path)) from None
    return workflow_from_bytes(raw, spec_of, str(file_path))
