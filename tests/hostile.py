"""Running code on hostile inputs in a child process with a cap on its memory, so that a
regression fails its test (MemoryError, or a non-zero exit) instead of eating the machine."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from studio.settings import PROJECT_ROOT

_PRELUDE = """\
import resource
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
"""


def run_with_memory_limit(code: str, megabytes: int, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (in the project root) whose address space is
    capped at ``megabytes``."""
    limit = megabytes * 1024 * 1024
    script = _PRELUDE.format(limit=limit) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout)
