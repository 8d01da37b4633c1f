"""The package's form: concept modules a reader takes in one sitting, one meaning per public name.

A concept module (everything in ``lfd13`` except :mod:`lfd13.experiments` and :mod:`lfd13.recreate`)
holds one concept, names no chapter, and reads in one sitting; each module curates its public surface
in ``__all__`` (what the API page documents); a public name means one thing across the package.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import lfd13

ROOT = Path(lfd13.__file__).parent
MODULES = sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)
CONCEPTS = [p for p in MODULES if p.relative_to(ROOT).parts[0] not in ("experiments", "recreate.py")]
MAX_LINES = 420  # about 400: a module a reader takes in one sitting (STYLE.md, "habits" 1)
# Names that model modules define with the same role: the preset table, the checkpoint kind, the sidecar config
# of a checkpoint and the model built from it.
SAME_ROLE = {"PRESETS", "KIND", "checkpoint_config", "build_from_checkpoint"}


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", CONCEPTS, ids=_name)
def test_a_concept_module_reads_in_one_sitting_and_names_no_chapter(path: Path):
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{_name(path)} has {lines} lines: move an experiment to lfd13/experiments or split the concept"
    chapters = re.findall(r"\bChapters? \d+[ab]?\b", text)
    assert not chapters, f"{_name(path)} names {chapters}: say what the thing is; experiments say which chapter shows them"


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "__main__.py"], ids=_name)
def test_every_module_curates_its_public_surface(path: Path):
    module = importlib.import_module(_name(path))
    assert hasattr(module, "__all__"), f"{_name(path)} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{_name(path)}.__all__ names what it does not define: {missing}"
    assert len(set(module.__all__)) == len(module.__all__), f"{_name(path)}.__all__ repeats a name"


def test_a_public_name_means_one_thing_across_the_concept_modules():
    owners: dict[str, list[tuple[str, object]]] = {}
    for path in CONCEPTS:
        module = importlib.import_module(_name(path))
        for n in getattr(module, "__all__", ()):
            owners.setdefault(n, []).append((_name(path), getattr(module, n)))
    clashes = {n: [m for m, _ in found] for n, found in owners.items()
               if n not in SAME_ROLE and len({id(obj) for _, obj in found}) > 1}
    assert not clashes, f"public names defined differently in several modules (rename one): {clashes}"
