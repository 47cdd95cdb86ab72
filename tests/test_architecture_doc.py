"""studio/ARCHITECTURE.md names the seams as they are in code: every file it names exists and
every class or function name it quotes is defined in the project (so a rename that forgets the
map fails here)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "studio" / "ARCHITECTURE.md"


def _quoted() -> list[str]:
    return re.findall(r"`([^`\n]+)`", DOC.read_text(encoding="utf-8"))


def test_every_file_the_map_names_exists():
    paths = [text for text in _quoted() if re.fullmatch(r"[\w/]+\.(py|md)|[\w]+/", text)]
    assert len(paths) > 20
    missing = [path for path in paths if not any((ROOT / base / path).exists()
                                                  for base in ("", "studio", "studio/graph", "studio/engine",
                                                               "studio/runtime", "studio/app"))]
    assert not missing


def test_every_name_the_map_quotes_is_defined_in_the_code():
    source = "\n".join(path.read_text(encoding="utf-8")
                       for folder in ("studio", "nodes", "tests") for path in (ROOT / folder).rglob("*.py"))
    defined = set(re.findall(r"^\s*(?:class|def)\s+(\w+)", source, re.MULTILINE))
    defined |= set(re.findall(r"^\s*(\w+)\s*(?::[^=\n]+)?=", source, re.MULTILINE))
    defined |= {path.stem for folder in ("studio", "nodes") for path in (ROOT / folder).rglob("*.py")}
    names = set()
    for text in _quoted():
        if "/" in text or text.endswith((".py", ".md")):
            continue  # a file: the test above
        # `Engine(registry, …).run(…)`, `sampling.sample(…)`, `Workflow.subscribe`: each identifier
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text.split("(")[0]):
            if name[0].isupper() and any(c.islower() for c in name) or "_" in name:
                names.add(name)
    # Names from outside the code: Python's typing, Qt, an environment variable, pyproject's packages.
    names -= {"Protocol", "QUndoCommand", "HF_HUB_OFFLINE", "seed_studio_resources", "seed_studio_workflows"}
    assert len(names) > 30
    assert sorted(name for name in names if name not in defined) == []
