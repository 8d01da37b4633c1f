"""Chapters stay readable narrative: no code cell longer than a screen.

A long cell is a sign that something two chapters share belongs in ``lfd13``. The limit
counts every line of a code cell's source, blank lines included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.ipynb"))
MAX_LINES = 25


def long_cells(path: Path, limit: int = MAX_LINES) -> list[tuple[int, int]]:
    """``(cell index, lines)`` of the code cells of ``path`` longer than ``limit`` lines."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    out = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            n = len("".join(cell["source"]).splitlines())
            if n > limit:
                out.append((i, n))
    return out


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_no_code_cell_is_longer_than_a_screen(path):
    assert not long_cells(path), f"{path.name}: cells (index, lines) over {MAX_LINES} lines: {long_cells(path)}"


def test_the_check_counts_lines(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1\n"] * 26}, {"cell_type": "markdown", "source": ["a\n"] * 40}]}
    path = tmp_path / "long.ipynb"
    path.write_text(json.dumps(nb))
    assert long_cells(path) == [(0, 26)]
