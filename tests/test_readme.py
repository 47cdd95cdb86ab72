"""The README's promises name the tests that check them; each named test must exist."""

from __future__ import annotations

import re
from pathlib import Path

# The README is the repository's, not the installed package's: found from this file's place.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_readme_promises_name_exists():
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## What Seed Studio promises", 1)[1].split("\n## ", 1)[0]
    named = 0
    for row in table.splitlines()[4:]:
        current = None
        for reference in re.findall(r"`([^`]+)`", row.split("|")[2]):
            path, _, test = reference.partition("::")
            if path:
                current = PROJECT_ROOT / path
                assert current.is_file(), f"the README names {path}, which does not exist"
            if test:
                assert current is not None and f"def {test}(" in current.read_text(encoding="utf-8"), \
                    f"the README names {reference}, which is not a test in {current}"
                named += 1
    assert named >= 15
