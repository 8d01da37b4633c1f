"""Every chapter's "Scaling up" snippet (a section, or a collapsed block) runs as pasted: no undefined name, and every lfd13 call exists.

The snippets load real hub checkpoints and want a GPU, so the book does not run them. What
keeps them from rotting: each one is checked here as code — pyflakes finds no undefined or
unused name, every name it takes from ``lfd13`` exists — and every ``lfd13.hub`` function a
snippet calls is one that ``tests/unit/test_hub.py`` runs offline on tiny models saved in the
hub's own layout, by hub name.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest
from pyflakes.api import check
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.ipynb"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def scaling_up_snippet(path: Path) -> str:
    """The code block of a chapter's "Scaling up" section."""
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] != "markdown":
            continue
        if "## Scaling up" in text:  # a section
            section = text.split("## Scaling up", 1)[1].split("\n## ", 1)[0]
        elif "{dropdown} Scaling up" in text:  # a collapsed block: up to the fence that closes it
            fence, rest = re.search(r"(`{3,}|:{3,})\{dropdown\} Scaling up(.*)", text, re.S).groups()
            section = re.split(rf"\n{fence}\s*(?:\n|$)", rest, maxsplit=1)[0]
        else:
            continue
        blocks = BLOCK.findall(section)
        assert blocks, f"{path.name}: the Scaling up section has no python block"
        return "\n".join(blocks)
    raise AssertionError(f"{path.name} has no Scaling up section (a '## Scaling up' heading or a 'Scaling up' dropdown)")


def lfd13_references(code: str) -> list[tuple[str, str]]:
    """``(module, attribute)`` for every name the snippet takes from an lfd13 module."""
    tree = ast.parse(code)
    aliases: dict[str, str] = {}
    refs: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lfd13"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                try:
                    importlib.import_module(full)
                    aliases[a.asname or a.name] = full  # a submodule
                except ModuleNotFoundError:
                    refs.append((node.module, a.name))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lfd13"):
                    aliases[a.asname or a.name.split(".")[0]] = a.asname and a.name or a.name.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            refs.append((aliases[node.value.id], node.attr))
    return refs


class _Collect(Reporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def flake(self, message) -> None:  # noqa: ANN001
        self.messages.append(str(message))

    def syntaxError(self, filename, msg, lineno, offset, text) -> None:  # noqa: ANN001, N802
        self.messages.append(f"syntax error line {lineno}: {msg}")

    def unexpectedError(self, filename, msg) -> None:  # noqa: ANN001, N802
        self.messages.append(str(msg))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_snippet_has_no_undefined_or_unused_name(path):
    reporter = _Collect()
    check(scaling_up_snippet(path), f"{path.stem} (Scaling up)", reporter)
    assert not reporter.messages, "\n".join(reporter.messages)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_snippet_calls_only_what_lfd13_has(path):
    missing = [f"{m}.{a}" for m, a in lfd13_references(scaling_up_snippet(path)) if not hasattr(importlib.import_module(m), a)]
    assert not missing, f"{path.name}: the Scaling up snippet uses names lfd13 does not have: {missing}"


def test_every_hub_call_of_the_snippets_runs_offline_in_test_hub():
    from tests.unit import test_hub

    tested = set(re.findall(r"\bhub\.(\w+)\(", test_hub.SNIPPETS))
    used = {a for p in CHAPTERS for m, a in lfd13_references(scaling_up_snippet(p)) if m == "lfd13.hub"}
    assert used, "no snippet calls lfd13.hub"
    assert used <= tested, f"hub functions used by a snippet but not run by tests/unit/test_hub.py: {sorted(used - tested)}"


def test_the_checks_catch_a_rotten_snippet():
    reporter = _Collect()
    check("from lfd13 import hub\nhub.load_vit_mae(name)\n", "rotten", reporter)
    assert any("undefined name 'name'" in m for m in reporter.messages)
    assert ("lfd13.hub", "no_such_function") in lfd13_references("from lfd13 import hub\nhub.no_such_function()\n")
