"""``assignments/build_sources.py`` is the one source of the nbgrader source notebooks: they are its output, byte for byte.

Edit the cells in ``build_sources.py`` and run ``python assignments/build_sources.py``; an edit made in a
notebook alone (which the next build would silently undo) fails here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("build_sources", ROOT / "assignments" / "build_sources.py")
build_sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_sources)


@pytest.mark.parametrize("name", build_sources.BUILDERS)
def test_each_source_notebook_is_what_build_sources_writes(name, tmp_path):
    builder = getattr(build_sources, name)()
    committed = builder.path().read_bytes()
    written = builder.write(tmp_path).read_bytes()
    assert written == committed, f"{builder.path()} differs from build_sources.py's {name}(): run python assignments/build_sources.py"
    assert builder.points == 10


def test_the_check_sees_an_edit_made_in_the_notebook_alone(tmp_path):
    builder = build_sources.masking()
    nb = nbformat.read(builder.path(), as_version=4)
    nb.cells[1].source += "\nAn edit made here only."
    edited = tmp_path / "edited.ipynb"
    nbformat.write(nb, edited)
    assert edited.read_bytes() != builder.write(tmp_path / "built").read_bytes()
